//! EbpfLogger end to end: sdk-log's socket filter logs at every level
//! through `KILN_LOGS`; BPF_PROG_TEST_RUN runs it (the trigger), the logger's
//! thread forwards the records, and a capturing `log::Log` must hold each
//! one with its level, target and formatted text.

use std::time::{Duration, Instant};

use kiln_loader::EbpfLoader;
use kiln_log::EbpfLogger;
use kiln_testkit::{Need, TestResult, bpf_object, test};
use log::{Level, LevelFilter};

mod support;
use support::Capture;

/// Loads sdk-log with `level`, starts the logger into `capture`, runs the
/// program once; returns the logger (still running) and the program's
/// return value (the packet length it logged).
fn load_and_trigger(
    level: LevelFilter,
    capture: &'static Capture,
) -> Result<(EbpfLogger, u32), Box<dyn std::error::Error + Send + Sync>> {
    let object = std::fs::read(bpf_object("sdk-log.bpf.o")?)?;
    let mut loader = EbpfLoader::new();
    kiln_log::set_level(&mut loader, level);
    let mut ebpf = loader.load_bytes(&object)?;
    let logger = EbpfLogger::init_with_logger(&mut ebpf, &object, capture)?;
    let len = support::run_log_packet(&ebpf)?;
    Ok((logger, len))
}

fn forwards_every_level_to_log() -> TestResult {
    static CAPTURE: Capture = Capture::new();
    let (logger, len) = load_and_trigger(LevelFilter::Trace, &CAPTURE)?;
    // The thread forwards on its own while running, without a stop.
    let deadline = Instant::now() + Duration::from_secs(5);
    while CAPTURE.records().len() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    logger.stop();
    let got: Vec<(Level, String, String)> = CAPTURE
        .records()
        .into_iter()
        .map(|c| (c.level, c.target, c.text))
        .collect();
    assert_eq!(got, support::every_level(len));
    assert_eq!(
        CAPTURE.records()[0].file.as_deref(),
        Some("src/main.rs"),
        "the call site's file"
    );
    Ok(())
}

/// `set_level(Warn)` before load: the program writes only ERROR and WARN
/// records, so nothing else reaches the logger.
fn level_set_from_userspace() -> TestResult {
    static CAPTURE: Capture = Capture::new();
    let (logger, _) = load_and_trigger(LevelFilter::Warn, &CAPTURE)?;
    // Dropping the logger forwards what is still in the ring.
    drop(logger);
    let levels: Vec<Level> = CAPTURE.records().iter().map(|c| c.level).collect();
    assert_eq!(levels, [Level::Warn, Level::Error]);
    Ok(())
}

/// `LevelFilter::Off` silences every call site.
fn level_off_logs_nothing() -> TestResult {
    static CAPTURE: Capture = Capture::new();
    let (logger, _) = load_and_trigger(LevelFilter::Off, &CAPTURE)?;
    logger.stop();
    assert_eq!(CAPTURE.records(), []);
    Ok(())
}

/// An object without `KILN_LOGS` is refused with a reason (a C socket
/// filter: it loads on every kernel of the matrix).
fn object_without_logs_is_an_error() -> TestResult {
    let object = std::fs::read(bpf_object("sockfilter.bpf.o")?)?;
    let mut ebpf = kiln_loader::load(&object)?;
    static CAPTURE: Capture = Capture::new();
    let err = match EbpfLogger::init_with_logger(&mut ebpf, &object, &CAPTURE) {
        Ok(_) => return Err("a logger for an object that does not log".into()),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("no KILN_LOGS map"), "{err}");
    Ok(())
}

fn main() {
    kiln_testkit::run(vec![
        test(
            "forwards_every_level_to_log",
            &[Need::Bpf],
            forwards_every_level_to_log,
        ),
        test(
            "level_set_from_userspace",
            &[Need::Bpf],
            level_set_from_userspace,
        ),
        test(
            "level_off_logs_nothing",
            &[Need::Bpf],
            level_off_logs_nothing,
        ),
        test(
            "object_without_logs_is_an_error",
            &[Need::Bpf],
            object_without_logs_is_an_error,
        ),
    ]);
}
