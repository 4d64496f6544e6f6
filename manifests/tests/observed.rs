//! What `check`, `plan` and `status` say comes from the kernel: the XDP mode
//! the interface reports, the holder of a busy XDP hook.

use std::path::PathBuf;

use kiln_loader::EbpfLoader;
use kiln_loader::links::xdp::{XdpFlags, attach_xdp_link, query_xdp_modes};
use kiln_manifest::apply::{ApplyError, ApplyOptions, Step};
use kiln_manifest::plan::{Action, PlanError};
use kiln_manifest::status::State;
use kiln_testkit::TestResult;

mod common;
use common::{Fixture, counter_manifest, counter_needs};

fn kiln() -> PathBuf {
    std::env::var_os("KILN_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kiln")), PathBuf::from)
}

fn ifindex(name: &str) -> Result<u32, String> {
    let c = std::ffi::CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: `c` is a NUL-terminated string alive for the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(format!("no interface {name}")),
        i => Ok(i),
    }
}

/// The counter manifest with its XDP program on `interface` in `mode`.
fn xdp_manifest(f: &Fixture, interface: &str, mode: &str) -> String {
    counter_manifest(&f.name, &f.root, &f.v1, "", "").replace(
        "interface = \"lo\", mode = \"generic\"",
        &format!("interface = \"{interface}\", mode = \"{mode}\""),
    )
}

fn xdp_mode_change_is_planned_and_status_reads_the_kernel() -> TestResult {
    let f = Fixture::new()?;
    // A veth has a native XDP slot as well as the generic one.
    let ok = std::process::Command::new("ip")
        .args(["link", "add", "kt0", "type", "veth", "peer", "name", "kt1"])
        .status()?;
    assert!(ok.success(), "ip link add veth");
    let index = ifindex("kt0")?;
    let generic = f.load(&xdp_manifest(&f, "kt0", "generic"))?;
    generic.apply(&ApplyOptions::default())?;
    let prog = kiln_manifest::live::program_at(&f.root.join("progs/count_packets"))
        .ok_or("count_packets not pinned")?;
    assert_eq!(query_xdp_modes(index)?.generic, Some(prog.id));
    let status = generic.status()?;
    assert!(status.all_ok(), "{status}");
    assert!(
        status
            .to_string()
            .contains("(generic mode, as the kernel reports)"),
        "{status}"
    );

    let native = f.load(&xdp_manifest(&f, "kt0", "native"))?;
    let status = native.status()?;
    let item = status.item("count_packets").ok_or("no status item")?;
    assert_eq!(item.state, State::Drifted, "{status}");
    assert!(
        item.detail.contains("kernel runs it in generic mode"),
        "{status}"
    );
    let plan = native.plan()?;
    assert!(
        matches!(plan.actions.as_slice(), [Action::Reattach { program, reason, .. }] if program == "count_packets" && reason.contains("XDP mode changed")),
        "{plan}"
    );
    // A failure after the old link was detached puts it back, in generic mode.
    let err = native
        .apply(&ApplyOptions {
            fail_at: Some(Step::PinLink),
            ..ApplyOptions::default()
        })
        .unwrap_err();
    assert!(matches!(err, ApplyError::Injected(Step::PinLink)), "{err}");
    let attached = query_xdp_modes(index)?;
    assert_eq!(
        attached.generic,
        Some(prog.id),
        "not restored: {attached:?}"
    );
    assert_eq!(attached.native, None, "{attached:?}");
    assert!(generic.status()?.all_ok(), "{}", generic.status()?);

    native.apply(&ApplyOptions::default())?;
    let attached = query_xdp_modes(index)?;
    assert_eq!(attached.native, Some(prog.id), "{attached:?}");
    assert_eq!(
        attached.generic, None,
        "the generic attachment stayed: {attached:?}"
    );
    let status = native.status()?;
    assert!(status.all_ok(), "{status}");
    assert!(
        status
            .to_string()
            .contains("(native mode, as the kernel reports)"),
        "{status}"
    );
    assert!(native.plan()?.is_noop(), "{}", native.plan()?);
    Ok(())
}

fn xdp_hook_held_by_another_program_is_named() -> TestResult {
    let f = Fixture::new()?;
    // Someone else's XDP program on lo, generic mode.
    let spec = kiln_obj::ObjectSpec::parse(&std::fs::read(&f.v2)?)?;
    let mut other = EbpfLoader::new().load(&spec)?;
    let prog = other
        .take_program("count_packets")
        .ok_or("no count_packets")?;
    let _held = attach_xdp_link(prog.fd(), ifindex("lo")?, XdpFlags::SKB_MODE)?;
    let d = f.deployment(&f.v1, "", "")?;

    let err = d.plan().unwrap_err();
    assert!(
        matches!(&err, ApplyError::Plan(PlanError::HookHeld { program, holder }) if program == "count_packets" && holder.prog_id == prog.id()),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("XDP on lo (generic mode)")
            && text.contains(&format!("program id {}", prog.id())),
        "{text}"
    );
    assert!(d.apply(&ApplyOptions::default()).is_err());
    assert!(
        !f.root.join("progs").exists(),
        "a refused apply pinned something"
    );

    // `kiln check` says the same, at the program's line, exit 3.
    let out = std::process::Command::new(kiln())
        .arg("check")
        .arg(f.manifest_path())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("manifest.toml:17:10: program 'count_packets': XDP on lo (generic mode) already runs program id"), "{stderr}");
    assert!(stderr.contains("help:"), "{stderr}");
    Ok(())
}

fn main() {
    let needs = &counter_needs();
    kiln_testkit::run(vec![
        kiln_testkit::test(
            "xdp_mode_change_is_planned_and_status_reads_the_kernel",
            needs,
            xdp_mode_change_is_planned_and_status_reads_the_kernel,
        ),
        kiln_testkit::test(
            "xdp_hook_held_by_another_program_is_named",
            needs,
            xdp_hook_held_by_another_program_is_named,
        ),
    ]);
}
