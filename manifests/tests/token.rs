//! `kiln apply --token`: a manifest (a raw tracepoint and a map) applied from
//! inside a user namespace, as a user holding no capability outside it,
//! through a BPF token from a bpffs delegated exactly what `kiln check`
//! prints; and, with one item of that delegation left out, the error names it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_loader::Map;
use kiln_loader::OpenFlags;
use kiln_loader::maps::UpdateFlags;
use kiln_testkit::userns::{run_delegated, tokens_unavailable_reason, userns_unavailable_reason};
use kiln_testkit::{Need, TestResult};

mod common;
use common::kiln_bin;

/// The unprivileged user the namespaced apply runs as (outside: nobody).
const NOBODY: u32 = 65534;
/// The bpffs, as the namespaced process sees it: the usual place, so the
/// manifest is the one a container would ship.
const BPFFS: &str = "/sys/fs/bpf";

/// A manifest, its object and a lock directory readable by nobody; removed on drop.
struct Case {
    dir: PathBuf,
    manifest: PathBuf,
    lock_dir: PathBuf,
    /// `NAME=PATH` of each `--object` (none when the manifest names its
    /// object itself).
    objects: Vec<String>,
}

impl Case {
    fn new(tag: &str) -> Result<Case, String> {
        let err = |e: std::io::Error| e.to_string();
        let dir = std::env::temp_dir().join(format!("kiln-token-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(err)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).map_err(err)?;
        let obj = dir.join("token_counter.bpf.o");
        std::fs::copy(kiln_testkit::bpf_object("token_counter.bpf.o")?, &obj).map_err(err)?;
        std::fs::set_permissions(&obj, std::fs::Permissions::from_mode(0o644)).map_err(err)?;
        let manifest = dir.join("m.toml");
        std::fs::write(
            &manifest,
            format!(
                "[deployment]\nname = \"token-{tag}\"\npin_root = \"{BPFFS}/kiln/token-{tag}\"\n\n\
                 [objects.counter]\npath = \"token_counter.bpf.o\"\n\n\
                 [programs.count_exec]\nobject = \"counter\"\nattach = {{ raw_tracepoint = {{ name = \"sched_process_exec\" }} }}\n\n\
                 [maps.EXECS]\nobject = \"counter\"\n"
            ),
        )
        .map_err(err)?;
        std::fs::set_permissions(&manifest, std::fs::Permissions::from_mode(0o644)).map_err(err)?;
        // Inside the namespace /run/kiln is root's of the initial namespace.
        let lock_dir = dir.join("locks");
        std::fs::create_dir_all(&lock_dir).map_err(err)?;
        std::os::unix::fs::chown(&lock_dir, Some(NOBODY), Some(NOBODY)).map_err(err)?;
        Ok(Case {
            dir,
            manifest,
            lock_dir,
            objects: Vec::new(),
        })
    }

    /// `manifests/examples/<example>` as shipped, but for the deployment
    /// name `token-<tag>`, its pin root (`/sys/fs/bpf/kiln/token-<tag>` as
    /// the namespace sees it) and `substitutions`; its objects are copied
    /// from `target/bpf` where nobody reads them.
    fn example(
        tag: &str,
        example: &str,
        substitutions: &[(&str, &str)],
        objects: &[(&str, &str)],
    ) -> Result<Case, String> {
        let err = |e: std::io::Error| e.to_string();
        let mut case = Case::new(tag)?;
        let name = format!("token-{tag}");
        let root = Path::new(BPFFS).join("kiln").join(&name);
        let text = common::example_manifest(example, &name, &root, substitutions)?;
        std::fs::write(&case.manifest, text).map_err(err)?;
        for (object, file) in objects {
            let copy = case.dir.join(file);
            std::fs::copy(kiln_testkit::bpf_object(file)?, &copy).map_err(err)?;
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).map_err(err)?;
            case.objects.push(format!("{object}={}", copy.display()));
        }
        Ok(case)
    }

    /// The delegation `kiln check` prints for the manifest, as mount options.
    fn delegation(&self) -> Result<Vec<(String, String)>, String> {
        let out = Command::new(kiln_bin())
            .arg("check")
            .args(self.objects.iter().flat_map(|o| ["--object", o.as_str()]))
            .arg(&self.manifest)
            .output()
            .map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("-o "))
            .ok_or_else(|| format!("kiln check printed no delegation:\n{stdout}"))?;
        Ok(line
            .split(',')
            .filter_map(|o| o.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }

    /// `kiln apply --token`, `kiln status`, `kiln apply` again, as nobody in a user
    /// namespace whose bpffs delegates `options`.
    fn apply_delegated(
        &self,
        options: &[(String, String)],
    ) -> Result<kiln_testkit::userns::DelegatedRun, String> {
        let kiln = kiln_bin();
        let objects: String = self
            .objects
            .iter()
            .map(|o| format!(" --object '{o}'"))
            .collect();
        let mut sh = Command::new("/bin/sh");
        sh.arg("-c")
            .arg(format!(
                "cat /proc/self/uid_map && '{k}' apply --token {BPFFS}{o} '{m}' && '{k}' status --token {BPFFS}{o} '{m}' && '{k}' apply --token {BPFFS}{o} '{m}'",
                k = kiln.display(),
                o = objects,
                m = self.manifest.display()
            ))
            .env("KILN_LOCK_DIR", &self.lock_dir);
        let options: Vec<(&str, &str)> = options
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        run_delegated(sh, NOBODY, NOBODY, Path::new(BPFFS), &options)
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_execs(pin: &Path) -> Result<u64, String> {
    let map = Map::from_pin(pin, OpenFlags::ReadOnly).map_err(|e| e.to_string())?;
    let value = map
        .lookup_bytes(&0u32.to_ne_bytes(), UpdateFlags::ANY)
        .map_err(|e| e.to_string())?
        .ok_or("EXECS has no key 0")?;
    Ok(u64::from_ne_bytes(
        value[..8].try_into().map_err(|_| "short value")?,
    ))
}

/// Asserts that the delegated run applied (as nobody, root of its own user
/// namespace: no capability in the initial one), that `status` then saw
/// everything as declared and that a second apply changed nothing.
fn applied_cleanly(run: &kiln_testkit::userns::DelegatedRun, options: &[(String, String)]) {
    let stdout = String::from_utf8_lossy(&run.output.stdout);
    let stderr = String::from_utf8_lossy(&run.output.stderr);
    eprintln!("delegated with {options:?}:\n{stdout}{stderr}");
    assert!(
        run.output.status.success(),
        "apply and status through the token: {}\n{stdout}\n{stderr}",
        run.output.status
    );
    assert!(
        stdout.contains("applied") || stdout.contains("create"),
        "apply printed no actions:\n{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().eq(["0", "65534", "1"])),
        "the apply did not run as nobody in its own user namespace:\n{stdout}"
    );
    assert!(
        stdout.contains("all as declared"),
        "status after the apply:\n{stdout}"
    );
    assert!(
        stdout.contains("no changes"),
        "a second apply through the token must change nothing:\n{stdout}"
    );
}

fn applies_through_a_delegated_token() -> TestResult {
    let case = Case::new("ok")?;
    let options = case.delegation()?;
    let run = case.apply_delegated(&options)?;
    applied_cleanly(&run, &options);
    // The program runs in the kernel: an exec anywhere counts.
    let pin = run.bpffs_path().join("kiln/token-ok/maps/EXECS");
    let before = read_execs(&pin)?;
    Command::new("/bin/true").status()?;
    let after = read_execs(&pin)?;
    assert!(
        after > before,
        "an exec did not move EXECS ({before} -> {after})"
    );
    Ok(())
}

/// The xdp-firewall example, applied by a container: nobody outside, root
/// of its own user and network namespaces, loading through the token of a
/// bpffs delegated what `kiln check` prints, on the `lo` of its namespace.
fn example_applies_through_a_delegated_token() -> TestResult {
    let case = Case::example(
        "xdp-firewall",
        "xdp-firewall",
        &[("interface = \"fw0\"", "interface = \"lo\"")],
        &[("firewall", "firewall.bpf.o")],
    )?;
    let options = case.delegation()?;
    let run = case.apply_delegated(&options)?;
    applied_cleanly(&run, &options);
    // What the example declares is in the kernel: its blocklist, filled.
    let root = run.bpffs_path().join("kiln/token-xdp-firewall");
    let blocklist = Map::from_pin(&root.join("maps/BLOCKLIST"), OpenFlags::ReadOnly)?;
    let mut key = 24u32.to_ne_bytes().to_vec();
    key.extend_from_slice(&[198, 51, 100, 0]);
    assert!(
        blocklist.lookup_bytes(&key, UpdateFlags::ANY)?.is_some(),
        "198.51.100.0/24 is not in the pinned BLOCKLIST"
    );
    assert!(
        root.join("links").is_dir(),
        "the firewall is not attached (no links pinned)"
    );
    Ok(())
}

fn names_the_missing_delegation() -> TestResult {
    let case = Case::new("lacking")?;
    let options: Vec<(String, String)> = case
        .delegation()?
        .into_iter()
        .filter(|(k, _)| k != "delegate_maps")
        .collect();
    let run = case.apply_delegated(&options)?;
    let stderr = String::from_utf8_lossy(&run.output.stderr);
    assert_eq!(
        run.output.status.code(),
        Some(4),
        "a refused load is a privilege error:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "the bpffs at {BPFFS} does not delegate delegate_maps=array"
        )),
        "the error does not name the missing delegation:\n{stderr}"
    );
    assert!(
        !run.bpffs_path().join("kiln/token-lacking/maps").exists(),
        "a refused apply left pins"
    );
    Ok(())
}

fn main() {
    let needs = &[
        Need::Root,
        Need::Bpf,
        Need::Probe("bpf tokens", tokens_unavailable_reason),
        Need::Probe("user namespaces", userns_unavailable_reason),
    ];
    kiln_testkit::run(vec![
        kiln_testkit::test(
            "applies_through_a_delegated_token",
            needs,
            applies_through_a_delegated_token,
        ),
        kiln_testkit::test(
            "example_applies_through_a_delegated_token",
            needs,
            example_applies_through_a_delegated_token,
        ),
        kiln_testkit::test(
            "names_the_missing_delegation",
            needs,
            names_the_missing_delegation,
        ),
    ]);
}
