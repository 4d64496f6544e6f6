//! What `kiln` prints for real failures: the whole chain on one `error:`
//! line, each cause once (the errno, its hint), hints only where they fit.
//! (A verifier rejection's chain is asserted in verifier.rs.)

use std::process::{Command, Output};

use kiln_testkit::privilege;
use kiln_testkit::{Need, TestResult};

mod common;
use common::kiln_bin;

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The line `kiln` printed its error on.
fn error_line(stderr: &str) -> Result<&str, String> {
    stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .ok_or_else(|| format!("no error line in:\n{stderr}"))
}

fn once(text: &str, what: &str) -> TestResult {
    assert_eq!(
        text.matches(what).count(),
        1,
        "{what:?} is not printed exactly once:\n{text}"
    );
    Ok(())
}

/// Loading as user nobody: the bpf(2) errno and the capability hint, once.
fn object_load_as_nobody_prints_eperm_once() -> TestResult {
    let obj = kiln_testkit::bpf_object("manifest_counter.bpf.o")?;
    let mut cmd = Command::new(kiln_bin());
    cmd.args(["object", "load"]).arg(&obj);
    let out = privilege::as_nobody(&mut cmd).output()?;
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    let line = error_line(&stderr)?;
    let expected = format!(
        "error: loading {}: map 'COUNTERS': create failed: bpf(MapCreate) failed: Operation not \
         permitted (os error 1) (needs CAP_BPF; this process lacks CAP_BPF",
        obj.display()
    );
    assert!(
        line.starts_with(&expected),
        "expected {expected:?}, got:\n{line}"
    );
    once(line, "Operation not permitted")?;
    once(line, "needs CAP_BPF")
}

/// Pinning outside a bpffs: the pin, and why, once.
fn pin_outside_bpffs_says_so_once() -> TestResult {
    let dir = std::env::temp_dir().join(format!("kiln-errs-{}-notbpffs", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let obj = kiln_testkit::bpf_object("loader_pinned.bpf.o")?;
    let out = Command::new(kiln_bin())
        .args(["object", "load", "--pin-dir"])
        .arg(&dir)
        .arg(&obj)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let out = out?;
    let stderr = stderr_of(&out);
    let pin = dir.join("shared_counts");
    assert_eq!(
        error_line(&stderr)?,
        format!(
            "error: loading {}: cannot pin 'shared_counts' at {pin}: {pin} is not on a bpf \
             filesystem (mount -t bpf bpf /sys/fs/bpf)",
            obj.display(),
            pin = pin.display()
        )
    );
    once(&stderr, "is not on a bpf filesystem")
}

/// User nobody may create maps when `kernel.unprivileged_bpf_disabled` is 0:
/// then nothing is refused to assert on.
fn unprivileged_bpf_allowed() -> Option<String> {
    let setting = std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled").ok()?;
    (setting.trim() == "0")
        .then(|| "kernel.unprivileged_bpf_disabled is 0: user nobody may create maps".into())
}

fn main() {
    kiln_testkit::run(vec![
        kiln_testkit::test(
            "object_load_as_nobody_prints_eperm_once",
            &[
                Need::Root,
                Need::Bpf,
                Need::Probe("unprivileged bpf disabled", unprivileged_bpf_allowed),
            ],
            object_load_as_nobody_prints_eperm_once,
        ),
        kiln_testkit::test(
            "pin_outside_bpffs_says_so_once",
            &[Need::Root, Need::Bpf],
            pin_outside_bpffs_says_so_once,
        ),
    ]);
}
