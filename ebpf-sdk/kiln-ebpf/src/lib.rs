//! `kiln-ebpf`: write eBPF programs in Rust on a stable compiler.
//!
//! Programs are `no_std`, `no_main` binary crates built for
//! `bpfel-unknown-none` by `cargo xtask build-ebpf` (Debian's rustc, which
//! ships a prebuilt `core` for the BPF targets, and bpf-linker). The objects
//! follow libbpf's conventions (BTF-defined maps in `.maps`, `SEC()`-style
//! section names, a `license` section), so libbpf, bpftool and Kiln's own
//! loader all load them.
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! use kiln_ebpf::{map, maps::HashMap, programs::XdpContext, xdp, bindings::xdp_action};
//!
//! kiln_ebpf::license!("Dual MIT/GPL");
//!
//! #[map(pinned)]
//! static COUNTERS: HashMap<u32, u64, 16> = HashMap::new();
//!
//! #[xdp]
//! fn count_packets(_ctx: XdpContext) -> u32 {
//!     COUNTERS.increment(&1, 1);
//!     xdp_action::XDP_PASS
//! }
//! ```
//!
//! Everything compiles on the host too (the crate is a workspace member and
//! its unit tests run there); only the helper calls are meaningless outside
//! the BPF target.
#![no_std]
#![deny(missing_docs)]

pub mod arch;
#[allow(
    missing_docs,
    reason = "a mirror of linux/bpf.h's UAPI: every item keeps the kernel's name and meaning"
)]
pub mod bindings;
pub mod core_read;
pub mod global;
pub mod helpers;
pub mod log;
pub mod maps;
mod mem;
pub mod programs;
mod shim;

pub use global::{Global, GlobalMut};
#[doc(hidden)]
pub use kiln_ebpf_macros::__log_section;
pub use kiln_ebpf_macros::{
    cgroup_device, cgroup_sockopt, cgroup_sysctl, fmod_ret, freplace, iter, kprobe_multi,
    kretprobe_multi, kretsyscall, ksyscall, netfilter, netkit, sk_reuseport, struct_ops, syscall,
    uprobe_multi, uretprobe_multi, usdt,
};
pub use kiln_ebpf_macros::{
    cgroup_skb, cgroup_sock, cgroup_sock_addr, classifier, fentry, fexit, flow_dissector, kprobe,
    kretprobe, lsm, map, perf_event, raw_tracepoint, sk_lookup, sk_msg, sk_skb, sock_ops,
    socket_filter, tc, tcx, tp_btf, tracepoint, uprobe, uretprobe, xdp,
};

/// Declares the program's license (the `license` section the kernel reads to
/// decide whether GPL-only helpers may be called).
///
/// ```ignore
/// kiln_ebpf::license!("Dual MIT/GPL");
/// ```
#[macro_export]
macro_rules! license {
    ($license:literal) => {
        #[unsafe(no_mangle)]
        #[unsafe(link_section = "license")]
        #[used]
        #[allow(non_upper_case_globals)]
        static _license: [u8; $license.len() + 1] = $crate::__nul_terminated($license);
    };
}

/// Copies `s` into a NUL-terminated array (for [`license!`]).
#[doc(hidden)]
pub const fn __nul_terminated<const N: usize>(s: &str) -> [u8; N] {
    let bytes = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < bytes.len() && i + 1 < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// The BPF target has no unwinding and no way to report a panic; a panic path
/// that survives optimisation makes the verifier reject the program (an
/// infinite loop), which is the right outcome: the bug surfaces at load time.
#[cfg(all(target_arch = "bpf", feature = "panic-handler"))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(test)]
mod tests {
    #[test]
    fn nul_terminated() {
        let l: [u8; 13] = super::__nul_terminated("Dual MIT/GPL");
        assert_eq!(&l, b"Dual MIT/GPL\0");
    }
}
