//! What the logger tests share: a capturing `log::Log` and sdk-log's input.

use std::sync::Mutex;

use log::Level;

/// One record as a user's logger sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Captured {
    pub level: Level,
    pub target: String,
    pub file: Option<String>,
    pub text: String,
}

/// A `log::Log` that keeps every record (each test has its own, so tests
/// running side by side in one process do not see each other's records).
pub struct Capture(Mutex<Vec<Captured>>);

impl Capture {
    pub const fn new() -> Capture {
        Capture(Mutex::new(Vec::new()))
    }
    pub fn records(&self) -> Vec<Captured> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if let Ok(mut v) = self.0.lock() {
            v.push(Captured {
                level: record.level(),
                target: record.target().to_owned(),
                file: record.file().map(str::to_owned),
                text: record.args().to_string(),
            });
        }
    }
    fn flush(&self) {}
}

/// An Ethernet frame carrying the start of an IPv4 header.
pub fn packet() -> Vec<u8> {
    let mut p = vec![0u8; 12];
    p.extend([0x08, 0x00]);
    p.extend([0x45, 0x00, 0x00, 0x32]);
    p.resize(64, 0);
    p
}

/// What sdk-log's `log_packet` logs for a packet of `len` bytes (after the
/// Ethernet header), as (level, target, text), in call order.
pub fn every_level(len: u32) -> Vec<(Level, String, String)> {
    let record = |level, text: &str| (level, "sdk_log".to_owned(), text.to_owned());
    vec![
        record(
            Level::Info,
            &format!("packet of {len} bytes, head 45000032"),
        ),
        record(
            Level::Warn,
            "signed -5 hex 0xdeadbeef padded 000000ab bool true",
        ),
        record(Level::Error, "no arguments, {braces} kept"),
        record(Level::Debug, "name kiln-log bytes abc"),
        record(Level::Trace, "small 1 -2 3 -4"),
    ]
}

/// Runs sdk-log's `log_packet` once on [`packet`] (BPF_PROG_TEST_RUN, the
/// trigger); returns the length it logged (the packet after Ethernet).
pub fn run_log_packet(
    ebpf: &kiln_loader::Ebpf,
) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    let prog = ebpf.program("log_packet").ok_or("no program log_packet")?;
    let run = prog.test_run(kiln_loader::programs::TestRun {
        data_in: Some(&packet()),
        ..Default::default()
    })?;
    Ok(run.retval)
}
