//! Without the capabilities it needs, `kiln` says which one is missing,
//! exits with code 4 and leaves nothing behind. Runs the binary as user
//! nobody and as root with capabilities dropped, both done by the harness
//! (`kiln_testkit::privilege`), so no setpriv or capsh is needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_testkit::privilege::{self, Cap};
use kiln_testkit::{Need, TestResult};

fn kiln_bin() -> PathBuf {
    std::env::var_os("KILN_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kiln")), PathBuf::from)
}

/// A manifest in a directory user nobody can read; removed on drop.
struct Case {
    dir: PathBuf,
    root: PathBuf,
    manifest: PathBuf,
}

impl Case {
    fn new(tag: &str, attach: &str) -> Result<Case, String> {
        use std::os::unix::fs::PermissionsExt;
        let name = format!("kiln-priv-{}-{tag}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        let root = PathBuf::from("/sys/fs/bpf").join(&name);
        let obj = kiln_testkit::bpf_object("manifest_counter.bpf.o")?;
        let manifest = dir.join("m.toml");
        std::fs::write(
            &manifest,
            format!(
                "[deployment]\nname = \"{name}\"\npin_root = \"{}\"\nallow_outside = true\n\n[objects.counter]\npath = \"{}\"\n\n{attach}\n",
                root.display(),
                obj.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        std::fs::set_permissions(&manifest, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| e.to_string())?;
        Ok(Case {
            dir,
            root,
            manifest,
        })
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

const TRACEPOINT: &str = "[programs.count_exec]\nobject = \"counter\"\nattach = { tracepoint = { category = \"sched\", name = \"sched_process_exec\" } }\n";
const XDP: &str = "[programs.count_packets]\nobject = \"counter\"\nattach = { xdp = { interface = \"lo\", mode = \"generic\" } }\n";

/// Who runs `kiln` in a test.
enum As<'a> {
    /// User nobody, no capabilities.
    Nobody,
    /// Root without these capabilities.
    RootWithout(&'a [Cap]),
}

/// Runs `kiln args...` with the privileges of `who`: exit code and stderr.
fn run(who: As, args: &[&Path]) -> Result<(i32, String), String> {
    let kiln = kiln_bin();
    let mut cmd = Command::new(&kiln);
    cmd.args(args);
    match who {
        As::Nobody => privilege::as_nobody(&mut cmd),
        As::RootWithout(caps) => privilege::without_caps(&mut cmd, caps),
    };
    let out = cmd
        .output()
        .map_err(|e| format!("{}: {e}", kiln.display()))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn expect_refusal(code: i32, stderr: &str, caps: &[&str], case: &Case) -> TestResult {
    assert_eq!(
        code, 4,
        "exit code of a missing privilege; stderr:\n{stderr}"
    );
    for cap in caps {
        assert!(
            stderr.contains("lacks") && stderr.contains(cap),
            "the error does not name {cap} as missing:\n{stderr}"
        );
    }
    assert!(
        !case.root.exists(),
        "a refused apply left {}",
        case.root.display()
    );
    Ok(())
}

fn apply_as_nobody_names_cap_bpf() -> TestResult {
    let case = Case::new("nobody", TRACEPOINT)?;
    let (code, err) = run(As::Nobody, &[Path::new("apply"), &case.manifest])?;
    expect_refusal(code, &err, &["CAP_BPF", "CAP_PERFMON"], &case)
}

fn apply_without_net_admin_names_it() -> TestResult {
    let case = Case::new("netadmin", XDP)?;
    let (code, err) = run(
        As::RootWithout(&[Cap::NET_ADMIN]),
        &[Path::new("apply"), &case.manifest],
    )?;
    expect_refusal(code, &err, &["CAP_NET_ADMIN"], &case)?;
    assert!(
        !err.contains("lacks CAP_BPF"),
        "CAP_BPF was not dropped:\n{err}"
    );
    Ok(())
}

fn apply_without_bpf_caps_names_them() -> TestResult {
    let case = Case::new("dropped", TRACEPOINT)?;
    let (code, err) = run(
        As::RootWithout(&[Cap::BPF, Cap::PERFMON, Cap::SYS_ADMIN]),
        &[Path::new("apply"), &case.manifest],
    )?;
    expect_refusal(code, &err, &["CAP_BPF", "CAP_PERFMON"], &case)
}

fn status_as_nobody_is_a_privilege_error() -> TestResult {
    let case = Case::new("status", TRACEPOINT)?;
    // Point the manifest at an existing pin root (read, never written:
    // `status` only observes) so kiln has pins to read.
    let text = std::fs::read_to_string(&case.manifest)?;
    let text = text.replace(&case.root.display().to_string(), "/sys/fs/bpf");
    std::fs::write(&case.manifest, text)?;
    let (code, err) = run(As::Nobody, &[Path::new("status"), &case.manifest])?;
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("CAP_BPF"), "{err}");
    Ok(())
}

fn object_load_as_nobody_names_cap_bpf() -> TestResult {
    let case = Case::new("object", "")?;
    let obj = kiln_testkit::bpf_object("manifest_counter.bpf.o")?;
    let (code, err) = run(As::Nobody, &[Path::new("object"), Path::new("load"), &obj])?;
    expect_refusal(code, &err, &["CAP_BPF"], &case)
}

fn main() {
    let needs = &[Need::Root, Need::Bpf];
    kiln_testkit::run(vec![
        kiln_testkit::test(
            "apply_as_nobody_names_cap_bpf",
            needs,
            apply_as_nobody_names_cap_bpf,
        ),
        kiln_testkit::test(
            "object_load_as_nobody_names_cap_bpf",
            needs,
            object_load_as_nobody_names_cap_bpf,
        ),
        kiln_testkit::test(
            "status_as_nobody_is_a_privilege_error",
            needs,
            status_as_nobody_is_a_privilege_error,
        ),
        kiln_testkit::test(
            "apply_without_net_admin_names_it",
            needs,
            apply_without_net_admin_names_it,
        ),
        kiln_testkit::test(
            "apply_without_bpf_caps_names_them",
            needs,
            apply_without_bpf_caps_names_them,
        ),
    ]);
}
