//! Checking, before touching the kernel, that this process holds the
//! capabilities an apply needs, so a missing one is named up front instead
//! of surfacing as an EPERM halfway through.

use std::collections::BTreeSet;
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

/// What the attachments of `resolved` need: CAP_BPF always, CAP_PERFMON for
/// tracing attachments, CAP_NET_ADMIN for networking ones, and CAP_SYS_ADMIN
/// when an existing deployment is upgraded (programs are opened by id).
pub fn needed(resolved: &Resolved, upgrade: bool) -> Vec<Capability> {
    let mut need = BTreeSet::from([Capability::Bpf]);
    for build in resolved.builds.values() {
        match &build.attach {
            Some(
                ResolvedAttach::Tracepoint { .. }
                | ResolvedAttach::RawTracepoint { .. }
                | ResolvedAttach::Tracing { .. }
                | ResolvedAttach::Kprobe { .. }
                | ResolvedAttach::Uprobe { .. },
            ) => {
                need.insert(Capability::Perfmon);
            }
            Some(
                ResolvedAttach::Xdp { .. }
                | ResolvedAttach::Tcx { .. }
                | ResolvedAttach::Cgroup { .. }
                | ResolvedAttach::SkLookup { .. }
                | ResolvedAttach::Netfilter { .. },
            ) => {
                need.insert(Capability::NetAdmin);
            }
            None => {}
        }
    }
    if upgrade {
        need.insert(Capability::SysAdmin);
    }
    // In a fixed reading order (the derived Ord follows the kernel's numbers).
    [
        Capability::Bpf,
        Capability::Perfmon,
        Capability::NetAdmin,
        Capability::SysAdmin,
    ]
    .into_iter()
    .filter(|c| need.contains(c))
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
