//! An exec tracer as an aya user writes one, with Kiln: the userspace side
//! of `tracer-ebpf` (a Rust eBPF program).
//!
//! It loads the object with a global set (`PARENT_TGID`) and the log level
//! set before load, forwards the program's `info!`/`debug!` records to the
//! `log` crate with [`kiln_log::EbpfLogger`], attaches the tracepoint, prints
//! each event from the `EVENTS` ring buffer and reads the per-pid count from
//! the `EXECS` hash map.
//!
//! ```sh
//! cargo xtask build-ebpf                          # -> target/bpf/exec-tracer.bpf.o
//! cargo run -p kiln-log --example exec-tracer     # as root; every exec until Ctrl-C
//! cargo run -p kiln-log --example exec-tracer -- --parent 1234 --count 5
//! ```
//!
//! The test `kiln-log --test exec_tracer` runs this same file: it starts a
//! [`Tracer`], execs children and checks the events, counts and log records.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use kiln_loader::links::Link;
use kiln_loader::links::tracepoint::attach_tracepoint;
use kiln_loader::maps::{HashMap, RingBuf};
use kiln_loader::{Ebpf, EbpfLoader, Map};
use kiln_log::EbpfLogger;

/// One exec, as the program writes it to `EVENTS` (its `ExecEvent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    /// The process that exec'd.
    pub pid: u32,
    /// Its real uid.
    pub uid: u32,
    /// Its parent's pid.
    pub parent_pid: u32,
    /// Its new name (`comm`).
    pub comm: String,
}

impl ExecEvent {
    /// The record's size: pid, uid, parent, padding, comm[16].
    const SIZE: usize = 32;

    /// Decodes one ring buffer record; `None` when its size is not the
    /// program's `ExecEvent`'s.
    pub fn parse(record: &[u8]) -> Option<ExecEvent> {
        if record.len() != Self::SIZE {
            return None;
        }
        let u32_at =
            |o: usize| u32::from_ne_bytes([record[o], record[o + 1], record[o + 2], record[o + 3]]);
        let comm = &record[16..32];
        let end = comm.iter().position(|&c| c == 0).unwrap_or(comm.len());
        Some(ExecEvent {
            pid: u32_at(0),
            uid: u32_at(4),
            parent_pid: u32_at(8),
            comm: String::from_utf8_lossy(&comm[..end]).into_owned(),
        })
    }
}

/// The loaded, attached tracer.
pub struct Tracer {
    events: RingBuf<Map>,
    // Field order is drop order: detach before the maps and programs close.
    _link: Box<dyn Link>,
    logger: EbpfLogger,
    ebpf: Ebpf,
}

impl Tracer {
    /// Loads `object` (the bytes of exec-tracer.bpf.o) tracing the children
    /// of `parent_tgid` (0: every exec), with the program's logs at `level`
    /// and above going to the global `log` logger, and attaches it.
    pub fn start(
        object: &[u8],
        parent_tgid: u32,
        level: log::LevelFilter,
    ) -> anyhow::Result<Tracer> {
        let mut loader = EbpfLoader::new();
        loader.set_global("PARENT_TGID", &parent_tgid.to_ne_bytes());
        kiln_log::set_level(&mut loader, level);
        let mut ebpf = loader.load_bytes(object).context("loading exec-tracer")?;
        let logger = EbpfLogger::init(&mut ebpf, object)?;
        let events = ebpf
            .take_map("EVENTS")
            .context("exec-tracer has no map EVENTS")?;
        let events = RingBuf::new(events)?;
        let program = ebpf
            .program("trace_exec")
            .context("exec-tracer has no program trace_exec")?;
        let link = attach_tracepoint(program.fd(), "sched", "sched_process_exec", 0)?;
        Ok(Tracer {
            events,
            _link: Box::new(link),
            logger,
            ebpf,
        })
    }

    /// The next exec, waiting at most `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> anyhow::Result<Option<ExecEvent>> {
        if let Some(record) = self.events.next() {
            return Ok(ExecEvent::parse(&record));
        }
        self.events.wait(Some(timeout))?;
        Ok(self
            .events
            .next()
            .and_then(|record| ExecEvent::parse(&record)))
    }

    /// How many execs the program counted for `pid`.
    pub fn execs_of(&self, pid: u32) -> anyhow::Result<u64> {
        let map = self
            .ebpf
            .map("EXECS")
            .context("exec-tracer has no map EXECS")?;
        let execs: HashMap<&Map, u32, u64> = HashMap::new(map)?;
        Ok(execs.get(&pid)?.unwrap_or(0))
    }

    /// Detaches and forwards the last log records.
    pub fn stop(self) {
        let Tracer { logger, .. } = self;
        logger.stop();
    }
}

/// Prints `log` records on stderr (a real program would use env_logger).
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        eprintln!(
            "[{:<5} {}] {}",
            record.level(),
            record.target(),
            record.args()
        );
    }
    fn flush(&self) {}
}

fn main() -> anyhow::Result<()> {
    let mut object = PathBuf::from("target/bpf/exec-tracer.bpf.o");
    let (mut parent, mut count) = (0u32, None::<usize>);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--object" => object = PathBuf::from(value()?),
            "--parent" => parent = value()?.parse().context("--parent")?,
            "--count" => count = Some(value()?.parse().context("--count")?),
            other => bail!(
                "unknown argument {other} (usage: exec-tracer [--object PATH] [--parent PID] [--count N])"
            ),
        }
    }
    log::set_logger(&StderrLogger).map_err(|e| anyhow::anyhow!("{e}"))?;
    log::set_max_level(log::LevelFilter::Info);
    let bytes = std::fs::read(&object).with_context(|| format!("reading {}", object.display()))?;
    let mut tracer = Tracer::start(&bytes, parent, log::LevelFilter::Info)?;
    println!(
        "{:>7} {:>6} {:>7} {:<16} EXECS",
        "PID", "UID", "PARENT", "COMM"
    );
    let mut seen = 0;
    while count.is_none_or(|n| seen < n) {
        if let Some(e) = tracer.next_event(Duration::from_secs(1))? {
            let execs = tracer.execs_of(e.pid)?;
            println!(
                "{:>7} {:>6} {:>7} {:<16} {execs}",
                e.pid, e.uid, e.parent_pid, e.comm
            );
            seen += 1;
        }
    }
    tracer.stop();
    Ok(())
}
