// Netfilter programs for loader/tests/attach_sock.rs, apart from the other
// socket hooks because BPF_PROG_TYPE_NETFILTER needs 6.4: an object holding
// one cannot load on older kernels.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

enum { NF, NF_V2, NSLOTS };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NSLOTS);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline void bump(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&counts, &slot);

	if (n)
		__atomic_fetch_add(n, 1, __ATOMIC_RELAXED);
}

SEC("netfilter")
int nf_count(struct bpf_nf_ctx *ctx)
{
	bump(NF);
	return 1; /* NF_ACCEPT */
}

SEC("netfilter")
int nf_count_v2(struct bpf_nf_ctx *ctx)
{
	bump(NF_V2);
	return 1;
}
