//! Bytes and packets sent per cgroup: a `cgroup_skb/egress` program attached
//! to a cgroup sees every packet its processes (and its descendants') send,
//! and adds it to the entry of the sending socket's cgroup in `EGRESS`.
#![no_std]
#![no_main]

use kiln_ebpf::bindings::BPF_NOEXIST;
use kiln_ebpf::helpers::bpf_skb_cgroup_id;
use kiln_ebpf::maps::{Counter, HashMap};
use kiln_ebpf::programs::{EbpfContext, SkBuffContext};
use kiln_ebpf::{cgroup_skb, map};

kiln_ebpf::license!("Dual MIT/GPL");

/// What one cgroup sent.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Usage {
    pub packets: u64,
    /// IP-level bytes (`skb->len` at egress: IP header and payload).
    pub bytes: u64,
}

/// Cgroup id (the cgroup directory's inode number) → what it sent.
#[map]
static EGRESS: HashMap<u64, Usage, 4096> = HashMap::new();

#[cgroup_skb(egress)]
fn count_egress(ctx: SkBuffContext) -> i32 {
    // SAFETY: the context is the `__sk_buff` the kernel passed in.
    let cgroup = unsafe { bpf_skb_cgroup_id(ctx.as_ptr()) };
    let bytes = u64::from(ctx.skb_len());
    if !add(cgroup, bytes) {
        let first = Usage { packets: 1, bytes };
        // Another CPU may create the entry first: add to it then.
        if EGRESS.insert(&cgroup, &first, BPF_NOEXIST).is_err() {
            add(cgroup, bytes);
        }
    }
    1 // let the packet go: this program only counts
}

/// Adds one packet of `bytes` to `cgroup`'s entry; false when it has none.
#[inline(always)]
fn add(cgroup: u64, bytes: u64) -> bool {
    let Some(usage) = EGRESS.get_ptr_mut(&cgroup) else {
        return false;
    };
    // SAFETY: `usage` points at the entry's value in the map, and both
    // fields are aligned u64s inside it.
    unsafe {
        u64::atomic_add(&raw mut (*usage).packets, 1);
        u64::atomic_add(&raw mut (*usage).bytes, bytes);
    }
    true
}
