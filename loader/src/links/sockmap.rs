//! Programs on a sockmap or sockhash: `sk_msg` (runs on sendmsg of every
//! socket in the map) and `sk_skb` stream parser / stream verdict / verdict
//! (run on data received by those sockets). One program per attach type and
//! map: attaching again replaces it.
//!
//! Uses a `bpf_link` (`BPF_LINK_CREATE` with the map as target; minimum kernel
//! version 6.10) where the kernel has one, else `BPF_PROG_ATTACH` to the map
//! fd (minimum kernel version 4.17 for sk_msg, 4.14 for sk_skb).

use super::prog_attach::ProgAttachLink;
use super::{FdLink, Link, LinkError, Mechanism};
use crate::sys::link_attr::{self, AttachFlags, LinkCreateAttr, fd_u32};
use kiln_obj::AttachType;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Which sockmap hook.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SockMapHook {
    /// `sk_msg`: verdict on each sendmsg/sendfile.
    MsgVerdict,
    /// `sk_skb/stream_parser`: the length of the next message in the stream.
    StreamParser,
    /// `sk_skb/stream_verdict`: verdict per parsed message.
    StreamVerdict,
    /// `sk_skb/verdict`: verdict per skb without a parser (5.13+, also UDP).
    Verdict,
}

impl SockMapHook {
    /// The attach type of this hook.
    pub fn attach_type(self) -> AttachType {
        match self {
            SockMapHook::MsgVerdict => AttachType::SK_MSG_VERDICT,
            SockMapHook::StreamParser => AttachType::SK_SKB_STREAM_PARSER,
            SockMapHook::StreamVerdict => AttachType::SK_SKB_STREAM_VERDICT,
            SockMapHook::Verdict => AttachType::SK_SKB_VERDICT,
        }
    }

    /// The hook an `sk_msg`/`sk_skb/...` section names.
    pub fn from_attach_type(at: AttachType) -> Option<Self> {
        Some(match at {
            AttachType::SK_MSG_VERDICT => SockMapHook::MsgVerdict,
            AttachType::SK_SKB_STREAM_PARSER => SockMapHook::StreamParser,
            AttachType::SK_SKB_STREAM_VERDICT => SockMapHook::StreamVerdict,
            AttachType::SK_SKB_VERDICT => SockMapHook::Verdict,
            _ => return None,
        })
    }
}

fn target(map: BorrowedFd<'_>, hook: SockMapHook) -> String {
    format!("sockmap fd {} {hook:?}", map.as_raw_fd())
}

/// A sockmap `bpf_link`. Minimum kernel version: 6.10.
pub fn attach_sockmap_link(
    prog: BorrowedFd<'_>,
    map: BorrowedFd<'_>,
    hook: SockMapHook,
) -> Result<FdLink, LinkError> {
    let t = target(map, hook);
    let attr = LinkCreateAttr {
        prog_fd: fd_u32(prog),
        target: fd_u32(map),
        attach_type: hook.attach_type().0,
        ..Default::default()
    };
    let fd = link_attr::link_create(attr)
        .map_err(|e| LinkError::sys(Mechanism::SockMap, "attach", &t, e))?;
    Ok(FdLink::new(fd, Mechanism::SockMap, t))
}

/// `BPF_PROG_ATTACH` to the map: the kernel keeps it until detached or the
/// map goes away. Minimum kernel version: 4.14.
pub fn attach_sockmap_legacy(
    prog: BorrowedFd<'_>,
    map: BorrowedFd<'_>,
    hook: SockMapHook,
) -> Result<ProgAttachLink, LinkError> {
    ProgAttachLink::attach(
        Mechanism::SockMap,
        target(map, hook),
        prog,
        Some(map),
        hook.attach_type(),
        AttachFlags::empty(),
    )
}

/// Attaches the best way the kernel offers: a link, else `BPF_PROG_ATTACH`.
pub fn attach_sockmap(
    prog: BorrowedFd<'_>,
    map: BorrowedFd<'_>,
    hook: SockMapHook,
) -> Result<Box<dyn Link>, LinkError> {
    // Probed once: before 6.10 BPF_LINK_CREATE does not know sockmap attach types.
    if super::attach_point::has_link_kind("sockmap_link", "sockmap_link") {
        Ok(Box::new(attach_sockmap_link(prog, map, hook)?))
    } else {
        Ok(Box::new(attach_sockmap_legacy(prog, map, hook)?))
    }
}
