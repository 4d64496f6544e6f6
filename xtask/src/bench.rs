//! `cargo xtask bench`: Kiln against libbpf on the same workloads.
//!
//! Builds the eBPF objects (`bench/*.bpf.c`), Kiln's side (`bench/kiln-bench`,
//! release) and libbpf's side (`bench/libbpf-bench.c` against the system
//! libbpf), then runs both ALTERNATELY over several rounds (Kiln first in even
//! rounds, libbpf first in odd ones) so drift on a shared machine hits both
//! alike. Each run is a fresh process that times its workload in-process and
//! prints `CPU_NS WALL_NS COUNT`; the counts of both sides must agree, so a
//! side that silently did less work fails the bench.
//!
//! Comparisons use CPU time (user + system of the timed thread: syscalls,
//! the verifier and page faults included), because the wall clock of a
//! machine shared with builds measures the neighbours; wall medians are in
//! the JSON. W7 and W8 time the whole `kiln` process: CPU from getrusage
//! of the child, and wall clock (W8 beside a whole `bpftool` process).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::build_ebpf;

mod scale;

#[derive(clap::Args)]
pub struct Args {
    /// One JSON object per workload on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Rounds per workload (each round runs both sides once).
    #[arg(long)]
    rounds: Option<usize>,
    /// CI size: two rounds.
    #[arg(long)]
    quick: bool,
    /// Only the workloads whose id starts with this (`W8`, `W5`...).
    #[arg(long)]
    only: Option<String>,
}

/// What a target says about the Kiln/libbpf time ratio (or W7's absolute time).
#[derive(Clone, Copy)]
enum Target {
    None,
    /// Kiln's time / libbpf's time at most this.
    RatioAtMost(f64),
    /// Kiln's rate at least this many times libbpf's (time ratio ≤ 1/x).
    RateAtLeast(f64),
    /// Kiln alone, below this many milliseconds (CPU, and wall on an idle machine).
    AbsMsBelow(f64),
}

impl Target {
    fn describe(self) -> String {
        match self {
            Target::None => "-".into(),
            Target::RatioAtMost(r) => format!("ratio <= {r}"),
            Target::RateAtLeast(x) => format!("rate >= {x}x"),
            Target::AbsMsBelow(ms) => format!("< {ms} ms"),
        }
    }

    fn met(self, kiln_ns: f64, ratio: Option<f64>) -> Option<bool> {
        match (self, ratio) {
            (Target::None, _) => None,
            (Target::RatioAtMost(r), Some(q)) => Some(q <= r),
            (Target::RateAtLeast(x), Some(q)) => Some(q <= 1.0 / x),
            (Target::AbsMsBelow(ms), _) => Some(kiln_ns / 1e6 < ms),
            _ => None,
        }
    }
}

struct Workload {
    id: &'static str,
    /// Argument of both harness binaries.
    arg: &'static str,
    what: &'static str,
    /// Timed iterations inside one process (the process reports their median).
    iters: usize,
    /// Elements processed, for a rate column (0: no rate).
    elements: u64,
    target: Target,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        id: "W1",
        arg: "w1",
        what: "vmlinux BTF ready for CO-RE + find task_struct",
        iters: 1,
        elements: 0,
        target: Target::RatioAtMost(0.5),
    },
    Workload {
        id: "W1r",
        arg: "w1read",
        what: "same, plain read(2) + Btf::from_bytes",
        iters: 1,
        elements: 0,
        target: Target::None,
    },
    Workload {
        id: "W2",
        arg: "w2",
        what: "open 20-program object (no load)",
        iters: 20,
        elements: 0,
        target: Target::None,
    },
    // One load per process: Kiln caches the kernel BTF for the process and
    // libbpf does not, so only a cold load compares like with like.
    Workload {
        id: "W3",
        arg: "w3",
        what: "load 20-program object (CO-RE, maps)",
        iters: 1,
        elements: 0,
        target: Target::RatioAtMost(0.8),
    },
    Workload {
        id: "W4",
        arg: "w4",
        what: "100k updates + 100k lookups, hash u32->u64",
        iters: 1,
        elements: 200_000,
        target: Target::RatioAtMost(1.0),
    },
    Workload {
        id: "W5b",
        arg: "w5batch",
        what: "read 1M-entry hash map, batch ops",
        // Median of three reads with the same buffers (the libbpf side's
        // arrays are warm from filling the map).
        iters: 3,
        elements: 1_000_000,
        target: Target::RateAtLeast(1.2),
    },
    Workload {
        id: "W5k",
        arg: "w5key",
        what: "read 1M-entry hash map, per key",
        iters: 1,
        elements: 1_000_000,
        target: Target::None,
    },
    Workload {
        id: "W6",
        arg: "w6",
        what: "drain ~1M 64-byte ring buffer records",
        // Median of three drains of 1M: one alone swings by half with
        // whatever else shares the caches.
        iters: 3,
        elements: 1_015_808,
        target: Target::RateAtLeast(1.2),
    },
];

/// One row of results.
struct Row {
    id: &'static str,
    what: &'static str,
    /// CPU nanoseconds per round.
    kiln: Vec<f64>,
    libbpf: Vec<f64>,
    /// Wall-clock nanoseconds per round.
    kiln_wall: Vec<f64>,
    libbpf_wall: Vec<f64>,
    elements: u64,
    target: Target,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// (max - min) / median, in percent.
fn spread(v: &[f64]) -> f64 {
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
            (l.min(x), h.max(x))
        });
    (hi - lo) / median(v) * 100.0
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        (!self.libbpf.is_empty()).then(|| median(&self.kiln) / median(&self.libbpf))
    }

    fn met(&self) -> Option<bool> {
        self.target.met(median(&self.kiln), self.ratio())
    }

    fn json(&self) -> serde_json::Value {
        let side = |v: &[f64], wall: &[f64]| {
            if v.is_empty() {
                return serde_json::Value::Null;
            }
            let m = median(v);
            let mut o = serde_json::json!({
                "median_ns": m.round() as u64,
                "spread_pct": (spread(v) * 10.0).round() / 10.0,
                "samples_ns": v.iter().map(|x| x.round() as u64).collect::<Vec<_>>(),
                "wall_median_ns": median(wall).round() as u64,
            });
            if self.elements > 0 {
                o["rate_per_s"] = serde_json::json!((self.elements as f64 / (m / 1e9)).round());
            }
            o
        };
        serde_json::json!({
            "workload": self.id,
            "what": self.what,
            "clock": if self.libbpf.is_empty() {
                "process CPU time (user + system, getrusage)"
            } else {
                "thread CPU time (user + system)"
            },
            "kiln": side(&self.kiln, &self.kiln_wall),
            "libbpf": side(&self.libbpf, &self.libbpf_wall),
            "ratio_kiln_over_libbpf": self.ratio().map(|r| (r * 1000.0).round() / 1000.0),
            "target": self.target.describe(),
            "met": self.met(),
        })
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.1} us", ns / 1e3)
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rounds = args.rounds.unwrap_or(if args.quick { 2 } else { 7 }).max(1);
    let root = build_ebpf::repo_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let target = if target.is_relative() {
        root.join(target)
    } else {
        target
    };

    eprintln!("bench: building eBPF objects");
    build_ebpf::build_all()?;
    let bpf = build_ebpf::bpf_dir();
    eprintln!("bench: building kiln-bench and kiln (release)");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .args(["build", "--release", "--quiet", "-p", "kiln-bench", "-p"])
        .args(["kiln-manifest", "--bin", "kiln", "--bin", "kiln-bench"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of kiln-bench failed");
    }
    let kiln_bench = target.join("release/kiln-bench");
    let kiln = target.join("release/kiln");
    let libbpf_bench = target.join("bench/libbpf-bench");
    build_libbpf_harness(&root.join("bench/libbpf-bench.c"), &libbpf_bench)?;

    let wanted = |id: &str| args.only.as_deref().is_none_or(|p| id.starts_with(p));
    let workloads: Vec<&Workload> = WORKLOADS.iter().filter(|w| wanted(w.id)).collect();
    let mut rows: Vec<Row> = workloads
        .iter()
        .map(|w| Row {
            id: w.id,
            what: w.what,
            kiln: Vec::new(),
            libbpf: Vec::new(),
            kiln_wall: Vec::new(),
            libbpf_wall: Vec::new(),
            elements: w.elements,
            target: w.target,
        })
        .collect();
    for round in 0..rounds {
        eprintln!("bench: round {}/{rounds}", round + 1);
        for (w, row) in workloads.iter().zip(&mut rows) {
            let sides: [(&Path, bool); 2] = [(&kiln_bench, true), (&libbpf_bench, false)];
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            let mut counts = [0u64; 2];
            for i in order {
                let (bin, is_kiln) = sides[i];
                let (cpu, wall, count) = run_harness(bin, w, &bpf)?;
                counts[i] = count;
                if is_kiln {
                    row.kiln.push(cpu);
                    row.kiln_wall.push(wall);
                } else {
                    row.libbpf.push(cpu);
                    row.libbpf_wall.push(wall);
                }
            }
            if counts[0] != counts[1] {
                bail!(
                    "{}: Kiln processed {} and libbpf {}: the two sides did not do the same work",
                    w.id,
                    counts[0],
                    counts[1]
                );
            }
        }
    }
    if wanted("W7") {
        rows.extend(bench_apply(&kiln, &root, &bpf, rounds)?);
    }
    if wanted("W8") {
        rows.extend(scale::bench(&kiln, &target, rounds)?);
    }

    if args.json {
        for r in &rows {
            println!("{}", r.json());
        }
    } else {
        print!("{}", table(&rows));
    }
    Ok(())
}

fn build_libbpf_harness(src: &Path, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out.parent().context("harness path has a parent")?)?;
    let status = Command::new("cc")
        .args(["-O2", "-Wall", "-Werror"])
        .arg(src)
        .args(["-lbpf", "-lelf", "-lz", "-o"])
        .arg(out)
        .status()
        .context("running cc (install libbpf-dev: cargo xtask setup)")?;
    if !status.success() {
        bail!(
            "compiling {} failed (is libbpf-dev installed?)",
            src.display()
        );
    }
    Ok(())
}

/// Runs one harness process; returns its median CPU and wall times and element count.
fn run_harness(bin: &Path, w: &Workload, bpf: &Path) -> anyhow::Result<(f64, f64, u64)> {
    let out = Command::new(bin)
        .arg(w.arg)
        .arg(w.iters.to_string())
        .arg(bpf)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{} {} failed: {}{}",
            bin.display(),
            w.arg,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut it = stdout.split_whitespace();
    let parse = |s: Option<&str>| s.and_then(|s| s.parse::<u64>().ok());
    match (parse(it.next()), parse(it.next()), parse(it.next())) {
        (Some(cpu), Some(wall), Some(count)) => Ok((cpu as f64, wall as f64, count)),
        _ => bail!("{} {}: unexpected output {stdout:?}", bin.display(), w.arg),
    }
}

/// W7: `kiln apply` of bench/w7/manifest.toml from nothing, then a no-op
/// re-apply; `kiln destroy` before and after each round (untimed).
fn bench_apply(kiln: &Path, root: &Path, bpf: &Path, rounds: usize) -> anyhow::Result<[Row; 2]> {
    let manifest = root.join("bench/w7/manifest.toml");
    let object = format!("w2={}", bpf.join("w2.bpf.o").display());
    let kiln_cmd = |verb: &str| {
        let mut c = Command::new(kiln);
        c.arg(verb).arg(&manifest);
        if verb == "apply" {
            c.args(["--object", &object]);
        }
        c
    };
    let timed = |verb: &str| -> anyhow::Result<(f64, f64, String)> {
        let cpu0 = children_cpu_ns();
        let t = Instant::now();
        let out = kiln_cmd(verb).output().context("running kiln")?;
        let wall = t.elapsed().as_nanos() as f64;
        let cpu = (children_cpu_ns() - cpu0) as f64;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "kiln {verb} {} failed: {stdout}{}",
                manifest.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok((cpu, wall, stdout))
    };
    let (mut fresh, mut fresh_wall) = (Vec::new(), Vec::new());
    let (mut noop, mut noop_wall) = (Vec::new(), Vec::new());
    // A deployment left by an interrupted run would turn the first apply into a no-op.
    let _ = kiln_cmd("destroy").output();
    for round in 0..rounds {
        eprintln!("bench: W7 round {}/{rounds}", round + 1);
        let (cpu, wall, _) = timed("apply")?;
        fresh.push(cpu);
        fresh_wall.push(wall);
        let (cpu, wall, out) = timed("apply")?;
        if !out.contains("no changes") {
            bail!("kiln re-apply was not a no-op: {out}");
        }
        noop.push(cpu);
        noop_wall.push(wall);
        timed("destroy")?;
    }
    let row = |id, what, kiln, kiln_wall, target| Row {
        id,
        what,
        kiln,
        kiln_wall,
        libbpf: Vec::new(),
        libbpf_wall: Vec::new(),
        elements: 0,
        target,
    };
    Ok([
        row(
            "W7a",
            "kiln apply, 20 programs from nothing",
            fresh,
            fresh_wall,
            Target::None,
        ),
        row(
            "W7n",
            "kiln apply, no-op re-apply",
            noop,
            noop_wall,
            Target::AbsMsBelow(50.0),
        ),
    ])
}

/// User + system CPU time of this process's waited-for children so far.
fn children_cpu_ns() -> u64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage we own.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    ns(ru.ru_utime) + ns(ru.ru_stime)
}

/// The Markdown table (also what README.md's Benchmarks section shows).
fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| workload | what | Kiln median | libbpf median | spread K / L | Kiln/libbpf | target | met? | wall K / L |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let km = median(&r.kiln);
        let (lm, lsp) = if r.libbpf.is_empty() {
            ("-".into(), "-".into())
        } else {
            (
                fmt_ns(median(&r.libbpf)),
                format!("{:.0}%", spread(&r.libbpf)),
            )
        };
        let ratio = r.ratio().map_or("-".into(), |q| format!("{q:.2}"));
        let met = match r.met() {
            None => "-",
            Some(true) => "yes",
            Some(false) => "NO",
        };
        let wall = if r.libbpf_wall.is_empty() {
            fmt_ns(median(&r.kiln_wall))
        } else {
            format!(
                "{} / {}",
                fmt_ns(median(&r.kiln_wall)),
                fmt_ns(median(&r.libbpf_wall))
            )
        };
        s += &format!(
            "| {} | {} | {} | {} | {:.0}% / {} | {} | {} | {} | {} |\n",
            r.id,
            r.what,
            fmt_ns(km),
            lm,
            spread(&r.kiln),
            lsp,
            ratio,
            r.target.describe(),
            met,
            wall
        );
    }
    s
}
