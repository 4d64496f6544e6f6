//! Attaching from what the section name says (`tracepoint/syscalls/sys_enter_openat`,
//! `kprobe/do_unlinkat`, `uprobe//usr/lib/libc.so.6:malloc`, `tp_btf/...`).
//! Hooks that need a runtime target (an interface, a cgroup, a socket) cannot
//! be auto-attached: the error says which attach function to call instead.

use super::iter::{self, IterTarget};
use super::{
    Link, LinkError, Mechanism, kprobe, netns, raw_tracepoint, tracepoint, tracing, uprobe,
};
use kiln_obj::{AttachType, ProgramKind};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

fn no_target(m: Mechanism, what: &str) -> LinkError {
    LinkError::unsupported(m, "auto-attach", what.to_string())
}

/// Attaches `prog` (loaded as `kind`) to the target its section names.
pub fn auto_attach(prog: BorrowedFd<'_>, kind: &ProgramKind) -> Result<Box<dyn Link>, LinkError> {
    match kind {
        ProgramKind::Tracepoint {
            category: Some(c),
            name: Some(n),
        } => Ok(Box::new(tracepoint::attach_tracepoint(prog, c, n, 0)?)),
        ProgramKind::Tracepoint { .. } => Err(no_target(
            Mechanism::Tracepoint,
            "the section names no CATEGORY/NAME (use SEC(\"tracepoint/CAT/NAME\"))",
        )),
        ProgramKind::RawTracepoint { name: Some(n), .. } => {
            Ok(Box::new(raw_tracepoint::attach_raw_tracepoint(prog, n)?))
        }
        ProgramKind::RawTracepoint { name: None, .. } => Err(no_target(
            Mechanism::RawTracepoint,
            "the section names no tracepoint (use SEC(\"raw_tp/NAME\"))",
        )),
        ProgramKind::Tracing {
            attach_type: AttachType::TRACE_ITER,
            ..
        } => Ok(Box::new(iter::attach_iter(prog, IterTarget::All)?)),
        ProgramKind::SkLookup | ProgramKind::FlowDissector => {
            // The caller's own network namespace: the one it would mean by default.
            let ns = netns::open_netns("/proc/thread-self/ns/net")?;
            match kind {
                ProgramKind::SkLookup => Ok(Box::new(netns::attach_sk_lookup(prog, ns.as_fd())?)),
                _ => netns::attach_flow_dissector(prog, ns.as_fd()),
            }
        }
        ProgramKind::SkMsg | ProgramKind::SkSkb { .. } => Err(no_target(
            Mechanism::SockMap,
            "needs a sockmap: sockmap::attach_sockmap",
        )),
        ProgramKind::Netfilter => Err(no_target(
            Mechanism::Netfilter,
            "needs a protocol, hook and priority: netfilter::attach_netfilter",
        )),
        ProgramKind::PerfEvent => Err(no_target(
            Mechanism::PerfEvent,
            "needs a counter: perf::attach_perf_event",
        )),
        ProgramKind::StructOps { .. } => Err(no_target(
            Mechanism::StructOps,
            "struct_ops programs attach by registering their struct_ops map: struct_ops::register_struct_ops",
        )),
        ProgramKind::Extension { .. } => Err(no_target(
            Mechanism::Freplace,
            "needs the program it replaces a function of: freplace::attach_freplace",
        )),
        ProgramKind::Tracing {
            target: Some(_), ..
        }
        | ProgramKind::Lsm { hook: Some(_), .. } => {
            Ok(Box::new(tracing::attach_tracing(prog, kind, 0)?))
        }
        ProgramKind::Kprobe {
            function: Some(f),
            offset,
            retprobe,
        } => {
            // `ksyscall/NAME` arrives as a kprobe on NAME: use the arch's
            // syscall symbol when NAME itself is no kernel function.
            match kprobe::attach_kprobe(prog, f, *offset, *retprobe, 0) {
                Ok(l) => Ok(Box::new(l)),
                Err(e) if *offset == 0 && kprobe::syscall_symbol(f).is_ok() => {
                    let sym = kprobe::syscall_symbol(f)?;
                    kprobe::attach_kprobe(prog, &sym, 0, *retprobe, 0)
                        .map(|l| Box::new(l) as Box<dyn Link>)
                        .map_err(|_| e)
                }
                Err(e) => Err(e),
            }
        }
        ProgramKind::Uprobe {
            target: Some(t),
            retprobe,
        } => {
            let (path, sym) = t.rsplit_once(':').ok_or_else(|| {
                LinkError::target(Mechanism::Uprobe, t, "expected PATH:SYMBOL in the section")
            })?;
            Ok(Box::new(uprobe::attach_uprobe(
                prog,
                Path::new(path),
                sym,
                *retprobe,
                None,
            )?))
        }
        ProgramKind::Kprobe { .. } => Err(no_target(
            Mechanism::Kprobe,
            "the section names no function (use SEC(\"kprobe/FUNC\"))",
        )),
        ProgramKind::Uprobe { .. } => Err(no_target(
            Mechanism::Uprobe,
            "the section names no PATH:SYMBOL; call uprobe::attach_uprobe (usdt sections: usdt::attach_usdt)",
        )),
        ProgramKind::Tracing { .. } | ProgramKind::Lsm { .. } => Err(no_target(
            Mechanism::Tracing,
            "the section names no target function",
        )),
        ProgramKind::Xdp { .. } => Err(no_target(
            Mechanism::Xdp,
            "needs an interface: xdp::attach_xdp",
        )),
        ProgramKind::SchedCls | ProgramKind::Tcx { .. } => Err(no_target(
            Mechanism::Tcx,
            "needs an interface: tc::attach_tc / tc::attach_tcx",
        )),
        ProgramKind::SocketFilter => Err(no_target(
            Mechanism::SocketFilter,
            "needs a socket: socket_filter::attach_socket_filter",
        )),
        ProgramKind::CgroupSkb { .. } | ProgramKind::Cgroup { .. } | ProgramKind::SockOps => Err(
            no_target(Mechanism::Cgroup, "needs a cgroup: cgroup::attach_cgroup"),
        ),
        _ => Err(no_target(
            Mechanism::Link,
            "this program type has no target in its section; use the mechanism's attach function",
        )),
    }
}
