// SPDX-License-Identifier: MIT OR GPL-2.0
// An xdp.frags program (BPF_F_XDP_HAS_FRAGS, 5.18+) for the frags test of
// loader/tests/attach_xdp_dispatcher.rs: counts packets in `frag_counts`.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} frag_counts SEC(".maps");

SEC("xdp.frags")
int xdp_frags(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&frag_counts, &key);

	if (v)
		__atomic_fetch_add(v, 1, __ATOMIC_RELAXED);
	return XDP_PASS;
}
