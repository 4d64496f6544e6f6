//! Attaching loaded programs to kernel hooks, one file per mechanism.
//!
//! Every attach function takes the program as a [`BorrowedFd`] (so it works
//! with any program handle) and returns a value implementing [`Link`]: the
//! live attachment. Dropping a link detaches it, except where the kernel keeps
//! the attachment by itself and [`Link::keep`] was called, or the link was
//! pinned. Kernel `bpf_link`s are [`FdLink`]s: pinnable, re-openable from the
//! pin by a later process ([`FdLink::from_pin`]), updatable in place and
//! introspectable ([`Link::info`]).
//!
//! Mechanisms that predate `bpf_link` (netlink XDP, cls_bpf filters,
//! `BPF_PROG_ATTACH`, socket options, `PERF_EVENT_IOC_SET_BPF`) get their own
//! link types with the same interface, and are used as fallbacks.

pub mod attach_point;
pub mod auto;
pub mod cgroup;
pub mod freplace;
pub mod iter;
pub mod kprobe;
pub mod multi;
pub mod netfilter;
pub mod netkit;
pub mod netns;
pub mod perf;
pub mod prog_attach;
pub mod program_ext;
pub mod raw_tracepoint;
pub mod socket_filter;
pub mod sockmap;
pub mod struct_ops;
pub mod tc;
pub mod tracepoint;
pub mod tracing;
pub mod uprobe;
pub mod usdt;
pub mod xdp;
pub mod xdp_dispatcher;

pub use attach_point::{AttachPoint, attach, attach_labelled};
pub use auto::auto_attach;
pub use program_ext::ProgramAttach;

use crate::sys::SysError;
use crate::sys::attr::LinkInfoRaw;
use crate::sys::link_attr::{self, u32_at, u64_at};
use crate::sys::object::{self, IdKind, OpenFlags};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// How a program is attached: names the mechanism in errors and tells which
/// capability it needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Mechanism {
    /// A tracepoint through a perf event.
    ///
    /// Minimum kernel version: 4.7.
    Tracepoint,
    /// A raw tracepoint (`BPF_RAW_TRACEPOINT_OPEN`).
    ///
    /// Minimum kernel version: 4.17.
    RawTracepoint,
    /// tp_btf, fentry, fexit, fmod_ret.
    Tracing,
    /// An LSM hook.
    ///
    /// Minimum kernel version: 5.7.
    Lsm,
    /// A kprobe or kretprobe through a perf event.
    ///
    /// Minimum kernel version: 4.1.
    Kprobe,
    /// Many kernel functions in one link (`kprobe.multi`, fprobe).
    ///
    /// Minimum kernel version: 5.18.
    KprobeMulti,
    /// A uprobe or uretprobe through a perf event.
    ///
    /// Minimum kernel version: 4.3.
    Uprobe,
    /// Many user functions in one link (`uprobe.multi`).
    ///
    /// Minimum kernel version: 6.6.
    UprobeMulti,
    /// A perf event the caller opened (sampling, counters).
    ///
    /// Minimum kernel version: 4.9.
    PerfEvent,
    /// A BPF iterator.
    ///
    /// Minimum kernel version: 5.8.
    Iter,
    /// XDP on an interface (netlink, or a bpf_link from 5.9).
    ///
    /// Minimum kernel version: 4.8.
    Xdp,
    /// cls_bpf on a clsact qdisc, over netlink.
    Tc,
    /// tcx on an interface's ingress or egress.
    ///
    /// Minimum kernel version: 6.6.
    Tcx,
    /// `SO_ATTACH_BPF` on a socket.
    ///
    /// Minimum kernel version: 3.19.
    SocketFilter,
    /// `SO_ATTACH_REUSEPORT_EBPF` on a socket of a reuseport group.
    SkReuseport,
    /// A sockmap or sockhash (sk_skb, sk_msg).
    ///
    /// Minimum kernel version: 4.14.
    SockMap,
    /// A network namespace's socket lookup.
    ///
    /// Minimum kernel version: 5.9.
    SkLookup,
    /// A network namespace's flow dissector.
    ///
    /// Minimum kernel version: 4.20.
    FlowDissector,
    /// A cgroup hook (`BPF_PROG_ATTACH`, or a bpf_link from 5.7).
    ///
    /// Minimum kernel version: 4.10.
    Cgroup,
    /// A netfilter hook.
    ///
    /// Minimum kernel version: 6.4.
    Netfilter,
    /// A netkit device.
    ///
    /// Minimum kernel version: 6.7.
    Netkit,
    /// A struct_ops map (registered, or a bpf_link from 6.4).
    ///
    /// Minimum kernel version: 5.6.
    StructOps,
    /// A function of another program replaced (freplace).
    ///
    /// Minimum kernel version: 5.10.
    Freplace,
    /// A `bpf_link` reopened from a pin or id before its type is known.
    Link,
}

impl Mechanism {
    /// The mechanism's name in messages (`tracepoint`, `kprobe.multi`, ...).
    pub fn name(self) -> &'static str {
        use Mechanism::*;
        match self {
            Tracepoint => "tracepoint",
            RawTracepoint => "raw_tracepoint",
            Tracing => "tracing",
            Lsm => "lsm",
            Kprobe => "kprobe",
            KprobeMulti => "kprobe.multi",
            Uprobe => "uprobe",
            UprobeMulti => "uprobe.multi",
            PerfEvent => "perf_event",
            Iter => "iter",
            Xdp => "xdp",
            Tc => "tc",
            Tcx => "tcx",
            SocketFilter => "socket_filter",
            SkReuseport => "sk_reuseport",
            SockMap => "sockmap",
            SkLookup => "sk_lookup",
            FlowDissector => "flow_dissector",
            Cgroup => "cgroup",
            Netfilter => "netfilter",
            Netkit => "netkit",
            StructOps => "struct_ops",
            Freplace => "freplace",
            Link => "bpf_link",
        }
    }

    /// Whether the kernel checks `CAP_NET_ADMIN` to attach with this
    /// mechanism (network hooks), rather than `CAP_PERFMON` (tracing).
    pub fn network(self) -> bool {
        use Mechanism::*;
        matches!(
            self,
            Xdp | Tc | Tcx | SockMap | SkLookup | FlowDissector | Cgroup | Netfilter | Netkit
        )
    }

    /// The capabilities the kernel checks for this mechanism (besides `CAP_BPF`).
    pub fn capability(self) -> &'static str {
        use Mechanism::*;
        match self {
            Tracepoint | RawTracepoint | Tracing | Lsm | Kprobe | KprobeMulti | Uprobe
            | UprobeMulti | PerfEvent | Iter | StructOps | Freplace => {
                "CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)"
            }
            Xdp | Tc | Tcx | SockMap | SkLookup | FlowDissector | Cgroup | Netfilter | Netkit => {
                "CAP_BPF and CAP_NET_ADMIN"
            }
            SocketFilter | SkReuseport => "CAP_BPF for the program load; none to attach",
            Link => "CAP_BPF",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an attach operation failed. Every variant names the mechanism and the target.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The kernel refused: errno, and on EPERM the capability that is missing.
    #[error("{mechanism}: {op} {target}{}", eperm_hint(*.mechanism, .source))]
    Kernel {
        /// How the program was being attached.
        mechanism: Mechanism,
        /// The operation (`perf_event_open`, `link_create`, ...).
        op: &'static str,
        /// What it was being attached to.
        target: String,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
    /// The target cannot be resolved (no such tracepoint, interface, symbol...).
    #[error("{mechanism}: target {target}: {reason}")]
    Target {
        /// How the program was being attached.
        mechanism: Mechanism,
        /// What it was being attached to.
        target: String,
        /// Why.
        reason: String,
    },
    /// The operation does not exist for this kind of link.
    #[error("{mechanism}: {op} is not supported: {reason}")]
    Unsupported {
        /// How the program was being attached.
        mechanism: Mechanism,
        /// The operation (`perf_event_open`, `link_create`, ...).
        op: &'static str,
        /// Why.
        reason: String,
    },
}

fn eperm_hint(mechanism: Mechanism, err: &std::io::Error) -> String {
    use crate::sys::caps::{self, Capability};
    match err.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            use Mechanism::*;
            let needed: &[Capability] = match mechanism {
                Xdp | Tc | Tcx | SockMap | SkLookup | FlowDissector | Cgroup | Netfilter
                | Netkit => &[Capability::Bpf, Capability::NetAdmin],
                SocketFilter | SkReuseport => &[],
                Link => &[Capability::Bpf],
                _ => &[Capability::Bpf, Capability::Perfmon],
            };
            // Say which of them this process really lacks (CapEff), so the
            // operator knows whether to grant a capability or look elsewhere.
            let lacking: Vec<&str> = caps::missing(needed).iter().map(|c| c.name()).collect();
            if needed.is_empty() {
                format!(" ({})", mechanism.capability())
            } else if lacking.is_empty() {
                format!(
                    " (needs {}, which this process has: kernel lockdown, an LSM or a sysctl refused)",
                    mechanism.capability()
                )
            } else {
                format!(
                    " (needs {}; this process lacks {})",
                    mechanism.capability(),
                    lacking.join(", ")
                )
            }
        }
        _ => String::new(),
    }
}

impl LinkError {
    pub(crate) fn kernel(
        mechanism: Mechanism,
        op: &'static str,
        target: impl Into<String>,
        source: std::io::Error,
    ) -> Self {
        LinkError::Kernel {
            mechanism,
            op,
            target: target.into(),
            source,
        }
    }

    pub(crate) fn sys(
        mechanism: Mechanism,
        op: &'static str,
        target: impl Into<String>,
        e: SysError,
    ) -> Self {
        Self::kernel(mechanism, op, target, e.source)
    }

    pub(crate) fn target(
        mechanism: Mechanism,
        target: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        LinkError::Target {
            mechanism,
            target: target.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(
        mechanism: Mechanism,
        op: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        LinkError::Unsupported {
            mechanism,
            op,
            reason: reason.into(),
        }
    }

    /// The errno, when the kernel refused.
    pub fn errno(&self) -> Option<i32> {
        match self {
            LinkError::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// A live attachment of a program to a hook.
pub trait Link: fmt::Debug + Send + Sync {
    /// How the program is attached.
    fn mechanism(&self) -> Mechanism;

    /// What the program is attached to, for messages (`tracepoint syscalls/sys_enter_getpid`).
    fn target(&self) -> String;

    /// The kernel `bpf_link` behind this attachment, if any.
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// Pins the link in bpffs, so it outlives this process.
    /// Minimum kernel version: 5.7 (bpf_link), 5.9 for tracepoints/kprobes.
    fn pin(&mut self, path: &Path) -> Result<(), LinkError> {
        let _ = path;
        Err(LinkError::unsupported(
            self.mechanism(),
            "pin",
            "this attachment is not a bpf_link (use keep() to leave it attached)",
        ))
    }

    /// Replaces the attached program atomically; with `old_prog`, only if the
    /// currently attached program is that one.
    fn update(
        &mut self,
        new_prog: BorrowedFd<'_>,
        old_prog: Option<BorrowedFd<'_>>,
    ) -> Result<(), LinkError>;

    /// Detaches now. Afterwards the link is inert; dropping it does nothing.
    fn detach(&mut self) -> Result<(), LinkError>;

    /// What the kernel reports about the link.
    fn info(&self) -> Result<LinkInfo, LinkError> {
        match self.fd() {
            Some(fd) => link_info(self.mechanism(), fd),
            None => Err(LinkError::unsupported(
                self.mechanism(),
                "info",
                "this attachment is not a bpf_link",
            )),
        }
    }

    /// Leaves the attachment in place when this handle is dropped (for the
    /// mechanisms the kernel keeps without an fd: netlink XDP, tc filters,
    /// `BPF_PROG_ATTACH`). A `bpf_link` needs [`Link::pin`] for that instead.
    fn keep(&mut self) -> Result<(), LinkError> {
        Err(LinkError::unsupported(
            self.mechanism(),
            "keep",
            "the kernel drops this attachment with its fd: pin it instead",
        ))
    }
}

/// `enum bpf_link_type`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum LinkType {
    /// `BPF_LINK_TYPE_RAW_TRACEPOINT`.
    ///
    /// Minimum kernel version: 5.7.
    RawTracepoint,
    /// `BPF_LINK_TYPE_TRACING`.
    ///
    /// Minimum kernel version: 5.7.
    Tracing,
    /// `BPF_LINK_TYPE_CGROUP`.
    ///
    /// Minimum kernel version: 5.7.
    Cgroup,
    /// `BPF_LINK_TYPE_ITER`.
    ///
    /// Minimum kernel version: 5.8.
    Iter,
    /// `BPF_LINK_TYPE_NETNS`.
    ///
    /// Minimum kernel version: 5.8.
    Netns,
    /// `BPF_LINK_TYPE_XDP`.
    ///
    /// Minimum kernel version: 5.9.
    Xdp,
    /// `BPF_LINK_TYPE_PERF_EVENT`.
    ///
    /// Minimum kernel version: 5.15.
    PerfEvent,
    /// `BPF_LINK_TYPE_KPROBE_MULTI`.
    ///
    /// Minimum kernel version: 5.18.
    KprobeMulti,
    /// `BPF_LINK_TYPE_STRUCT_OPS`.
    ///
    /// Minimum kernel version: 6.4.
    StructOps,
    /// `BPF_LINK_TYPE_NETFILTER`.
    ///
    /// Minimum kernel version: 6.4.
    Netfilter,
    /// `BPF_LINK_TYPE_TCX`.
    ///
    /// Minimum kernel version: 6.6.
    Tcx,
    /// `BPF_LINK_TYPE_UPROBE_MULTI`.
    ///
    /// Minimum kernel version: 6.6.
    UprobeMulti,
    /// `BPF_LINK_TYPE_NETKIT`.
    ///
    /// Minimum kernel version: 6.7.
    Netkit,
    /// `BPF_LINK_TYPE_SOCKMAP`.
    ///
    /// Minimum kernel version: 6.10.
    Sockmap,
    /// A type newer than this library.
    Unknown(u32),
}

impl LinkType {
    /// The type a `bpf_link_info`'s `type` field names.
    pub fn from_raw(raw: u32) -> Self {
        use LinkType::*;
        match raw {
            1 => RawTracepoint,
            2 => Tracing,
            3 => Cgroup,
            4 => Iter,
            5 => Netns,
            6 => Xdp,
            7 => PerfEvent,
            8 => KprobeMulti,
            9 => StructOps,
            10 => Netfilter,
            11 => Tcx,
            12 => UprobeMulti,
            13 => Netkit,
            14 => Sockmap,
            n => Unknown(n),
        }
    }

    /// Whether the kernel's info for a link of this type names its target
    /// (an interface, cgroup, namespace, hook or map), so that a link whose
    /// target cannot be read back has lost it. Perf-event, raw tracepoint,
    /// tracing, iterator and multi-probe links are named by their program's
    /// section instead; [`AttachPoint::reported`] says the same per point.
    pub fn reports_target(self) -> bool {
        use LinkType::*;
        matches!(
            self,
            Cgroup | Xdp | Tcx | Netns | Netfilter | Netkit | Sockmap
        )
    }

    /// The mechanism that creates links of this type.
    pub fn mechanism(self) -> Mechanism {
        use LinkType::*;
        match self {
            RawTracepoint => Mechanism::RawTracepoint,
            Tracing => Mechanism::Tracing,
            Cgroup => Mechanism::Cgroup,
            Iter => Mechanism::Iter,
            Netns => Mechanism::SkLookup,
            Xdp => Mechanism::Xdp,
            PerfEvent => Mechanism::PerfEvent,
            Unknown(_) => Mechanism::Link,
            KprobeMulti => Mechanism::KprobeMulti,
            StructOps => Mechanism::StructOps,
            Netfilter => Mechanism::Netfilter,
            Tcx => Mechanism::Tcx,
            UprobeMulti => Mechanism::UprobeMulti,
            Netkit => Mechanism::Netkit,
            Sockmap => Mechanism::SockMap,
        }
    }
}

/// Type-specific details of a link, as `BPF_OBJ_GET_INFO_BY_FD` reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkTarget {
    /// tp_btf, fentry, fexit, fmod_ret, LSM and freplace links.
    Tracing {
        /// The `bpf_attach_type`.
        attach_type: u32,
        /// The id of the target program (freplace) or BTF object (0: vmlinux).
        target_obj_id: u32,
        /// The BTF id of the target function or hook.
        target_btf_id: u32,
    },
    /// Cgroup links.
    Cgroup {
        /// The cgroup's id.
        cgroup_id: u64,
        /// The `bpf_attach_type`.
        attach_type: u32,
    },
    /// Network namespace links (sk_lookup, flow dissector).
    Netns {
        /// The network namespace's inode number.
        netns_ino: u32,
        /// The `bpf_attach_type`.
        attach_type: u32,
    },
    /// XDP links.
    Xdp {
        /// The interface's index.
        ifindex: u32,
    },
    /// Netfilter links.
    Netfilter {
        /// The protocol family (`NFPROTO_*`).
        pf: u32,
        /// The hook (`NF_INET_*`).
        hooknum: u32,
        /// The hook priority.
        priority: i32,
        /// `BPF_F_NETFILTER_*` flags.
        flags: u32,
    },
    /// tcx and netkit.
    Device {
        /// The interface's index.
        ifindex: u32,
        /// The `bpf_attach_type`.
        attach_type: u32,
    },
    /// Sockmap links.
    Sockmap {
        /// The map's id.
        map_id: u32,
        /// The `bpf_attach_type`.
        attach_type: u32,
    },
    /// struct_ops links.
    StructOps {
        /// The map's id.
        map_id: u32,
    },
    /// Perf event links: the perf link kind (`BPF_PERF_EVENT_*`), from 6.6.
    PerfEvent {
        /// The `BPF_PERF_EVENT_*` kind.
        kind: u32,
    },
    /// A link type without details, or one newer than this library.
    Other,
}

/// What the kernel reports about a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// The link's type.
    pub link_type: LinkType,
    /// The link's id (`bpftool link show`).
    pub id: u32,
    /// The id of the attached program.
    pub prog_id: u32,
    /// What it is attached to.
    pub target: LinkTarget,
}

/// Reads `struct bpf_link_info` of a link fd. Minimum kernel version: 5.8.
pub fn link_info(mechanism: Mechanism, fd: BorrowedFd<'_>) -> Result<LinkInfo, LinkError> {
    let raw: LinkInfoRaw =
        object::info_by_fd(fd).map_err(|e| LinkError::sys(mechanism, "info", "link", e))?;
    let link_type = LinkType::from_raw(raw.link_type);
    // The type-specific union, from byte 16 of `struct bpf_link_info`.
    let buf = &raw.data;
    let u = |off: usize| u32_at(buf, off);
    let target = match link_type {
        LinkType::Tracing => LinkTarget::Tracing {
            attach_type: u(0),
            target_obj_id: u(4),
            target_btf_id: u(8),
        },
        LinkType::Cgroup => LinkTarget::Cgroup {
            cgroup_id: u64_at(buf, 0),
            attach_type: u(8),
        },
        LinkType::Netns => LinkTarget::Netns {
            netns_ino: u(0),
            attach_type: u(4),
        },
        LinkType::Xdp => LinkTarget::Xdp { ifindex: u(0) },
        LinkType::Netfilter => LinkTarget::Netfilter {
            pf: u(0),
            hooknum: u(4),
            priority: u(8) as i32,
            flags: u(12),
        },
        LinkType::Tcx | LinkType::Netkit => LinkTarget::Device {
            ifindex: u(0),
            attach_type: u(4),
        },
        LinkType::Sockmap => LinkTarget::Sockmap {
            map_id: u(0),
            attach_type: u(4),
        },
        LinkType::StructOps => LinkTarget::StructOps { map_id: u(0) },
        LinkType::PerfEvent => LinkTarget::PerfEvent { kind: u(0) },
        _ => LinkTarget::Other,
    };
    Ok(LinkInfo {
        link_type,
        id: raw.id,
        prog_id: raw.prog_id,
        target,
    })
}

/// A kernel `bpf_link`: the attachment lives as long as this fd, or a pin of it.
///
/// Minimum kernel version: 5.7 (the first link types: cgroup, tracing, raw
/// tracepoint); each mechanism documents its own.
#[derive(Debug)]
pub struct FdLink {
    fd: Option<OwnedFd>,
    mechanism: Mechanism,
    target: String,
}

impl FdLink {
    pub(crate) fn new(fd: OwnedFd, mechanism: Mechanism, target: impl Into<String>) -> Self {
        FdLink {
            fd: Some(fd),
            mechanism,
            target: target.into(),
        }
    }

    /// Opens a pinned link, so this process owns a handle to it. The
    /// attachment stays while the pin or any handle exists.
    pub fn from_pin(path: impl AsRef<Path>) -> Result<Self, LinkError> {
        let path = path.as_ref();
        let fd = object::obj_get(path, OpenFlags::ReadWrite).map_err(|e| {
            LinkError::kernel(
                Mechanism::Link,
                "open pinned link",
                path.display().to_string(),
                e.source,
            )
        })?;
        let mechanism = link_info(Mechanism::Link, fd.as_fd())?
            .link_type
            .mechanism();
        Ok(FdLink::new(
            fd,
            mechanism,
            format!("pinned link {}", path.display()),
        ))
    }

    /// Opens a link by its kernel id (as `bpftool link` lists them).
    pub fn from_id(id: u32) -> Result<Self, LinkError> {
        let fd = object::fd_by_id(IdKind::Link, id)
            .map_err(|e| LinkError::sys(Mechanism::Link, "open link", format!("id {id}"), e))?;
        let mechanism = link_info(Mechanism::Link, fd.as_fd())?
            .link_type
            .mechanism();
        Ok(FdLink::new(fd, mechanism, format!("link id {id}")))
    }

    /// Removes a pin. The link goes away when no other pin or handle holds it.
    pub fn unpin(path: impl AsRef<Path>) -> Result<(), LinkError> {
        let path = path.as_ref();
        std::fs::remove_file(path)
            .map_err(|e| LinkError::kernel(Mechanism::Link, "unpin", path.display().to_string(), e))
    }

    /// Gives up the fd (for callers that manage it themselves).
    pub fn into_fd(mut self) -> Option<OwnedFd> {
        self.fd.take()
    }

    fn live_fd(&self, op: &'static str) -> Result<BorrowedFd<'_>, LinkError> {
        self.fd
            .as_ref()
            .map(|f| f.as_fd())
            .ok_or_else(|| LinkError::unsupported(self.mechanism, op, "link already detached"))
    }
}

impl Link for FdLink {
    fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    fn target(&self) -> String {
        self.target.clone()
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    fn pin(&mut self, path: &Path) -> Result<(), LinkError> {
        let fd = self.live_fd("pin")?;
        object::obj_pin(fd, path).map_err(|e| {
            LinkError::kernel(
                self.mechanism,
                "pin",
                format!("{} at {}", self.target, path.display()),
                e.source,
            )
        })
    }

    /// `BPF_LINK_UPDATE`. Minimum kernel version: 5.7 (cgroup), later per type;
    /// perf-event-based links (tracepoint, kprobe) refuse with EOPNOTSUPP.
    fn update(
        &mut self,
        new_prog: BorrowedFd<'_>,
        old_prog: Option<BorrowedFd<'_>>,
    ) -> Result<(), LinkError> {
        let fd = self.live_fd("update")?;
        link_attr::link_update(fd, new_prog, old_prog)
            .map_err(|e| LinkError::sys(self.mechanism, "update", self.target.clone(), e))
    }

    /// `BPF_LINK_DETACH`, falling back to closing the fd where the kernel
    /// lacks it (before 5.9) or the link type does not support it.
    fn detach(&mut self) -> Result<(), LinkError> {
        let Some(fd) = self.fd.take() else {
            return Ok(());
        };
        match link_attr::link_detach(fd.as_fd()) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.errno(), libc::EINVAL | libc::EOPNOTSUPP) => Ok(()),
            Err(e) => Err(LinkError::sys(
                self.mechanism,
                "detach",
                self.target.clone(),
                e,
            )),
        }
    }
}

/// Ids of every link in the kernel (`BPF_LINK_GET_NEXT_ID`). Minimum kernel version: 5.8.
pub fn link_ids() -> Result<Vec<u32>, LinkError> {
    let mut ids = Vec::new();
    let mut cur = 0;
    while let Some(next) = object::next_id(IdKind::Link, cur)
        .map_err(|e| LinkError::sys(Mechanism::Link, "list links", "kernel", e))?
    {
        ids.push(next);
        cur = next;
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eperm_names_the_capability_and_whether_it_is_held() {
        let eperm = std::io::Error::from_raw_os_error(libc::EPERM);
        let hint = eperm_hint(Mechanism::Xdp, &eperm);
        assert!(hint.contains("CAP_NET_ADMIN"), "{hint}");
        let eff = crate::sys::caps::effective().unwrap_or(0);
        let held = crate::sys::caps::has(eff, crate::sys::caps::Capability::NetAdmin)
            && crate::sys::caps::missing(&[crate::sys::caps::Capability::Bpf]).is_empty();
        if held {
            assert!(hint.contains("which this process has"), "{hint}");
        } else {
            assert!(hint.contains("this process lacks"), "{hint}");
        }
        assert_eq!(
            eperm_hint(
                Mechanism::Xdp,
                &std::io::Error::from_raw_os_error(libc::ENOENT)
            ),
            ""
        );
    }
}
