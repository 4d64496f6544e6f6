//! `cargo xtask apply --matrix`: the grid boots real kernels and agrees
//! with the project's own VM results and with `kiln check --kernels`.
//!
//! Each test runs the grid on two catalog kernels (x86_64) with its own
//! `--report-dir`, then reads the JSON report: one row per program, map,
//! kiln step and expectation, one cell per VM.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_testkit::{Need, TestResult};

const ARCH: &str = "x86_64";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A directory of this test's own, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("kiln-grid-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the grid of `manifest` on `kernels`; returns its exit code, its
/// output and the JSON report.
fn grid(
    manifest: &Path,
    kernels: &str,
    reports: &Path,
) -> Result<(Option<i32>, String, serde_json::Value), Box<dyn std::error::Error + Send + Sync>> {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(repo())
        .args(["apply", "--matrix"])
        .arg(manifest)
        .args(["--kernel", kernels, "--arch", ARCH, "--report-dir"])
        .arg(reports)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = std::fs::read(reports.join("matrix-report.json"))
        .map_err(|e| format!("no report ({e}):\n{text}"))?;
    Ok((out.status.code(), text, serde_json::from_slice(&report)?))
}

/// The cell of `row` on VM `vm`: (status, detail).
fn cell(report: &serde_json::Value, vm: &str, row: &str) -> (String, String) {
    let vms = report["vms"].as_array().cloned().unwrap_or_default();
    let Some(v) = vms.iter().find(|v| v["vm"] == vm) else {
        return ("no such VM".into(), String::new());
    };
    let c = &v["rows"][row];
    (
        c["status"].as_str().unwrap_or("no such row").to_owned(),
        c["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

fn statuses(report: &serde_json::Value, vm: &str) -> Vec<(String, String)> {
    let vms = report["vms"].as_array().cloned().unwrap_or_default();
    vms.iter()
        .find(|v| v["vm"] == vm)
        .and_then(|v| v["rows"].as_object().cloned())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, c)| (k, c["status"].as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// The quickstart example on 5.10 and 6.1. The project's examples test
/// (`manifests/tests/examples.rs`) runs it where the kernel pins
/// perf-event links (`perf_link`, 5.15+) and skips it elsewhere; the grid
/// must deploy it on 6.1 with its expectations met and refuse it on 5.10
/// for that reason, and where the last `cargo xtask test` report has the
/// examples test on these VMs, pass exactly where that test passed.
fn quickstart_agrees_with_the_examples_test() -> TestResult {
    let scratch = Scratch::new("quickstart")?;
    let manifest = repo().join("manifests/examples/quickstart/manifest.toml");
    let (code, text, report) = grid(&manifest, "5.10,6.1", &scratch.0)?;
    assert_eq!(code, Some(1), "5.10 must fail the grid:\n{text}");
    for (row, status) in statuses(&report, "6.1-x86_64") {
        assert_eq!(status, "pass", "6.1 {row}:\n{text}");
    }
    // Both programs verify on 5.10; the deployment is refused for the
    // perf-event link the examples test needs (`perf_link`).
    for row in ["program count_exec", "program count_packets"] {
        let (status, detail) = cell(&report, "5.10-x86_64", row);
        assert_eq!(status, "fail", "5.10 {row}:\n{text}");
        assert!(
            detail.starts_with("loads, not attached"),
            "5.10 {row}: {detail}"
        );
    }
    // kiln check already says why (and apply, as kiln check).
    let (_, check) = cell(&report, "5.10-x86_64", "kiln check");
    assert!(
        check.contains("cannot pin perf-event attachments"),
        "5.10 check: {check}"
    );
    let (_, apply) = cell(&report, "5.10-x86_64", "kiln apply");
    assert!(apply.ends_with("as kiln check"), "5.10 apply: {apply}");
    // The project's own results, when the last VM run had them.
    if let Ok(bytes) = std::fs::read(repo().join("target/vm-report.json")) {
        let vm_report: serde_json::Value = serde_json::from_slice(&bytes)?;
        for v in vm_report["vms"].as_array().into_iter().flatten() {
            let label = format!(
                "{}-{}",
                v["kernel"].as_str().unwrap_or_default(),
                v["arch"].as_str().unwrap_or_default()
            );
            let Some(t) = v["tests"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["binary"] == "kiln-manifest-examples" && t["test"] == "quickstart")
            else {
                continue;
            };
            if !["5.10-x86_64", "6.1-x86_64"].contains(&label.as_str()) {
                continue;
            }
            let (grid_status, _) = cell(&report, &label, "program count_exec");
            assert_eq!(
                t["status"] == "pass",
                grid_status == "pass",
                "{label}: the examples test says {}, the grid {grid_status}",
                t["status"]
            );
        }
    }
    Ok(())
}

/// A project of the user's own: a directory outside the repository with
/// prebuilt objects (one C, one Rust) and a manifest naming an interface
/// the guest does not have; the grid creates it, deploys, and checks a
/// ring buffer and a map.
fn a_manifest_outside_the_repository_runs_unchanged() -> TestResult {
    let scratch = Scratch::new("outside")?;
    let dir = &scratch.0;
    let bpf = repo().join("target/bpf/x86_64");
    std::fs::copy(bpf.join("exectrace.bpf.o"), dir.join("exectrace.bpf.o"))?;
    std::fs::copy(bpf.join("counter.bpf.o"), dir.join("counter.bpf.o"))?;
    let manifest = dir.join("manifest.toml");
    std::fs::write(
        &manifest,
        r#"[deployment]
name = "outside"

[objects.exectrace]
path = "exectrace.bpf.o"

[objects.counter]
path = "counter.bpf.o"

[programs.trace_exec]
object = "exectrace"
attach = { tracepoint = { category = "sched", name = "sched_process_exec" } }

[programs.count_exec]
object = "counter"
attach = { tracepoint = { category = "sched", name = "sched_process_exec" } }

[programs.count_packets]
object = "counter"
attach = { xdp = { interface = "kgo-veth0", mode = "generic" } }

[maps.events]
object = "exectrace"

[maps.COUNTERS]
object = "counter"

[test]
run = ["/bin/true"]

[[test.expect]]
ring_buffer = "events"
within_ms = 2000

[[test.expect]]
map = "COUNTERS"
key = 0
at_least = 1
"#,
    )?;
    let reports = dir.join("reports");
    let (code, text, report) = grid(&manifest, "6.1", &reports)?;
    let rows = statuses(&report, "6.1-x86_64");
    assert!(rows.len() >= 10, "{rows:?}\n{text}");
    for (row, status) in rows {
        assert_eq!(status, "pass", "{row}:\n{text}");
    }
    let (_, xdp) = cell(&report, "6.1-x86_64", "program count_packets");
    assert!(xdp.contains("attached to xdp kgo-veth0"), "{xdp}");
    assert_eq!(code, Some(0), "{text}");
    Ok(())
}

fn btf_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/kiln/btf")
}

fn no_catalog_btf() -> Option<String> {
    let missing: Vec<&str> = ["5.10", "6.1"]
        .into_iter()
        .filter(|k| !btf_dir().join(ARCH).join(format!("{k}.btf")).exists())
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "no BTF of catalog kernel(s) {} under {} (`cargo xtask kernels btf --arch {ARCH}`)",
            missing.join(", "),
            btf_dir().display()
        )
    })
}

/// The compat fixture reads `task_struct.state` (renamed `__state` in
/// 5.14) without a flavor: the grid refuses `read_state` on exactly the
/// kernels `kiln check --kernels` names, with the verifier's reason, and
/// loads `read_pid` everywhere.
fn compat_fixture_is_refused_where_check_says() -> TestResult {
    let scratch = Scratch::new("compat")?;
    let dir = &scratch.0;
    std::fs::copy(
        repo().join("target/bpf/x86_64/compat_renamed.bpf.o"),
        dir.join("compat_renamed.bpf.o"),
    )?;
    let manifest = dir.join("manifest.toml");
    std::fs::write(
        &manifest,
        r#"[deployment]
name = "grid-compat"

[objects.renamed]
path = "compat_renamed.bpf.o"

[programs.read_state]
object = "renamed"
attach = { tracepoint = { category = "sched", name = "sched_process_exec" } }

[programs.read_pid]
object = "renamed"
attach = { tracepoint = { category = "sched", name = "sched_process_exec" } }
"#,
    )?;
    let kernels = ["5.10", "6.1"];
    let check = Command::new(repo().join("target/debug/kiln"))
        .arg("check")
        .arg(&manifest)
        .args(["--kernels", &kernels.join(","), "--arch", ARCH])
        .arg("--kernels-json")
        .output()?;
    let offline: serde_json::Value = serde_json::from_slice(&check.stdout).map_err(|e| {
        format!(
            "kiln check --kernels-json: {e}: {}",
            String::from_utf8_lossy(&check.stderr)
        )
    })?;
    let item = offline["items"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == "read_state"))
        .ok_or("no read_state in kiln check's answer")?;
    let missing_on: Vec<bool> = item["per_kernel"]
        .as_array()
        .ok_or("no per_kernel")?
        .iter()
        .map(|k| k["missing"].as_array().is_some_and(|m| !m.is_empty()))
        .collect();
    assert_eq!(missing_on, [false, true], "{offline:#}");

    let (_, text, report) = grid(&manifest, &kernels.join(","), &dir.join("reports"))?;
    for (k, missing) in kernels.iter().zip(missing_on) {
        let vm = format!("{k}-{ARCH}");
        let (status, detail) = cell(&report, &vm, "program read_state");
        assert_eq!(
            detail.starts_with("refused:"),
            missing,
            "{vm} read_state ({status}): {detail}\n{text}"
        );
        if missing {
            assert!(
                detail.contains("CO-RE relocation") && detail.contains("'task_struct'"),
                "{vm}: {detail}"
            );
        }
        let (status, detail) = cell(&report, &vm, "program read_pid");
        assert!(
            !detail.starts_with("refused:"),
            "{vm} read_pid ({status}): {detail}"
        );
    }
    Ok(())
}

fn no_qemu() -> Option<String> {
    match Command::new("qemu-system-x86_64").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("qemu-system-x86_64 is not installed (`cargo xtask setup`)".into()),
    }
}

fn no_objects() -> Option<String> {
    let dir = repo().join("target/bpf/x86_64");
    ["counter.bpf.o", "exectrace.bpf.o", "compat_renamed.bpf.o"]
        .iter()
        .find(|o| !dir.join(o).is_file())
        .map(|o| {
            format!(
                "{} is missing: `cargo xtask build-ebpf`",
                dir.join(o).display()
            )
        })
}

fn main() {
    let vm = [
        Need::Probe("qemu-system-x86_64", no_qemu),
        Need::Probe("built objects", no_objects),
    ];
    let with_btf = [
        Need::Probe("qemu-system-x86_64", no_qemu),
        Need::Probe("built objects", no_objects),
        Need::Probe("catalog kernel BTF", no_catalog_btf),
    ];
    kiln_testkit::run(vec![
        kiln_testkit::test(
            "quickstart_agrees_with_the_examples_test",
            &vm,
            quickstart_agrees_with_the_examples_test,
        ),
        kiln_testkit::test(
            "a_manifest_outside_the_repository_runs_unchanged",
            &vm,
            a_manifest_outside_the_repository_runs_unchanged,
        ),
        kiln_testkit::test(
            "compat_fixture_is_refused_where_check_says",
            &with_btf,
            compat_fixture_is_refused_where_check_says,
        ),
    ]);
}
