// Replacements for kiln_decide in attach_freplace_target.bpf.c: each counts
// its runs and drops the packet.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} ext_counts SEC(".maps");

static __always_inline void bump(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&ext_counts, &slot);

	if (n)
		__atomic_fetch_add(n, 1, __ATOMIC_RELAXED);
}

SEC("freplace/kiln_decide")
int drop_all(struct xdp_md *ctx)
{
	bump(0);
	return XDP_DROP;
}

SEC("freplace/kiln_decide")
int drop_all_v2(struct xdp_md *ctx)
{
	bump(1);
	return XDP_DROP;
}
