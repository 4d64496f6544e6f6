//! EbpfLogger::init_tracing: sdk-log's records reach the global `tracing`
//! dispatcher as events whose (normalized) target is the eBPF crate and
//! whose message is the formatted text.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kiln_log::EbpfLogger;
use kiln_testkit::{Need, TestResult, bpf_object, test};
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Dispatch, Event, Level, Metadata, Subscriber};
use tracing_log::NormalizeEvent;

#[expect(
    dead_code,
    reason = "this test captures through tracing, not the log::Log the others use"
)]
mod support;

/// Every event as (level, target, message).
static EVENTS: Mutex<Vec<(Level, String, String)>> = Mutex::new(Vec::new());

struct Capture;

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut message = Message(String::new());
        event.record(&mut message);
        if let Ok(mut v) = EVENTS.lock() {
            v.push((*meta.level(), meta.target().to_owned(), message.0));
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn forwards_to_tracing() -> TestResult {
    tracing_core::dispatcher::set_global_default(Dispatch::new(Capture))
        .map_err(|e| e.to_string())?;
    let object = std::fs::read(bpf_object("sdk-log.bpf.o")?)?;
    let mut ebpf = kiln_loader::load(&object)?;
    let logger = EbpfLogger::init_tracing(&mut ebpf, &object)?;
    let len = support::run_log_packet(&ebpf)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while EVENTS.lock().map(|v| v.len()).unwrap_or(0) < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    logger.stop();
    let got = EVENTS.lock().map(|v| v.clone()).unwrap_or_default();
    let want: Vec<(Level, String, String)> = support::every_level(len)
        .into_iter()
        .map(|(level, target, text)| {
            let level = match level {
                log::Level::Error => Level::ERROR,
                log::Level::Warn => Level::WARN,
                log::Level::Info => Level::INFO,
                log::Level::Debug => Level::DEBUG,
                log::Level::Trace => Level::TRACE,
            };
            (level, target, text)
        })
        .collect();
    assert_eq!(got, want);
    Ok(())
}

fn main() {
    kiln_testkit::run(vec![test(
        "forwards_to_tracing",
        &[Need::Bpf],
        forwards_to_tracing,
    )]);
}
