//! tcx programs (`SEC("tcx/ingress")`, `SEC("tcx/egress")`), kernel 6.6+.
//! Separate from sdk-programs because libbpf before 1.3 (Debian 12's
//! bpftool) does not know the section names and refuses the whole object.
#![no_std]
#![no_main]

use kiln_ebpf::maps::Array;
use kiln_ebpf::programs::TcContext;
use kiln_ebpf::{map, tcx};

kiln_ebpf::license!("Dual MIT/GPL");

#[map]
static BYTES: Array<u64, 2> = Array::new();

/// TCX_NEXT: let the next program in the chain (or the stack) decide.
const TCX_NEXT: i32 = -1;

#[tcx(ingress)]
fn tcx_ingress(ctx: TcContext) -> i32 {
    BYTES.increment(0, ctx.skb_len() as u64);
    TCX_NEXT
}

#[tcx(egress)]
fn tcx_egress(ctx: TcContext) -> i32 {
    BYTES.increment(1, ctx.skb_len() as u64);
    TCX_NEXT
}
