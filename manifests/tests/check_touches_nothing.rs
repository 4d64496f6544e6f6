//! `kiln check` changes nothing: its feature probes attach nothing to a real
//! interface (the tcx probe once attached to `lo` and detached again) and it
//! pins nothing. It probes only what its manifest needs, once per boot.
//!
//! The test moves into a network namespace of its own and runs `kiln check`
//! there (a child inherits the namespace; the test verifies it did), so the
//! `lo` that check would have touched is the test's: its tcx revision (the
//! kernel counts every attach and detach while the hook holds a program:
//! the test holds one of its own there) and its XDP slot must not move.

use std::path::PathBuf;

use kiln_obj::{AttachType, Direction, Insn, ProgramKind};
use kiln_testkit::{Need, TestResult};

mod common;

fn tcx_revision(direction: AttachType) -> Result<u64, String> {
    use kiln_loader::programs::{QueryTarget, query_attached};
    query_attached(QueryTarget::Ifindex(1), direction)
        .map(|q| q.revision)
        .map_err(|e| format!("query tcx on lo: {e}"))
}

/// A pass-through tcx program on the private `lo`, in `direction`: it keeps
/// the hook's revision counting (an empty hook is freed, and its count with it).
fn hold_tcx(direction: Direction) -> Result<kiln_loader::links::FdLink, String> {
    let ret0 = [
        Insn {
            code: 0xb7,
            regs: 0,
            off: 0,
            imm: 0,
        }, // r0 = 0 (TCX_NEXT)
        Insn {
            code: 0x95,
            regs: 0,
            off: 0,
            imm: 0,
        }, // exit
    ];
    let opts = kiln_loader::programs::LoadOptions {
        license: "GPL",
        ..Default::default()
    };
    let prog = kiln_loader::Program::load("hold_tcx", ProgramKind::Tcx { direction }, &ret0, &opts)
        .map_err(|e| e.to_string())?;
    kiln_loader::links::tc::attach_tcx(prog.fd(), 1, direction, Default::default())
        .map_err(|e| e.to_string())
}

fn check_attaches_and_pins_nothing() -> TestResult {
    common::private_netns()?;
    let _held = (hold_tcx(Direction::Ingress)?, hold_tcx(Direction::Egress)?);
    let name = format!("kiln-check-{}", std::process::id());
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir)?;
    let root = PathBuf::from("/sys/fs/bpf").join(&name);
    let object = kiln_testkit::bpf_object("manifest_counter.bpf.o")?;
    let manifest = dir.join("manifest.toml");
    // Requirements that make check probe everything, tcx and XDP links included.
    std::fs::write(
        &manifest,
        common::counter_manifest(&name, &root, &object, "", "").replace(
            r#"requires = ["tracepoint", "xdp"]"#,
            r#"requires = ["tracepoint", "xdp", "tcx", "bpf_link"]"#,
        ),
    )?;
    let before = (
        tcx_revision(AttachType::TCX_INGRESS)?,
        tcx_revision(AttachType::TCX_EGRESS)?,
    );
    let kiln = common::kiln_bin();
    // The shell prints the namespace the child runs in, then becomes kiln.
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"readlink /proc/self/ns/net && exec "$0" check "$1""#)
        .arg(&kiln)
        .arg(&manifest)
        // Probe for real, not from what an earlier command cached.
        .env("KILN_PROBE_CACHE", "off")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "kiln check failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = std::fs::read_link("/proc/thread-self/ns/net")?;
    assert_eq!(
        stdout.lines().next().map(PathBuf::from),
        Some(ours),
        "kiln check did not run in the test's network namespace"
    );
    let after = (
        tcx_revision(AttachType::TCX_INGRESS)?,
        tcx_revision(AttachType::TCX_EGRESS)?,
    );
    assert_eq!(before, after, "kiln check attached to lo's tcx hooks");
    assert_eq!(
        kiln_loader::links::xdp::query_xdp(1)?,
        None,
        "kiln check left an XDP program on lo"
    );
    assert!(!root.exists(), "kiln check created {}", root.display());
    Ok(())
}

/// `kiln check` probes only the features its manifest requires, and a
/// later command reads the verdicts from the per-boot cache instead of
/// probing again.
fn probes_are_lazy_and_kept_for_the_boot() -> TestResult {
    let name = format!("kiln-probecache-{}", std::process::id());
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir)?;
    let cache = dir.join("cache");
    let object = kiln_testkit::bpf_object("manifest_counter.bpf.o")?;
    let manifest = dir.join("manifest.toml");
    std::fs::write(
        &manifest,
        common::counter_manifest(&name, &dir.join("pins"), &object, "", ""),
    )?;
    let kiln = common::kiln_bin();
    let check = || {
        std::process::Command::new(&kiln)
            .arg("check")
            .arg(&manifest)
            .env("KILN_PROBE_CACHE", &cache)
            .output()
    };
    let first = check()?;
    let result = (|| -> TestResult {
        assert!(
            first.status.success(),
            "{}",
            String::from_utf8_lossy(&first.stderr)
        );
        let file = std::fs::read_dir(&cache)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("probes-"))
            })
            .ok_or("no probe cache written")?;
        let text = std::fs::read_to_string(&file)?;
        for probed in ["tracepoint=1", "xdp=1", "socket_filter=1"] {
            assert!(
                text.lines().any(|l| l == probed),
                "{probed} missing:\n{text}"
            );
        }
        // Lazy: nothing the manifest does not need.
        for unasked in ["tcx=", "sk_lookup=", "hash_of_maps=", "batch_ops="] {
            assert!(!text.contains(unasked), "{unasked} was probed:\n{text}");
        }
        // The next command believes the cache: a verdict planted there wins.
        std::fs::write(&file, text.replace("xdp=1", "xdp=0"))?;
        let second = check()?;
        let stderr = String::from_utf8_lossy(&second.stderr);
        assert!(
            !second.status.success() && stderr.contains("this kernel lacks 'xdp'"),
            "the second check probed again: {stderr}"
        );
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn main() {
    let tcx = Need::Probe("tcx", || {
        (!kiln_loader::probe::features().tcx).then(|| "no tcx links (6.6+)".into())
    });
    kiln_testkit::run(vec![
        kiln_testkit::test(
            "check_attaches_and_pins_nothing",
            &[Need::Root, Need::Bpf, Need::NetNs, tcx],
            check_attaches_and_pins_nothing,
        ),
        kiln_testkit::test(
            "probes_are_lazy_and_kept_for_the_boot",
            &[Need::Root, Need::Bpf, common::perf_links()],
            probes_are_lazy_and_kept_for_the_boot,
        ),
    ]);
}
