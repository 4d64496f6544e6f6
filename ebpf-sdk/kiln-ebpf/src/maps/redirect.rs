//! Maps whose entries are kernel objects to redirect to: sockets (sockmap,
//! sockhash), devices (devmap), CPUs (cpumap) and AF_XDP sockets (xskmap).

use super::map_struct;
use crate::bindings::map_type::*;
use crate::helpers;
use crate::programs::{SkBuffContext, SkMsgContext, SockOpsContext};

map_struct! {
    /// `BPF_MAP_TYPE_SOCKMAP`: sockets by index, for sk_msg/sk_skb redirects.
    ///
    /// Minimum kernel version: 4.14.
    SockMap [] type = BPF_MAP_TYPE_SOCKMAP,
    fields { key: *const u32, value: *const u32 }
    flags_default = 0
}

impl<const M: usize, const F: usize, const P: usize> SockMap<M, F, P> {
    /// Redirects a message to the socket at `index` (`bpf_msg_redirect_map`).
    #[inline(always)]
    pub fn redirect_msg(&self, ctx: &SkMsgContext, index: u32, flags: u64) -> i64 {
        // SAFETY: `ctx` is an sk_msg context and `self` a sockmap.
        unsafe { helpers::bpf_msg_redirect_map(ctx.msg.cast(), self.as_ptr(), index, flags) }
    }

    /// Redirects an skb to the socket at `index` (`bpf_sk_redirect_map`).
    #[inline(always)]
    pub fn redirect_skb(&self, ctx: &SkBuffContext, index: u32, flags: u64) -> i64 {
        // SAFETY: `ctx` is an sk_skb context and `self` a sockmap.
        unsafe { helpers::bpf_sk_redirect_map(ctx.skb.cast(), self.as_ptr(), index, flags) }
    }

    /// Adds the socket of a sock_ops callback at `index` (`bpf_sock_map_update`).
    #[inline(always)]
    pub fn update(&self, ctx: &SockOpsContext, index: u32, flags: u64) -> Result<(), i64> {
        let mut key = index;
        // SAFETY: `ctx` is a sock_ops context and `key` a readable u32.
        let ret = unsafe {
            helpers::bpf_sock_map_update(
                ctx.ops.cast(),
                self.as_ptr(),
                (&mut key as *mut u32).cast(),
                flags,
            )
        };
        if ret < 0 { Err(ret) } else { Ok(()) }
    }
}

map_struct! {
    /// `BPF_MAP_TYPE_SOCKHASH`: sockets by key `K`.
    ///
    /// Minimum kernel version: 4.18.
    SockHash [K] type = BPF_MAP_TYPE_SOCKHASH,
    fields { key: *const K, value: *const u32 }
    flags_default = 0
}

impl<K, const M: usize, const F: usize, const P: usize> SockHash<K, M, F, P> {
    /// Redirects a message to the socket under `key` (`bpf_msg_redirect_hash`).
    #[inline(always)]
    pub fn redirect_msg(&self, ctx: &SkMsgContext, key: &K, flags: u64) -> i64 {
        // SAFETY: `ctx` is an sk_msg context, `self` a sockhash, `key` readable.
        unsafe {
            helpers::bpf_msg_redirect_hash(
                ctx.msg.cast(),
                self.as_ptr(),
                (key as *const K).cast_mut().cast(),
                flags,
            )
        }
    }

    /// Redirects an skb to the socket under `key` (`bpf_sk_redirect_hash`).
    #[inline(always)]
    pub fn redirect_skb(&self, ctx: &SkBuffContext, key: &K, flags: u64) -> i64 {
        // SAFETY: `ctx` is an sk_skb context, `self` a sockhash, `key` readable.
        unsafe {
            helpers::bpf_sk_redirect_hash(
                ctx.skb.cast(),
                self.as_ptr(),
                (key as *const K).cast_mut().cast(),
                flags,
            )
        }
    }

    /// Adds the socket of a sock_ops callback under `key` (`bpf_sock_hash_update`).
    #[inline(always)]
    pub fn update(&self, ctx: &SockOpsContext, key: &K, flags: u64) -> Result<(), i64> {
        // SAFETY: `ctx` is a sock_ops context, `key` readable.
        let ret = unsafe {
            helpers::bpf_sock_hash_update(
                ctx.ops.cast(),
                self.as_ptr(),
                (key as *const K).cast_mut().cast(),
                flags,
            )
        };
        if ret < 0 { Err(ret) } else { Ok(()) }
    }
}

/// `bpf_redirect_map` for the XDP redirect maps.
macro_rules! xdp_redirect {
    ($name:ident) => {
        impl<const M: usize, const F: usize, const P: usize> $name<M, F, P> {
            /// Redirects the packet to entry `key` (`bpf_redirect_map`); the
            /// low bits of `flags` are the verdict when the entry is missing.
            /// Returns the XDP verdict to return from the program.
            #[inline(always)]
            pub fn redirect(&self, key: u32, flags: u64) -> u32 {
                // SAFETY: `self` is a redirect map.
                unsafe { helpers::bpf_redirect_map(self.as_ptr(), key, flags) as u32 }
            }
        }
    };
}

map_struct! {
    /// `BPF_MAP_TYPE_DEVMAP`: interfaces by index, for XDP redirects.
    ///
    /// Minimum kernel version: 4.14.
    DevMap [] type = BPF_MAP_TYPE_DEVMAP,
    fields { key: *const u32, value: *const u32 }
    flags_default = 0
}
xdp_redirect!(DevMap);

map_struct! {
    /// `BPF_MAP_TYPE_DEVMAP_HASH`: interfaces by arbitrary key.
    ///
    /// Minimum kernel version: 5.4.
    DevMapHash [] type = BPF_MAP_TYPE_DEVMAP_HASH,
    fields { key: *const u32, value: *const u32 }
    flags_default = 0
}
xdp_redirect!(DevMapHash);

map_struct! {
    /// `BPF_MAP_TYPE_CPUMAP`: redirect packets to another CPU (value: queue size).
    ///
    /// Minimum kernel version: 4.15.
    CpuMap [] type = BPF_MAP_TYPE_CPUMAP,
    fields { key: *const u32, value: *const u32 }
    flags_default = 0
}
xdp_redirect!(CpuMap);

map_struct! {
    /// `BPF_MAP_TYPE_XSKMAP`: AF_XDP sockets by queue index.
    ///
    /// Minimum kernel version: 4.18.
    XskMap [] type = BPF_MAP_TYPE_XSKMAP,
    fields { key: *const u32, value: *const u32 }
    flags_default = 0
}
xdp_redirect!(XskMap);
