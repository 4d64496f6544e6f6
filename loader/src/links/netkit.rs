//! netkit devices: a pair of virtual devices (a primary, usually in the
//! host's namespace, and its peer, usually in a container's) whose
//! transmit path runs sched_cls programs attached as `bpf_link`s
//! (`BPF_NETKIT_PRIMARY` / `BPF_NETKIT_PEER`), ordered like tcx programs.
//!
//! Minimum kernel version: 6.7, with `CONFIG_NETKIT` (built in, never a
//! module); probe with `probe::features().link_kinds["netkit"]`.

use super::tc::{TcxAnchor, mprog_link};
use super::{FdLink, LinkError, Mechanism};
use kiln_obj::{AttachType, ProgramKind};
use std::os::fd::BorrowedFd;

/// Which end of the pair a program is attached for. Both are attached
/// through the primary's ifindex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NetkitSide {
    /// `BPF_NETKIT_PRIMARY`.
    Primary,
    /// `BPF_NETKIT_PEER`.
    Peer,
}

impl NetkitSide {
    /// The side a program's section (`netkit/primary`, `netkit/peer`)
    /// loads it for; `None` for a program that is not a netkit program.
    pub fn of_section(kind: &ProgramKind) -> Option<NetkitSide> {
        match kind {
            ProgramKind::Other {
                attach_type: Some(AttachType::NETKIT_PRIMARY),
                ..
            } => Some(NetkitSide::Primary),
            ProgramKind::Other {
                attach_type: Some(AttachType::NETKIT_PEER),
                ..
            } => Some(NetkitSide::Peer),
            _ => None,
        }
    }
}

/// Attaches a sched_cls program (section `netkit/primary` or `netkit/peer`)
/// to the netkit pair whose primary device is `primary_ifindex`. The
/// program returns `NETKIT_NEXT` (-1), `NETKIT_PASS` (0), `NETKIT_DROP` (2)
/// or `NETKIT_REDIRECT` (7).
pub fn attach_netkit(
    prog: BorrowedFd<'_>,
    primary_ifindex: u32,
    side: NetkitSide,
    anchor: TcxAnchor<'_>,
) -> Result<FdLink, LinkError> {
    let (attach_type, name) = match side {
        NetkitSide::Primary => (AttachType::NETKIT_PRIMARY, "primary"),
        NetkitSide::Peer => (AttachType::NETKIT_PEER, "peer"),
    };
    let target = format!("netkit {name} of interface index {primary_ifindex}");
    mprog_link(
        prog,
        primary_ifindex,
        attach_type,
        anchor,
        Mechanism::Netkit,
        target,
    )
}
