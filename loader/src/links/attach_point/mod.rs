//! The attach vocabulary: one [`AttachPoint`] per place a program can run,
//! with its parameters. It is the only translation of attach kinds in Kiln:
//!
//! - a section name gives a default point ([`AttachPoint::from_section`]);
//! - [`attach`] attaches a program to a point, choosing `bpf_link`, netlink
//!   or a legacy mechanism by probing the kernel (never by retrying on EINVAL);
//! - a live link maps back to a point ([`AttachPoint::observed`]), so what a
//!   caller shows as "attached to" is what the kernel reports;
//! - the words of a manifest (`ingress`, `generic`, `ipv4`, `input`,
//!   `cgroup_inet_ingress`) are read and written here ([`names`]).

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kiln_obj::{AttachType, Direction, ProgramKind};

use super::netfilter::{NetfilterFlags, NfHook, NfProto};
use super::netkit::NetkitSide;
use super::sockmap::{self, SockMapHook};
use super::tc::{ClsBpfOptions, TcxAnchor};
use super::xdp::XdpFlags;
use super::{
    Link, LinkError, LinkInfo, LinkTarget, LinkType, Mechanism, cgroup, iter, kprobe, multi,
    netfilter, netkit, netns, raw_tracepoint, tc, tracepoint, tracing, uprobe, xdp,
};

/// Which BTF-typed hook a tracing or LSM program attaches to. The target is
/// fixed when the program is loaded (from its section), so attaching only
/// names it again.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum BtfHook {
    /// `tp_btf/NAME`. Minimum kernel version: 5.5.
    TpBtf,
    /// `fentry/FN`. Minimum kernel version: 5.5.
    Fentry,
    /// `fexit/FN`. Minimum kernel version: 5.5.
    Fexit,
    /// `fmod_ret/FN`. Minimum kernel version: 5.7.
    FmodRet,
    /// `lsm/HOOK`. Minimum kernel version: 5.7.
    Lsm,
}

impl BtfHook {
    /// As a manifest names it (`tp_btf`, `fentry`, `fexit`, `fmod_ret`, `lsm`).
    pub fn name(self) -> &'static str {
        match self {
            BtfHook::TpBtf => "tp_btf",
            BtfHook::Fentry => "fentry",
            BtfHook::Fexit => "fexit",
            BtfHook::FmodRet => "fmod_ret",
            BtfHook::Lsm => "lsm",
        }
    }

    /// The program kind whose load fixes this hook's target.
    fn kind(self, target: &str) -> ProgramKind {
        let target = Some(target.to_owned());
        let attach_type = match self {
            BtfHook::Lsm => {
                return ProgramKind::Lsm {
                    hook: target,
                    cgroup: false,
                };
            }
            BtfHook::TpBtf => AttachType::TRACE_RAW_TP,
            BtfHook::Fentry => AttachType::TRACE_FENTRY,
            BtfHook::Fexit => AttachType::TRACE_FEXIT,
            BtfHook::FmodRet => AttachType::MODIFY_RETURN,
        };
        ProgramKind::Tracing {
            attach_type,
            target,
        }
    }
}

/// XDP mode as a manifest says it; "auto" lets the kernel choose (native
/// where the driver supports it, else generic).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub enum XdpMode {
    /// No mode flag: native where the driver supports it, else generic.
    #[default]
    Auto,
    /// `XDP_FLAGS_SKB_MODE`: every interface, slowest.
    Generic,
    /// `XDP_FLAGS_DRV_MODE`.
    Native,
    /// `XDP_FLAGS_HW_MODE`.
    Offload,
}

impl XdpMode {
    /// The attach flags of this mode (empty for auto).
    pub fn flags(self) -> XdpFlags {
        match self {
            XdpMode::Auto => XdpFlags::empty(),
            XdpMode::Generic => XdpFlags::SKB_MODE,
            XdpMode::Native => XdpFlags::DRV_MODE,
            XdpMode::Offload => XdpFlags::HW_MODE,
        }
    }

    /// The mode a single mode flag means (auto for none or several).
    pub fn from_flags(flags: XdpFlags) -> XdpMode {
        [XdpMode::Generic, XdpMode::Native, XdpMode::Offload]
            .into_iter()
            .find(|m| m.flags() == flags)
            .unwrap_or(XdpMode::Auto)
    }
}

/// A network namespace, by the file that names it.
pub type NetnsPath = PathBuf;

/// One place a program runs, with everything the kernel needs to put it there.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum AttachPoint {
    /// `tracepoint/CATEGORY/NAME` through a perf event (a `bpf_link` from 5.15).
    Tracepoint {
        /// The tracefs event directory (`sched`, `syscalls`).
        category: String,
        /// The event (`sched_switch`).
        name: String,
    },
    /// `raw_tp/NAME`. Minimum kernel version: 4.17.
    RawTracepoint {
        /// The tracepoint (`sched_switch`).
        name: String,
    },
    /// tp_btf, fentry, fexit, fmod_ret, lsm: the target is the one the
    /// program was loaded for.
    Btf {
        /// Which BTF-typed hook.
        hook: BtfHook,
        /// The function, tracepoint or LSM hook of the section.
        target: String,
    },
    /// kprobe or kretprobe on a kernel function, through a perf event.
    Kprobe {
        /// The kernel function (or, for `ksyscall`, the syscall's name).
        function: String,
        /// Bytes into the function (kprobes only).
        offset: u64,
        /// On return (kretprobe) rather than entry.
        retprobe: bool,
    },
    /// uprobe or uretprobe on a file, at a symbol (plus offset) or a file offset.
    Uprobe {
        /// The binary or library; a name without `/` is found as libbpf finds it.
        path: PathBuf,
        /// The function symbol; `None`: `offset` is a file offset.
        symbol: Option<String>,
        /// Bytes past the symbol, or the file offset.
        offset: u64,
        /// Only this process; `None`: every process.
        pid: Option<i32>,
        /// On return (uretprobe) rather than entry.
        retprobe: bool,
    },
    /// One `kprobe.multi` link on many kernel functions, through fprobe.
    /// Minimum kernel version: 5.18.
    KprobeMulti {
        /// Function names or globs (`tcp_*`).
        functions: Vec<String>,
        /// On return rather than entry.
        retprobe: bool,
        /// One cookie per function after glob expansion, or none.
        cookies: Vec<u64>,
    },
    /// One `uprobe.multi` link on many symbols of one file.
    /// Minimum kernel version: 6.6.
    UprobeMulti {
        /// The binary or library; a name without `/` is found as libbpf finds it.
        path: PathBuf,
        /// Symbol names or globs.
        symbols: Vec<String>,
        /// On return rather than entry.
        retprobe: bool,
        /// Only this process; `None`: every process.
        pid: Option<i32>,
        /// One cookie per symbol after glob expansion, or none.
        cookies: Vec<u64>,
    },
    /// A BPF iterator over every object of its kind. Reading its pinned
    /// link runs it and yields its output. Minimum kernel version: 5.8.
    Iter {
        /// What it iterates (`task`, `bpf_map`...), fixed at load from the
        /// `iter/TARGET` section.
        target: String,
    },
    /// XDP on an interface. A `bpf_link` from 5.9, netlink before.
    Xdp {
        /// The interface.
        ifindex: u32,
        /// The XDP mode; auto: the kernel's choice.
        mode: XdpMode,
    },
    /// A tcx link on an interface. Minimum kernel version: 6.6.
    Tcx {
        /// The interface.
        ifindex: u32,
        /// Ingress or egress.
        direction: Direction,
    },
    /// TC on an interface: a tcx link where the kernel has tcx, else a
    /// cls_bpf filter on its clsact qdisc (netlink, from 4.5).
    Tc {
        /// The interface.
        ifindex: u32,
        /// Ingress or egress.
        direction: Direction,
        /// The filter's priority (clsact only; 0: the kernel picks).
        priority: u16,
        /// The filter's handle (clsact only; 0: the kernel picks).
        handle: u32,
    },
    /// One side of a netkit pair, attached through the primary device.
    /// Minimum kernel version: 6.7 (with `CONFIG_NETKIT`).
    Netkit {
        /// The pair's primary device.
        ifindex: u32,
        /// The primary's or the peer's transmit path.
        side: NetkitSide,
    },
    /// A cgroup v2 directory and the cgroup hook.
    Cgroup {
        /// The cgroup directory.
        path: PathBuf,
        /// The cgroup hook (`BPF_CGROUP_INET_INGRESS`...).
        attach_type: AttachType,
    },
    /// sk_lookup in a network namespace. Minimum kernel version: 5.9.
    SkLookup {
        /// The namespace's file (`/proc/self/ns/net`, `/run/netns/NAME`).
        netns: NetnsPath,
    },
    /// The flow dissector of a network namespace (a `bpf_link` from 5.8).
    FlowDissector {
        /// The namespace's file (`/proc/self/ns/net`, `/run/netns/NAME`).
        netns: NetnsPath,
    },
    /// sk_msg or sk_skb on a sockmap/sockhash (a `bpf_link` from 6.10):
    /// the program runs for the sockets in the map.
    SockMap {
        /// The sockmap or sockhash.
        map: MapRef,
        /// Which of its hooks (from the program's section).
        hook: SockMapHook,
    },
    /// A netfilter hook. Minimum kernel version: 6.4.
    Netfilter {
        /// IPv4 or IPv6.
        family: NfProto,
        /// Where in the IP stack.
        hook: NfHook,
        /// Lower runs first; the kernel keeps `i32::MIN` and `i32::MAX`.
        priority: i32,
    },
}

/// A map an attach point names: by its pin (what a manifest knows before
/// apply), or by its kernel id (what apply holds, and link info reports).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MapRef {
    /// A pinned map's path.
    Pin(PathBuf),
    /// A map's kernel id.
    Id(u32),
}

impl MapRef {
    /// The map's kernel id (opening the pin), if it exists.
    pub fn id(&self) -> Option<u32> {
        match self {
            MapRef::Id(id) => Some(*id),
            MapRef::Pin(p) => crate::Map::from_pin(p, crate::sys::object::OpenFlags::ReadOnly)
                .ok()?
                .info()
                .ok()
                .map(|i| i.id),
        }
    }

    fn open(&self) -> Result<crate::Map, LinkError> {
        match self {
            MapRef::Pin(p) => crate::Map::from_pin(p, crate::sys::object::OpenFlags::ReadWrite)
                .map_err(|e| {
                    LinkError::target(Mechanism::SockMap, p.display().to_string(), e.to_string())
                }),
            MapRef::Id(id) => crate::Map::from_id(*id).map_err(|e| {
                LinkError::target(Mechanism::SockMap, format!("map id {id}"), e.to_string())
            }),
        }
    }
}

impl fmt::Display for MapRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapRef::Pin(p) => write!(f, "{}", p.display()),
            MapRef::Id(id) => write!(f, "map id {id}"),
        }
    }
}

/// Why a program's section gives no attach point.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: the section does not say where it attaches{}", example.map(|e| format!(" (e.g. {e})")).unwrap_or_default())]
pub struct NoDefaultPoint {
    /// The kind of program, for messages (`an XDP program`).
    pub what: &'static str,
    /// A manifest attachment that would fit, if one is typical.
    pub example: Option<&'static str>,
}

/// Why `kind`'s section gives no point, with a manifest attachment that fits.
fn missing_target(kind: &ProgramKind) -> NoDefaultPoint {
    let (what, example) = match kind {
        ProgramKind::Tracepoint { .. } => (
            "a tracepoint program",
            "tracepoint = { category = \"sched\", name = \"sched_switch\" }",
        ),
        ProgramKind::RawTracepoint { .. } => (
            "a raw tracepoint program",
            "raw_tracepoint = { name = \"sched_switch\" }",
        ),
        ProgramKind::Kprobe { .. } => (
            "a kprobe program",
            "kprobe = { function = \"do_unlinkat\" }",
        ),
        ProgramKind::Uprobe { .. } => (
            "a uprobe program",
            "uprobe = { path = \"/usr/bin/bash\", symbol = \"readline\" }",
        ),
        ProgramKind::Xdp { .. } => (
            "an XDP program",
            "xdp = { interface = \"eth0\", mode = \"generic\" }",
        ),
        ProgramKind::Tcx { .. } | ProgramKind::SchedCls => (
            "a TC program",
            "tc = { interface = \"eth0\", direction = \"ingress\" }",
        ),
        ProgramKind::CgroupSkb { .. } | ProgramKind::Cgroup { .. } | ProgramKind::SockOps => (
            "a cgroup program",
            "cgroup = { path = \"/sys/fs/cgroup/unified\" }",
        ),
        ProgramKind::Other {
            attach_type: Some(AttachType::NETKIT_PRIMARY | AttachType::NETKIT_PEER),
            ..
        } => ("a netkit program", "netkit = { interface = \"nk0\" }"),
        ProgramKind::Netfilter => (
            "a netfilter program",
            "netfilter = { family = \"ipv4\", hook = \"input\" }",
        ),
        ProgramKind::SocketFilter => {
            return NoDefaultPoint {
                what: "a socket filter (it needs the user's socket)",
                example: None,
            };
        }
        _ => {
            return NoDefaultPoint {
                what: "this kind of program",
                example: None,
            };
        }
    };
    NoDefaultPoint {
        what,
        example: Some(example),
    }
}

impl AttachPoint {
    /// The point a program's section name implies (`tracepoint/sched/sched_switch`,
    /// `kprobe/do_unlinkat`, `fentry/FN`, `uprobe/PATH:SYMBOL`, `iter/task`,
    /// `sk_lookup`, `flow_dissector`: the caller's network namespace).
    /// Hooks that need a runtime target (interface, cgroup, socket, map)
    /// have none.
    pub fn from_section(kind: &ProgramKind) -> Result<AttachPoint, NoDefaultPoint> {
        Ok(match kind {
            ProgramKind::Tracepoint {
                category: Some(c),
                name: Some(n),
            } => AttachPoint::Tracepoint {
                category: c.clone(),
                name: n.clone(),
            },
            ProgramKind::RawTracepoint { name: Some(n), .. } => {
                AttachPoint::RawTracepoint { name: n.clone() }
            }
            ProgramKind::Tracing {
                attach_type: AttachType::TRACE_ITER,
                target: Some(t),
            } => AttachPoint::Iter { target: t.clone() },
            ProgramKind::Tracing {
                attach_type,
                target: Some(t),
            } => AttachPoint::Btf {
                hook: match *attach_type {
                    AttachType::TRACE_FENTRY => BtfHook::Fentry,
                    AttachType::TRACE_FEXIT => BtfHook::Fexit,
                    AttachType::MODIFY_RETURN => BtfHook::FmodRet,
                    _ => BtfHook::TpBtf,
                },
                target: t.clone(),
            },
            ProgramKind::Lsm {
                hook: Some(h),
                cgroup: false,
            } => AttachPoint::Btf {
                hook: BtfHook::Lsm,
                target: h.clone(),
            },
            ProgramKind::Kprobe {
                function: Some(f),
                offset,
                retprobe,
            } => AttachPoint::Kprobe {
                function: f.clone(),
                offset: *offset,
                retprobe: *retprobe,
            },
            ProgramKind::Uprobe {
                target: Some(t),
                retprobe,
            } => {
                let (path, symbol) = t.rsplit_once(':').ok_or(NoDefaultPoint {
                    what: "a uprobe whose section names no PATH:SYMBOL",
                    example: Some("uprobe = { path = \"/usr/bin/bash\", symbol = \"readline\" }"),
                })?;
                AttachPoint::Uprobe {
                    path: path.into(),
                    symbol: Some(symbol.to_owned()),
                    offset: 0,
                    pid: None,
                    retprobe: *retprobe,
                }
            }
            ProgramKind::SkLookup => AttachPoint::SkLookup { netns: own_netns() },
            ProgramKind::FlowDissector => AttachPoint::FlowDissector { netns: own_netns() },
            _ => return Err(missing_target(kind)),
        })
    }

    /// The mechanism that attaches to this point, for messages and capabilities.
    pub fn mechanism(&self) -> Mechanism {
        match self {
            AttachPoint::Tracepoint { .. } => Mechanism::Tracepoint,
            AttachPoint::RawTracepoint { .. } => Mechanism::RawTracepoint,
            AttachPoint::Btf {
                hook: BtfHook::Lsm, ..
            } => Mechanism::Lsm,
            AttachPoint::Btf { .. } => Mechanism::Tracing,
            AttachPoint::Kprobe { .. } => Mechanism::Kprobe,
            AttachPoint::Uprobe { .. } => Mechanism::Uprobe,
            AttachPoint::KprobeMulti { .. } => Mechanism::KprobeMulti,
            AttachPoint::UprobeMulti { .. } => Mechanism::UprobeMulti,
            AttachPoint::Iter { .. } => Mechanism::Iter,
            AttachPoint::Xdp { .. } => Mechanism::Xdp,
            AttachPoint::Tcx { .. } => Mechanism::Tcx,
            AttachPoint::Tc { .. } => Mechanism::Tc,
            AttachPoint::Netkit { .. } => Mechanism::Netkit,
            AttachPoint::Cgroup { .. } => Mechanism::Cgroup,
            AttachPoint::SkLookup { .. } => Mechanism::SkLookup,
            AttachPoint::FlowDissector { .. } => Mechanism::FlowDissector,
            AttachPoint::SockMap { .. } => Mechanism::SockMap,
            AttachPoint::Netfilter { .. } => Mechanism::Netfilter,
        }
    }

    /// The kind of `bpf_link` the kernel reports for an attachment here, on
    /// this kernel (`None`: not a `bpf_link`, e.g. TC through netlink
    /// before tcx).
    pub fn link_type(&self) -> Option<LinkType> {
        Some(match self {
            AttachPoint::Tracepoint { .. }
            | AttachPoint::Kprobe { .. }
            | AttachPoint::Uprobe { .. } => LinkType::PerfEvent,
            AttachPoint::RawTracepoint { .. } => LinkType::RawTracepoint,
            AttachPoint::KprobeMulti { .. } => LinkType::KprobeMulti,
            AttachPoint::UprobeMulti { .. } => LinkType::UprobeMulti,
            // tp_btf attaches through raw_tracepoint_open: a raw tracepoint link.
            AttachPoint::Btf {
                hook: BtfHook::TpBtf,
                ..
            } => LinkType::RawTracepoint,
            AttachPoint::Btf { .. } => LinkType::Tracing,
            AttachPoint::Iter { .. } => LinkType::Iter,
            AttachPoint::Xdp { .. } => LinkType::Xdp,
            AttachPoint::Tcx { .. } => LinkType::Tcx,
            AttachPoint::Tc { .. } if tc_uses_tcx() => LinkType::Tcx,
            AttachPoint::Tc { .. } => return None,
            AttachPoint::Netkit { .. } => LinkType::Netkit,
            AttachPoint::Cgroup { .. } => LinkType::Cgroup,
            AttachPoint::SkLookup { .. } | AttachPoint::FlowDissector { .. } => LinkType::Netns,
            AttachPoint::SockMap { .. } => LinkType::Sockmap,
            AttachPoint::Netfilter { .. } => LinkType::Netfilter,
        })
    }

    /// Whether attaching here opens a perf event (`perf_event_open`):
    /// tracepoints, kprobes and uprobes. Such an attachment needs
    /// `CAP_PERFMON` (or the `perf_event_paranoid` sysctl's leave) besides
    /// `CAP_BPF`, a BPF token cannot grant it, and it is a `bpf_link` only
    /// from 5.15.
    pub fn uses_perf_event(&self) -> bool {
        matches!(
            self,
            AttachPoint::Tracepoint { .. }
                | AttachPoint::Kprobe { .. }
                | AttachPoint::Uprobe { .. }
        )
    }

    /// Whether the kernel reports this point's target in a live link's info
    /// (perf-event, raw tracepoint and tracing links do not in a form that
    /// compares: for those only the link's type can be checked).
    pub fn reported(&self) -> bool {
        !matches!(
            self,
            AttachPoint::Tracepoint { .. }
                | AttachPoint::Kprobe { .. }
                | AttachPoint::Uprobe { .. }
                | AttachPoint::RawTracepoint { .. }
                | AttachPoint::Btf { .. }
                | AttachPoint::Iter { .. }
                | AttachPoint::KprobeMulti { .. }
                | AttachPoint::UprobeMulti { .. }
        )
    }

    /// Whether a link here can swap its program in place (`BPF_LINK_UPDATE`,
    /// or a netlink replace for TC filters).
    pub fn updatable(&self) -> bool {
        matches!(
            self,
            AttachPoint::Xdp { .. }
                | AttachPoint::Iter { .. }
                | AttachPoint::Tcx { .. }
                | AttachPoint::Tc { .. }
                | AttachPoint::Netkit { .. }
                | AttachPoint::Cgroup { .. }
                | AttachPoint::SkLookup { .. }
                | AttachPoint::FlowDissector { .. }
                | AttachPoint::SockMap { .. }
        )
    }

    /// Whether an attachment observed at `live` is this point. A desired
    /// XDP mode "auto" matches whichever mode the kernel chose; cgroups and
    /// namespaces compare as files (the same inode by any path).
    pub fn covers(&self, live: &AttachPoint) -> bool {
        match (self, live) {
            (
                AttachPoint::Xdp { ifindex, mode },
                AttachPoint::Xdp {
                    ifindex: i,
                    mode: m,
                },
            ) => ifindex == i && (*mode == XdpMode::Auto || mode == m),
            // A tc point observed as a tcx link (the kernel has tcx).
            (
                AttachPoint::Tc {
                    ifindex, direction, ..
                },
                AttachPoint::Tcx {
                    ifindex: i,
                    direction: d,
                },
            ) => ifindex == i && direction == d,
            (
                AttachPoint::Tc {
                    ifindex,
                    direction,
                    priority,
                    handle,
                },
                AttachPoint::Tc {
                    ifindex: i,
                    direction: d,
                    priority: p,
                    handle: h,
                },
            ) => {
                ifindex == i
                    && direction == d
                    && (*priority == 0 || priority == p)
                    && (*handle == 0 || handle == h)
            }
            (
                AttachPoint::Cgroup { path, attach_type },
                AttachPoint::Cgroup {
                    path: p,
                    attach_type: t,
                },
            ) => attach_type == t && same_file(path, p),
            (AttachPoint::SockMap { map, hook }, AttachPoint::SockMap { map: m, hook: h }) => {
                hook == h && map.id().is_some() && map.id() == m.id()
            }
            (AttachPoint::SkLookup { netns }, AttachPoint::SkLookup { netns: n })
            | (AttachPoint::FlowDissector { netns }, AttachPoint::FlowDissector { netns: n }) => {
                same_file(netns, n)
            }
            (a, b) => a == b,
        }
    }

    /// The point a live link is attached to, as the kernel reports it;
    /// `None` for links whose info does not name their target (perf-event,
    /// raw tracepoint, tracing) or names one that no longer exists.
    pub fn observed(info: &LinkInfo) -> Option<AttachPoint> {
        Some(match &info.target {
            // The mode is not in link info: the interface says which of its
            // XDP slots runs the link's program.
            LinkTarget::Xdp { ifindex } => AttachPoint::Xdp {
                ifindex: *ifindex,
                mode: xdp::query_xdp_modes(*ifindex)
                    .ok()
                    .and_then(|a| a.mode_of(info.prog_id))
                    .map_or(XdpMode::Auto, XdpMode::from_flags),
            },
            LinkTarget::Device {
                ifindex,
                attach_type,
            } if info.link_type == LinkType::Tcx => AttachPoint::Tcx {
                ifindex: *ifindex,
                direction: if AttachType(*attach_type) == AttachType::TCX_EGRESS {
                    Direction::Egress
                } else {
                    Direction::Ingress
                },
            },
            LinkTarget::Device {
                ifindex,
                attach_type,
            } if info.link_type == LinkType::Netkit => AttachPoint::Netkit {
                ifindex: *ifindex,
                side: if AttachType(*attach_type) == AttachType::NETKIT_PEER {
                    NetkitSide::Peer
                } else {
                    NetkitSide::Primary
                },
            },
            LinkTarget::Cgroup {
                cgroup_id,
                attach_type,
            } => AttachPoint::Cgroup {
                path: names::cgroup_path(*cgroup_id)?,
                attach_type: AttachType(*attach_type),
            },
            LinkTarget::Netns {
                netns_ino,
                attach_type,
            } => {
                let netns = names::netns_path(u64::from(*netns_ino));
                if AttachType(*attach_type) == AttachType::FLOW_DISSECTOR {
                    AttachPoint::FlowDissector { netns }
                } else {
                    AttachPoint::SkLookup { netns }
                }
            }
            LinkTarget::Sockmap {
                map_id,
                attach_type,
            } => AttachPoint::SockMap {
                map: MapRef::Id(*map_id),
                hook: SockMapHook::from_attach_type(AttachType(*attach_type))?,
            },
            LinkTarget::Netfilter {
                pf,
                hooknum,
                priority,
                ..
            } => AttachPoint::Netfilter {
                family: NfProto::from_raw(*pf)?,
                hook: NfHook::from_raw(*hooknum)?,
                priority: *priority,
            },
            _ => return None,
        })
    }

    /// The point of a cls_bpf filter found on an interface.
    pub fn of_cls_bpf(f: &tc::ClsBpfFilter) -> AttachPoint {
        AttachPoint::Tc {
            ifindex: f.ifindex,
            direction: f.direction,
            priority: f.priority,
            handle: f.handle,
        }
    }
}

/// Whether TC points attach as tcx links on this kernel (probed once).
pub fn tc_uses_tcx() -> bool {
    has_link_kind("tcx", "tcx_link")
}

/// Feature `probe`, or, where the probe says no, whether the kernel's BTF
/// has the link's struct `kernel_struct`: the probe attaches for real in a
/// private network namespace, which a process with `CAP_BPF` and
/// `CAP_NET_ADMIN` but no `CAP_SYS_ADMIN` cannot make, and the link kind
/// exists all the same.
pub(crate) fn has_link_kind(probe: &str, kernel_struct: &str) -> bool {
    if crate::probe::assumed_missing(probe) {
        return false;
    }
    crate::probe::feature(probe) == Some(true)
        || crate::externs::kernel_btf(None).is_ok_and(|btf| {
            btf.find_by_name(kiln_obj::btf::Kind::Struct, kernel_struct)
                .is_some()
        })
}

/// The caller's network namespace: the calling thread's, which may differ
/// from the process's.
fn own_netns() -> NetnsPath {
    "/proc/thread-self/ns/net".into()
}

/// Whether two paths name the same file; a namespace without a file is
/// written `net:[INO]` (see [`names::netns_path`]) and compares by inode.
fn same_file(a: &Path, b: &Path) -> bool {
    fn pseudo_ino(p: &Path) -> Option<u64> {
        p.to_str()?
            .strip_prefix("net:[")?
            .strip_suffix(']')?
            .parse()
            .ok()
    }
    let ino = |p: &Path| pseudo_ino(p).or_else(|| std::fs::metadata(p).ok().map(|m| m.ino()));
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ if pseudo_ino(a).is_some() || pseudo_ino(b).is_some() => {
            ino(a).is_some() && ino(a) == ino(b)
        }
        _ => a == b,
    }
}

impl fmt::Display for AttachPoint {
    /// In a manifest's words: `xdp lo (generic)`, `tcx eth0 ingress`,
    /// `netfilter ipv4 input priority 10`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachPoint::Tracepoint { category, name } => write!(f, "tracepoint {category}/{name}"),
            AttachPoint::RawTracepoint { name } => write!(f, "raw_tracepoint {name}"),
            AttachPoint::Btf { hook, target } => write!(f, "{} {target}", hook.name()),
            AttachPoint::Kprobe {
                function,
                offset,
                retprobe,
            } => {
                let k = if *retprobe { "kretprobe" } else { "kprobe" };
                if *offset == 0 {
                    write!(f, "{k} {function}")
                } else {
                    write!(f, "{k} {function}+{offset:#x}")
                }
            }
            AttachPoint::Uprobe {
                path,
                symbol,
                offset,
                retprobe,
                ..
            } => {
                let k = if *retprobe { "uretprobe" } else { "uprobe" };
                match symbol {
                    Some(s) if *offset == 0 => write!(f, "{k} {}:{s}", path.display()),
                    Some(s) => write!(f, "{k} {}:{s}+{offset:#x}", path.display()),
                    None => write!(f, "{k} {}@{offset:#x}", path.display()),
                }
            }
            AttachPoint::KprobeMulti {
                functions,
                retprobe,
                ..
            } => write!(
                f,
                "{} {}",
                if *retprobe {
                    "kretprobe.multi"
                } else {
                    "kprobe.multi"
                },
                functions.join(",")
            ),
            AttachPoint::UprobeMulti {
                path,
                symbols,
                retprobe,
                ..
            } => write!(
                f,
                "{} {}:{}",
                if *retprobe {
                    "uretprobe.multi"
                } else {
                    "uprobe.multi"
                },
                path.display(),
                symbols.join(",")
            ),
            AttachPoint::Iter { target } => write!(f, "iter {target}"),
            AttachPoint::Xdp { ifindex, mode } => {
                write!(
                    f,
                    "xdp {} ({})",
                    names::interface(*ifindex),
                    names::xdp_mode(*mode)
                )
            }
            AttachPoint::Tcx { ifindex, direction } => write!(
                f,
                "tcx {} {}",
                names::interface(*ifindex),
                names::direction(*direction)
            ),
            AttachPoint::Tc {
                ifindex,
                direction,
                priority,
                handle,
            } => {
                write!(
                    f,
                    "tc {} {}",
                    names::interface(*ifindex),
                    names::direction(*direction)
                )?;
                if *priority != 0 {
                    write!(f, " priority {priority}")?;
                }
                if *handle != 0 {
                    write!(f, " handle {handle:#x}")?;
                }
                Ok(())
            }
            AttachPoint::Netkit { ifindex, side } => write!(
                f,
                "netkit {} {}",
                names::interface(*ifindex),
                names::netkit_side(*side)
            ),
            AttachPoint::Cgroup { path, attach_type } => write!(
                f,
                "cgroup {} ({})",
                path.display(),
                names::cgroup_attach_type(*attach_type).unwrap_or("unknown attach type")
            ),
            AttachPoint::SkLookup { netns } => write!(f, "sk_lookup in {}", netns.display()),
            AttachPoint::FlowDissector { netns } => {
                write!(f, "flow_dissector in {}", netns.display())
            }
            AttachPoint::SockMap { map, hook } => {
                write!(f, "{} on {map}", names::sockmap_hook(*hook))
            }
            AttachPoint::Netfilter {
                family,
                hook,
                priority,
            } => write!(
                f,
                "netfilter {} {} priority {priority}",
                family.name(),
                hook.name()
            ),
        }
    }
}

/// Attaches `prog` at `point`, with the mechanism the kernel offers: a
/// `bpf_link` where it has the link kind (probed once per process), else
/// netlink (XDP before 5.9, TC through clsact before 6.6) or the
/// perf-event ioctl.
pub fn attach(prog: BorrowedFd<'_>, point: &AttachPoint) -> Result<Box<dyn Link>, LinkError> {
    attach_labelled(prog, point, "kiln")
}

/// [`attach`], naming a netlink attachment `label` (the cls_bpf filter's
/// name), so that a later process finds it again with
/// [`tc::list_all_cls_bpf`]; `bpf_link`s are found through their pins.
pub fn attach_labelled(
    prog: BorrowedFd<'_>,
    point: &AttachPoint,
    label: &str,
) -> Result<Box<dyn Link>, LinkError> {
    fn boxed<L: Link + 'static>(l: L) -> Box<dyn Link> {
        Box::new(l)
    }
    match point {
        AttachPoint::Tracepoint { category, name } => {
            tracepoint::attach_tracepoint(prog, category, name, 0).map(boxed)
        }
        AttachPoint::RawTracepoint { name } => {
            raw_tracepoint::attach_raw_tracepoint(prog, name).map(boxed)
        }
        AttachPoint::Btf { hook, target } => {
            tracing::attach_tracing(prog, &hook.kind(target), 0).map(boxed)
        }
        AttachPoint::Kprobe {
            function,
            offset,
            retprobe,
        } => {
            // `ksyscall/NAME` arrives as a kprobe on NAME: the arch's syscall
            // symbol when NAME itself is not a kernel function.
            let function = if *offset == 0 && !kprobe::is_kernel_function(function) {
                kprobe::syscall_symbol(function).unwrap_or_else(|_| function.clone())
            } else {
                function.clone()
            };
            kprobe::attach_kprobe(prog, &function, *offset, *retprobe, 0).map(boxed)
        }
        AttachPoint::Uprobe {
            path,
            symbol,
            offset,
            pid,
            retprobe,
        } => {
            let path = uprobe::resolve_library(path);
            let base = match symbol {
                Some(sym) => uprobe::symbol_file_offset(&path, sym)?,
                None => 0,
            };
            uprobe::attach_uprobe_offset(prog, &path, base + offset, *retprobe, *pid, 0).map(boxed)
        }
        AttachPoint::KprobeMulti {
            functions,
            retprobe,
            cookies,
        } => {
            let functions: Vec<&str> = functions.iter().map(String::as_str).collect();
            let cookies = (!cookies.is_empty()).then_some(cookies.as_slice());
            multi::attach_kprobe_multi(prog, &functions, *retprobe, cookies).map(boxed)
        }
        AttachPoint::UprobeMulti {
            path,
            symbols,
            retprobe,
            pid,
            cookies,
        } => {
            let path = uprobe::resolve_library(path);
            let symbols: Vec<&str> = symbols.iter().map(String::as_str).collect();
            let cookies = (!cookies.is_empty()).then_some(cookies.as_slice());
            multi::attach_uprobe_multi(prog, &path, &symbols, *retprobe, *pid, cookies).map(boxed)
        }
        AttachPoint::Iter { .. } => iter::attach_iter(prog, iter::IterTarget::All).map(boxed),
        AttachPoint::Xdp { ifindex, mode } => xdp::attach_xdp(prog, *ifindex, mode.flags()),
        AttachPoint::Tcx { ifindex, direction } => {
            tc::attach_tcx(prog, *ifindex, *direction, TcxAnchor::Last).map(boxed)
        }
        AttachPoint::Tc {
            ifindex,
            direction,
            priority,
            handle,
        } => {
            if tc_uses_tcx() {
                tc::attach_tcx(prog, *ifindex, *direction, TcxAnchor::Last).map(boxed)
            } else {
                let opts = ClsBpfOptions {
                    priority: *priority,
                    handle: *handle,
                    name: label.to_owned(),
                };
                tc::attach_cls_bpf(prog, *ifindex, *direction, &opts).map(boxed)
            }
        }
        AttachPoint::Netkit { ifindex, side } => {
            netkit::attach_netkit(prog, *ifindex, *side, TcxAnchor::Last).map(boxed)
        }
        AttachPoint::Cgroup { path, attach_type } => {
            let cg = cgroup::open_cgroup(path)?;
            cgroup::attach_cgroup(prog, cg.as_fd(), *attach_type)
        }
        AttachPoint::SkLookup { netns: ns } => {
            let ns = netns::open_netns(ns)?;
            netns::attach_sk_lookup(prog, ns.as_fd()).map(boxed)
        }
        AttachPoint::FlowDissector { netns: ns } => {
            let ns = netns::open_netns(ns)?;
            netns::attach_flow_dissector(prog, ns.as_fd())
        }
        AttachPoint::SockMap { map, hook } => {
            if !has_link_kind("sockmap_link", "sockmap_link") {
                return Err(LinkError::unsupported(
                    Mechanism::SockMap,
                    "attach",
                    "this kernel has no sockmap links (6.10+), and a program attached to a map without one cannot be pinned",
                ));
            }
            let map = map.open()?;
            sockmap::attach_sockmap_link(prog, map.as_fd(), *hook).map(boxed)
        }
        AttachPoint::Netfilter {
            family,
            hook,
            priority,
        } => netfilter::attach_netfilter(prog, *family, *hook, *priority, NetfilterFlags::empty())
            .map(boxed),
    }
}

pub mod names;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_give_their_points() {
        let tp = ProgramKind::Tracepoint {
            category: Some("sched".into()),
            name: Some("sched_switch".into()),
        };
        assert_eq!(
            AttachPoint::from_section(&tp).unwrap().to_string(),
            "tracepoint sched/sched_switch"
        );
        let fexit = ProgramKind::Tracing {
            attach_type: AttachType::TRACE_FEXIT,
            target: Some("do_unlinkat".into()),
        };
        assert_eq!(
            AttachPoint::from_section(&fexit).unwrap(),
            AttachPoint::Btf {
                hook: BtfHook::Fexit,
                target: "do_unlinkat".into()
            }
        );
        let xdp = ProgramKind::Xdp {
            frags: false,
            attach_type: None,
        };
        let e = AttachPoint::from_section(&xdp).unwrap_err();
        assert!(e.to_string().contains("xdp = { interface"), "{e}");
    }

    #[test]
    fn tp_btf_links_are_raw_tracepoint_links() {
        let tp = AttachPoint::Btf {
            hook: BtfHook::TpBtf,
            target: "sched_switch".into(),
        };
        assert_eq!(tp.link_type(), Some(LinkType::RawTracepoint));
        let fentry = AttachPoint::Btf {
            hook: BtfHook::Fentry,
            target: "do_unlinkat".into(),
        };
        assert_eq!(fentry.link_type(), Some(LinkType::Tracing));
    }

    #[test]
    fn auto_xdp_mode_covers_the_kernels_choice() {
        let want = AttachPoint::Xdp {
            ifindex: 1,
            mode: XdpMode::Auto,
        };
        let live = AttachPoint::Xdp {
            ifindex: 1,
            mode: XdpMode::Generic,
        };
        assert!(want.covers(&live));
        let native = AttachPoint::Xdp {
            ifindex: 1,
            mode: XdpMode::Native,
        };
        assert!(!native.covers(&live));
    }

    #[test]
    fn tc_covers_a_tcx_link_and_its_own_filter() {
        let tc = AttachPoint::Tc {
            ifindex: 3,
            direction: Direction::Ingress,
            priority: 0,
            handle: 0,
        };
        assert!(tc.covers(&AttachPoint::Tcx {
            ifindex: 3,
            direction: Direction::Ingress
        }));
        let filter = AttachPoint::Tc {
            ifindex: 3,
            direction: Direction::Ingress,
            priority: 49152,
            handle: 1,
        };
        // Priority and handle 0: whatever the kernel picked.
        assert!(tc.covers(&filter));
        let pinned = AttachPoint::Tc {
            ifindex: 3,
            direction: Direction::Ingress,
            priority: 7,
            handle: 0,
        };
        assert!(!pinned.covers(&filter));
        assert!(!tc.covers(&AttachPoint::Tcx {
            ifindex: 3,
            direction: Direction::Egress
        }));
    }

    #[test]
    fn a_namespace_without_a_file_compares_by_inode() {
        let own = names::netns_path(
            std::fs::metadata("/proc/thread-self/ns/net")
                .map(|m| m.ino())
                .unwrap_or(0),
        );
        let want = AttachPoint::SkLookup {
            netns: "/proc/thread-self/ns/net".into(),
        };
        assert!(want.covers(&AttachPoint::SkLookup { netns: own }));
        assert!(!want.covers(&AttachPoint::SkLookup {
            netns: "net:[1]".into()
        }));
    }

    #[test]
    fn manifest_words_round_trip() {
        for t in names::cgroup_attach_type_names() {
            let a = names::cgroup_attach_type_from(t).unwrap();
            assert_eq!(names::cgroup_attach_type(a), Some(t));
        }
        for m in ["auto", "generic", "native", "offload"] {
            assert_eq!(names::xdp_mode(names::xdp_mode_from(m).unwrap()), m);
        }
        for h in ["prerouting", "input", "forward", "output", "postrouting"] {
            assert_eq!(NfHook::from_name(h).unwrap().name(), h);
        }
        for f in ["ipv4", "ipv6"] {
            assert_eq!(NfProto::from_name(f).unwrap().name(), f);
        }
    }
}
