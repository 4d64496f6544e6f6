//! cgroup hooks (cgroup_skb, cgroup_sock, cgroup_sock_addr, sock_ops,
//! cgroup_device, cgroup_sysctl, cgroup_sockopt, lsm_cgroup): a `bpf_link` to
//! a cgroup v2 directory fd (minimum kernel version 5.7), falling back to
//! `BPF_PROG_ATTACH` with `BPF_F_ALLOW_MULTI` (4.15; `BPF_F_REPLACE` 5.6).

use super::prog_attach::ProgAttachLink;
use super::{FdLink, Link, LinkError, Mechanism};
use crate::sys::link_attr::{self, AttachFlags, LinkCreateAttr, QueryResult, fd_u32};
use kiln_obj::AttachType;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// Opens a cgroup v2 directory (e.g. `/sys/fs/cgroup/unified/my.slice`) for attaching.
pub fn open_cgroup(path: impl AsRef<Path>) -> Result<OwnedFd, LinkError> {
    let path = path.as_ref();
    std::fs::File::open(path).map(OwnedFd::from).map_err(|e| {
        LinkError::kernel(
            Mechanism::Cgroup,
            "open cgroup",
            path.display().to_string(),
            e,
        )
    })
}

fn target(cgroup: BorrowedFd<'_>, attach_type: AttachType) -> String {
    let path = std::fs::read_link(format!("/proc/self/fd/{}", cgroup.as_raw_fd()))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| format!("fd {}", cgroup.as_raw_fd()));
    format!("cgroup {path} attach type {}", attach_type.0)
}

/// Attaches to a cgroup as a `bpf_link` (coexists with other programs, like
/// `BPF_F_ALLOW_MULTI`). Minimum kernel version: 5.7.
pub fn attach_cgroup_link(
    prog: BorrowedFd<'_>,
    cgroup: BorrowedFd<'_>,
    attach_type: AttachType,
) -> Result<FdLink, LinkError> {
    let t = target(cgroup, attach_type);
    let attr = LinkCreateAttr {
        prog_fd: fd_u32(prog),
        target: fd_u32(cgroup),
        attach_type: attach_type.0,
        ..Default::default()
    };
    let fd = link_attr::link_create(attr)
        .map_err(|e| LinkError::sys(Mechanism::Cgroup, "attach", &t, e))?;
    Ok(FdLink::new(fd, Mechanism::Cgroup, t))
}

/// Attaches with `BPF_PROG_ATTACH` and `flags` (usually `ALLOW_MULTI`).
pub fn attach_cgroup_legacy(
    prog: BorrowedFd<'_>,
    cgroup: BorrowedFd<'_>,
    attach_type: AttachType,
    flags: AttachFlags,
) -> Result<ProgAttachLink, LinkError> {
    ProgAttachLink::attach(
        Mechanism::Cgroup,
        target(cgroup, attach_type),
        prog,
        Some(cgroup),
        attach_type,
        flags,
    )
}

/// The best the kernel offers (probed once): a link, else
/// `BPF_PROG_ATTACH` with `ALLOW_MULTI`.
pub fn attach_cgroup(
    prog: BorrowedFd<'_>,
    cgroup: BorrowedFd<'_>,
    attach_type: AttachType,
) -> Result<Box<dyn Link>, LinkError> {
    if super::attach_point::has_link_kind("cgroup_link", "bpf_cgroup_link") {
        Ok(Box::new(attach_cgroup_link(prog, cgroup, attach_type)?))
    } else {
        Ok(Box::new(attach_cgroup_legacy(
            prog,
            cgroup,
            attach_type,
            AttachFlags::ALLOW_MULTI,
        )?))
    }
}

/// The programs (and, from 6.6, links) attached to a cgroup hook.
pub fn query_cgroup(
    cgroup: BorrowedFd<'_>,
    attach_type: AttachType,
) -> Result<QueryResult, LinkError> {
    link_attr::prog_query(fd_u32(cgroup), attach_type.0)
        .map_err(|e| LinkError::sys(Mechanism::Cgroup, "query", target(cgroup, attach_type), e))
}
