// SPDX-License-Identifier: MIT OR GPL-2.0
// An sk_reuseport selector (loader/tests/attach_reuseport.rs): each UDP
// datagram goes to the group's socket at the index in its first payload byte.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} group SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} selected SEC(".maps");

SEC("sk_reuseport")
int by_first_byte(struct sk_reuseport_md *md)
{
	__u8 first = 0;
	__u32 index;
	__u64 *n;

	/* md->data is the UDP header; the payload follows its 8 bytes. */
	if (bpf_skb_load_bytes(md, 8, &first, 1))
		return SK_DROP;
	index = first;
	if (bpf_sk_select_reuseport(md, &group, &index, 0))
		return SK_DROP;
	n = bpf_map_lookup_elem(&selected, &index);
	if (n)
		__atomic_fetch_add(n, 1, __ATOMIC_RELAXED);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
