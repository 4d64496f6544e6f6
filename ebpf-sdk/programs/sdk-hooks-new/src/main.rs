//! The program macros whose program types need newer kernels than 5.10:
//! syscall (5.14), sk_reuseport/migrate (5.14), kprobe.multi (5.18),
//! netfilter (6.4), uprobe.multi (6.6) and netkit (6.7).
#![no_std]
#![no_main]

use kiln_ebpf::bindings::sk_action;
use kiln_ebpf::maps::Array;
use kiln_ebpf::programs::*;
use kiln_ebpf::*;

kiln_ebpf::license!("Dual MIT/GPL");

#[map]
static HITS: Array<u64, 16> = Array::new();

fn hit(slot: u32) {
    HITS.increment(slot, 1);
}

/// Run by BPF_PROG_TEST_RUN: returns the sum of the two `u32`s it is given.
#[syscall]
fn prog_syscall(ctx: SyscallContext) -> i32 {
    hit(0);
    // SAFETY: the test passes 8 bytes of context; the verifier checks the
    // reads against the size given at run time.
    let (a, b) = unsafe { (*ctx.data.cast::<u32>(), *ctx.data.cast::<u32>().add(1)) };
    a.wrapping_add(b) as i32
}

#[sk_reuseport(migrate)]
fn prog_reuseport_migrate(_ctx: SkReuseportContext) -> u32 {
    hit(1);
    sk_action::SK_PASS
}

#[kprobe_multi("bpf_fentry_test*")]
fn prog_kprobe_multi(_ctx: ProbeContext) -> u32 {
    hit(2);
    0
}

#[kretprobe_multi("bpf_fentry_test*")]
fn prog_kretprobe_multi(_ctx: ProbeContext) -> u32 {
    hit(3);
    0
}

#[uprobe_multi]
fn prog_uprobe_multi(_ctx: ProbeContext) -> u32 {
    hit(4);
    0
}

#[uretprobe_multi]
fn prog_uretprobe_multi(_ctx: ProbeContext) -> u32 {
    hit(5);
    0
}

/// NF_ACCEPT.
#[netfilter]
fn prog_netfilter(ctx: NetfilterContext) -> i32 {
    hit(6);
    let _ = ctx.skb();
    1
}

/// TCX_NEXT / NETKIT_NEXT (-1): leave the packet to what follows.
#[netkit(primary)]
fn prog_netkit_primary(_ctx: TcContext) -> i32 {
    hit(7);
    -1
}

#[netkit(peer)]
fn prog_netkit_peer(_ctx: TcContext) -> i32 {
    hit(8);
    -1
}
