// SPDX-License-Identifier: MIT OR GPL-2.0
// netkit programs (loader/tests/attach_netkit.rs): each counts the test's
// frames (EtherType 0x88b5) on its side of the pair and lets them pass.
// Apart from the other objects: netkit attach types need 6.7.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define NETKIT_PASS 0

enum { PRIMARY, PEER, NSLOTS };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NSLOTS);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline int count_ours(struct __sk_buff *skb, __u32 slot)
{
	__u64 *n;

	if (skb->protocol != bpf_htons(0x88b5))
		return NETKIT_PASS;
	n = bpf_map_lookup_elem(&counts, &slot);
	if (n)
		__atomic_fetch_add(n, 1, __ATOMIC_RELAXED);
	return NETKIT_PASS;
}

SEC("netkit/primary")
int on_primary(struct __sk_buff *skb)
{
	return count_ours(skb, PRIMARY);
}

SEC("netkit/peer")
int on_peer(struct __sk_buff *skb)
{
	return count_ours(skb, PEER);
}

char LICENSE[] SEC("license") = "GPL";
