// A program the verifier must reject inside an inlined helper from a header:
// the error names the helper's line and this file's calling line.
// loader/tests/programs.rs asserts both.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "loader_bad_inline.h"

struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4); __type(key, __u32); __type(value, __u64); } table SEC(".maps");

SEC("socket")
int unchecked_inline(struct __sk_buff *skb)
{
	__u32 key = skb->len;
	__u64 *v = bpf_map_lookup_elem(&table, &key);
	return counter_plus_one(v) == 42; /* KILN-CALLER-LINE */
}

char LICENSE[] SEC("license") = "GPL";
