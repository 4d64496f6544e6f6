//! Kernel BTF: Kiln against libbpf in the same run.
//! `cargo bench -p kiln-obj --bench btf_vs_libbpf [-- PATH [ROUNDS]]`
//!
//! Compiles benches/libbpf_btf.c with `cc ... -lbpf` (libbpf-dev) at bench
//! time, runs it and Kiln's measurement (examples/btf_bench.rs) on the same
//! file, and prints both with the ratio. Each figure is a minimum over many
//! rounds because the machines this runs on are shared. Compared: parsing a
//! blob already in memory (`Btf::from_shared` / `btf__new`) plus the first
//! lookup by kind and name (`find_by_name` / `btf__find_by_name_kind`).

#[path = "../examples/btf_bench.rs"]
mod btf_bench;

use std::path::Path;
use std::process::Command;

struct Libbpf {
    parse_file: f64,
    parse: f64,
    first: f64,
    more: f64,
}

fn libbpf(path: &str, rounds: usize) -> Result<Libbpf, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/libbpf_btf.c");
    let exe = Path::new(env!("CARGO_TARGET_TMPDIR")).join("libbpf_btf");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(&src)
        .arg("-lbpf")
        .output()
        .map_err(|e| format!("{cc}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cc} {} -lbpf failed (is libbpf-dev installed?):\n{}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let out = Command::new(&exe)
        .arg(path)
        .arg(rounds.to_string())
        .output()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "libbpf_btf failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let field = |key: &str| -> Result<f64, String> {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("libbpf_btf printed no {key}: {text}"))
    };
    Ok(Libbpf {
        parse_file: field("parse_file")?,
        parse: field("parse")?,
        first: field("first")?,
        more: field("more")?,
    })
}

fn main() {
    // `cargo bench` passes `--bench`; positional arguments are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let path = args
        .first()
        .cloned()
        .unwrap_or_else(|| "/sys/kernel/btf/vmlinux".into());
    let rounds = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(200);
    // Alternate the two sides in slices so a burst of load elsewhere on the
    // machine hits both, then keep each side's minimum.
    let slices = 4;
    let mut kiln: Option<btf_bench::Timings> = None;
    let mut lib: Option<Result<Libbpf, String>> = None;
    for _ in 0..slices {
        let k = match btf_bench::measure(&path, rounds / slices) {
            Ok(k) => k,
            Err(e) => {
                eprintln!("btf_vs_libbpf: {e}");
                std::process::exit(1);
            }
        };
        kiln = Some(match kiln {
            Some(best) if best.parse + best.first <= k.parse + k.first => best,
            _ => k,
        });
        let l = libbpf(&path, rounds / slices);
        lib = Some(match (lib, l) {
            (Some(Ok(best)), Ok(l)) if best.parse + best.first <= l.parse + l.first => Ok(best),
            (_, l) => l,
        });
    }
    let (Some(kiln), Some(lib)) = (kiln, lib) else {
        return;
    };
    println!(
        "kiln   {} types, min of {rounds}: parse {:.3} ms + first lookup {:.3} ms = {:.3} ms; 9 more lookups {:.3} ms; (reading the file: {:.3} ms)",
        kiln.types,
        kiln.parse,
        kiln.first,
        kiln.parse + kiln.first,
        kiln.more,
        kiln.read
    );
    match lib {
        Ok(l) => {
            println!(
                "libbpf btf__new {:.3} ms + first btf__find_by_name_kind {:.3} ms = {:.3} ms; 9 more lookups {:.3} ms; (btf__parse(path), reading included: {:.3} ms)",
                l.parse,
                l.first,
                l.parse + l.first,
                l.more,
                l.parse_file
            );
            println!(
                "ratio kiln/libbpf (parse + first lookup): {:.2}",
                (kiln.parse + kiln.first) / (l.parse + l.first)
            );
        }
        Err(e) => {
            // Loud: a comparison that did not happen must not look like one.
            eprintln!("btf_vs_libbpf: SKIPPED the libbpf side: {e}");
        }
    }
}
