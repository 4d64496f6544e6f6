//! EbpfLogger::init_async: the records of sdk-log's socket filter reach a
//! capturing `log::Log` from a task of a tokio runtime, which awaits the
//! ring buffer instead of polling it.

use std::time::{Duration, Instant};

use kiln_log::{EbpfLogger, LogError};
use kiln_testkit::{Need, TestResult, bpf_object, test};

mod support;
use support::Capture;

fn forwards_from_a_tokio_task() -> TestResult {
    static CAPTURE: Capture = Capture::new();
    let object = std::fs::read(bpf_object("sdk-log.bpf.o")?)?;
    let mut ebpf = kiln_loader::load(&object)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let task = runtime
        .block_on(async { EbpfLogger::init_async_with_logger(&mut ebpf, &object, &CAPTURE) })?;
    let len = support::run_log_packet(&ebpf)?;
    // The task runs while the runtime is driven: wait on it, bounded.
    let deadline = Instant::now() + Duration::from_secs(5);
    runtime.block_on(async {
        while CAPTURE.records().len() < 5 && Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
    });
    task.abort();
    let got: Vec<_> = CAPTURE
        .records()
        .into_iter()
        .map(|c| (c.level, c.target, c.text))
        .collect();
    assert_eq!(got, support::every_level(len));
    Ok(())
}

/// Outside a runtime there is nothing to spawn on: an error, not a panic.
fn outside_a_runtime_is_an_error() -> TestResult {
    static CAPTURE: Capture = Capture::new();
    let object = std::fs::read(bpf_object("sdk-log.bpf.o")?)?;
    let mut ebpf = kiln_loader::load(&object)?;
    match EbpfLogger::init_async_with_logger(&mut ebpf, &object, &CAPTURE) {
        Err(LogError::NoRuntime) => Ok(()),
        Err(e) => Err(format!("expected NoRuntime, got {e}").into()),
        Ok(_) => Err("a task spawned without a runtime".into()),
    }
}

fn main() {
    kiln_testkit::run(vec![
        test(
            "forwards_from_a_tokio_task",
            &[Need::Bpf],
            forwards_from_a_tokio_task,
        ),
        test(
            "outside_a_runtime_is_an_error",
            &[Need::Bpf],
            outside_a_runtime_is_an_error,
        ),
    ]);
}
