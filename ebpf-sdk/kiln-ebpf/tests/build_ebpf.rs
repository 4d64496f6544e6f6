//! `cargo xtask build-ebpf` as a developer runs it: builds every program, the
//! second run rebuilds nothing, and a clean rebuild elsewhere gives the same
//! bytes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use kiln_testkit::{Need, TestResult, repo_dir, test};

fn cargo() -> PathBuf {
    option_env!("CARGO").unwrap_or("cargo").into()
}

/// Runs `cargo xtask build-ebpf ARGS` in the repository; returns stdout.
fn build_ebpf(args: &[&str]) -> Result<String, String> {
    let out = Command::new(cargo())
        .current_dir(repo_dir())
        .args(["run", "--quiet", "--package", "xtask", "--", "build-ebpf"])
        .args(args)
        .output()
        .map_err(|e| format!("running cargo: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "cargo xtask build-ebpf {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(stdout)
}

fn no_sources() -> Option<String> {
    let repo = repo_dir();
    (!repo.join("xtask/Cargo.toml").is_file())
        .then(|| format!("no Kiln sources at {} (VM run?)", repo.display()))
}

fn objects(stdout: &str) -> Vec<PathBuf> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("build-ebpf:"))
        .filter_map(|l| l.split_whitespace().last().map(PathBuf::from))
        .filter(|p| p.extension().is_some_and(|e| e == "o"))
        .collect()
}

fn builds_then_noop() -> TestResult {
    let first = build_ebpf(&[])?;
    let objs = objects(&first);
    for expected in [
        "counter.bpf.o",
        "sockfilter.bpf.o",
        "sdk-maps.bpf.o",
        "sdk-programs.bpf.o",
    ] {
        if !objs.iter().any(|p| p.ends_with(expected)) {
            return Err(format!("build-ebpf did not produce {expected}:\n{first}").into());
        }
    }
    let mtimes: Vec<SystemTime> = objs
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()))
        .collect::<Result<_, _>>()?;
    let second = build_ebpf(&[])?;
    let rebuilt: Vec<&str> = second
        .lines()
        .filter(|l| l.ends_with(".bpf.o") && !l.contains("up to date"))
        .collect();
    if !rebuilt.is_empty() {
        return Err(format!("second build was not a no-op:\n{}", rebuilt.join("\n")).into());
    }
    for (p, before) in objs.iter().zip(mtimes) {
        if std::fs::metadata(p)?.modified()? != before {
            return Err(format!("{} was rewritten by a no-op build", p.display()).into());
        }
    }
    Ok(())
}

fn reproducible() -> TestResult {
    let out = build_ebpf(&["--check-reproducible"])?;
    if !out.contains("byte-identical") {
        return Err(format!("no reproducibility verdict in:\n{out}").into());
    }
    Ok(())
}

/// The instructions of program `prog` in object `path`.
fn insns(
    path: &Path,
    prog: &str,
) -> Result<Vec<kiln_obj::Insn>, Box<dyn std::error::Error + Send + Sync>> {
    let spec = kiln_obj::ObjectSpec::parse(&std::fs::read(path)?)?;
    let p = spec
        .programs
        .iter()
        .find(|p| p.name == prog)
        .ok_or_else(|| format!("{} has no program {prog}", path.display()))?;
    Ok(p.insns.clone())
}

/// `--arch aarch64` builds into target/bpf/aarch64 with arm64's pt_regs
/// (and `--arch s390x` big-endian objects into target/bpf/s390x):
/// a kprobe reading its first argument differs from the x86 build, a
/// program not touching registers does not; the x86 build is mirrored into
/// target/bpf/x86_64.
fn builds_per_arch() -> TestResult {
    let out = build_ebpf(&["--arch", "aarch64"])?;
    let arm = objects(&out);
    let arm_programs = arm
        .iter()
        .find(|p| p.ends_with("aarch64/sdk-programs.bpf.o"))
        .ok_or_else(|| format!("no aarch64/sdk-programs.bpf.o in:\n{out}"))?;
    let x86_programs = repo_dir().join("target/bpf/sdk-programs.bpf.o");
    if insns(arm_programs, "prog_kprobe")? == insns(&x86_programs, "prog_kprobe")? {
        return Err(
            "prog_kprobe reads ctx->di on x86 and regs[0] on arm64, yet both builds are identical"
                .into(),
        );
    }
    if insns(arm_programs, "prog_xdp")? != insns(&x86_programs, "prog_xdp")? {
        return Err("prog_xdp does not depend on the arch but differs between builds".into());
    }
    // s390x: big-endian objects (bpfeb) whose instructions decode to the
    // x86 build's where registers are not read, and to s390x's gprs where
    // they are.
    let out = build_ebpf(&["--arch", "s390x"])?;
    let s390x_programs = objects(&out)
        .into_iter()
        .find(|p| p.ends_with("s390x/sdk-programs.bpf.o"))
        .ok_or_else(|| format!("no s390x/sdk-programs.bpf.o in:\n{out}"))?;
    let spec = kiln_obj::ObjectSpec::parse(&std::fs::read(&s390x_programs)?)?;
    if spec.byte_order != kiln_obj::ByteOrder::Big {
        return Err(format!("{}: {}", s390x_programs.display(), spec.byte_order).into());
    }
    if insns(&s390x_programs, "prog_xdp")? != insns(&x86_programs, "prog_xdp")? {
        return Err("prog_xdp differs between the bpfeb and bpfel builds".into());
    }
    if insns(&s390x_programs, "prog_kprobe")? == insns(&x86_programs, "prog_kprobe")? {
        return Err("prog_kprobe reads gprs[2] on s390x, yet the builds are identical".into());
    }
    let mirror = repo_dir().join("target/bpf/x86_64/sdk-programs.bpf.o");
    if std::fs::read(&mirror)? != std::fs::read(&x86_programs)? {
        return Err(format!(
            "{} is not a copy of {}",
            mirror.display(),
            x86_programs.display()
        )
        .into());
    }
    Ok(())
}

fn main() {
    let needs = [Need::Probe("kiln sources", no_sources)];
    // One test, run in order: two concurrent build-ebpf runs would race on
    // the stamps and make the no-op check meaningless.
    kiln_testkit::run(vec![test(
        "build_ebpf_noop_then_reproducible",
        &needs,
        || {
            builds_then_noop()?;
            reproducible()?;
            builds_per_arch()
        },
    )]);
}
