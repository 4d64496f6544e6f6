//! BTF-typed hooks: `tp_btf`, `fentry`, `fexit`, `fmod_ret` (program type
//! tracing) and `lsm`. The target is fixed when the program is loaded (its
//! `attach_btf_id`, resolved here from the kernel's BTF by
//! [`vmlinux_attach_btf_id`]); attaching just creates the link.
//!
//! Minimum kernel version: 5.5 (tp_btf, fentry/fexit), 5.7 (fmod_ret, lsm);
//! cookies need 5.19 (`BPF_LINK_CREATE` for tracing).

use super::{FdLink, LinkError, Mechanism};
use crate::sys::link_attr::{self, LinkCreateAttr, TracingExtra, fd_u32};
use kiln_obj::btf::Btf;
use kiln_obj::btf::types::Kind;
use kiln_obj::{AttachType, ProgramKind};
use std::os::fd::BorrowedFd;

/// The kernel BTF name that a section's target stands for, and its BTF kind:
/// `tp_btf/X` → typedef `btf_trace_X`, `fentry/X` → func `X`, `lsm/X` →
/// func `bpf_lsm_X`, `iter/X` → func `bpf_iter_X`.
pub fn btf_target_name(kind: &ProgramKind) -> Option<(String, Kind)> {
    match kind {
        ProgramKind::Tracing {
            attach_type,
            target: Some(t),
        } => Some(match *attach_type {
            AttachType::TRACE_RAW_TP => (format!("btf_trace_{t}"), Kind::Typedef),
            AttachType::TRACE_ITER => (format!("bpf_iter_{t}"), Kind::Func),
            _ => (t.clone(), Kind::Func),
        }),
        ProgramKind::Lsm { hook: Some(h), .. } => Some((format!("bpf_lsm_{h}"), Kind::Func)),
        _ => None,
    }
}

fn mechanism_of(kind: &ProgramKind) -> Mechanism {
    match kind {
        ProgramKind::Lsm { .. } => Mechanism::Lsm,
        ProgramKind::Tracing {
            attach_type: AttachType::TRACE_ITER,
            ..
        } => Mechanism::Iter,
        _ => Mechanism::Tracing,
    }
}

/// The `attach_btf_id` BPF_PROG_LOAD needs for a tracing/lsm/iter program,
/// looked up in `vmlinux` BTF (`/sys/kernel/btf/vmlinux` when `None`).
/// `Ok(None)` for kinds that need none.
pub fn vmlinux_attach_btf_id(
    kind: &ProgramKind,
    vmlinux: Option<&Btf>,
) -> Result<Option<u32>, LinkError> {
    let Some((name, btf_kind)) = btf_target_name(kind) else {
        return Ok(None);
    };
    let mechanism = mechanism_of(kind);
    let btf = match vmlinux {
        Some(b) => b,
        None => crate::externs::kernel_btf(None)
            .map_err(|e| LinkError::target(mechanism, &name, e.to_string()))?,
    };
    btf.id_by_name(&name, btf_kind).map(Some).ok_or_else(|| {
        LinkError::target(
            mechanism,
            &name,
            format!("no {btf_kind:?} of that name in the kernel's BTF"),
        )
    })
}

/// Attaches a loaded tp_btf/fentry/fexit/fmod_ret/lsm program to the target it
/// was loaded for. With a `cookie`, uses `BPF_LINK_CREATE` (5.19+); without,
/// `BPF_RAW_TRACEPOINT_OPEN` (works from 5.5).
pub fn attach_tracing(
    prog: BorrowedFd<'_>,
    kind: &ProgramKind,
    cookie: u64,
) -> Result<FdLink, LinkError> {
    let mechanism = mechanism_of(kind);
    let target = match btf_target_name(kind) {
        Some((name, _)) => format!("{mechanism} {name}"),
        None => format!("{mechanism} (target from load)"),
    };
    let fd = if cookie == 0 {
        link_attr::raw_tracepoint_open(prog, None, 0)
    } else {
        let attach_type = kind
            .expected_attach_type()
            .unwrap_or(AttachType::TRACE_FENTRY);
        let mut attr = LinkCreateAttr {
            prog_fd: fd_u32(prog),
            attach_type: attach_type.0,
            ..Default::default()
        };
        attr.extra.tracing = TracingExtra {
            cookie,
            ..Default::default()
        };
        link_attr::link_create(attr)
    }
    .map_err(|e| LinkError::sys(mechanism, "attach", &target, e))?;
    Ok(FdLink::new(fd, mechanism, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names() {
        let tp = ProgramKind::Tracing {
            attach_type: AttachType::TRACE_RAW_TP,
            target: Some("sched_switch".into()),
        };
        assert_eq!(
            btf_target_name(&tp),
            Some(("btf_trace_sched_switch".into(), Kind::Typedef))
        );
        let lsm = ProgramKind::Lsm {
            hook: Some("file_open".into()),
            cgroup: false,
        };
        assert_eq!(
            btf_target_name(&lsm),
            Some(("bpf_lsm_file_open".into(), Kind::Func))
        );
        assert_eq!(btf_target_name(&ProgramKind::SocketFilter), None);
    }
}
