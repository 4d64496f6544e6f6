//! BTF-attached tracing programs (fentry, fexit, lsm): their load needs the
//! attach target's BTF id, so they load in the VMs (on the host kernel of the
//! dev machines fentry/fexit/lsm answer EPERM).
#![no_std]
#![no_main]

use kiln_ebpf::maps::Array;
use kiln_ebpf::programs::BtfContext;
use kiln_ebpf::{fentry, fexit, lsm, map};

kiln_ebpf::license!("Dual MIT/GPL");

#[map]
static CALLS: Array<u64, 4> = Array::new();

#[fentry("do_unlinkat")]
fn unlink_entry(_ctx: BtfContext) -> i32 {
    CALLS.increment(0, 1);
    0
}

#[fexit("do_unlinkat")]
fn unlink_exit(ctx: BtfContext) -> i32 {
    CALLS.increment(1, 1);
    // SAFETY: do_unlinkat(int dfd, struct filename *name): the return value is arg 2.
    let _ret = unsafe { ctx.arg(2) };
    0
}

#[lsm("file_open")]
fn file_open(_ctx: BtfContext) -> i32 {
    CALLS.increment(2, 1);
    // 0: allow.
    0
}
