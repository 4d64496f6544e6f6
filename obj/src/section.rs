//! What a program's ELF section name says (libbpf's `SEC()` conventions):
//! program type, expected attach type, attach target and sleepability.

use crate::model::{AttachType, Direction, ProgramKind, ProgramType};

/// The kind of a program in section `name`, and whether it is sleepable.
/// Unknown names give [`ProgramKind::Other`] with `ProgramType::UNSPEC`, so
/// the loader can name the section in its error.
///
/// ```
/// use kiln_obj::section::program_kind;
/// use kiln_obj::{ProgramKind, ProgramType};
///
/// let (kind, sleepable) = program_kind("tracepoint/sched/sched_process_exec");
/// assert_eq!(
///     kind,
///     ProgramKind::Tracepoint {
///         category: Some("sched".into()),
///         name: Some("sched_process_exec".into()),
///     }
/// );
/// assert!(!sleepable);
/// assert_eq!(kind.program_type(), ProgramType::TRACEPOINT);
/// ```
pub fn program_kind(name: &str) -> (ProgramKind, bool) {
    let (head, rest) = match name.split_once('/') {
        Some((h, r)) => (h, Some(r)),
        None => (name, None),
    };
    let (head, sleepable) = match head.strip_suffix(".s") {
        Some(h) => (h, true),
        None => (head, false),
    };
    let target = || rest.filter(|r| !r.is_empty()).map(str::to_owned);
    let cgroup = |program_type, attach_type| ProgramKind::Cgroup {
        program_type,
        attach_type,
    };
    let other = |program_type, attach_type| ProgramKind::Other {
        program_type,
        attach_type,
    };
    use ProgramKind as K;
    let kind = match head {
        "socket" => K::SocketFilter,
        "kprobe" | "kretprobe" => {
            let (function, offset) = match rest {
                Some(r) => match r.split_once('+') {
                    Some((f, off)) => (Some(f.to_owned()), parse_int(off).unwrap_or(0)),
                    None => (Some(r.to_owned()), 0),
                },
                None => (None, 0),
            };
            K::Kprobe {
                function: function.filter(|f| !f.is_empty()),
                offset,
                retprobe: head == "kretprobe",
            }
        }
        "ksyscall" | "kretsyscall" => K::Kprobe {
            function: target(),
            offset: 0,
            retprobe: head == "kretsyscall",
        },
        "kprobe.multi" | "kretprobe.multi" | "kprobe.session" => {
            other(ProgramType::KPROBE, Some(AttachType::TRACE_KPROBE_MULTI))
        }
        "uprobe" | "uretprobe" => K::Uprobe {
            target: target(),
            retprobe: head == "uretprobe",
        },
        "uprobe.multi" | "uretprobe.multi" | "uprobe.session" => {
            other(ProgramType::KPROBE, Some(AttachType::TRACE_UPROBE_MULTI))
        }
        "usdt" => K::Uprobe {
            target: target(),
            retprobe: false,
        },
        "tracepoint" | "tp" => {
            let (category, name) = match rest.and_then(|r| r.split_once('/')) {
                Some((c, n)) => (Some(c.to_owned()), Some(n.to_owned())),
                None => (None, target()),
            };
            K::Tracepoint { category, name }
        }
        "raw_tracepoint" | "raw_tp" => K::RawTracepoint {
            name: target(),
            writable: false,
        },
        "raw_tracepoint.w" | "raw_tp.w" => K::RawTracepoint {
            name: target(),
            writable: true,
        },
        "tp_btf" => K::Tracing {
            attach_type: AttachType::TRACE_RAW_TP,
            target: target(),
        },
        "fentry" => K::Tracing {
            attach_type: AttachType::TRACE_FENTRY,
            target: target(),
        },
        "fexit" => K::Tracing {
            attach_type: AttachType::TRACE_FEXIT,
            target: target(),
        },
        "fmod_ret" => K::Tracing {
            attach_type: AttachType::MODIFY_RETURN,
            target: target(),
        },
        "iter" => K::Tracing {
            attach_type: AttachType::TRACE_ITER,
            target: target(),
        },
        "freplace" => K::Extension { target: target() },
        "lsm" => K::Lsm {
            hook: target(),
            cgroup: false,
        },
        "lsm_cgroup" => K::Lsm {
            hook: target(),
            cgroup: true,
        },
        "xdp" | "xdp.frags" => K::Xdp {
            frags: head == "xdp.frags",
            attach_type: match rest {
                None => Some(AttachType::XDP),
                Some("devmap") => Some(AttachType::XDP_DEVMAP),
                Some("cpumap") => Some(AttachType::XDP_CPUMAP),
                // Legacy `xdp/<name>` sections (older aya, iproute2).
                Some(_) => None,
            },
        },
        "xdp_devmap" => K::Xdp {
            frags: false,
            attach_type: Some(AttachType::XDP_DEVMAP),
        },
        "xdp_cpumap" => K::Xdp {
            frags: false,
            attach_type: Some(AttachType::XDP_CPUMAP),
        },
        "perf_event" => K::PerfEvent,
        "tc" | "tcx" if rest == Some("ingress") => K::Tcx {
            direction: Direction::Ingress,
        },
        "tc" | "tcx" if rest == Some("egress") => K::Tcx {
            direction: Direction::Egress,
        },
        "tc" | "classifier" => K::SchedCls,
        "action" => K::SchedAct,
        "netkit" => match rest {
            Some("peer") => other(ProgramType::SCHED_CLS, Some(AttachType::NETKIT_PEER)),
            _ => other(ProgramType::SCHED_CLS, Some(AttachType::NETKIT_PRIMARY)),
        },
        "cgroup_skb" => K::CgroupSkb {
            direction: match rest {
                Some("ingress") => Some(Direction::Ingress),
                Some("egress") => Some(Direction::Egress),
                _ => None,
            },
        },
        "cgroup" => match rest.unwrap_or("") {
            "skb" => K::CgroupSkb { direction: None },
            "sock" | "sock_create" => cgroup(
                ProgramType::CGROUP_SOCK,
                AttachType::CGROUP_INET_SOCK_CREATE,
            ),
            "sock_release" => cgroup(
                ProgramType::CGROUP_SOCK,
                AttachType::CGROUP_INET_SOCK_RELEASE,
            ),
            "post_bind4" => cgroup(ProgramType::CGROUP_SOCK, AttachType::CGROUP_INET4_POST_BIND),
            "post_bind6" => cgroup(ProgramType::CGROUP_SOCK, AttachType::CGROUP_INET6_POST_BIND),
            "dev" => cgroup(ProgramType::CGROUP_DEVICE, AttachType::CGROUP_DEVICE),
            "sysctl" => cgroup(ProgramType::CGROUP_SYSCTL, AttachType::CGROUP_SYSCTL),
            "getsockopt" => cgroup(ProgramType::CGROUP_SOCKOPT, AttachType::CGROUP_GETSOCKOPT),
            "setsockopt" => cgroup(ProgramType::CGROUP_SOCKOPT, AttachType::CGROUP_SETSOCKOPT),
            hook => match sock_addr_attach(hook) {
                Some(at) => cgroup(ProgramType::CGROUP_SOCK_ADDR, at),
                None => other(ProgramType::UNSPEC, None),
            },
        },
        "sockops" => K::SockOps,
        "sk_skb" => K::SkSkb {
            attach_type: match rest {
                Some("stream_parser") => Some(AttachType::SK_SKB_STREAM_PARSER),
                Some("stream_verdict") => Some(AttachType::SK_SKB_STREAM_VERDICT),
                Some("verdict") => Some(AttachType::SK_SKB_VERDICT),
                _ => None,
            },
        },
        "sk_msg" => K::SkMsg,
        "sk_lookup" => K::SkLookup,
        "sk_reuseport" => match rest {
            Some("migrate") => other(
                ProgramType::SK_REUSEPORT,
                Some(AttachType::SK_REUSEPORT_SELECT_OR_MIGRATE),
            ),
            _ => other(
                ProgramType::SK_REUSEPORT,
                Some(AttachType::SK_REUSEPORT_SELECT),
            ),
        },
        "flow_dissector" => K::FlowDissector,
        "lirc_mode2" => K::LircMode2,
        "lwt_in" => other(ProgramType::LWT_IN, None),
        "lwt_out" => other(ProgramType::LWT_OUT, None),
        "lwt_xmit" => other(ProgramType::LWT_XMIT, None),
        "lwt_seg6local" => other(ProgramType::LWT_SEG6LOCAL, None),
        "struct_ops" => K::StructOps { name: target() },
        "syscall" => K::Syscall,
        "netfilter" => K::Netfilter,
        _ => other(ProgramType::UNSPEC, None),
    };
    (kind, sleepable)
}

fn sock_addr_attach(hook: &str) -> Option<AttachType> {
    Some(match hook {
        "bind4" => AttachType::CGROUP_INET4_BIND,
        "bind6" => AttachType::CGROUP_INET6_BIND,
        "connect4" => AttachType::CGROUP_INET4_CONNECT,
        "connect6" => AttachType::CGROUP_INET6_CONNECT,
        "connect_unix" => AttachType::CGROUP_UNIX_CONNECT,
        "sendmsg4" => AttachType::CGROUP_UDP4_SENDMSG,
        "sendmsg6" => AttachType::CGROUP_UDP6_SENDMSG,
        "sendmsg_unix" => AttachType::CGROUP_UNIX_SENDMSG,
        "recvmsg4" => AttachType::CGROUP_UDP4_RECVMSG,
        "recvmsg6" => AttachType::CGROUP_UDP6_RECVMSG,
        "recvmsg_unix" => AttachType::CGROUP_UNIX_RECVMSG,
        "getpeername4" => AttachType::CGROUP_INET4_GETPEERNAME,
        "getpeername6" => AttachType::CGROUP_INET6_GETPEERNAME,
        "getpeername_unix" => AttachType::CGROUP_UNIX_GETPEERNAME,
        "getsockname4" => AttachType::CGROUP_INET4_GETSOCKNAME,
        "getsockname6" => AttachType::CGROUP_INET6_GETSOCKNAME,
        "getsockname_unix" => AttachType::CGROUP_UNIX_GETSOCKNAME,
        _ => return None,
    })
}

fn parse_int(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            program_kind("tracepoint/sched/sched_switch").0,
            ProgramKind::Tracepoint {
                category: Some("sched".into()),
                name: Some("sched_switch".into())
            }
        );
        assert_eq!(
            program_kind("kprobe/tcp_v4_connect+0x10").0,
            ProgramKind::Kprobe {
                function: Some("tcp_v4_connect".into()),
                offset: 16,
                retprobe: false
            }
        );
        let (k, sleepable) = program_kind("fentry.s/do_unlinkat");
        assert!(sleepable);
        assert_eq!(k.expected_attach_type(), Some(AttachType::TRACE_FENTRY));
        assert_eq!(
            program_kind("tcx/egress").0.program_type(),
            ProgramType::SCHED_CLS
        );
        assert_eq!(
            program_kind("cgroup/connect6").0.expected_attach_type(),
            Some(AttachType::CGROUP_INET6_CONNECT)
        );
        assert_eq!(program_kind("bogus").0.program_type(), ProgramType::UNSPEC);
    }
}
