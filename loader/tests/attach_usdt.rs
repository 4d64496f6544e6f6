//! USDT: a small C target (attach_util/usdt_target.c, compiled here with
//! `cc`, or in the test distro prebuilt by `cargo xtask test`) carries a hand-written `.note.stapsdt` probe `kiln:hit(i, 77)`
//! guarded by a semaphore; a program written against libbpf's
//! `<bpf/usdt.bpf.h>` counts the hits and reads both arguments.

mod attach_util;

use attach_util::*;
use kiln_loader::links::ProgramAttach;
use kiln_loader::links::usdt::{
    UsdtArch, UsdtArgKind, UsdtOptions, attach_usdt, parse_args, parse_notes,
};
use kiln_testkit::{Need, test};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const COOKIE: u64 = 0x5eed;

/// Builds the target into a fresh directory named after `tag` (tests run in
/// parallel), removed by the caller.
fn build_target(tag: &str, opt: &str) -> Res<(PathBuf, PathBuf)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/attach_util/usdt_target.c");
    let dir = std::env::temp_dir().join(format!("kiln-usdt-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let bin = dir.join("usdt_target");
    // A copy, not the shared file: each test attaches to an inode of its own.
    if let Some(prebuilt) = kiln_testkit::prebuilt::find(&prebuilt_name(opt)) {
        std::fs::copy(&prebuilt, &bin)?;
        return Ok((dir, bin));
    }
    let out = Command::new("cc")
        .arg(opt)
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "cc {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok((dir, bin))
}

/// The name `cargo xtask test` gives the target built with `opt`.
fn prebuilt_name(opt: &str) -> String {
    format!("usdt_target{opt}")
}

/// The target comes prebuilt (the test distro) or `cc` builds it (the host).
fn no_target() -> Option<String> {
    if ["-O0", "-O1"]
        .iter()
        .all(|opt| kiln_testkit::prebuilt::find(&prebuilt_name(opt)).is_some())
    {
        return None;
    }
    match Command::new("cc").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some(
            "no prebuilt USDT target ($KILN_PREBUILT_DIR) and no C compiler `cc` to build it"
                .into(),
        ),
    }
}

/// Runs the target for `n` probe hits; returns the semaphore it saw.
fn run_target(bin: &Path, n: u32) -> Res<u32> {
    let out = Command::new(bin).arg(n.to_string()).output()?;
    if !out.status.success() {
        return Err(format!("{} exited with {}", bin.display(), out.status).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

fn notes_and_arguments_decode() -> TestResult {
    let (dir, bin) = build_target("notes", "-O1")?;
    let res = (|| -> TestResult {
        let notes = parse_notes(&std::fs::read(&bin)?, &bin.display().to_string())?;
        check(notes.len() == 1, || format!("{notes:?}"))?;
        let n = &notes[0];
        check(n.provider == "kiln" && n.name == "hit", || format!("{n:?}"))?;
        check(n.semaphore != 0 && n.semaphore_offset.is_some(), || {
            format!("no semaphore: {n:?}")
        })?;
        let arch = if cfg!(target_arch = "aarch64") {
            UsdtArch::Aarch64
        } else {
            UsdtArch::X86_64
        };
        let args = parse_args(&n.args, arch)?;
        check(args.len() == 2, || format!("{:?}: {args:?}", n.args))?;
        // `i` is a signed int wherever the compiler keeps it; 77L a constant.
        check(args[0].size == 4 && args[0].signed, || {
            format!("{:?}", args[0])
        })?;
        check(
            args[1].kind == UsdtArgKind::Const && args[1].val_off == 77 && args[1].size == 8,
            || format!("{:?}", args[1]),
        )
    })();
    let _ = std::fs::remove_dir_all(dir);
    res
}

/// At -O1 `i` is passed in a register (`-4@%eax`), at -O0 in the stack
/// frame (`-4@-20(%rbp)`): both argument kinds are read.
fn counts_hits_and_reads_arguments(opt: &str) -> TestResult {
    let (dir, bin) = build_target(&format!("attach{opt}"), opt)?;
    let res = (|| -> TestResult {
        let (_, ebpf) = load_object("attach_usdt")?;
        let p = prog(&ebpf, "kiln_hit")?;
        check(run_target(&bin, 3)? == 0, || {
            "semaphore set with no tracer".into()
        })?;
        let opts = UsdtOptions {
            pid: None,
            cookie: COOKIE,
            ..Default::default()
        };
        let link = p.attach_usdt(&ebpf, &bin, "kiln", "hit", &opts)?;
        check(link.sites().len() == 1, || {
            format!("{} sites", link.sites().len())
        })?;
        let sema = run_target(&bin, 5)?;
        check(sema >= 1, || {
            "the kernel did not raise the semaphore".into()
        })?;
        let hits: u64 = ebpf.global("hits")?;
        let sum: i64 = ebpf.global("arg_sum")?;
        let k: i64 = ebpf.global("last_arg1")?;
        let cookie: u64 = ebpf.global("last_cookie")?;
        check(hits == 5, || format!("hits {hits}"))?;
        check(sum == 10, || format!("sum of i over 0..5 read as {sum}"))?;
        check(k == 77, || format!("second argument read as {k}"))?;
        check(cookie == COOKIE, || format!("usdt cookie {cookie:#x}"))?;
        drop(link);
        check(run_target(&bin, 5)? == 0, || {
            "semaphore left raised after detach".into()
        })?;
        let after: u64 = ebpf.global("hits")?;
        check(after == 5, || format!("{after} hits after detach"))
    })();
    let _ = std::fs::remove_dir_all(dir);
    res
}

/// usdt.bpf.h finds a site's spec through its BPF cookie.
fn no_cookies() -> Option<String> {
    const BPF_FUNC_GET_ATTACH_COOKIE: i32 = 174;
    (!kiln_loader::probe::probe_helper(kiln_obj::ProgramType::KPROBE, BPF_FUNC_GET_ATTACH_COOKIE))
        .then(|| "kernel has no bpf_get_attach_cookie (5.15+), which usdt.bpf.h needs".into())
}

/// A probe attached for one pid fires there only, and raises only that
/// process's semaphore.
fn pid_attach_fires_only_in_that_process() -> TestResult {
    let (dir, bin) = build_target("pid", "-O1")?;
    let res = (|| -> TestResult {
        let (_, ebpf) = load_object("attach_usdt")?;
        let p = prog(&ebpf, "kiln_hit")?;
        let mut child = Command::new(&bin)
            .args(["4", "wait"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        // Attaching by pid reads the process's mappings: wait until the
        // child has exec'd the target (a loaded machine or VM may be slower
        // than this thread).
        let maps = format!("/proc/{}/maps", child.id());
        let target = bin.display().to_string();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !std::fs::read_to_string(&maps).is_ok_and(|m| m.contains(&target))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let opts = UsdtOptions {
            pid: Some(child.id() as i32),
            cookie: COOKIE,
            // What kernels without cookies need: the site's address in the
            // process, checked below against the address the probe fired at.
            ip_map: true,
        };
        let attached = attach_usdt(p.fd(), &ebpf, &bin, "kiln", "hit", &opts);
        // Let the child go whatever happened, so it never lingers.
        let _ = child.stdin.take().map(|mut s| s.write_all(b"go\n"));
        let out = child.wait_with_output()?;
        let link = attached?;
        let sema: u32 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
        check(sema >= 1, || "the traced process saw no semaphore".into())?;
        check(run_target(&bin, 3)? == 0, || {
            "another process saw the semaphore".into()
        })?;
        let hits: u64 = ebpf.global("hits")?;
        check(hits == 4, || {
            format!("hits {hits} (4 expected from the pid only)")
        })?;
        drop(link);
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(dir);
    res
}

fn main() {
    let needs = &[
        Need::Root,
        Need::Bpf,
        Need::Probe("USDT target", no_target),
        Need::Probe("bpf cookies", no_cookies),
    ];
    kiln_testkit::run(vec![
        test(
            "usdt_notes_and_arguments_decode",
            &[Need::Probe("USDT target", no_target)],
            notes_and_arguments_decode,
        ),
        test("usdt_register_arguments_o1", needs, || {
            counts_hits_and_reads_arguments("-O1")
        }),
        test(
            "usdt_pid_attach_fires_only_in_that_process",
            // Runs without BPF cookies too: the address map stands in.
            &[Need::Root, Need::Bpf, Need::Probe("USDT target", no_target)],
            pid_attach_fires_only_in_that_process,
        ),
        test("usdt_stack_arguments_o0", needs, || {
            counts_hits_and_reads_arguments("-O0")
        }),
    ]);
}
