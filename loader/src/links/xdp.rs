//! XDP on a network interface: a `bpf_link` (`BPF_LINK_CREATE`, attach type
//! `BPF_XDP`; minimum kernel version 5.9), falling back to netlink
//! (`RTM_SETLINK` with `IFLA_XDP`; minimum kernel version 4.8, `EXPECTED_FD`
//! replacement 5.7) where links are missing.

use super::{FdLink, Link, LinkError, Mechanism};
use crate::netlink::{self, Message, RouteSocket};
use crate::sys::link_attr::{self, LinkCreateAttr, fd_u32};
use kiln_obj::AttachType;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `XDP_FLAGS_*`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct XdpFlags(u32);

bitflags::bitflags! {
    impl XdpFlags: u32 {
        /// Fail if a program is already attached (netlink only).
        const UPDATE_IF_NOEXIST = 1 << 0;
        /// Generic (skb) mode: works on every device, slowest.
        const SKB_MODE = 1 << 1;
        /// Native (driver) mode.
        const DRV_MODE = 1 << 2;
        /// Offloaded to the NIC.
        const HW_MODE = 1 << 3;
        /// Replace the program given as expected fd (netlink only).
        const REPLACE = 1 << 4;
    }
}

const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;
const IFLA_XDP_EXPECTED_FD: u16 = 8;
/// `XDP_ATTACHED_*` of `IFLA_XDP_ATTACHED`.
const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;
const XDP_ATTACHED_HW: u8 = 3;
const XDP_ATTACHED_MULTI: u8 = 4;
const MODES: XdpFlags = XdpFlags::SKB_MODE
    .union(XdpFlags::DRV_MODE)
    .union(XdpFlags::HW_MODE);

fn target(ifindex: u32) -> String {
    format!("interface index {ifindex}")
}

/// Attaches an XDP program to `ifindex` with mode `flags` (empty: the kernel
/// picks native if the driver has it, else generic). Tries a `bpf_link`
/// first; on kernels without XDP links uses netlink.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kiln_loader::links::xdp::{XdpFlags, attach_xdp};
///
/// let ebpf = kiln_loader::load_file("target/bpf/counter.bpf.o")?;
/// let program = ebpf.program("count_packets").ok_or("no program count_packets")?;
/// let ifindex = kiln_loader::netlink::ifindex("eth0")?;
/// // Generic mode works on every device; empty flags let the kernel pick.
/// let _link = attach_xdp(program.fd(), ifindex, XdpFlags::SKB_MODE)?;
/// # Ok(())
/// # }
/// ```
pub fn attach_xdp(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    flags: XdpFlags,
) -> Result<Box<dyn Link>, LinkError> {
    attach_xdp_with(prog, ifindex, flags, XdpApi::Auto)
}

/// Which kernel interface [`attach_xdp_with`] uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum XdpApi {
    /// A `bpf_link`, falling back to netlink on kernels without XDP links.
    #[default]
    Auto,
    /// Only a `bpf_link` (fails before 5.9).
    Link,
    /// Only netlink, as on a kernel without XDP links (or to coexist with
    /// tools that manage the interface's XDP program over netlink).
    Netlink,
}

/// [`attach_xdp`] with the kernel interface chosen by `api`.
pub fn attach_xdp_with(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    flags: XdpFlags,
    api: XdpApi,
) -> Result<Box<dyn Link>, LinkError> {
    // Auto: probed once (no BPF_XDP attach type before 5.9), never by
    // retrying on EINVAL, which the kernel also answers for a bad target.
    let link = match api {
        XdpApi::Netlink => false,
        XdpApi::Link => true,
        XdpApi::Auto => super::attach_point::has_link_kind("xdp_link", "bpf_xdp_link"),
    };
    if link {
        Ok(Box::new(attach_xdp_link(prog, ifindex, flags)?))
    } else {
        Ok(Box::new(attach_xdp_netlink(prog, ifindex, flags, None)?))
    }
}

/// XDP as a `bpf_link`. Minimum kernel version: 5.9.
pub fn attach_xdp_link(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    flags: XdpFlags,
) -> Result<FdLink, LinkError> {
    let attr = LinkCreateAttr {
        prog_fd: fd_u32(prog),
        target: ifindex,
        attach_type: AttachType::XDP.0,
        flags: (flags & MODES).bits(),
        ..Default::default()
    };
    let fd = link_attr::link_create(attr)
        .map_err(|e| LinkError::sys(Mechanism::Xdp, "attach", target(ifindex), e))?;
    Ok(FdLink::new(fd, Mechanism::Xdp, target(ifindex)))
}

/// An XDP program attached over netlink. The kernel keeps it on the interface
/// until it is detached: dropping this handle detaches unless [`Link::keep`]
/// was called; [`detach_xdp_netlink`] removes it from a later process.
#[derive(Debug)]
pub struct NetlinkXdp {
    ifindex: u32,
    flags: XdpFlags,
    /// Current program id, for the "is it still ours" check on detach.
    prog_id: u32,
    attached: bool,
}

fn set_link_xdp(
    ifindex: u32,
    fd: i32,
    flags: XdpFlags,
    expected: Option<i32>,
) -> Result<(), netlink::NetlinkError> {
    let mut sock = RouteSocket::open()?;
    let mut m = Message::new(netlink::RTM_SETLINK, netlink::NLM_F_ACK);
    m.push(&netlink::ifinfomsg(ifindex));
    let nest = m.begin_nest(IFLA_XDP);
    m.attr(IFLA_XDP_FD, &fd.to_ne_bytes());
    let mut flags = flags;
    if let Some(expected) = expected {
        flags |= XdpFlags::REPLACE;
        m.attr(IFLA_XDP_EXPECTED_FD, &expected.to_ne_bytes());
    }
    if !flags.is_empty() {
        m.attr_u32(IFLA_XDP_FLAGS, flags.bits());
    }
    m.end_nest(nest);
    sock.request(&mut m).map(drop)
}

/// Attaches over netlink; `replace` is the program expected to be attached now
/// (atomic replacement, 5.7+).
pub fn attach_xdp_netlink(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    flags: XdpFlags,
    replace: Option<BorrowedFd<'_>>,
) -> Result<NetlinkXdp, LinkError> {
    let err = |op, e: netlink::NetlinkError| {
        LinkError::kernel(Mechanism::Xdp, op, target(ifindex), e.into_io())
    };
    set_link_xdp(
        ifindex,
        prog.as_raw_fd(),
        flags,
        replace.map(|r| r.as_raw_fd()),
    )
    .map_err(|e| err("attach (netlink)", e))?;
    let prog_id = link_attr::prog_id(prog)
        .map_err(|e| LinkError::sys(Mechanism::Xdp, "read program id", target(ifindex), e))?;
    Ok(NetlinkXdp {
        ifindex,
        flags: flags & !(XdpFlags::REPLACE),
        prog_id,
        attached: true,
    })
}

/// Sets the netlink XDP program of `ifindex` to `prog` (`None`: removes it)
/// in mode `flags`; with `expected`, only if that program is attached now
/// (atomic, 5.7+).
pub(crate) fn replace_xdp_netlink(
    prog: Option<BorrowedFd<'_>>,
    ifindex: u32,
    flags: XdpFlags,
    expected: Option<BorrowedFd<'_>>,
) -> std::io::Result<()> {
    set_link_xdp(
        ifindex,
        prog.map_or(-1, |p| p.as_raw_fd()),
        flags,
        expected.map(|e| e.as_raw_fd()),
    )
    .map_err(netlink::NetlinkError::into_io)
}

/// The nested `IFLA_XDP` attribute of `ifindex` (`RTM_GETLINK`), if any.
fn xdp_attribute(ifindex: u32) -> Result<Option<Vec<u8>>, LinkError> {
    let err = |e: netlink::NetlinkError| {
        LinkError::kernel(Mechanism::Xdp, "query", target(ifindex), e.into_io())
    };
    let mut sock = RouteSocket::open().map_err(err)?;
    let mut m = Message::new(netlink::RTM_GETLINK, 0);
    m.push(&netlink::ifinfomsg(ifindex));
    let replies = sock.request(&mut m).map_err(err)?;
    Ok(replies.iter().find_map(|r| {
        let attrs = r.payload.get(16..)?;
        netlink::find_attr(attrs, IFLA_XDP).map(<[u8]>::to_vec)
    }))
}

/// The XDP program attached to `ifindex` by any means: `(program id, mode)`.
pub fn query_xdp(ifindex: u32) -> Result<Option<(u32, u8)>, LinkError> {
    let Some(xdp) = xdp_attribute(ifindex)? else {
        return Ok(None);
    };
    let mode = netlink::find_attr(&xdp, IFLA_XDP_ATTACHED)
        .and_then(|v| v.first().copied())
        .unwrap_or(0);
    let id = netlink::attr_u32(&xdp, IFLA_XDP_PROG_ID).unwrap_or(0);
    Ok((mode != 0).then_some((id, mode)))
}

/// The programs an interface runs in each XDP mode (by program id): a
/// device can hold one generic (skb), one native (driver) and one
/// offloaded program at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpAttached {
    /// `XDP_FLAGS_SKB_MODE`.
    pub generic: Option<u32>,
    /// `XDP_FLAGS_DRV_MODE`.
    pub native: Option<u32>,
    /// `XDP_FLAGS_HW_MODE`.
    pub offload: Option<u32>,
}

impl XdpAttached {
    /// The mode `prog_id` runs in on this interface, as `XdpFlags`.
    pub fn mode_of(&self, prog_id: u32) -> Option<XdpFlags> {
        [
            (self.generic, XdpFlags::SKB_MODE),
            (self.native, XdpFlags::DRV_MODE),
            (self.offload, XdpFlags::HW_MODE),
        ]
        .into_iter()
        .find_map(|(id, mode)| (id == Some(prog_id)).then_some(mode))
    }
}

/// What runs on `ifindex`'s XDP hook in each mode, links and netlink
/// attachments alike (read with `RTM_GETLINK`).
pub fn query_xdp_modes(ifindex: u32) -> Result<XdpAttached, LinkError> {
    let mut out = XdpAttached::default();
    let Some(xdp) = xdp_attribute(ifindex)? else {
        return Ok(out);
    };
    let attached = netlink::find_attr(&xdp, IFLA_XDP_ATTACHED)
        .and_then(|v| v.first().copied())
        .unwrap_or(0);
    let id = |kind| netlink::attr_u32(&xdp, kind).filter(|id| *id != 0);
    // One mode: the kernel reports only IFLA_XDP_PROG_ID; several: one id per mode.
    match attached {
        XDP_ATTACHED_DRV => out.native = id(IFLA_XDP_PROG_ID),
        XDP_ATTACHED_SKB => out.generic = id(IFLA_XDP_PROG_ID),
        XDP_ATTACHED_HW => out.offload = id(IFLA_XDP_PROG_ID),
        XDP_ATTACHED_MULTI => {
            out.native = id(IFLA_XDP_DRV_PROG_ID);
            out.generic = id(IFLA_XDP_SKB_PROG_ID);
            out.offload = id(IFLA_XDP_HW_PROG_ID);
        }
        _ => {}
    }
    Ok(out)
}

/// Removes the netlink-attached XDP program of `ifindex` (mode `flags`).
pub fn detach_xdp_netlink(ifindex: u32, flags: XdpFlags) -> Result<(), LinkError> {
    set_link_xdp(ifindex, -1, flags & MODES, None).map_err(|e| {
        LinkError::kernel(
            Mechanism::Xdp,
            "detach (netlink)",
            target(ifindex),
            e.into_io(),
        )
    })
}

impl Link for NetlinkXdp {
    fn mechanism(&self) -> Mechanism {
        Mechanism::Xdp
    }

    fn target(&self) -> String {
        target(self.ifindex)
    }

    /// Atomic replacement with `IFLA_XDP_EXPECTED_FD` (5.7+); without
    /// `old_prog`, replaces whatever is attached.
    fn update(
        &mut self,
        new_prog: BorrowedFd<'_>,
        old_prog: Option<BorrowedFd<'_>>,
    ) -> Result<(), LinkError> {
        let mut new = attach_xdp_netlink(new_prog, self.ifindex, self.flags, old_prog)?;
        // `self` stays the owner of the attachment; `new` must not detach it.
        new.attached = false;
        self.prog_id = new.prog_id;
        Ok(())
    }

    fn detach(&mut self) -> Result<(), LinkError> {
        if !std::mem::take(&mut self.attached) {
            return Ok(());
        }
        // Only remove the program if it is still ours: another process may
        // have replaced it since.
        match query_xdp(self.ifindex)? {
            Some((id, _)) if id == self.prog_id => detach_xdp_netlink(self.ifindex, self.flags),
            _ => Ok(()),
        }
    }

    fn keep(&mut self) -> Result<(), LinkError> {
        self.attached = false;
        Ok(())
    }
}

impl Drop for NetlinkXdp {
    fn drop(&mut self) {
        let _ = self.detach();
    }
}
