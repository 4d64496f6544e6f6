// SPDX-License-Identifier: MIT OR GPL-2.0
//
// xdp-filter-style port filter: parses Ethernet (with up to two VLAN tags),
// IPv4 (any header length) and IPv6, then TCP or UDP, and drops packets whose
// destination port is in a hash map. Per-CPU counters per XDP action, in
// packets and bytes. Malformed or other traffic passes to the stack.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "tools.h"

struct action_stats {
	u64 packets;
	u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XDP_REDIRECT + 1);
	__type(key, u32);
	__type(value, struct action_stats);
} xdp_stats SEC(".maps");

/* Destination ports to drop, in host byte order; the value says for which
 * protocols: bit 0 TCP, bit 1 UDP. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u16);
	__type(value, u8);
} blocked_ports SEC(".maps");

#define BLOCK_TCP 1
#define BLOCK_UDP 2

static __always_inline u32 count(struct xdp_md *ctx, u32 action)
{
	struct action_stats *s = bpf_map_lookup_elem(&xdp_stats, &action);

	if (s) {
		s->packets++;
		s->bytes += ctx->data_end - ctx->data;
	}
	return action;
}

static __always_inline u32 verdict(u8 proto, void *l4, void *end)
{
	u8 *blocked;
	u16 port;

	if (proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > end)
			return XDP_PASS;
		port = bpf_ntohs(tcp->dest);
	} else if (proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > end)
			return XDP_PASS;
		port = bpf_ntohs(udp->dest);
	} else {
		return XDP_PASS;
	}
	blocked = bpf_map_lookup_elem(&blocked_ports, &port);
	if (!blocked)
		return XDP_PASS;
	if (*blocked & (proto == IPPROTO_TCP ? BLOCK_TCP : BLOCK_UDP))
		return XDP_DROP;
	return XDP_PASS;
}

SEC("xdp")
int xdp_port_filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *cursor;
	u16 proto;
	int i;

	if ((void *)(eth + 1) > end)
		return count(ctx, XDP_PASS);
	proto = eth->h_proto;
	cursor = eth + 1;
#pragma unroll
	for (i = 0; i < 2; i++) {
		struct vlan_hdr *vlan = cursor;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vlan + 1) > end)
			return count(ctx, XDP_PASS);
		proto = vlan->h_vlan_encapsulated_proto;
		cursor = vlan + 1;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cursor;
		u32 hdr_len;

		if ((void *)(ip + 1) > end)
			return count(ctx, XDP_PASS);
		hdr_len = ip->ihl * 4;
		if (hdr_len < sizeof(*ip))
			return count(ctx, XDP_PASS);
		/* A fragment after the first carries no L4 header. */
		if (ip->frag_off & bpf_htons(0x1fff))
			return count(ctx, XDP_PASS);
		return count(ctx, verdict(ip->protocol, cursor + hdr_len, end));
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cursor;

		if ((void *)(ip6 + 1) > end)
			return count(ctx, XDP_PASS);
		return count(ctx, verdict(ip6->nexthdr, ip6 + 1, end));
	}
	return count(ctx, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
