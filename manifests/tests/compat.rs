//! `kiln check --kernels`: whether a manifest's programs find what they need
//! in other kernels, answered from their BTF alone. The fixture reads
//! `task_struct.state`, renamed `__state` in 5.14, without a flavor: the
//! answer must name that field and exactly the kernels after the rename.

use std::path::PathBuf;
use std::process::Command;

use kiln_testkit::{Need, TestResult};

mod common;

/// The catalog's kernels, oldest first, and the first one after the rename.
const KERNELS: &[&str] = &["5.10", "6.1", "6.12", "7.2"];
const ARCH: &str = "x86_64";

fn btf_dir() -> PathBuf {
    kiln_manifest::compat::default_btf_dir()
}

/// The catalog kernels' BTF is extracted on the build host (`cargo xtask
/// kernels btf`, which CI runs); a guest has no copy of it.
fn no_catalog_btf() -> Option<String> {
    let missing: Vec<&str> = KERNELS
        .iter()
        .copied()
        .filter(|k| !btf_dir().join(ARCH).join(format!("{k}.btf")).exists())
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "no BTF of catalog kernel(s) {} under {} (`cargo xtask kernels btf --arch {ARCH}` extracts it on the build host; the VMs carry none)",
            missing.join(", "),
            btf_dir().display()
        )
    })
}

fn manifest(dir: &std::path::Path) -> Result<PathBuf, Box<dyn std::error::Error + Send + Sync>> {
    let object = kiln_testkit::bpf_object("compat_renamed.bpf.o")?;
    let path = dir.join("compat.toml");
    std::fs::write(
        &path,
        format!(
            r#"[deployment]
name = "compat-{pid}"
pin_root = "/sys/fs/bpf/kiln-test-compat-{pid}"
allow_outside = true

[objects.renamed]
path = "{obj}"

[programs.read_state]
object = "renamed"
attach = {{ tracepoint = {{ category = "sched", name = "sched_process_exec" }} }}

[programs.read_pid]
object = "renamed"
attach = {{ tracepoint = {{ category = "sched", name = "sched_process_exec" }} }}
"#,
            pid = std::process::id(),
            obj = object.display()
        ),
    )?;
    Ok(path)
}

fn scratch(tag: &str) -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("kiln-compat-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn renamed_field_is_named_with_the_kernels_that_lack_it() -> TestResult {
    let dir = scratch("catalog")?;
    let m = manifest(&dir)?;
    let out = Command::new(common::kiln_bin())
        .arg("check")
        .arg(&m)
        .args(["--kernels", &KERNELS.join(","), "--arch", ARCH])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit code of a missing field:\n{text}"
    );
    let row = |name: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.starts_with(&format!("program {name} ")))
            .map(|l| l.split_whitespace().skip(2).map(str::to_string).collect())
            .unwrap_or_default()
    };
    assert_eq!(
        row("read_state"),
        ["ok", "MISSING", "MISSING", "MISSING"],
        "{text}"
    );
    assert_eq!(row("read_pid"), ["ok", "ok", "ok", "ok"], "{text}");
    assert!(
        text.lines().any(
            |l| l.starts_with("program read_state: CO-RE reads task_struct.state")
                && l.ends_with("on 6.1, 6.12, 7.2")
        ),
        "the field and the kernels are not named:\n{text}"
    );

    let json = Command::new(common::kiln_bin())
        .arg("check")
        .arg(&m)
        .args([
            "--kernels",
            &KERNELS.join(","),
            "--arch",
            ARCH,
            "--kernels-json",
        ])
        .output()?;
    let v: serde_json::Value = serde_json::from_slice(&json.stdout)?;
    assert_eq!(v["kernels"], serde_json::json!(KERNELS));
    let item = v["items"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == "read_state"))
        .ok_or("no read_state in the JSON")?;
    let missing: Vec<bool> = item["per_kernel"]
        .as_array()
        .ok_or("no per_kernel")?
        .iter()
        .map(|k| k["missing"].as_array().is_some_and(|m| !m.is_empty()))
        .collect();
    assert_eq!(missing, [false, true, true, true]);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// `--kernel-btf` takes any vmlinux BTF: this machine's own. Whether it
/// lacks the field is read from that BTF directly.
fn any_btf_file_is_a_kernel() -> TestResult {
    let vmlinux = "/sys/kernel/btf/vmlinux";
    let btf = kiln_obj::btf::Btf::from_bytes(std::fs::read(vmlinux)?)?;
    let id = btf
        .find_by_name(kiln_obj::btf::Kind::Struct, "task_struct")
        .ok_or("no task_struct in this kernel's BTF")?;
    let has_state = match btf.type_by_id(id)? {
        kiln_obj::btf::Type::Struct { members, .. } => members
            .iter()
            .any(|m| btf.str_at(m.name_off).is_ok_and(|n| n == "state")),
        _ => false,
    };
    let dir = scratch("own")?;
    let m = manifest(&dir)?;
    let out = Command::new(common::kiln_bin())
        .arg("check")
        .arg(&m)
        .args(["--kernel-btf", &format!("this={vmlinux}")])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let expected = if has_state { "ok" } else { "MISSING" };
    assert!(
        text.lines()
            .any(|l| l.starts_with("program read_state ") && l.trim_end().ends_with(expected)),
        "this kernel {} task_struct.state:\n{text}",
        if has_state { "has" } else { "lacks" }
    );
    assert_eq!(
        out.status.code(),
        Some(if has_state { 0 } else { 1 }),
        "{text}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// The verifier of the running kernel agrees with the offline answer for
/// it: `read_state` is refused exactly where `kiln check --kernel-btf`
/// says the field is missing, and `read_pid` loads everywhere. In the VMs
/// this is the same question asked of 5.10, 6.1, 6.12 and 7.2 for real.
fn the_verifier_agrees_with_the_offline_answer() -> TestResult {
    let dir = scratch("verifier")?;
    let m = manifest(&dir)?;
    let out = Command::new(common::kiln_bin())
        .arg("check")
        .arg(&m)
        .args(["--kernel-btf", "this=/sys/kernel/btf/vmlinux"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let offline_missing = text
        .lines()
        .any(|l| l.starts_with("program read_state ") && l.contains("MISSING"));

    let bytes = std::fs::read(kiln_testkit::bpf_object("compat_renamed.bpf.o")?)?;
    let spec = kiln_obj::ObjectSpec::parse(&bytes)?;
    let (ebpf, failures) = kiln_loader::EbpfLoader::new().load_each(&spec)?;
    let refused: Vec<&str> = failures.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        ebpf.program("read_pid").is_some(),
        "read_pid did not load: {failures:?}"
    );
    assert_eq!(
        refused.contains(&"read_state"),
        offline_missing,
        "kiln check said read_state is {} here, the verifier {}:\n{text}\n{failures:?}",
        if offline_missing { "missing" } else { "fine" },
        if refused.is_empty() {
            "loaded it"
        } else {
            "refused it"
        }
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn main() {
    kiln_testkit::run(vec![
        kiln_testkit::test(
            "renamed_field_is_named_with_the_kernels_that_lack_it",
            &[Need::Probe("catalog kernel BTF", no_catalog_btf)],
            renamed_field_is_named_with_the_kernels_that_lack_it,
        ),
        kiln_testkit::test(
            "any_btf_file_is_a_kernel",
            &[Need::Probe("vmlinux BTF", || {
                (!std::path::Path::new("/sys/kernel/btf/vmlinux").exists())
                    .then(|| "kernel has no /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF)".into())
            })],
            any_btf_file_is_a_kernel,
        ),
        kiln_testkit::test(
            "the_verifier_agrees_with_the_offline_answer",
            &[Need::Bpf, Need::HelpersOf("compat_renamed.bpf.o")],
            the_verifier_agrees_with_the_offline_answer,
        ),
    ]);
}
