// A map pinned by name, for the pin-reuse checks in loader/tests/pinning.rs.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 128); __type(key, __u32); __type(value, __u64); __uint(pinning, LIBBPF_PIN_BY_NAME); } shared_counts SEC(".maps");

SEC("socket")
int bump(struct __sk_buff *skb)
{
	__u32 key = 1;
	__u64 one = 1, *v = bpf_map_lookup_elem(&shared_counts, &key);
	if (v)
		__atomic_fetch_add(v, 1, __ATOMIC_RELAXED);
	else
		bpf_map_update_elem(&shared_counts, &key, &one, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
