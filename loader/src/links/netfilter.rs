//! Netfilter hooks (`SEC("netfilter")`): a `bpf_link` on a protocol family's
//! hook at a priority, next to nftables/iptables chains. The program returns
//! `NF_ACCEPT` (1) or `NF_DROP` (0).
//!
//! Minimum kernel version: 6.4 (`IP_DEFRAG` flag 6.6).

use super::{FdLink, LinkError, Mechanism};
use crate::sys::link_attr::{self, LinkCreateAttr, NetfilterExtra, fd_u32};
use kiln_obj::AttachType;
use std::os::fd::BorrowedFd;

/// `NFPROTO_*`: the protocol family of the hook.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NfProto {
    /// `NFPROTO_IPV4`.
    Ipv4,
    /// `NFPROTO_IPV6`.
    Ipv6,
}

impl NfProto {
    fn raw(self) -> u32 {
        match self {
            NfProto::Ipv4 => 2,
            NfProto::Ipv6 => 10,
        }
    }

    /// The family of the kernel's `NFPROTO_*` value `pf`.
    pub fn from_raw(pf: u32) -> Option<NfProto> {
        [NfProto::Ipv4, NfProto::Ipv6]
            .into_iter()
            .find(|p| p.raw() == pf)
    }

    /// As a manifest names it: `ipv4`, `ipv6`.
    pub fn name(self) -> &'static str {
        match self {
            NfProto::Ipv4 => "ipv4",
            NfProto::Ipv6 => "ipv6",
        }
    }

    /// The family named `name` (`ipv4`, `ipv6`).
    pub fn from_name(name: &str) -> Option<NfProto> {
        [NfProto::Ipv4, NfProto::Ipv6]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

/// `NF_INET_*`: where in the IP stack the hook runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NfHook {
    /// `NF_INET_PRE_ROUTING`: every incoming packet, before routing.
    PreRouting,
    /// `NF_INET_LOCAL_IN`: packets for this host.
    LocalIn,
    /// `NF_INET_FORWARD`: packets routed through this host.
    Forward,
    /// `NF_INET_LOCAL_OUT`: packets this host sends.
    LocalOut,
    /// `NF_INET_POST_ROUTING`: every outgoing packet, after routing.
    PostRouting,
}

impl NfHook {
    fn raw(self) -> u32 {
        match self {
            NfHook::PreRouting => 0,
            NfHook::LocalIn => 1,
            NfHook::Forward => 2,
            NfHook::LocalOut => 3,
            NfHook::PostRouting => 4,
        }
    }

    const ALL: [NfHook; 5] = [
        NfHook::PreRouting,
        NfHook::LocalIn,
        NfHook::Forward,
        NfHook::LocalOut,
        NfHook::PostRouting,
    ];

    /// The hook of the kernel's `NF_INET_*` value `hooknum`.
    pub fn from_raw(hooknum: u32) -> Option<NfHook> {
        Self::ALL.into_iter().find(|h| h.raw() == hooknum)
    }

    /// As a manifest names it: `prerouting`, `input`, `forward`, `output`, `postrouting`.
    pub fn name(self) -> &'static str {
        match self {
            NfHook::PreRouting => "prerouting",
            NfHook::LocalIn => "input",
            NfHook::Forward => "forward",
            NfHook::LocalOut => "output",
            NfHook::PostRouting => "postrouting",
        }
    }

    /// The hook named `name`.
    pub fn from_name(name: &str) -> Option<NfHook> {
        Self::ALL.into_iter().find(|h| h.name() == name)
    }
}

/// `BPF_F_NETFILTER_*`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct NetfilterFlags(u32);

bitflags::bitflags! {
    impl NetfilterFlags: u32 {
        /// Reassemble fragments before the program sees them. Minimum kernel version: 6.6.
        const IP_DEFRAG = 1 << 0;
    }
}

/// Attaches a netfilter program to `hook` of `proto` at `priority` (lower
/// runs first; the kernel refuses `INT_MIN`/`INT_MAX` and, without
/// `IP_DEFRAG`, nothing constrains it further). Netfilter links cannot be
/// updated in place before 6.10 (EOPNOTSUPP).
pub fn attach_netfilter(
    prog: BorrowedFd<'_>,
    proto: NfProto,
    hook: NfHook,
    priority: i32,
    flags: NetfilterFlags,
) -> Result<FdLink, LinkError> {
    let target = format!("netfilter {proto:?} {hook:?} priority {priority}");
    let mut attr = LinkCreateAttr {
        prog_fd: fd_u32(prog),
        attach_type: AttachType::NETFILTER.0,
        ..Default::default()
    };
    attr.extra.netfilter = NetfilterExtra {
        pf: proto.raw(),
        hooknum: hook.raw(),
        priority,
        flags: flags.bits(),
    };
    let fd = link_attr::link_create(attr)
        .map_err(|e| LinkError::sys(Mechanism::Netfilter, "attach", &target, e))?;
    Ok(FdLink::new(fd, Mechanism::Netfilter, target))
}
