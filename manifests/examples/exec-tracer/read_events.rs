//! Prints the exec-tracer deployment's stream: one line per exec, as
//! exectrace.bpf.c records them in the pinned ring buffer.
//!
//! ```sh
//! cargo run -p kiln-manifest --example read_events [PIN_ROOT] [--count N]
//! ```
//!
//! PIN_ROOT defaults to `/sys/fs/bpf/kiln/exec-tracer` (the manifest's);
//! the ring buffer is `PIN_ROOT/maps/events`. Without `--count` it runs until
//! interrupted. A ring buffer has one consumer position: two readers at once
//! split the records between them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use kiln_loader::Map;
use kiln_loader::OpenFlags;
use kiln_loader::maps::RingBuf;

#[path = "event.rs"]
mod event;
use event::ExecEvent;

fn main() -> anyhow::Result<()> {
    let mut root = PathBuf::from("/sys/fs/bpf/kiln/exec-tracer");
    let mut count: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--count" => {
                let n = args.next().context("--count needs a number")?;
                count = Some(n.parse().with_context(|| format!("--count {n}"))?);
            }
            s if s.starts_with('-') => {
                bail!("unknown option {s} (usage: read_events [PIN_ROOT] [--count N])")
            }
            s => root = PathBuf::from(s),
        }
    }
    let pin = root.join("maps/events");
    // Read-write: the consumer position is ours to advance.
    let map = Map::from_pin(&pin, OpenFlags::ReadWrite).with_context(|| {
        format!(
            "opening {} (is the exec-tracer manifest applied?)",
            pin.display()
        )
    })?;
    let mut ring = RingBuf::new(map).with_context(|| format!("mapping {}", pin.display()))?;
    println!("{:>7} {:<16} FILENAME", "PID", "COMM");
    let mut seen = 0;
    while count.is_none_or(|n| seen < n) {
        ring.wait(Some(Duration::from_secs(1)))?;
        while let Some(record) = ring.next() {
            match ExecEvent::parse(&record) {
                Some(e) => println!("{e}"),
                None => eprintln!(
                    "skipping a {}-byte record (expected {})",
                    record.len(),
                    event::SIZE
                ),
            }
            seen += 1;
            if count.is_some_and(|n| seen >= n) {
                break;
            }
        }
    }
    Ok(())
}
