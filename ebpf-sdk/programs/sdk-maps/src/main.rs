//! Every map type of kiln-ebpf, each used through its typed wrapper so the
//! verifier (and libbpf's BTF map parser) check the SDK's definitions.
#![no_std]
#![no_main]

use kiln_ebpf::bindings::{BPF_ANY, BPF_F_NO_PREALLOC, LpmKey, sk_action, xdp_action};
use kiln_ebpf::maps::*;
use kiln_ebpf::programs::{SkBuffContext, SkMsgContext, SockOpsContext, XdpContext};
use kiln_ebpf::{Global, GlobalMut, map, sk_msg, sk_skb, sock_ops, xdp};

kiln_ebpf::license!("Dual MIT/GPL");

#[map(pinned)]
static HASH: HashMap<u32, u64, 64> = HashMap::new();
#[map]
static LRU: LruHashMap<u64, u32, 64> = LruHashMap::new();
#[map]
static PERCPU_HASH: PerCpuHashMap<u32, u64, 8> = PerCpuHashMap::new();
#[map]
static LRU_PERCPU: LruPerCpuHashMap<u32, u64, 8> = LruPerCpuHashMap::new();
#[map(name = "lpm")]
static LPM: LpmTrie<LpmKey<4>, u32, 16> = LpmTrie::new();
#[map(flags = BPF_F_NO_PREALLOC)]
static NOPREALLOC: HashMap<u32, u32, 8> = HashMap::new();
#[map]
static ARRAY: Array<u64, 4> = Array::new();
#[map]
static PERCPU_ARRAY: PerCpuArray<u64, 4> = PerCpuArray::new();
#[map]
static EVENTS: RingBuf<4096> = RingBuf::new();
#[map]
static PERF: PerfEventArray<0> = PerfEventArray::new();
#[map]
static JUMP: ProgramArray<4> = ProgramArray::new();
#[map]
static QUEUE: Queue<u32, 8> = Queue::new();
#[map]
static STACK: Stack<u32, 8> = Stack::new();
#[map]
static BLOOM: BloomFilter<u32, 64> = BloomFilter::new();
#[map]
static SOCKS: SockMap<4> = SockMap::new();
#[map]
static SOCK_HASH: SockHash<u32, 4> = SockHash::new();
#[map]
static DEVS: DevMap<4> = DevMap::new();
#[map]
static DEV_HASH: DevMapHash<4> = DevMapHash::new();
#[map]
static CPUS: CpuMap<2> = CpuMap::new();
#[map]
static XSKS: XskMap<4> = XskMap::new();

/// Set by userspace before load (`.rodata`): which map to redirect through.
#[unsafe(no_mangle)]
static REDIRECT_MODE: Global<u32> = Global::new(0);
/// Written by the program (`.bss`): packets seen.
#[unsafe(no_mangle)]
static PACKETS: GlobalMut<u64> = GlobalMut::new(0);

#[repr(C)]
#[derive(Clone, Copy)]
struct Event {
    len: u32,
    queue: u32,
}

#[xdp]
fn maps_xdp(ctx: XdpContext) -> u32 {
    let len = ctx.len() as u32;
    PACKETS.set(PACKETS.get() + 1);
    HASH.increment(&0, 1);
    let _ = LRU.set(&(len as u64), &len);
    PERCPU_HASH.increment(&1, len as u64);
    LRU_PERCPU.increment(&2, 1);
    let _ = NOPREALLOC.insert(&len, &1, BPF_ANY);
    ARRAY.increment(0, 1);
    PERCPU_ARRAY.increment(1, len as u64);
    if let Some(v) = LPM.get_copy(&LpmKey::new(32, [127, 0, 0, 1])) {
        ARRAY.increment(2, v as u64);
    }
    if let Some(mut e) = EVENTS.reserve::<Event>() {
        e.write(Event {
            len,
            queue: ctx.rx_queue_index(),
        });
        e.submit(0);
    }
    let _ = EVENTS.output(&Event { len, queue: 0 }, 0);
    let _ = PERF.output(&ctx, &Event { len, queue: 1 });
    let _ = QUEUE.push(&len, 0);
    let _ = QUEUE.pop();
    let _ = STACK.push(&len, 0);
    let _ = STACK.peek();
    let _ = BLOOM.insert(&len);
    if BLOOM.contains(&7) {
        ARRAY.increment(3, 1);
    }
    match REDIRECT_MODE.get() {
        1 => return DEVS.redirect(0, xdp_action::XDP_PASS as u64),
        2 => return DEV_HASH.redirect(0, xdp_action::XDP_PASS as u64),
        3 => return CPUS.redirect(0, xdp_action::XDP_PASS as u64),
        4 => return XSKS.redirect(ctx.rx_queue_index(), xdp_action::XDP_PASS as u64),
        5 => {
            JUMP.tail_call(&ctx, 0);
        }
        _ => {}
    }
    xdp_action::XDP_PASS
}

#[sk_msg]
fn maps_sk_msg(ctx: SkMsgContext) -> u32 {
    if ctx.size() > 0 {
        return SOCKS.redirect_msg(&ctx, 0, 0) as u32;
    }
    let _ = SOCK_HASH.redirect_msg(&ctx, &0, 0);
    sk_action::SK_PASS
}

#[sk_skb(stream_verdict)]
fn maps_sk_skb(ctx: SkBuffContext) -> u32 {
    if ctx.len() > 100 {
        return SOCK_HASH.redirect_skb(&ctx, &1, 0) as u32;
    }
    SOCKS.redirect_skb(&ctx, 0, 0) as u32
}

#[sock_ops]
fn maps_sock_ops(ctx: SockOpsContext) -> u32 {
    // BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB = 5: remember accepted sockets.
    if ctx.op() == 5 {
        let _ = SOCKS.update(&ctx, 0, BPF_ANY);
        let _ = SOCK_HASH.update(&ctx, &ctx.local_port(), BPF_ANY);
    }
    1
}
