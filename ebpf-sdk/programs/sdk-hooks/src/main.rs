//! One program per program macro added for libbpf parity whose program type
//! 5.10 already has. Each bumps its own slot of `HITS`, so a test that
//! triggers one sees it ran. fmod_ret loads where trampolines are allowed
//! (the VMs; the host answers EPERM).
#![no_std]
#![no_main]

use kiln_ebpf::bindings::sk_action;
use kiln_ebpf::maps::Array;
use kiln_ebpf::programs::*;
use kiln_ebpf::*;

kiln_ebpf::license!("Dual MIT/GPL");

/// Hits per program, by the slot each program names.
#[map]
static HITS: Array<u64, 16> = Array::new();

fn hit(slot: u32) {
    HITS.increment(slot, 1);
}

#[cgroup_sysctl]
fn prog_sysctl(ctx: SysctlContext) -> i32 {
    hit(0);
    let _ = ctx.is_write();
    1
}

#[cgroup_device]
fn prog_device(ctx: DeviceContext) -> i32 {
    hit(1);
    let _ = (ctx.major(), ctx.minor(), ctx.access());
    1
}

#[cgroup_sockopt(getsockopt)]
fn prog_getsockopt(ctx: SockoptContext) -> i32 {
    hit(2);
    let _ = (ctx.level(), ctx.optname());
    1
}

#[cgroup_sockopt(setsockopt)]
fn prog_setsockopt(ctx: SockoptContext) -> i32 {
    hit(3);
    let _ = ctx.optlen();
    1
}

/// No socket is selected: the kernel then picks one by hash, as without a program.
#[sk_reuseport]
fn prog_reuseport(ctx: SkReuseportContext) -> u32 {
    hit(4);
    let _ = ctx.ip_protocol();
    sk_action::SK_PASS
}

/// Counts the tasks of one iteration (the last call has a null task).
#[iter("task")]
fn prog_iter_task(ctx: IterContext) -> i32 {
    // SAFETY: `struct bpf_iter__task` has one pointer after meta: the task.
    if !unsafe { ctx.item(0) }.is_null() {
        hit(5);
    }
    0
}

#[ksyscall("getpid")]
fn prog_ksyscall(_ctx: ProbeContext) -> u32 {
    hit(6);
    0
}

#[kretsyscall("getpid")]
fn prog_kretsyscall(_ctx: ProbeContext) -> u32 {
    hit(7);
    0
}

#[usdt]
fn prog_usdt(_ctx: ProbeContext) -> u32 {
    hit(8);
    0
}

/// `bpf_modify_return_test` (net/bpf/test_run.c) is error-injectable: the
/// one target every kernel with BPF_PROG_TEST_RUN has.
#[fmod_ret("bpf_modify_return_test")]
fn prog_fmod_ret(_ctx: BtfContext) -> i32 {
    hit(9);
    0
}
