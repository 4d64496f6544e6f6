// A program the verifier must reject: it reads a map value without the NULL
// check. loader/tests/programs.rs asserts the error names this line.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4); __type(key, __u32); __type(value, __u64); } table SEC(".maps");

SEC("socket")
int unchecked(struct __sk_buff *skb)
{
	__u32 key = skb->len;
	__u64 *v = bpf_map_lookup_elem(&table, &key);
	return *v == 42; /* KILN-BAD-LINE */
}

SEC("socket")
int fine(struct __sk_buff *skb)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
