//! W8: `kiln apply` of one object with N programs from nothing (N = 50, 200,
//! 400; each program on its own tracepoint with its own map), beside
//! `bpftool prog loadall OBJ DIR autoattach`, which loads the same object
//! with libbpf and pins the tracepoint links too. Both are timed as whole
//! processes (CPU from getrusage of the child, and wall clock); the pins of
//! either side are removed between runs, untimed. Once per N, the kernel
//! BTF the programs hold is reported: one object per object file, as libbpf
//! holds it, is the point.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use super::{Row, Target, children_cpu_ns};

const SIZES: [usize; 3] = [50, 200, 400];

pub(super) fn bench(kiln: &Path, target: &Path, rounds: usize) -> anyhow::Result<Vec<Row>> {
    let tracepoints = tracepoints(SIZES[SIZES.len() - 1])?;
    let tc = crate::setup::ensure()?;
    let bpftool = Command::new("bpftool")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !bpftool {
        eprintln!("bench: W8 without bpftool: Kiln's side only");
    }
    // bpftool before 7.2 loads but cannot attach: its side then does less
    // than Kiln's, and the row says so.
    let autoattach = bpftool
        && Command::new("bpftool")
            .args(["prog", "help"])
            .output()
            .is_ok_and(|o| {
                String::from_utf8_lossy(&o.stderr).contains("autoattach")
                    || String::from_utf8_lossy(&o.stdout).contains("autoattach")
            });
    let libbpf_side = if autoattach {
        "bpftool prog loadall autoattach"
    } else {
        "bpftool prog loadall WITHOUT attaching: this bpftool has no autoattach"
    };
    let mut rows = Vec::new();
    for n in SIZES {
        let dir = target.join(format!("bench/w8-{n}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let object = build_object(&tc.clang, &dir, &tracepoints[..n])?;
        let manifest = write_manifest(&dir, n, &object)?;
        let root = PathBuf::from(format!("/sys/fs/bpf/kiln-bench-w8-{n}"));
        let pins = PathBuf::from(format!("/sys/fs/bpf/kiln-bench-w8-libbpf-{n}"));
        let kiln_cmd = |verb: &str| {
            let mut c = Command::new(kiln);
            c.arg(verb).arg(&manifest);
            c
        };
        // Leftovers of an interrupted run would make the first apply a no-op.
        let _ = kiln_cmd("destroy").output();
        let _ = std::fs::remove_dir_all(&pins);
        let mut row = Row {
            id: leak(format!("W8-{n}")),
            what: leak(format!(
                "kiln apply, one object with {n} tracepoint programs, from nothing (libbpf: {libbpf_side})"
            )),
            kiln: Vec::new(),
            libbpf: Vec::new(),
            kiln_wall: Vec::new(),
            libbpf_wall: Vec::new(),
            elements: 0,
            target: Target::RatioAtMost(1.5),
        };
        for round in 0..rounds {
            eprintln!("bench: W8 N={n} round {}/{rounds}", round + 1);
            let kiln_first = round % 2 == 0;
            for kiln_side in [kiln_first, !kiln_first] {
                if kiln_side {
                    let (cpu, wall) = timed(&mut kiln_cmd("apply"))?;
                    if round == 0 {
                        eprintln!(
                            "bench: W8 N={n}: Kiln's programs hold {}",
                            held_btf(&root.join("progs"), n)?
                        );
                    }
                    timed(&mut kiln_cmd("destroy"))?;
                    row.kiln.push(cpu);
                    row.kiln_wall.push(wall);
                } else if bpftool {
                    let mut loadall = Command::new("bpftool");
                    loadall.args(["prog", "loadall"]).arg(&object).arg(&pins);
                    if autoattach {
                        loadall.arg("autoattach");
                    }
                    let (cpu, wall) = timed(&mut loadall)?;
                    if round == 0 {
                        eprintln!(
                            "bench: W8 N={n}: libbpf's programs hold {}",
                            held_btf(&pins, n)?
                        );
                    }
                    // Unpinning the links detaches them.
                    std::fs::remove_dir_all(&pins)
                        .with_context(|| format!("removing {}", pins.display()))?;
                    row.libbpf.push(cpu);
                    row.libbpf_wall.push(wall);
                }
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Row labels live as long as the bench.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Runs `cmd` to completion: its CPU time (user + system) and wall clock, in ns.
fn timed(cmd: &mut Command) -> anyhow::Result<(f64, f64)> {
    let cpu0 = children_cpu_ns();
    let t = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    let wall = t.elapsed().as_nanos() as f64;
    let cpu = (children_cpu_ns() - cpu0) as f64;
    if !out.status.success() {
        bail!(
            "{:?} {:?} failed: {}{}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((cpu, wall))
}

/// `count` tracepoints of this kernel (`category/name`), from tracefs.
fn tracepoints(count: usize) -> anyhow::Result<Vec<(String, String)>> {
    let events = [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.is_dir())
    .context("W8 needs tracefs: mount -t tracefs tracefs /sys/kernel/tracing")?;
    let mut found = Vec::new();
    let mut categories: Vec<PathBuf> = std::fs::read_dir(events)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    categories.sort();
    for category in categories {
        let cat = category
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // ftrace's own events are not tracepoints a program can attach to.
        if cat == "ftrace" {
            continue;
        }
        let mut names: Vec<String> = std::fs::read_dir(&category)?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        found.extend(names.into_iter().map(|n| (cat.clone(), n)));
    }
    if found.len() < count {
        bail!(
            "W8 needs {count} tracepoints; this kernel has {}",
            found.len()
        );
    }
    found.truncate(count);
    Ok(found)
}

/// `w8.bpf.c` with one program and one map per tracepoint, compiled.
fn build_object(
    clang: &Path,
    dir: &Path,
    tracepoints: &[(String, String)],
) -> anyhow::Result<PathBuf> {
    use crate::build_ebpf::Arch;
    let mut src = String::from("#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n\n");
    for (i, (category, name)) in tracepoints.iter().enumerate() {
        src += &format!(
            "struct {{ __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, __u64); }} m{i} SEC(\".maps\");\n\
             SEC(\"tracepoint/{category}/{name}\") int p{i}(void *ctx)\n\
             {{ __u32 k = 0; __u64 *v = bpf_map_lookup_elem(&m{i}, &k); if (v) __atomic_fetch_add(v, 1, __ATOMIC_RELAXED); return 0; }}\n"
        );
    }
    src += "char LICENSE[] SEC(\"license\") = \"GPL\";\n";
    let source = dir.join("w8.bpf.c");
    let object = dir.join("w8.bpf.o");
    std::fs::write(&source, src)?;
    let status = Command::new(clang)
        .args(["-O2", "-g", "--target=bpfel", "-mcpu=v3"])
        .arg(Arch::X86_64.c_define())
        .arg(Arch::X86_64.asm_include())
        .arg("-c")
        .arg(&source)
        .arg("-o")
        .arg(&object)
        .status()
        .context("running clang")?;
    if !status.success() {
        bail!("compiling {} failed", source.display());
    }
    Ok(object)
}

/// A manifest attaching every program of the object to its tracepoint.
fn write_manifest(dir: &Path, n: usize, object: &Path) -> anyhow::Result<PathBuf> {
    let mut text = format!(
        "[deployment]\nname = \"kiln-bench-w8-{n}\"\npin_root = \"/sys/fs/bpf/kiln-bench-w8-{n}\"\nallow_outside = true\n\n[objects.w8]\npath = \"{}\"\n",
        object.display()
    );
    for i in 0..n {
        text += &format!("\n[programs.p{i}]\nobject = \"w8\"\nattach = \"auto\"\n");
    }
    let path = dir.join("manifest.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The BTF objects the pinned programs `<dir>/p<i>` hold in the kernel,
/// as "K object(s), S KiB" (every program asked: bpftool, JSON).
fn held_btf(dir: &Path, n: usize) -> anyhow::Result<String> {
    let json = |args: &[&str]| -> anyhow::Result<serde_json::Value> {
        let out = Command::new("bpftool")
            .arg("-j")
            .args(args)
            .output()
            .context("running bpftool")?;
        if !out.status.success() {
            bail!("bpftool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..n {
        let pin = dir.join(format!("p{i}"));
        let prog = json(&["prog", "show", "pinned", &pin.to_string_lossy()])?;
        if let Some(id) = prog.get("btf_id").and_then(|v| v.as_u64()) {
            ids.insert(id);
        }
    }
    let mut bytes = 0;
    for id in &ids {
        let btf = json(&["btf", "show", "id", &id.to_string()])?;
        bytes += btf.get("size").and_then(|v| v.as_u64()).unwrap_or(0);
    }
    Ok(format!(
        "{} BTF object(s), {:.1} KiB",
        ids.len(),
        bytes as f64 / 1024.0
    ))
}
