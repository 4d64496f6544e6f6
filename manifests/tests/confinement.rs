//! Confinement: objects only from beside the manifest (symlinks included)
//! unless `allow_outside`; pins only on a bpffs; the pin root, pins and the
//! lock readable by their owner only.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use kiln_manifest::Deployment;
use kiln_manifest::apply::{ApplyError, ApplyOptions};
use kiln_testkit::{Need, TestResult};

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Result<Dir, String> {
        let d = std::env::temp_dir().join(format!("kiln-confine-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        Ok(Dir(d))
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn manifest(
    dir: &Path,
    name: &str,
    root: &Path,
    path: &str,
    extra: &str,
) -> Result<PathBuf, String> {
    let m = dir.join("m.toml");
    std::fs::write(
        &m,
        format!(
            "[deployment]\nname = \"{name}\"\npin_root = \"{}\"\n{extra}\n[objects.counter]\npath = \"{path}\"\n\n[programs.count_exec]\nobject = \"counter\"\nattach = {{ tracepoint = {{ category = \"sched\", name = \"sched_process_exec\" }} }}\n\n[maps.COUNTERS]\nobject = \"counter\"\n",
            root.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    Ok(m)
}

fn symlink_out_of_the_manifest_dir_is_refused() -> TestResult {
    let dir = Dir::new("symlink")?;
    let obj = kiln_testkit::bpf_object("manifest_counter.bpf.o")?;
    std::os::unix::fs::symlink(&obj, dir.0.join("counter.bpf.o"))?;
    let root = Path::new("/sys/fs/bpf/kiln-confine-unused");
    let m = manifest(&dir.0, "t", root, "counter.bpf.o", "")?;
    let err = Deployment::load(&m, &BTreeMap::new())
        .err()
        .ok_or("a symlink leading outside the manifest's directory was followed")?
        .to_string();
    assert!(
        err.contains("outside the manifest's directory") && err.contains("allow_outside"),
        "{err}"
    );
    // The binary: exit 3, and --allow-outside opts in from the command line.
    let kiln = std::env::var_os("KILN_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kiln")), PathBuf::from);
    let check = |extra: &[&str]| -> Result<Option<i32>, std::io::Error> {
        Ok(std::process::Command::new(&kiln)
            .arg("check")
            .args(extra)
            .arg(&m)
            .output()?
            .status
            .code())
    };
    assert_eq!(check(&[])?, Some(3), "kiln check of an escaping object");
    assert_eq!(
        check(&["--allow-outside"])?,
        Some(0),
        "kiln check --allow-outside"
    );
    // Opting in within the file makes the same manifest valid.
    let m = manifest(&dir.0, "t", root, "counter.bpf.o", "allow_outside = true")?;
    Deployment::load(&m, &BTreeMap::new()).map_err(|e| e.to_string())?;
    // An object really beside the manifest needs no opt-in.
    std::fs::remove_file(dir.0.join("counter.bpf.o"))?;
    std::fs::copy(&obj, dir.0.join("counter.bpf.o"))?;
    let m = manifest(&dir.0, "t", root, "counter.bpf.o", "")?;
    Deployment::load(&m, &BTreeMap::new()).map_err(|e| e.to_string())?;
    Ok(())
}

fn pin_root_off_bpffs_is_refused() -> TestResult {
    let dir = Dir::new("notbpffs")?;
    let obj = kiln_testkit::bpf_object("manifest_counter.bpf.o")?;
    let root = dir.0.join("pins");
    let m = manifest(
        &dir.0,
        "kiln-confine-tmp",
        &root,
        &obj.display().to_string(),
        "allow_outside = true",
    )?;
    let d = Deployment::load(&m, &BTreeMap::new()).map_err(|e| e.to_string())?;
    match d.apply(&ApplyOptions::default()) {
        Err(ApplyError::NotBpffs(p)) => assert_eq!(p, root),
        other => return Err(format!("expected a refusal (not on bpffs), got {other:?}").into()),
    }
    assert!(
        !root.exists(),
        "the refused apply created {}",
        root.display()
    );
    Ok(())
}

/// The counter object's manifest in a fresh directory, pinning under
/// `parent`: the directory (removed on drop), the deployment's name, its pin
/// root and the manifest's path.
fn counter_case(tag: &str, parent: &Path) -> Result<(Dir, String, PathBuf, PathBuf), String> {
    let dir = Dir::new(tag)?;
    let obj = kiln_testkit::bpf_object("manifest_counter.bpf.o")?;
    let name = format!("kiln-confine-{tag}-{}", std::process::id());
    let root = parent.join(&name);
    let m = manifest(
        &dir.0,
        &name,
        &root,
        &obj.display().to_string(),
        "allow_outside = true",
    )?;
    Ok((dir, name, root, m))
}

fn pins_and_lock_are_private() -> TestResult {
    let (_dir, name, root, m) = counter_case("modes", Path::new("/sys/fs/bpf"))?;
    let d = Deployment::load(&m, &BTreeMap::new()).map_err(|e| e.to_string())?;
    let lock = kiln_manifest::lock::lock_dir().join(format!("{name}.lock"));
    let result = (|| -> TestResult {
        d.apply(&ApplyOptions::default())?;
        let mode = |p: &Path| -> Result<u32, String> {
            Ok(std::fs::metadata(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .permissions()
                .mode()
                & 0o777)
        };
        for sub in ["", "maps", "progs", "links"] {
            let p = root.join(sub);
            assert_eq!(mode(&p)?, 0o700, "{} is not private", p.display());
        }
        for pin in ["maps/COUNTERS", "progs/count_exec", "links/count_exec"] {
            let p = root.join(pin);
            assert_eq!(
                mode(&p)? & 0o077,
                0,
                "{} is readable by others",
                p.display()
            );
        }
        assert_eq!(mode(&lock)?, 0o600, "{} is not private", lock.display());
        Ok(())
    })();
    let _ = d.destroy();
    let _ = std::fs::remove_file(&lock);
    result
}

/// On a machine where nothing is mounted at /sys/fs/bpf (a fresh VM, a
/// container, a minimal distro), `kiln apply` mounts a bpffs there, as
/// systemd would have, and says so. Runs in a private mount namespace, so the
/// host's own bpffs and its pins are untouched, and everything the apply
/// pinned goes away with the namespace.
fn apply_mounts_the_bpffs_when_absent() -> TestResult {
    let (_dir, _, _, m) = counter_case("mount", Path::new("/sys/fs/bpf/kiln"))?;
    let kiln = std::env::var_os("KILN_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kiln")), PathBuf::from);
    // Unmount every bpffs stacked at /sys/fs/bpf in the new namespace, so
    // the directory is sysfs's bare one again; then apply, show the mount
    // table, and check the deployment.
    let script = format!(
        "while umount /sys/fs/bpf 2>/dev/null; do :; done; \
         if grep -q ' /sys/fs/bpf ' /proc/self/mounts; then echo 'still mounted'; exit 90; fi; \
         '{kiln}' apply '{m}' || exit 91; \
         grep ' /sys/fs/bpf ' /proc/self/mounts; \
         '{kiln}' status '{m}' || exit 92",
        kiln = kiln.display(),
        m = m.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    assert!(
        stderr.contains("note: mounted a bpf filesystem at /sys/fs/bpf"),
        "apply did not say it mounted the bpffs:\n{stderr}"
    );
    let mount = stdout
        .lines()
        .find(|l| l.contains(" /sys/fs/bpf "))
        .ok_or_else(|| format!("no mount at /sys/fs/bpf after apply:\n{stdout}"))?;
    assert!(
        mount.starts_with("bpf /sys/fs/bpf bpf ") && mount.contains("mode=700"),
        "{mount}"
    );
    assert!(stdout.contains("all as declared"), "{stdout}");
    Ok(())
}

/// The manifest attaches to a tracepoint, which a kernel without perf-event
/// links (before 5.15) cannot pin: loading it is refused there. Like `kiln
/// check`, nothing is refused where bpf(2) cannot probe (not root).
fn no_perf_link() -> Option<String> {
    let usable = kiln_testkit::bpf_unavailable_reason().is_none();
    let ok =
        kiln_manifest::features::has(kiln_loader::probe::features(), "perf_link").unwrap_or(false);
    (usable && !ok)
        .then(|| "tracepoint attachments cannot be pinned before perf-event links (5.15)".into())
}

fn main() {
    let perf_links = Need::Probe("perf_link", no_perf_link);
    kiln_testkit::run(vec![
        kiln_testkit::test(
            "symlink_out_of_the_manifest_dir_is_refused",
            &[perf_links],
            symlink_out_of_the_manifest_dir_is_refused,
        ),
        kiln_testkit::test(
            "pin_root_off_bpffs_is_refused",
            &[Need::Root, Need::Bpf, perf_links],
            pin_root_off_bpffs_is_refused,
        ),
        kiln_testkit::test(
            "apply_mounts_the_bpffs_when_absent",
            &[
                Need::Root,
                Need::Bpf,
                perf_links,
                Need::Probe("unshare", || {
                    let found = std::env::var_os("PATH").is_some_and(|p| {
                        std::env::split_paths(&p).any(|d| d.join("unshare").is_file())
                    });
                    (!found).then(|| "unshare (util-linux or busybox) is not installed".into())
                }),
            ],
            apply_mounts_the_bpffs_when_absent,
        ),
        kiln_testkit::test(
            "pins_and_lock_are_private",
            &[Need::Root, Need::Bpf, perf_links],
            pins_and_lock_are_private,
        ),
    ]);
}
