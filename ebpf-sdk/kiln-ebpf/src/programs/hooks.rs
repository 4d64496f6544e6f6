//! Contexts of the cgroup sysctl/device/sockopt hooks, sk_reuseport,
//! netfilter, iterators and syscall programs.

use core::ffi::c_void;

use super::{context, ctx_field};
use crate::bindings::{bpf_cgroup_dev_ctx, bpf_nf_ctx, bpf_sockopt, bpf_sysctl, sk_reuseport_md};

context! {
    /// `cgroup/sysctl` (`struct bpf_sysctl`). Return 1 to allow, 0 to deny
    /// (EPERM).
    SysctlContext, sysctl: bpf_sysctl
}

impl SysctlContext {
    /// Whether the access is a write.
    #[inline(always)]
    pub fn is_write(&self) -> bool {
        ctx_field!(self.sysctl, write) != 0
    }
    /// The file position of the access.
    #[inline(always)]
    pub fn file_pos(&self) -> u32 {
        ctx_field!(self.sysctl, file_pos)
    }
}

context! {
    /// `cgroup/dev` (`struct bpf_cgroup_dev_ctx`). Return 1 to allow, 0 to deny.
    DeviceContext, dev: bpf_cgroup_dev_ctx
}

impl DeviceContext {
    /// `BPF_DEVCG_DEV_BLOCK` (1) or `BPF_DEVCG_DEV_CHAR` (2).
    #[inline(always)]
    pub fn device_type(&self) -> u32 {
        ctx_field!(self.dev, access_type) & 0xffff
    }
    /// `BPF_DEVCG_ACC_MKNOD` (1), `_READ` (2), `_WRITE` (4), or'ed.
    #[inline(always)]
    pub fn access(&self) -> u32 {
        ctx_field!(self.dev, access_type) >> 16
    }
    /// The device's major number.
    #[inline(always)]
    pub fn major(&self) -> u32 {
        ctx_field!(self.dev, major)
    }
    /// The device's minor number.
    #[inline(always)]
    pub fn minor(&self) -> u32 {
        ctx_field!(self.dev, minor)
    }
}

context! {
    /// `cgroup/getsockopt`, `cgroup/setsockopt` (`struct bpf_sockopt`).
    /// Return 1 to go on, 0 to fail the call with EPERM.
    SockoptContext, sockopt: bpf_sockopt
}

impl SockoptContext {
    /// `SOL_*`.
    #[inline(always)]
    pub fn level(&self) -> i32 {
        ctx_field!(self.sockopt, level)
    }
    /// The option (`SO_*`, `TCP_*`, ...).
    #[inline(always)]
    pub fn optname(&self) -> i32 {
        ctx_field!(self.sockopt, optname)
    }
    /// The option's length.
    #[inline(always)]
    pub fn optlen(&self) -> i32 {
        ctx_field!(self.sockopt, optlen)
    }
    /// getsockopt: the kernel's return value so far.
    #[inline(always)]
    pub fn retval(&self) -> i32 {
        ctx_field!(self.sockopt, retval)
    }
    /// getsockopt: overrides the return value the caller sees.
    #[inline(always)]
    pub fn set_retval(&self, v: i32) {
        // SAFETY: `retval` is writable for getsockopt programs; the pointer is the context.
        unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!((*self.sockopt).retval), v) }
    }
}

context! {
    /// `sk_reuseport` (`struct sk_reuseport_md`). Select a socket with
    /// `bpf_sk_select_reuseport` and return `SK_PASS`, or `SK_DROP`.
    SkReuseportContext, md: sk_reuseport_md
}

impl SkReuseportContext {
    /// The packet's length.
    #[inline(always)]
    pub fn len(&self) -> u32 {
        ctx_field!(self.md, len)
    }
    /// Whether the packet is empty.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `IPPROTO_*`.
    #[inline(always)]
    pub fn ip_protocol(&self) -> u32 {
        ctx_field!(self.md, ip_protocol)
    }
    /// The flow hash.
    #[inline(always)]
    pub fn hash(&self) -> u32 {
        ctx_field!(self.md, hash)
    }
}

context! {
    /// `netfilter` (`struct bpf_nf_ctx`). Return `NF_ACCEPT` (1) or `NF_DROP` (0).
    NetfilterContext, nf: bpf_nf_ctx
}

impl NetfilterContext {
    /// `const struct nf_hook_state *`.
    #[inline(always)]
    pub fn state(&self) -> *const c_void {
        ctx_field!(self.nf, state) as *const c_void
    }
    /// `struct sk_buff *`.
    #[inline(always)]
    pub fn skb(&self) -> *const c_void {
        ctx_field!(self.nf, skb) as *const c_void
    }
}

context! {
    /// `iter/<target>`: `struct bpf_iter__<target>`, a `struct bpf_iter_meta *`
    /// then the target's pointers (`task`, `map`, `sk_common`, ...), which may
    /// be null at the end of an iteration.
    IterContext, args: u64
}

impl IterContext {
    /// `struct bpf_iter_meta *` (its `seq` is the file `bpf_seq_printf` writes to).
    #[inline(always)]
    pub fn meta(&self) -> *const c_void {
        // SAFETY: every iterator context starts with the meta pointer.
        unsafe { core::ptr::read_volatile(self.args) as *const c_void }
    }
    /// The `n`th pointer after `meta` (0: the iterated object).
    ///
    /// # Safety
    /// `n` must be below the number of pointers of the target's context.
    #[inline(always)]
    pub unsafe fn item(&self, n: usize) -> *const c_void {
        // SAFETY: the caller keeps `n` within the context.
        unsafe { core::ptr::read_volatile(self.args.add(1 + n)) as *const c_void }
    }
}

context! {
    /// `syscall`: the context is whatever bytes BPF_PROG_TEST_RUN passed in
    /// (`ctx_in`), readable and writable.
    SyscallContext, data: u8
}
