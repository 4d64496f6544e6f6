// SPDX-License-Identifier: MIT OR GPL-2.0
// Component programs for loader/tests/attach_xdp_dispatcher.rs: each counts
// the packets it sees in `counts`, and the second checks that the first ran
// before it on the same packet. Run priorities and chain-call actions are
// declared in `.xdp_run_config`, the way libxdp reads them.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 8);
} counts SEC(".maps");

/* Which program ran last (1: xdp_first). */
__u32 last;

static void bump(__u32 key)
{
	__u64 *v = bpf_map_lookup_elem(&counts, &key);

	if (v)
		__atomic_fetch_add(v, 1, __ATOMIC_RELAXED);
}

/* `struct { ... } _<func>` in .xdp_run_config: the BTF of each member's
 * array length carries the value. */
#define RUN_CONFIG(func) _##func SEC(".xdp_run_config")

struct {
	__uint(priority, 10);
	__uint(XDP_PASS, 1);
} RUN_CONFIG(xdp_first);

SEC("xdp")
int xdp_first(struct xdp_md *ctx)
{
	last = 1;
	bump(0);
	return XDP_PASS;
}

/* No run config: priority 50, chain on XDP_PASS. */
SEC("xdp")
int xdp_second(struct xdp_md *ctx)
{
	if (last == 1)
		bump(2);
	last = 2;
	bump(1);
	return XDP_PASS;
}

/* Drops everything; XDP_DROP is not a chain-call action, so the programs
 * after it do not run. */
struct {
	__uint(priority, 20);
	__uint(XDP_PASS, 1);
} RUN_CONFIG(xdp_dropper);

SEC("xdp")
int xdp_dropper(struct xdp_md *ctx)
{
	bump(3);
	return XDP_DROP;
}

/* For xdp-loader (libxdp): priority 30. */
struct {
	__uint(priority, 30);
	__uint(XDP_PASS, 1);
} RUN_CONFIG(xdp_libxdp);

SEC("xdp")
int xdp_libxdp(struct xdp_md *ctx)
{
	bump(4);
	return XDP_PASS;
}

/* Changes packet data (a zero-length metadata adjustment): kernels 6.13+
 * only let it replace a dispatcher slot that changes packet data too. */
SEC("xdp")
int xdp_meta(struct xdp_md *ctx)
{
	bpf_xdp_adjust_meta(ctx, 0);
	bump(5);
	return XDP_PASS;
}
