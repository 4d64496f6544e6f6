//! The exec-tracer example (manifests/examples/exec-tracer/tracer.rs) is
//! this test's code: it is compiled in as a module, its `Tracer` loads
//! exec-tracer.bpf.o tracing this process's children, and the test execs
//! `/bin/true` twice. Each exec must arrive as an event (pid, uid, parent,
//! comm), be counted once in the hash map, and be logged by the program
//! through kiln-log to the global `log` logger.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kiln_testkit::{Need, TestResult, bpf_object, test};

#[expect(
    dead_code,
    reason = "the example's main parses the command line; the test drives Tracer"
)]
#[path = "../../../manifests/examples/exec-tracer/tracer.rs"]
mod tracer;

/// The global logger of this test binary: every record, as text.
static RECORDS: Mutex<Vec<(log::Level, String, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if let Ok(mut v) = RECORDS.lock() {
            v.push((
                record.level(),
                record.target().to_owned(),
                record.args().to_string(),
            ));
        }
    }
    fn flush(&self) {}
}

fn traces_children_counts_and_logs() -> TestResult {
    log::set_logger(&Capture).map_err(|e| e.to_string())?;
    log::set_max_level(log::LevelFilter::Trace);
    let object = std::fs::read(bpf_object("exec-tracer.bpf.o")?)?;
    let me = std::process::id();
    let mut tracer = tracer::Tracer::start(&object, me, log::LevelFilter::Debug)?;

    let mut children = Vec::new();
    for _ in 0..2 {
        let mut child = std::process::Command::new("/bin/true").spawn()?;
        children.push(child.id());
        child.wait()?;
    }
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while events.len() < children.len() && Instant::now() < deadline {
        if let Some(e) = tracer.next_event(Duration::from_millis(200))? {
            events.push(e);
        }
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let expected: Vec<tracer::ExecEvent> = children
        .iter()
        .map(|&pid| tracer::ExecEvent {
            pid,
            uid,
            parent_pid: me,
            comm: "true".into(),
        })
        .collect();
    assert_eq!(events, expected, "one event per exec of a child, in order");
    for &pid in &children {
        assert_eq!(tracer.execs_of(pid)?, 1, "EXECS[{pid}]");
    }
    tracer.stop();

    let records = RECORDS.lock().map(|v| v.clone()).unwrap_or_default();
    let mut want = Vec::new();
    for &pid in &children {
        want.push((
            log::Level::Info,
            "exec_tracer".to_owned(),
            format!("exec pid {pid} uid {uid} comm true"),
        ));
        want.push((
            log::Level::Debug,
            "exec_tracer".to_owned(),
            format!("pid {pid} has parent {me}"),
        ));
    }
    assert_eq!(records, want);
    Ok(())
}

fn main() {
    kiln_testkit::run(vec![test(
        "traces_children_counts_and_logs",
        &[Need::Root, Need::Bpf],
        traces_children_counts_and_logs,
    )]);
}
