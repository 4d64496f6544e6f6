//! What `check`, `plan` and `status` say comes from the kernel: the XDP mode
//! the interface reports, the holder of a busy XDP hook.

use kiln_loader::EbpfLoader;
use kiln_loader::links::xdp::{XdpFlags, attach_xdp_link, query_xdp_modes};
use kiln_manifest::apply::{ApplyError, ApplyOptions, Step};
use kiln_manifest::plan::{Action, PlanError};
use kiln_manifest::status::State;
use kiln_testkit::TestResult;

mod common;
use common::{Fixture, counter_manifest, counter_needs, ifindex, kiln_bin};

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
            .contains("(generic), as the kernel reports"),
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
            .contains("(native), as the kernel reports"),
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
    let out = std::process::Command::new(kiln_bin())
        .arg("check")
        .arg(f.manifest_path())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("manifest.toml:17:10: program 'count_packets': XDP on lo (generic mode) already runs program id"), "{stderr}");
    assert!(stderr.contains("help:"), "{stderr}");
    Ok(())
}

fn a_replaced_map_pin_is_drift_in_status_as_in_plan() -> TestResult {
    let f = Fixture::new()?;
    let d = f.deployment(&f.v1, "", "")?;
    d.apply(&ApplyOptions::default())?;
    // Behind Kiln's back: a new map of the same shape takes the pin.
    let path = f.root.join("maps/COUNTERS");
    let spec = kiln_obj::ObjectSpec::parse(&std::fs::read(&f.v1)?)?;
    let other = kiln_loader::Map::create(spec.map("COUNTERS").ok_or("no COUNTERS")?, None, None)?;
    std::fs::remove_file(&path)?;
    other.pin(&path)?;

    let status = d.status()?;
    assert!(!status.all_ok(), "{status}");
    for program in ["count_exec", "count_packets"] {
        let item = status.item(program).ok_or("no status item")?;
        assert_eq!(item.state, State::Drifted, "{status}");
        assert!(
            item.detail.contains("bound to map(s) no longer pinned"),
            "{status}"
        );
    }
    let plan = d.plan()?;
    assert!(
        plan.actions.iter().any(|a| matches!(a, Action::LoadProgram { reason, .. } if reason.contains("no longer pinned"))),
        "{plan}"
    );
    d.apply(&ApplyOptions::default())?;
    assert!(d.status()?.all_ok(), "{}", d.status()?);
    Ok(())
}

fn disabled_programs_are_the_manifests_own() -> TestResult {
    let f = Fixture::new()?;
    f.deployment(&f.v1, "", "")?
        .apply(&ApplyOptions::default())?;
    let d = f.deployment(&f.v1, "", "enabled = false")?;
    let status = d.status()?;
    assert!(status.extra.is_empty(), "{status}");
    let item = status.item("count_exec").ok_or("no status item")?;
    assert_eq!(item.state, State::Drifted, "{status}");
    assert!(
        item.detail
            .contains("disabled (enabled = false) but still attached"),
        "{status}"
    );
    let plan = d.plan()?.to_string();
    assert!(!plan.contains("removed from the manifest"), "{plan}");
    assert!(
        plan.contains("- detach count_exec (program disabled: enabled = false)"),
        "{plan}"
    );
    d.apply(&ApplyOptions::default())?;
    let status = d.status()?;
    assert!(status.all_ok(), "{status}");
    assert!(
        status
            .to_string()
            .contains("disabled (enabled = false), not loaded"),
        "{status}"
    );
    Ok(())
}

fn status_does_not_advise_an_apply_that_would_refuse() -> TestResult {
    let f = Fixture::new()?;
    f.deployment(&f.v1, "", "")?
        .apply(&ApplyOptions::default())?;
    // A new max_entries under on_upgrade = "keep": apply refuses it.
    let d = f.deployment(&f.v1, "max_entries = 32", "")?;
    assert!(matches!(
        d.plan(),
        Err(ApplyError::Plan(PlanError::IncompatibleMap { .. }))
    ));
    let text = d.status()?.to_string();
    assert!(!text.contains("`kiln apply` fixes it"), "{text}");
    assert!(
        text.contains("`kiln apply` would refuse: map 'COUNTERS' changed"),
        "{text}"
    );
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
            "a_replaced_map_pin_is_drift_in_status_as_in_plan",
            needs,
            a_replaced_map_pin_is_drift_in_status_as_in_plan,
        ),
        kiln_testkit::test(
            "disabled_programs_are_the_manifests_own",
            needs,
            disabled_programs_are_the_manifests_own,
        ),
        kiln_testkit::test(
            "status_does_not_advise_an_apply_that_would_refuse",
            needs,
            status_does_not_advise_an_apply_that_would_refuse,
        ),
        kiln_testkit::test(
            "xdp_hook_held_by_another_program_is_named",
            needs,
            xdp_hook_held_by_another_program_is_named,
        ),
    ]);
}
