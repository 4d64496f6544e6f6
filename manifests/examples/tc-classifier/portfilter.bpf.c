// SPDX-License-Identifier: MIT OR GPL-2.0
//
// Kiln example: a TC classifier (tcx, or cls_bpf on clsact before 6.6) that drops IPv4 TCP and UDP packets by
// destination port and counts what it did.
//
// - `drop_ports`: destination port (host byte order) -> packets dropped for
//   it; the manifest fills the keys from `entries`, and a port present in
//   the map is dropped.
// - `stats`: packets per verdict, index 0 passed, 1 dropped.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char _license[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u16);
	__type(value, __u64);
	__uint(max_entries, 1024);
} drop_ports SEC(".maps");

enum verdict { PASSED = 0, DROPPED = 1 };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 2);
} stats SEC(".maps");

static __always_inline void count(__u32 verdict)
{
	__u64 *n = bpf_map_lookup_elem(&stats, &verdict);
	if (n)
		__atomic_fetch_add(n, 1, __ATOMIC_RELAXED);
}

// The destination port of an IPv4 TCP/UDP packet, or 0.
static __always_inline __u16 dest_port(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP))
		return 0;
	// A fragment after the first carries no ports.
	if (ip->frag_off & bpf_htons(0x1fff))
		return 0;
	// TCP and UDP both start with source port, destination port.
	__u16 *ports = (void *)ip + ip->ihl * 4;
	if ((void *)(ports + 2) > end)
		return 0;
	return bpf_ntohs(ports[1]);
}

// "tc", not "tcx/ingress": no tcx expected attach type, so the same program
// loads on kernels without tcx, where it runs as a clsact filter.
SEC("tc")
int filter_ports(struct __sk_buff *skb)
{
	__u16 port = dest_port(skb);
	__u64 *hits = port ? bpf_map_lookup_elem(&drop_ports, &port) : 0;
	if (hits) {
		__atomic_fetch_add(hits, 1, __ATOMIC_RELAXED);
		count(DROPPED);
		return TC_ACT_SHOT;
	}
	count(PASSED);
	return TC_ACT_UNSPEC; // TCX_NEXT (tcx), or the next filter (clsact): the stack decides
}
