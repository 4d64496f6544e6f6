//! Logging through `KILN_LOGS`: a socket filter (runnable with
//! BPF_PROG_TEST_RUN) that logs at every level with every argument kind, so
//! a host test can decode the records with `kiln-log` and compare the text.
#![no_std]
#![no_main]

use kiln_ebpf::log::KernelStr;
use kiln_ebpf::programs::SkBuffContext;
use kiln_ebpf::{debug, error, info, socket_filter, trace, warn};

kiln_ebpf::license!("Dual MIT/GPL");

#[socket_filter]
fn log_packet(ctx: SkBuffContext) -> i64 {
    let len = ctx.skb_len();
    let mut head = [0u8; 4];
    let _ = ctx.load_bytes(0, &mut head);
    info!(ctx, "packet of {} bytes, head {:x}", len, head);
    warn!(
        "signed {} hex {:#x} padded {:08x} bool {}",
        -5i32, 0xdead_beef_u64, 0xabu8, true
    );
    error!("no arguments, {{braces}} kept");
    // A string read from (kernel) stack memory through bpf_probe_read_kernel_str.
    let name = *b"kiln-log\0\0\0\0";
    debug!("name {} bytes {}", KernelStr::<16>(name.as_ptr()), *b"abc");
    trace!("small {} {} {} {}", 1u8, -2i16, 3u16, -4i64);
    len as i64
}
