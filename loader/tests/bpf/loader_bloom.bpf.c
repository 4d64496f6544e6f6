// A bloom filter alone: it needs kernel 5.16, so it lives apart from
// loader_maps.bpf.c, which must load on 5.10.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct { __uint(type, BPF_MAP_TYPE_BLOOM_FILTER); __uint(max_entries, 64); __type(value, __u32); } bloom SEC(".maps");

SEC("socket")
int check(struct __sk_buff *skb)
{
	__u32 v = skb->len;
	return bpf_map_peek_elem(&bloom, &v) == 0;
}

char LICENSE[] SEC("license") = "GPL";
