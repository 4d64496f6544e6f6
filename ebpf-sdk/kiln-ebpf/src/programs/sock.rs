//! Socket-level contexts: cgroup sock/sock_addr hooks, sock_ops, sk_lookup,
//! sk_msg.

use super::{context, ctx_field};
use crate::bindings::{bpf_sk_lookup, bpf_sock, bpf_sock_addr, bpf_sock_ops, sk_msg_md};

context! {
    /// `cgroup/sock_create`, `cgroup/post_bind4`, ... (`struct bpf_sock`).
    SockContext, sock: bpf_sock
}

impl SockContext {
    /// Address family.
    #[inline(always)]
    pub fn family(&self) -> u32 {
        ctx_field!(self.sock, family)
    }
    /// Socket type (`SOCK_STREAM`, ...).
    #[inline(always)]
    pub fn sock_type(&self) -> u32 {
        ctx_field!(self.sock, r#type)
    }
    /// IP protocol.
    #[inline(always)]
    pub fn protocol(&self) -> u32 {
        ctx_field!(self.sock, protocol)
    }
}

context! {
    /// `cgroup/connect4`, `cgroup/bind4`, `cgroup/sendmsg4`, ... (`struct bpf_sock_addr`).
    SockAddrContext, addr: bpf_sock_addr
}

impl SockAddrContext {
    /// Address family of the user's sockaddr.
    #[inline(always)]
    pub fn user_family(&self) -> u32 {
        ctx_field!(self.addr, user_family)
    }
    /// IPv4 address (network byte order).
    #[inline(always)]
    pub fn user_ip4(&self) -> u32 {
        ctx_field!(self.addr, user_ip4)
    }
    /// Port (network byte order, in the low 16 bits).
    #[inline(always)]
    pub fn user_port(&self) -> u32 {
        ctx_field!(self.addr, user_port)
    }
    /// Rewrites the IPv4 address (connect4/sendmsg4).
    #[inline(always)]
    pub fn set_user_ip4(&self, ip: u32) {
        // SAFETY: user_ip4 allows 4-byte writes in the sock_addr hooks.
        unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!((*self.addr).user_ip4), ip) }
    }
    /// Rewrites the port (network byte order).
    #[inline(always)]
    pub fn set_user_port(&self, port: u32) {
        // SAFETY: user_port allows 4-byte writes in the sock_addr hooks.
        unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!((*self.addr).user_port), port) }
    }
    /// IP protocol.
    #[inline(always)]
    pub fn protocol(&self) -> u32 {
        ctx_field!(self.addr, protocol)
    }
}

context! {
    /// `sockops` programs (`struct bpf_sock_ops`).
    SockOpsContext, ops: bpf_sock_ops
}

impl SockOpsContext {
    /// The callback (`BPF_SOCK_OPS_*_CB`).
    #[inline(always)]
    pub fn op(&self) -> u32 {
        ctx_field!(self.ops, op)
    }
    /// Address family.
    #[inline(always)]
    pub fn family(&self) -> u32 {
        ctx_field!(self.ops, family)
    }
    /// Local port (host byte order).
    #[inline(always)]
    pub fn local_port(&self) -> u32 {
        ctx_field!(self.ops, local_port)
    }
    /// Remote port (network byte order).
    #[inline(always)]
    pub fn remote_port(&self) -> u32 {
        ctx_field!(self.ops, remote_port)
    }
    /// Sets `reply` (the callback's answer).
    #[inline(always)]
    pub fn set_reply(&self, reply: u32) {
        // SAFETY: `reply` (args[0] in the union) is writable in sock_ops.
        unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!((*self.ops).args[0]), reply) }
    }
}

context! {
    /// `sk_lookup` programs (`struct bpf_sk_lookup`).
    SkLookupContext, lookup: bpf_sk_lookup
}

impl SkLookupContext {
    /// Address family.
    #[inline(always)]
    pub fn family(&self) -> u32 {
        ctx_field!(self.lookup, family)
    }
    /// IP protocol.
    #[inline(always)]
    pub fn protocol(&self) -> u32 {
        ctx_field!(self.lookup, protocol)
    }
    /// Local (destination) port, host byte order.
    #[inline(always)]
    pub fn local_port(&self) -> u32 {
        ctx_field!(self.lookup, local_port)
    }
}

context! {
    /// `sk_msg` programs (`struct sk_msg_md`).
    SkMsgContext, msg: sk_msg_md
}

impl SkMsgContext {
    /// Start of the message data.
    #[inline(always)]
    pub fn data(&self) -> usize {
        ctx_field!(self.msg, data) as usize
    }
    /// End of the message data.
    #[inline(always)]
    pub fn data_end(&self) -> usize {
        ctx_field!(self.msg, data_end) as usize
    }
    /// Total message size.
    #[inline(always)]
    pub fn size(&self) -> u32 {
        ctx_field!(self.msg, size)
    }
}
