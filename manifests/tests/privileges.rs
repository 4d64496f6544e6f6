//! Without the capabilities it needs, `kiln` says which one is missing,
//! exits with code 4 and leaves nothing behind. Runs the binary as user
//! nobody and as root with capabilities dropped, both done by the harness
//! (`kiln_testkit::privilege`), so no setpriv or capsh is needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_testkit::privilege::{self, Cap};
use kiln_testkit::{Need, TestResult};

mod common;
use common::kiln_bin;

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

/// The capabilities `kiln check --json` says a first apply needs.
fn check_says(manifest: &Path) -> Result<Vec<String>, String> {
    let out = Command::new(kiln_bin())
        .args(["check", "--json"])
        .arg(manifest)
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "kiln check failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    let caps = v["capabilities"]
        .as_array()
        .ok_or(format!("no capabilities: {text}"))?;
    Ok(caps
        .iter()
        .filter(|c| c["only_when_deployed"] == false)
        .filter_map(|c| c["capability"].as_str().map(str::to_string))
        .collect())
}

/// This process's bounding set, as capsh names the capabilities.
/// The capability `kiln check` names (`CAP_BPF`), by its number.
fn cap_named(name: &str) -> Result<Cap, String> {
    Ok(Cap(match name {
        "CAP_NET_ADMIN" => 12,
        "CAP_NET_RAW" => 13,
        "CAP_SYS_ADMIN" => 21,
        "CAP_SYS_RESOURCE" => 24,
        "CAP_PERFMON" => 38,
        "CAP_BPF" => 39,
        other => return Err(format!("kiln check named an unknown capability {other}")),
    }))
}

/// This process's bounding set, from `/proc/self/status` (`CapBnd`).
fn bounding_set() -> Result<Vec<Cap>, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or("no CapBnd in /proc/self/status")?;
    Ok((0..64).filter(|c| mask & (1 << c) != 0).map(Cap).collect())
}

/// `kiln check` prints `expected` for `attach`; apply goes through with
/// exactly those and fails naming each one dropped.
fn check_names_exactly_what_apply_needs(tag: &str, attach: &str, expected: &[&str]) -> TestResult {
    let case = Case::new(tag, attach)?;
    let needed = check_says(&case.manifest)?;
    assert_eq!(needed, expected, "for {attach}");
    // Any one of them dropped (and CAP_SYS_ADMIN, which stands in for
    // both): refused, naming it, nothing left behind.
    for cap in &needed {
        let (code, err) = run(
            As::RootWithout(&[cap_named(cap)?, Cap::SYS_ADMIN]),
            &[Path::new("apply"), &case.manifest],
        )?;
        expect_refusal(code, &err, &[cap.as_str()], &case)?;
    }
    // Exactly those (every other capability out of the bounding set, so
    // root's exec cannot regain it): the apply goes through.
    let wanted = needed
        .iter()
        .map(|c| cap_named(c))
        .collect::<Result<Vec<Cap>, String>>()?;
    let others: Vec<Cap> = bounding_set()?
        .into_iter()
        .filter(|c| !wanted.contains(c))
        .collect();
    let (code, err) = run(
        As::RootWithout(&others),
        &[Path::new("apply"), &case.manifest],
    )?;
    assert_eq!(code, 0, "apply with exactly {needed:?} failed:\n{err}");
    assert!(case.root.join("links").is_dir(), "nothing attached: {err}");
    let (code, err) = run(
        As::RootWithout(&[Cap(13)]),
        &[Path::new("destroy"), &case.manifest],
    )?;
    assert_eq!(code, 0, "{err}");
    Ok(())
}

/// Mounts a bpffs at `dir` with `options`; the kernel's error if refused.
fn mount_bpffs(dir: &Path, options: &str) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let target = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    let data = std::ffi::CString::new(options).map_err(|e| e.to_string())?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(format!(
            "mount -t bpf -o {options}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Why this kernel has no bpffs delegation (BPF tokens, 6.9+), or `None`.
fn no_token_mounts() -> Option<String> {
    let dir = std::env::temp_dir().join(format!("kiln-priv-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let mut r = mount_bpffs(&dir, "delegate_cmds=prog_load");
    if r.is_ok() {
        // Kernels before 6.9 take unknown bpffs options silently: the
        // mount must show the delegation.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let shown = mounts
            .lines()
            .any(|l| l.contains(&dir.display().to_string()) && l.contains("delegate_cmds"));
        if !shown {
            r = Err("the mount ignored delegate_cmds".into());
        }
        let c = std::ffi::CString::new(dir.display().to_string()).ok()?;
        // SAFETY: a NUL-terminated path; unmounting what we just mounted.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
    let _ = std::fs::remove_dir(&dir);
    r.err()
        .map(|e| format!("no bpffs delegation (BPF tokens, 6.9+): {e}"))
}

fn check_prints_a_delegation_the_kernel_accepts() -> TestResult {
    let case = Case::new("token", &format!("{TRACEPOINT}\n{XDP}"))?;
    let out = Command::new(kiln_bin())
        .args(["check", "--json"])
        .arg(&case.manifest)
        .output()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let d = &v["token_delegation"];
    let names = |k: &str| -> Vec<String> {
        d[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        names("cmds"),
        ["map_create", "btf_load", "prog_load"],
        "{v}"
    );
    assert_eq!(names("progs"), ["tracepoint", "xdp"], "{v}");
    assert!(names("maps").contains(&"hash".to_string()), "{v}");
    // A tracepoint program is loaded without an expected attach type (0).
    assert!(
        names("attachs").contains(&"cgroup_inet_ingress".to_string()),
        "{v}"
    );
    let options: Vec<String> = ["cmds", "maps", "progs", "attachs"]
        .iter()
        .map(|k| format!("delegate_{k}={}", names(k).join(":")))
        .collect();
    let options = options.join(",");
    // The kernel parses each name against its own enums: a wrong one is EINVAL.
    let dir = case.dir.join("delegated");
    std::fs::create_dir_all(&dir)?;
    mount_bpffs(&dir, &options)?;
    let mounts = std::fs::read_to_string("/proc/mounts")?;
    let c = std::ffi::CString::new(dir.display().to_string())?;
    // SAFETY: a NUL-terminated path; unmounting what this test mounted.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    let line = mounts
        .lines()
        .find(|l| l.contains(&dir.display().to_string()))
        .ok_or("the delegated bpffs is not in /proc/mounts")?;
    for k in ["cmds", "maps", "progs", "attachs"] {
        for n in names(k) {
            assert!(line.contains(&n), "{n} not delegated: {line}");
        }
    }
    Ok(())
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
        kiln_testkit::test(
            "check_names_exactly_what_apply_needs",
            &[Need::Root, Need::Bpf, common::perf_links()],
            || {
                // Debian's kernels (the VMs) default to perf_event_paranoid 3:
                // perf_event_open, so a tracepoint, then needs CAP_SYS_ADMIN.
                let paranoid: i32 = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(2);
                let mut expected = vec!["CAP_BPF", "CAP_PERFMON"];
                if paranoid >= 3 {
                    expected.push("CAP_SYS_ADMIN");
                }
                check_names_exactly_what_apply_needs("exact-tp", TRACEPOINT, &expected)
            },
        ),
        kiln_testkit::test(
            "check_prints_a_delegation_the_kernel_accepts",
            &[
                Need::Root,
                Need::Bpf,
                Need::Probe("bpffs delegation", no_token_mounts),
            ],
            check_prints_a_delegation_the_kernel_accepts,
        ),
        kiln_testkit::test(
            "check_names_exactly_what_an_xdp_apply_needs",
            &[Need::Root, Need::Bpf, Need::NetNs],
            || {
                // XDP on a `lo` of this test's own (kiln inherits the namespace).
                common::private_netns()?;
                check_names_exactly_what_apply_needs(
                    "exact-xdp",
                    XDP,
                    &["CAP_BPF", "CAP_NET_ADMIN"],
                )
            },
        ),
    ]);
}
