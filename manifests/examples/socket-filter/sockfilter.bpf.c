// SPDX-License-Identifier: MIT OR GPL-2.0
//
// Kiln example: one object, two programs sharing nothing but the build.
//
// - count_protocols (SEC "socket"): a socket filter for an AF_PACKET socket
//   (the packet starts at the Ethernet header) that counts IPv4 packets per
//   IP protocol number in the pinned hash map `proto_packets`, and accepts
//   every packet.
// - count_bytes (SEC "tc"): a TC classifier (direct action) that adds each
//   packet's length to entry 0 of the pinned array `tc_bytes`, and lets the
//   packet through.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <stddef.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char _license[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);   /* IP protocol number (1 ICMP, 6 TCP, 17 UDP, ...) */
	__type(value, __u64); /* packets seen */
	__uint(max_entries, 256);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} proto_packets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64); /* bytes seen by the classifier */
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tc_bytes SEC(".maps");

SEC("socket")
int count_protocols(struct __sk_buff *skb)
{
	__u8 proto8;
	__u32 proto;
	__u64 one = 1, *count;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return skb->len;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + offsetof(struct iphdr, protocol), &proto8, 1) < 0)
		return skb->len;
	proto = proto8;
	count = bpf_map_lookup_elem(&proto_packets, &proto);
	if (count)
		/* Result unused: compiles to the non-fetching add 5.10 accepts. */
		__atomic_fetch_add(count, 1, __ATOMIC_RELAXED);
	else
		bpf_map_update_elem(&proto_packets, &proto, &one, BPF_NOEXIST);
	/* A socket filter returns how many bytes to keep: all of them. */
	return skb->len;
}

SEC("tc")
int count_bytes(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *bytes = bpf_map_lookup_elem(&tc_bytes, &key);

	if (bytes)
		__atomic_fetch_add(bytes, skb->len, __ATOMIC_RELAXED);
	return TC_ACT_OK;
}
