//! A TCP congestion control in Rust, registered through a struct_ops link:
//! the `struct_ops/*` programs are its callbacks and `KILN_RUST_CC`, a
//! `tcp_congestion_ops` table in `.struct_ops.link`, names them (the loader
//! matches the table's members by name against the kernel's struct). Each
//! callback counts its calls in `CALLS` so a test sees the kernel used it.
//! It keeps Reno's slow start off: the window stays where TCP put it.
#![no_std]
#![no_main]

use core::ffi::c_void;

use kiln_ebpf::maps::Array;
use kiln_ebpf::programs::BtfContext;
use kiln_ebpf::{map, struct_ops};

kiln_ebpf::license!("GPL");

/// `[0]` init, `[1]` ssthresh, `[2]` cong_avoid, `[3]` undo_cwnd.
#[map]
static CALLS: Array<u64, 4> = Array::new();

/// The window the callbacks answer with (TCP's initial window).
const CWND: u32 = 10;

#[struct_ops("rust_cc_init")]
fn rust_cc_init(_ctx: BtfContext) {
    CALLS.increment(0, 1);
}

#[struct_ops("rust_cc_ssthresh")]
fn rust_cc_ssthresh(_ctx: BtfContext) -> u32 {
    CALLS.increment(1, 1);
    CWND
}

#[struct_ops("rust_cc_cong_avoid")]
fn rust_cc_cong_avoid(_ctx: BtfContext) {
    CALLS.increment(2, 1);
}

#[struct_ops("rust_cc_undo_cwnd")]
fn rust_cc_undo_cwnd(_ctx: BtfContext) -> u32 {
    CALLS.increment(3, 1);
    CWND
}

/// The callbacks' type as the table holds them: the program macros export
/// `extern "C" fn(ctx) -> ret`.
type Op = extern "C" fn(*mut c_void) -> u32;

/// The members of the kernel's `struct tcp_congestion_ops` this table sets,
/// by name (the loader copies them into the kernel's layout).
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct tcp_congestion_ops {
    pub init: Op,
    pub ssthresh: Op,
    pub cong_avoid: Op,
    pub undo_cwnd: Op,
    pub name: [u8; 16],
}

#[unsafe(no_mangle)]
#[unsafe(link_section = ".struct_ops.link")]
static KILN_RUST_CC: tcp_congestion_ops = tcp_congestion_ops {
    init: rust_cc_init,
    ssthresh: rust_cc_ssthresh,
    cong_avoid: rust_cc_cong_avoid,
    undo_cwnd: rust_cc_undo_cwnd,
    name: *b"kiln_rust_cc\0\0\0\0",
};
