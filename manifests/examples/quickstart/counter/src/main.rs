//! The Kiln quickstart program: one pinned hash map, two programs.
//!
//! - key 0 counts `execve`s, from the `sched/sched_process_exec` tracepoint;
//! - key 1 counts packets, from an XDP program (attach it to `lo` in generic
//!   mode and `ping -c1 127.0.0.1` bumps it).
#![no_std]
#![no_main]

use kiln_ebpf::bindings::xdp_action;
use kiln_ebpf::maps::HashMap;
use kiln_ebpf::programs::{TracePointContext, XdpContext};
use kiln_ebpf::{map, tracepoint, xdp};

kiln_ebpf::license!("Dual MIT/GPL");

/// Key of the exec counter.
const EXECS: u32 = 0;
/// Key of the packet counter.
const PACKETS: u32 = 1;

/// Pinned by name, so the counts survive the loader and userspace reads them
/// from the pin.
#[map(pinned)]
static COUNTERS: HashMap<u32, u64, 16> = HashMap::new();

#[tracepoint("sched", "sched_process_exec")]
fn count_exec(_ctx: TracePointContext) -> u32 {
    COUNTERS.increment(&EXECS, 1);
    0
}

#[xdp]
fn count_packets(_ctx: XdpContext) -> u32 {
    COUNTERS.increment(&PACKETS, 1);
    xdp_action::XDP_PASS
}
