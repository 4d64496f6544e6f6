//! Checking, before touching the kernel, that this process holds the
//! capabilities an apply needs, so a missing one is named up front instead
//! of surfacing as an EPERM halfway through.

use std::fmt;

use kiln_loader::sys::caps::{self, Capability};

use crate::desired::{Resolved, ResolvedAttach};

/// The capabilities an operation needs and those this process lacks.
#[derive(Debug, thiserror::Error)]
pub struct MissingPrivilege {
    pub operation: String,
    pub needed: Vec<Capability>,
    pub missing: Vec<Capability>,
}

impl fmt::Display for MissingPrivilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |v: &[Capability]| v.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ");
        write!(
            f,
            "{} needs {}; this process lacks {}\n  help: run as root, or grant the capabilities (systemd: AmbientCapabilities={}); CAP_SYS_ADMIN also stands in for CAP_BPF and CAP_PERFMON",
            self.operation,
            names(&self.needed),
            names(&self.missing),
            self.needed
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(" ")
        )
    }
}

/// Why a manifest needs one capability: what for, and which programs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Reason {
    pub capability: &'static str,
    /// Needed only once the deployment exists (re-apply, upgrade, rollback).
    pub only_when_deployed: bool,
    pub why: String,
    pub programs: Vec<String>,
}

/// The capabilities a non-root `kiln apply` of `resolved` needs, each with
/// its reason, in a fixed reading order: CAP_BPF always (maps, programs);
/// CAP_PERFMON for tracing attachments; CAP_NET_ADMIN for networking ones;
/// CAP_SYS_ADMIN once deployed, because the live programs, maps and links
/// are opened by id (`BPF_*_GET_FD_BY_ID` needs it).
pub fn reasons(resolved: &Resolved) -> Vec<Reason> {
    let mut tracing = Vec::new();
    let mut network = Vec::new();
    for (name, build) in &resolved.builds {
        let kind = match &build.attach {
            Some(ResolvedAttach::Tracepoint { .. }) => ("tracepoint", &mut tracing),
            Some(ResolvedAttach::RawTracepoint { .. }) => ("raw_tracepoint", &mut tracing),
            Some(ResolvedAttach::Tracing { .. }) => ("fentry/fexit/tp_btf/lsm", &mut tracing),
            Some(ResolvedAttach::Kprobe { .. }) => ("kprobe", &mut tracing),
            Some(ResolvedAttach::Uprobe { .. }) => ("uprobe", &mut tracing),
            Some(ResolvedAttach::Xdp { .. }) => ("xdp", &mut network),
            Some(ResolvedAttach::Tcx { .. }) => ("tcx", &mut network),
            Some(ResolvedAttach::Cgroup { .. }) => ("cgroup", &mut network),
            Some(ResolvedAttach::SkLookup { .. }) => ("sk_lookup", &mut network),
            Some(ResolvedAttach::Netfilter { .. }) => ("netfilter", &mut network),
            None => continue,
        };
        kind.1.push(format!("{name} ({})", kind.0));
    }
    let mut out = vec![Reason {
        capability: Capability::Bpf.name(),
        only_when_deployed: false,
        why: "create maps, load programs, pin them".into(),
        programs: Vec::new(),
    }];
    if !tracing.is_empty() {
        out.push(Reason {
            capability: Capability::Perfmon.name(),
            only_when_deployed: false,
            why: "attach tracing programs".into(),
            programs: tracing,
        });
    }
    if !network.is_empty() {
        out.push(Reason {
            capability: Capability::NetAdmin.name(),
            only_when_deployed: false,
            why: "attach networking programs".into(),
            programs: network,
        });
    }
    out.push(Reason {
        capability: Capability::SysAdmin.name(),
        only_when_deployed: true,
        why: "re-apply, upgrade, rollback: the live programs and maps are opened by id".into(),
        programs: Vec::new(),
    });
    out
}

/// What the attachments of `resolved` need (see [`reasons`]); CAP_SYS_ADMIN
/// only when an existing deployment is upgraded.
pub fn needed(resolved: &Resolved, upgrade: bool) -> Vec<Capability> {
    let all = [
        Capability::Bpf,
        Capability::Perfmon,
        Capability::NetAdmin,
        Capability::SysAdmin,
    ];
    reasons(resolved)
        .iter()
        .filter(|r| upgrade || !r.only_when_deployed)
        .filter_map(|r| all.into_iter().find(|c| c.name() == r.capability))
        .collect()
}

/// Fails, naming what is missing, unless this process holds `needed`
/// (nothing is checked when /proc/self/status cannot be read).
pub fn check(operation: &str, needed: Vec<Capability>) -> Result<(), MissingPrivilege> {
    let missing = caps::missing(&needed);
    if missing.is_empty() {
        return Ok(());
    }
    Err(MissingPrivilege {
        operation: operation.to_string(),
        needed,
        missing,
    })
}
