//! An XDP firewall: drops IPv4 packets whose source address falls in a
//! prefix of `BLOCKLIST` (an LPM trie the manifest fills with `entries`),
//! counts every verdict in `STATS` and every match in the rule's own value.
#![no_std]
#![no_main]

use kiln_ebpf::bindings::{LpmKey, xdp_action};
use kiln_ebpf::maps::{Array, Counter, LpmTrie};
use kiln_ebpf::programs::XdpContext;
use kiln_ebpf::{map, xdp};

kiln_ebpf::license!("Dual MIT/GPL");

/// Ethernet header length; the EtherType is its last two bytes.
const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
/// Offset of the source address in the IPv4 header.
const IPV4_SADDR: usize = 12;

/// Blocked source prefixes (`"10.0.0.0/8"` in the manifest). The value
/// counts the packets each prefix dropped.
///
/// A u32, not a u64: the kernel stores an LPM trie's value right after the
/// key's data, so with a 4-byte address it is only 4-aligned, and a 64-bit
/// atomic add on it faults on arm64 (an alignment fault in softirq: a kernel
/// panic, seen on Debian's 6.1 arm64 kernel).
#[map]
static BLOCKLIST: LpmTrie<LpmKey<4>, u32, 1024> = LpmTrie::new();

/// Packets per XDP verdict, indexed by `xdp_action` (1 = drop, 2 = pass).
#[map]
static STATS: Array<u64, 4> = Array::new();

#[xdp]
fn firewall(ctx: XdpContext) -> u32 {
    let action = verdict(&ctx);
    STATS.increment(action, 1);
    action
}

#[inline(always)]
fn verdict(ctx: &XdpContext) -> u32 {
    // Anything that is not a whole IPv4 header passes: ARP, IPv6, runts.
    let Some(proto) = ctx.load::<[u8; 2]>(ETH_HLEN - 2) else {
        return xdp_action::XDP_PASS;
    };
    if u16::from_be_bytes(proto) != ETH_P_IP {
        return xdp_action::XDP_PASS;
    }
    let Some(saddr) = ctx.load::<[u8; 4]>(ETH_HLEN + IPV4_SADDR) else {
        return xdp_action::XDP_PASS;
    };
    // A /32 key: the trie answers with the longest stored prefix containing it.
    match BLOCKLIST.get_ptr_mut(&LpmKey::new(32, saddr)) {
        Some(hits) => {
            // SAFETY: `hits` points at the matched entry's value in the map.
            unsafe { u32::atomic_add(hits, 1) };
            xdp_action::XDP_DROP
        }
        None => xdp_action::XDP_PASS,
    }
}
