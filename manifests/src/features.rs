//! `requires = [...]`: kernel features a deployment needs, checked with the
//! loader's probes (which try, never read version numbers) before anything
//! is loaded.

use std::path::Path;

use kiln_loader::probe::Features;

use crate::diag::Diagnostic;
use crate::manifest::Manifest;

/// Features that are not a program or map type name.
const SPECIAL: &[&str] = &["perf_link", "kprobes", "uprobes", "tracefs"];

/// Whether `name` is present: `Some(bool)`, or `None` for an unknown name.
pub fn has(f: &Features, name: &str) -> Option<bool> {
    if let Some(v) = f.program_types.get(name) {
        return Some(*v);
    }
    if let Some(v) = f.map_types.get(name) {
        return Some(*v);
    }
    if let Some(v) = on_the_host(name) {
        return Some(v);
    }
    Some(match name {
        "bpf_link" => f.bpf_link,
        "tcx" => f.tcx,
        "btf" => f.btf_load,
        "ringbuf" => f.ringbuf,
        "bpf_cookie" | "perf_link" => f.bpf_cookie,
        "batch_ops" => f.batch_ops,
        "mmapable_arrays" => f.mmapable_arrays,
        _ => return None,
    })
}

/// Like [`has`], probing only `name` (each verdict kept for the boot by
/// the loader): what a command that needs a few features asks.
pub fn probe(name: &str) -> Option<bool> {
    on_the_host(name).or_else(|| match name {
        // Perf-event bpf_links (pinnable tracepoint/kprobe/uprobe
        // attachments) came with attach cookies, in 5.15.
        "perf_link" => kiln_loader::probe::feature("bpf_cookie"),
        _ => kiln_loader::probe::feature(name),
    })
}

/// Features seen in the file system rather than probed with bpf(2).
fn on_the_host(name: &str) -> Option<bool> {
    Some(match name {
        "kprobes" => Path::new("/sys/bus/event_source/devices/kprobe").exists(),
        "uprobes" => Path::new("/sys/bus/event_source/devices/uprobe").exists(),
        "tracefs" => [
            "/sys/kernel/tracing/events",
            "/sys/kernel/debug/tracing/events",
        ]
        .iter()
        .any(|p| Path::new(p).is_dir()),
        _ => return None,
    })
}

fn known() -> Vec<String> {
    let mut v: Vec<String> = kiln_loader::probe::feature_names()
        .into_iter()
        .map(String::from)
        .collect();
    v.extend(SPECIAL.iter().map(|s| s.to_string()));
    v.sort();
    v.dedup();
    v
}

/// Whether the probes say anything: when bpf(2) is refused (not root) every
/// probe fails, and "missing" would be a lie. So would it for a process
/// holding only some of the capabilities the probes need (CAP_PERFMON for
/// tracing program types, CAP_NET_ADMIN for networking ones): the kernel
/// refuses their probe loads as it would the apply, which the privilege
/// check then names.
fn probes_usable() -> bool {
    use kiln_loader::caps::{Capability, missing};
    missing(&[Capability::Bpf, Capability::Perfmon, Capability::NetAdmin]).is_empty()
        && kiln_loader::probe::feature("socket_filter") == Some(true)
}

/// Programs whose attachment is a perf event (tracepoint, kprobe, uprobe)
/// need perf-event bpf_links to be pinned; without them (before 5.15) the
/// attachment would end with the `kiln` process.
pub fn check_perf_links(
    manifest: &Manifest,
    resolved: &crate::desired::Resolved,
) -> Vec<Diagnostic> {
    use kiln_loader::links::AttachPoint;
    let perf: Vec<_> = manifest
        .programs()
        .filter(|(key, _)| {
            resolved
                .builds
                .get(key.get_ref())
                .is_some_and(|b| b.attach.as_ref().is_some_and(AttachPoint::uses_perf_event))
        })
        .collect();
    // Probe only when it matters, and only what matters.
    if perf.is_empty() || can_pin_perf_attachments() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (key, decl) in perf {
        out.push(
            manifest
                .error(decl.get_ref().attach.span(), format!("program '{}': this kernel cannot pin perf-event attachments (tracepoint, kprobe, uprobe), so the attachment would end with this process", key.get_ref()))
                .help("use a kernel with perf-event links (5.15+); attach with raw_tracepoint / tp_btf / fentry, which pin on 5.7+; or run `kiln agent`, which holds such attachments for as long as it runs"),
        );
    }
    out
}

/// Whether tracepoint, kprobe and uprobe attachments can be pinned here
/// (perf-event links, 5.15; probed through bpf_cookie, which came with
/// them). Where bpf(2) cannot probe (not root), nothing is refused; nor
/// without CAP_PERFMON, which the probe's tracing program needs whatever
/// the kernel (the privilege check names the capability).
pub fn can_pin_perf_attachments() -> bool {
    let permitted =
        kiln_loader::caps::missing(&[kiln_loader::caps::Capability::Perfmon]).is_empty();
    !probes_usable() || !permitted || probe("perf_link") != Some(false)
}

/// Checks `requires`. When bpf(2) itself is unusable here (not root), the
/// probes say nothing, so only the names are checked.
pub fn check(manifest: &Manifest) -> Vec<Diagnostic> {
    let reqs = &manifest.file.deployment.get_ref().requires;
    if reqs.is_empty() {
        return Vec::new();
    }
    let usable = probes_usable();
    let mut out = Vec::new();
    for r in reqs {
        match probe(r.get_ref()) {
            None => out.push(
                manifest
                    .error(r.span(), format!("unknown kernel feature '{}'", r.get_ref()))
                    .help(format!("known features: {}", known().join(", "))),
            ),
            Some(false) if usable => out.push(
                manifest
                    .error(r.span(), format!("this kernel lacks '{}', which the deployment requires", r.get_ref()))
                    .help("apply on a kernel that has it (`kiln probe` lists what this one has), or remove the requirement"),
            ),
            Some(_) => {}
        }
    }
    out
}
