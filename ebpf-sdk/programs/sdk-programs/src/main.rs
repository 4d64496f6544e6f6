//! One program per kiln-ebpf program macro (those that load on any kernel
//! with BTF; fentry/fexit/lsm live in sdk-btf, tcx in sdk-tcx). Each bumps its own slot of
//! `HITS` so a test can trigger one and see which ran.
#![no_std]
#![no_main]

use kiln_ebpf::bindings::{sk_action, tc_action, xdp_action};
use kiln_ebpf::maps::PerCpuArray;
use kiln_ebpf::programs::*;
use kiln_ebpf::*;

kiln_ebpf::license!("Dual MIT/GPL");

/// Hits per program, by the slot each program names.
#[map]
static HITS: PerCpuArray<u64, 32> = PerCpuArray::new();

fn hit(slot: u32) {
    HITS.increment(slot, 1);
}

#[xdp]
fn prog_xdp(ctx: XdpContext) -> u32 {
    hit(0);
    // An Ethernet header's EtherType, bounds-checked the verifier's way.
    match ctx.load::<[u8; 2]>(12) {
        Some(_) => xdp_action::XDP_PASS,
        None => xdp_action::XDP_PASS,
    }
}

#[xdp(frags)]
fn prog_xdp_frags(_ctx: XdpContext) -> u32 {
    hit(1);
    xdp_action::XDP_PASS
}

#[classifier]
fn prog_tc(ctx: TcContext) -> i32 {
    hit(2);
    if ctx.get::<[u8; 14]>(0).is_some() {
        ctx.set_mark(ctx.mark() | 0x100);
    }
    tc_action::TC_ACT_OK
}

#[tracepoint("sched", "sched_process_exec")]
fn prog_tracepoint(ctx: TracePointContext) -> u32 {
    hit(4);
    // SAFETY: offset 8 is the first field after the common header (u32 __data_loc filename).
    let _filename_loc: u32 = unsafe { ctx.read_at(8) };
    0
}

#[raw_tracepoint("sched_switch")]
fn prog_raw_tracepoint(ctx: RawTracePointContext) -> u32 {
    hit(5);
    // SAFETY: sched_switch has 4 arguments (preempt, prev, next, prev_state).
    let _preempt = unsafe { ctx.arg(0) };
    0
}

#[tp_btf("sched_switch")]
fn prog_tp_btf(ctx: BtfContext) -> u32 {
    hit(6);
    // SAFETY: sched_switch's first argument is `bool preempt`.
    let _preempt = unsafe { ctx.arg(0) };
    // CO-RE: offsets of task_struct fields are relocated at load time.
    let task = kiln_ebpf::core_read::Task::current();
    if task.tgid() == 1 && task.real_parent().pid() == 0 {
        hit(22);
    }
    0
}

#[kprobe("do_unlinkat")]
fn prog_kprobe(ctx: ProbeContext) -> u32 {
    hit(7);
    let _dfd = ctx.arg(0);
    0
}

#[kretprobe("do_unlinkat")]
fn prog_kretprobe(ctx: ProbeContext) -> u32 {
    hit(8);
    let _ret = ctx.ret();
    0
}

#[uprobe]
fn prog_uprobe(_ctx: ProbeContext) -> u32 {
    hit(9);
    let mut comm = [0u8; 16];
    if let Ok(c) = helpers::get_current_comm() {
        comm = c;
    }
    let _ = comm;
    0
}

#[uretprobe]
fn prog_uretprobe(_ctx: ProbeContext) -> u32 {
    hit(10);
    0
}

#[cgroup_skb(ingress)]
fn prog_cgroup_skb(_ctx: SkBuffContext) -> i32 {
    hit(11);
    1
}

#[cgroup_sock(sock_create)]
fn prog_cgroup_sock(ctx: SockContext) -> i32 {
    hit(12);
    let _ = ctx.family();
    1
}

#[cgroup_sock_addr(connect4)]
fn prog_connect4(ctx: SockAddrContext) -> i32 {
    hit(13);
    let _ = ctx.user_ip4();
    1
}

#[socket_filter]
fn prog_socket_filter(ctx: SkBuffContext) -> i64 {
    hit(14);
    let mut b = [0u8; 1];
    let _ = ctx.load_bytes(0, &mut b);
    ctx.skb_len() as i64
}

#[sk_msg]
fn prog_sk_msg(_ctx: SkMsgContext) -> u32 {
    hit(15);
    sk_action::SK_PASS
}

#[sk_skb(stream_parser)]
fn prog_sk_skb_parser(ctx: SkBuffContext) -> u32 {
    hit(16);
    ctx.skb_len()
}

#[sock_ops]
fn prog_sock_ops(ctx: SockOpsContext) -> u32 {
    hit(17);
    let _ = ctx.op();
    1
}

#[sk_lookup]
fn prog_sk_lookup(_ctx: SkLookupContext) -> u32 {
    hit(18);
    sk_action::SK_PASS
}

#[perf_event]
fn prog_perf_event(ctx: PerfEventContext) -> u32 {
    hit(19);
    let _ = ctx.sample_period();
    0
}

#[flow_dissector]
fn prog_flow_dissector(_ctx: SkBuffContext) -> u32 {
    hit(20);
    // BPF_OK: let the kernel's dissector result stand.
    0
}

#[xdp]
fn prog_helpers(_ctx: XdpContext) -> u32 {
    hit(21);
    let t = helpers::ktime_get_ns();
    let cpu = helpers::get_smp_processor_id();
    let _ = helpers::get_prandom_u32();
    if t == 0 {
        helpers::trace_printk(b"cpu %d\0", &[cpu as u64]);
    }
    xdp_action::XDP_PASS
}
