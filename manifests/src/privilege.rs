//! Checking, before touching the kernel, that this process holds the
//! capabilities an apply needs, so a missing one is named up front instead
//! of surfacing as an EPERM halfway through.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use kiln_loader::caps::{self, Capability};

use crate::desired::Resolved;
use kiln_loader::links::AttachPoint;

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
/// are opened by id (`BPF_*_GET_FD_BY_ID` needs it). Where
/// `kernel.perf_event_paranoid` >= 3 refuses perf events to all but
/// CAP_SYS_ADMIN and the manifest has some, CAP_SYS_ADMIN comes first, from
/// the start, in place of CAP_BPF and CAP_PERFMON (which it covers).
pub fn reasons(resolved: &Resolved) -> Vec<Reason> {
    let mut tracing = Vec::new();
    let mut network = Vec::new();
    // Tracepoint, kprobe and uprobe attachments go through perf_event_open.
    let mut perf_events = Vec::new();
    for (name, build) in &resolved.builds {
        if build
            .attach
            .as_ref()
            .is_some_and(AttachPoint::uses_perf_event)
        {
            perf_events.push(name.clone());
        }
        let Some(point) = &build.attach else {
            continue;
        };
        let mechanism = point.mechanism();
        let kind = (
            mechanism.name(),
            if mechanism.network() {
                &mut network
            } else {
                &mut tracing
            },
        );
        kind.1.push(format!("{name} ({})", kind.0));
    }
    // Debian's kernels (and others carrying its patch) default to
    // kernel.perf_event_paranoid = 3, which refuses perf_event_open to
    // anyone without CAP_SYS_ADMIN, CAP_PERFMON or not. CAP_SYS_ADMIN then
    // also covers what CAP_BPF and CAP_PERFMON would (the kernel accepts it
    // for both), so those are not asked for: each capability printed is one
    // the apply cannot do without.
    let paranoid = perf_event_paranoid().filter(|p| *p >= 3);
    let mut out = Vec::new();
    if let (Some(paranoid), false) = (paranoid, perf_events.is_empty()) {
        out.push(Reason {
            capability: Capability::SysAdmin.name(),
            only_when_deployed: false,
            why: format!(
                "perf_event_open for tracepoint, kprobe and uprobe attachments (kernel.perf_event_paranoid = {paranoid} here allows it only with CAP_SYS_ADMIN), which also covers creating maps, loading programs, pinning, attaching tracing programs, re-apply, upgrade and rollback"
            ),
            programs: perf_events,
        });
    } else {
        out.push(Reason {
            capability: Capability::Bpf.name(),
            only_when_deployed: false,
            why: "create maps, load programs, pin them".into(),
            programs: Vec::new(),
        });
        if !tracing.is_empty() {
            out.push(Reason {
                capability: Capability::Perfmon.name(),
                only_when_deployed: false,
                why: "attach tracing programs".into(),
                programs: tracing,
            });
        }
    }
    // A tracepoint's perf event is opened by its id, which only tracefs
    // gives, and tracefs is mounted root's alone (0700) by default.
    let tracepoints: Vec<String> = resolved
        .builds
        .iter()
        .filter(|(_, b)| matches!(b.attach, Some(AttachPoint::Tracepoint { .. })))
        .map(|(name, _)| format!("{name} (tracepoint)"))
        .collect();
    if !tracepoints.is_empty() && !tracefs_open_to_all() {
        out.push(Reason {
            capability: Capability::DacReadSearch.name(),
            only_when_deployed: false,
            why: "read the tracepoint's id from tracefs, which only root may read here".into(),
            programs: tracepoints,
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
    if out
        .iter()
        .any(|r| r.capability == Capability::SysAdmin.name())
    {
        return out;
    }
    out.push(Reason {
        capability: Capability::SysAdmin.name(),
        only_when_deployed: true,
        why: "re-apply, upgrade, rollback: the live programs and maps are opened by id".into(),
        programs: Vec::new(),
    });
    out
}

/// Whether anyone may read tracepoint ids from tracefs: every directory
/// down to its `events` lets others pass (tracefs's own root is 0700 by
/// default, whatever the modes below it).
fn tracefs_open_to_all() -> bool {
    use std::os::unix::fs::PermissionsExt;
    [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .iter()
    .map(Path::new)
    .find(|events| events.is_dir())
    .is_some_and(|events| {
        events
            .ancestors()
            .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
    })
}

/// `kernel.perf_event_paranoid`, when it can be read.
fn perf_event_paranoid() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// What the attachments of `resolved` need (see [`reasons`]); CAP_SYS_ADMIN
/// only when an existing deployment is upgraded.
pub fn needed(resolved: &Resolved, upgrade: bool) -> Vec<Capability> {
    let all = [
        Capability::Bpf,
        Capability::Perfmon,
        Capability::DacReadSearch,
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

/// What a bpffs must delegate for a BPF token (kernel 6.9+) to cover the
/// loads of `resolved`: the mount options `delegate_cmds`, `delegate_maps`,
/// `delegate_progs` and `delegate_attachs`, in the kernel's names.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Delegation {
    pub cmds: Vec<&'static str>,
    pub maps: Vec<&'static str>,
    pub progs: Vec<&'static str>,
    /// The expected attach type of every program load. A program without
    /// one is loaded with 0, which the token checks as `cgroup_inet_ingress`.
    pub attachs: Vec<&'static str>,
}

impl Delegation {
    /// As `mount -t bpf -o ...` takes them.
    pub fn mount_options(&self) -> String {
        [
            ("delegate_cmds", &self.cmds),
            ("delegate_maps", &self.maps),
            ("delegate_progs", &self.progs),
            ("delegate_attachs", &self.attachs),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", v.join(":")))
        .collect::<Vec<_>>()
        .join(",")
    }
}

/// The kernel's names of `enum bpf_attach_type` (without `BPF_`), by value.
const ATTACH_TYPE_NAMES: [&str; 56] = [
    "cgroup_inet_ingress",
    "cgroup_inet_egress",
    "cgroup_inet_sock_create",
    "cgroup_sock_ops",
    "sk_skb_stream_parser",
    "sk_skb_stream_verdict",
    "cgroup_device",
    "sk_msg_verdict",
    "cgroup_inet4_bind",
    "cgroup_inet6_bind",
    "cgroup_inet4_connect",
    "cgroup_inet6_connect",
    "cgroup_inet4_post_bind",
    "cgroup_inet6_post_bind",
    "cgroup_udp4_sendmsg",
    "cgroup_udp6_sendmsg",
    "lirc_mode2",
    "flow_dissector",
    "cgroup_sysctl",
    "cgroup_udp4_recvmsg",
    "cgroup_udp6_recvmsg",
    "cgroup_getsockopt",
    "cgroup_setsockopt",
    "trace_raw_tp",
    "trace_fentry",
    "trace_fexit",
    "modify_return",
    "lsm_mac",
    "trace_iter",
    "cgroup_inet4_getpeername",
    "cgroup_inet6_getpeername",
    "cgroup_inet4_getsockname",
    "cgroup_inet6_getsockname",
    "xdp_devmap",
    "cgroup_inet_sock_release",
    "xdp_cpumap",
    "sk_lookup",
    "xdp",
    "sk_skb_verdict",
    "sk_reuseport_select",
    "sk_reuseport_select_or_migrate",
    "perf_event",
    "trace_kprobe_multi",
    "lsm_cgroup",
    "struct_ops",
    "netfilter",
    "tcx_ingress",
    "tcx_egress",
    "trace_uprobe_multi",
    "cgroup_unix_connect",
    "cgroup_unix_sendmsg",
    "cgroup_unix_recvmsg",
    "cgroup_unix_getpeername",
    "cgroup_unix_getsockname",
    "netkit_primary",
    "netkit_peer",
];

/// The delegation a token needs for `resolved` (see [`Delegation`]): every
/// map of the objects it loads from (global data included), every program
/// type and expected attach type it loads.
pub fn delegation(resolved: &Resolved) -> Delegation {
    let mut maps = std::collections::BTreeSet::new();
    let mut progs = std::collections::BTreeSet::new();
    let mut attachs = std::collections::BTreeSet::new();
    let mut btf = false;
    for build in resolved.builds.values() {
        let Some(spec) = resolved.objects.specs.get(&build.object) else {
            continue;
        };
        btf |= spec.btf.is_some();
        maps.extend(spec.maps.iter().map(|m| m.map_type.name()));
        if let Some(p) = spec.programs.iter().find(|p| p.name == build.function) {
            progs.insert(kiln_loader::probe::program_type_name(p.kind.program_type()));
            let attach = p.kind.expected_attach_type().map_or(0, |a| a.0);
            attachs.insert(
                ATTACH_TYPE_NAMES
                    .get(attach as usize)
                    .copied()
                    .unwrap_or("unknown"),
            );
        }
    }
    let mut cmds = Vec::new();
    if !maps.is_empty() {
        cmds.push("map_create");
    }
    if btf {
        cmds.push("btf_load");
    }
    if !progs.is_empty() {
        cmds.push("prog_load");
    }
    Delegation {
        cmds,
        maps: maps.into_iter().collect(),
        progs: progs.into_iter().collect(),
        attachs: attachs.into_iter().collect(),
    }
}

/// The `delegate_*` options of the bpffs mounted at `bpffs`, as the kernel
/// shows them in `/proc/self/mountinfo` (option → names, `any` included);
/// `None` when no bpffs is mounted exactly there.
pub fn mounted_delegation(bpffs: &Path) -> Option<BTreeMap<String, Vec<String>>> {
    let target = std::fs::canonicalize(bpffs).ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // The last line for a mount point is the mount on top, the one a path reaches.
    mountinfo.lines().rev().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        let mount_point = unescape_mountinfo(mount.split(' ').nth(4)?);
        let mut fs = fs.split(' ');
        if fs.next()? != "bpf" || Path::new(&mount_point) != target {
            return None;
        }
        Some(parse_delegation(fs.nth(1).unwrap_or("")))
    })
}

/// Mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape_mountinfo(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `delegate_cmds=map_create:btf_load,...` out of a bpffs's super options.
pub fn parse_delegation(super_options: &str) -> BTreeMap<String, Vec<String>> {
    super_options
        .split(',')
        .filter_map(|o| o.split_once('='))
        .filter(|(k, _)| k.starts_with("delegate_"))
        .map(|(k, v)| (k.to_owned(), v.split(':').map(str::to_owned).collect()))
        .collect()
}

/// What `needed` asks of a token that the bpffs options `mounted` do not
/// delegate, as `delegate_maps=hash` items (empty when all is delegated).
pub fn missing_delegation(
    needed: &Delegation,
    mounted: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let Delegation {
        cmds,
        maps,
        progs,
        attachs,
    } = needed;
    let mut missing = Vec::new();
    for (option, names) in [
        ("delegate_cmds", cmds),
        ("delegate_maps", maps),
        ("delegate_progs", progs),
        ("delegate_attachs", attachs),
    ] {
        let granted = mounted.get(option).map(Vec::as_slice).unwrap_or_default();
        if granted.iter().any(|g| g == "any") {
            continue;
        }
        let lacking: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !granted.iter().any(|g| g == n))
            .collect();
        if !lacking.is_empty() {
            missing.push(format!("{option}={}", lacking.join(":")));
        }
    }
    missing
}

/// The programs a token alone cannot attach: tracepoints, kprobes and
/// uprobes attach through `perf_event_open`, which the kernel checks against
/// the initial namespace (`kernel.perf_event_paranoid`, CAP_PERFMON), not
/// against a token. A raw tracepoint attaches with bpf() alone.
pub fn beyond_token(resolved: &Resolved) -> Vec<String> {
    resolved
        .builds
        .iter()
        .filter_map(|(name, build)| match &build.attach {
            Some(a) if a.uses_perf_event() => Some(format!("{name} ({})", a.mechanism())),
            _ => None,
        })
        .collect()
}

/// A refusal of a load through a BPF token, with what the bpffs lacks.
#[derive(Debug, thiserror::Error)]
#[error("through the BPF token: {0}")]
pub struct TokenRefusal(pub String);

/// What to add to a failed apply through a token from `bpffs`: the
/// refusal, when bpf() refused something through the token (`refused`) or
/// the mount does not delegate all the manifest needs; `None` when the
/// failure has nothing to do with the token.
pub fn token_refusal(resolved: &Resolved, bpffs: &Path, refused: bool) -> Option<TokenRefusal> {
    let undelegated = mounted_delegation(bpffs)
        .is_none_or(|mounted| !missing_delegation(&delegation(resolved), &mounted).is_empty());
    (refused || undelegated).then(|| TokenRefusal(token_eperm_hint(resolved, bpffs)))
}

/// Why a load through a token from `bpffs` answered EPERM: the delegation
/// the manifest needs that the mount lacks, or, when it has it all, the
/// capability the token cannot stand in for.
pub fn token_eperm_hint(resolved: &Resolved, bpffs: &Path) -> String {
    let needed = delegation(resolved);
    let Some(mounted) = mounted_delegation(bpffs) else {
        return format!(
            "no bpffs is mounted at {} (a token needs one mounted with -o {})",
            bpffs.display(),
            needed.mount_options()
        );
    };
    let missing = missing_delegation(&needed, &mounted);
    if missing.is_empty() {
        return format!(
            "the bpffs at {} delegates everything this manifest loads ({}); the refusal is the attachment's or a LSM's (a token covers map_create, btf_load and prog_load; attaching still needs what the hook asks of the user namespace, and tracepoints through perf events need kernel.perf_event_paranoid <= 0 or CAP_PERFMON)",
            bpffs.display(),
            needed.mount_options()
        );
    }
    format!(
        "the bpffs at {} does not delegate {}: mount it with -o {}",
        bpffs.display(),
        missing.join(", "),
        needed.mount_options()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_the_mount_does_not_delegate() {
        let needed = Delegation {
            cmds: vec!["map_create", "btf_load", "prog_load"],
            maps: vec!["array", "hash"],
            progs: vec!["raw_tracepoint"],
            attachs: vec!["cgroup_inet_ingress"],
        };
        let mounted = parse_delegation(
            "rw,uid=0,delegate_cmds=map_create:prog_load,delegate_maps=hash,delegate_progs=any,delegate_attachs=cgroup_inet_ingress",
        );
        assert_eq!(
            missing_delegation(&needed, &mounted),
            ["delegate_cmds=btf_load", "delegate_maps=array"]
        );
        assert!(
            missing_delegation(
                &needed,
                &parse_delegation(&format!("rw,{}", needed.mount_options()))
            )
            .is_empty()
        );
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(r"/sys/fs/my\040bpf"), "/sys/fs/my bpf");
        assert_eq!(unescape_mountinfo(r"/a\\b"), r"/a\\b");
    }
}
