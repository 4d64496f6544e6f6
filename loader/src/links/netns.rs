//! Hooks on a network namespace: `sk_lookup` (minimum kernel version 5.9) and
//! the flow dissector (a `bpf_link` from 5.8, `BPF_PROG_ATTACH` to the
//! caller's namespace from 4.20). The target is an fd of the namespace
//! (`/proc/self/ns/net`, `/run/netns/NAME`).

use super::prog_attach::ProgAttachLink;
use super::{FdLink, Link, LinkError, Mechanism};
use crate::sys::link_attr::{self, AttachFlags, LinkCreateAttr, fd_u32};
use kiln_obj::AttachType;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// Opens a network namespace file (`/proc/self/ns/net`, `/run/netns/NAME`).
pub fn open_netns(path: impl AsRef<Path>) -> Result<OwnedFd, LinkError> {
    let path = path.as_ref();
    std::fs::File::open(path).map(OwnedFd::from).map_err(|e| {
        LinkError::kernel(
            Mechanism::SkLookup,
            "open netns",
            path.display().to_string(),
            e,
        )
    })
}

fn netns_name(netns: BorrowedFd<'_>) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", netns.as_raw_fd()))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| format!("fd {}", netns.as_raw_fd()))
}

fn netns_link(
    prog: BorrowedFd<'_>,
    netns: BorrowedFd<'_>,
    attach_type: AttachType,
    m: Mechanism,
) -> Result<FdLink, LinkError> {
    let target = format!("{m} on netns {}", netns_name(netns));
    let attr = LinkCreateAttr {
        prog_fd: fd_u32(prog),
        target: fd_u32(netns),
        attach_type: attach_type.0,
        ..Default::default()
    };
    let fd = link_attr::link_create(attr).map_err(|e| LinkError::sys(m, "attach", &target, e))?;
    Ok(FdLink::new(fd, m, target))
}

/// Attaches an `sk_lookup` program to a network namespace. Several programs
/// may be attached; they run in attach order. Minimum kernel version: 5.9.
pub fn attach_sk_lookup(prog: BorrowedFd<'_>, netns: BorrowedFd<'_>) -> Result<FdLink, LinkError> {
    netns_link(prog, netns, AttachType::SK_LOOKUP, Mechanism::SkLookup)
}

/// Attaches a flow dissector program to a network namespace as a `bpf_link`
/// (minimum kernel version 5.8), the one flow dissector of that namespace.
pub fn attach_flow_dissector_link(
    prog: BorrowedFd<'_>,
    netns: BorrowedFd<'_>,
) -> Result<FdLink, LinkError> {
    netns_link(
        prog,
        netns,
        AttachType::FLOW_DISSECTOR,
        Mechanism::FlowDissector,
    )
}

/// Attaches a flow dissector the best way the kernel offers: a link on
/// `netns`, else `BPF_PROG_ATTACH`, which targets the caller's own namespace
/// (so `netns` must be the calling thread's). Minimum kernel version: 4.20.
pub fn attach_flow_dissector(
    prog: BorrowedFd<'_>,
    netns: BorrowedFd<'_>,
) -> Result<Box<dyn Link>, LinkError> {
    // Probed once, never by retrying on EINVAL (which a link the kernel
    // has also answers, for a bad target).
    if super::attach_point::has_link_kind("netns_link", "bpf_netns_link") {
        return Ok(Box::new(attach_flow_dissector_link(prog, netns)?));
    }
    Ok(Box::new(ProgAttachLink::attach(
        Mechanism::FlowDissector,
        "flow dissector of the caller's netns".into(),
        prog,
        None,
        AttachType::FLOW_DISSECTOR,
        AttachFlags::empty(),
    )?))
}
