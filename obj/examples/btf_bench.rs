//! Measures kernel BTF parsing and the first lookups by name:
//! `cargo run --release -p kiln-obj --example btf_bench [PATH] [ROUNDS]`.
//! `cargo bench -p kiln-obj --bench btf_vs_libbpf` runs the same
//! measurement next to libbpf's.
//!
//! The machine this runs on is often shared, so each figure is the minimum
//! over `ROUNDS` rounds (default 50): the least disturbed run.

use std::time::{Duration, Instant};

use kiln_obj::btf::{Btf, Kind};

/// The structs looked up, the same on the libbpf side (benches/libbpf_btf.c).
pub const NAMES: [&str; 10] = [
    "task_struct",
    "sk_buff",
    "file",
    "inode",
    "bpf_prog",
    "pt_regs",
    "net_device",
    "sock",
    "cgroup",
    "mm_struct",
];

/// Minimum times over the rounds, in milliseconds.
pub struct Timings {
    pub types: u32,
    pub read: f64,
    pub parse: f64,
    pub first: f64,
    pub more: f64,
}

pub fn measure(path: &str, rounds: usize) -> Result<Timings, String> {
    let data = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let shared: std::sync::Arc<[u8]> = data.into();
    let mut best = [Duration::MAX; 4];
    let mut types = 0;
    for _ in 0..rounds.max(1) {
        let t0 = Instant::now();
        let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
        let t1 = Instant::now();
        let btf = Btf::from_shared(shared.clone()).map_err(|e| format!("{path}: {e}"))?;
        let t2 = Instant::now();
        let first = btf.find_by_name(Kind::Struct, NAMES[0]);
        let t3 = Instant::now();
        let mut found = usize::from(first.is_some());
        for n in &NAMES[1..] {
            found += usize::from(btf.find_by_name(Kind::Struct, n).is_some());
        }
        let t4 = Instant::now();
        if found != NAMES.len() {
            return Err(format!(
                "{path}: only {found} of {} structs found",
                NAMES.len()
            ));
        }
        types = btf.len();
        drop(bytes);
        for (b, d) in best.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3]) {
            *b = (*b).min(d);
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(Timings {
        types,
        read: ms(best[0]),
        parse: ms(best[1]),
        first: ms(best[2]),
        more: ms(best[3]),
    })
}

#[allow(
    dead_code,
    reason = "benches/btf_vs_libbpf.rs includes this file as a module"
)]
fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "/sys/kernel/btf/vmlinux".into());
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(50);
    match measure(&path, rounds) {
        Ok(t) => println!(
            "kiln: {} types; min over {rounds} rounds: read {:.3} ms, parse {:.3} ms, first find_by_name {:.3} ms, parse+first {:.3} ms, 9 more lookups {:.3} ms",
            t.types,
            t.read,
            t.parse,
            t.first,
            t.parse + t.first,
            t.more
        ),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
