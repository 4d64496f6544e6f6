//! freplace: an XDP program's global function `kiln_decide` (passes packets)
//! is replaced by an extension that drops and counts; test runs show the
//! behaviour change, and its end after detach.

mod attach_util;

use attach_util::*;
use kiln_loader::links::freplace::{attach_freplace, load_extension, target_func_btf_id};
use kiln_loader::links::{Link, LinkType};
use kiln_loader::programs::TestRun;
use kiln_testkit::{Need, test};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

fn run(p: &kiln_loader::Program) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    let pkt = [0u8; 64];
    Ok(p.test_run(TestRun {
        data_in: Some(&pkt),
        data_out: None,
        ctx_in: None,
        ctx_out: None,
        repeat: 1,
        flags: 0,
        cpu: 0,
    })?
    .retval)
}

/// Whether the kernel lets an extension load here (the host refuses tracing
/// attachments with EPERM; the VMs allow them) and attach: arm64 kernels
/// before 6.0 have no BPF trampolines and answer ENOTSUPP (524) to the
/// attachment, any other attach error is the test's to report.
fn no_freplace() -> Option<String> {
    let (_, target) = load_object("attach_freplace_target").ok()?;
    let (spec, ext) = load_object("attach_freplace").ok()?;
    let t = prog(&target, "xdp_entry").ok()?;
    let e = match load_extension(&spec, &ext, "drop_all", t.fd(), None) {
        Ok(e) => e,
        Err(e) => return Some(format!("kernel refuses freplace programs: {e}")),
    };
    let btf_id = target_func_btf_id(t.fd(), "kiln_decide").ok()?;
    match attach_freplace(e.fd(), t.fd(), btf_id) {
        Err(e) if e.to_string().contains("os error 524") => Some(format!(
            "kernel cannot attach freplace programs (no BPF trampoline on this arch before 6.0): {e}"
        )),
        _ => None,
    }
}

fn freplace_changes_a_global_function_then_detaches() -> TestResult {
    let (_, target) = load_object("attach_freplace_target")?;
    let (spec, ext) = load_object("attach_freplace")?;
    let t = prog(&target, "xdp_entry")?;
    let counts = map(&ext, "ext_counts")?;
    check(run(t)? == XDP_PASS, || "target does not pass before".into())?;

    let e0 = load_extension(&spec, &ext, "drop_all", t.fd(), None)?;
    let e1 = load_extension(&spec, &ext, "drop_all_v2", t.fd(), Some("kiln_decide"))?;
    let btf_id = target_func_btf_id(t.fd(), "kiln_decide")?;
    let mut link = attach_freplace(e0.fd(), t.fd(), btf_id)?;
    check(link.info()?.link_type == LinkType::Tracing, || {
        format!("{:?}", link.info())
    })?;
    check(run(t)? == XDP_DROP, || {
        "replaced function still passes".into()
    })?;
    check(count(counts, 0) == 1, || {
        format!("count {}", count(counts, 0))
    })?;
    // Tracing links cannot swap programs: a second extension takes over
    // only once the first link is gone.
    check(link.update(e1.fd(), Some(e0.fd())).is_err(), || {
        "freplace link update succeeded".into()
    })?;
    link.detach()?;
    check(run(t)? == XDP_PASS, || {
        "original not restored after detach".into()
    })?;
    let mut link = attach_freplace(e1.fd(), t.fd(), btf_id)?;
    check(run(t)? == XDP_DROP && count(counts, 1) == 1, || {
        "second extension did not take over".into()
    })?;
    link.detach()?;
    check(run(t)? == XDP_PASS, || "original not restored".into())?;
    check(count(counts, 0) == 1 && count(counts, 1) == 1, || {
        "extension ran after detach".into()
    })
}

fn main() {
    kiln_testkit::run(vec![test(
        "freplace_changes_a_global_function_then_detaches",
        &[Need::Root, Need::Bpf, Need::Probe("freplace", no_freplace)],
        freplace_changes_a_global_function_then_detaches,
    )]);
}
