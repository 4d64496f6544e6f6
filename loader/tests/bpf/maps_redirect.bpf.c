// SPDX-License-Identifier: MIT OR GPL-2.0
// XDP redirect maps whose values carry a program (loader/tests/maps_redirect.rs):
// a devmap entry with a BPF_XDP_DEVMAP program, a cpumap entry with a
// BPF_XDP_CPUMAP program, and an XSKMAP for an AF_XDP socket. Program values
// need 5.8 (devmap) and 5.9 (cpumap), so this object lives apart from
// loader_maps.bpf.c.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* The test frames' EtherType (IEEE local experimental): other traffic is ignored. */
#define KILN_PROTO 0x88b5

enum { DEV_RUNS, DEV_EGRESS, CPU_RUNS, PEER_SEEN, NSLOTS };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NSLOTS);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
} devs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CPUMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bpf_cpumap_val);
} cpus SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

static __always_inline int ours(struct xdp_md *ctx)
{
	struct ethhdr *eth = (void *)(long)ctx->data;

	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return 0;
	return eth->h_proto == bpf_htons(KILN_PROTO);
}

static __always_inline void bump(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&seen, &slot);

	if (n)
		__atomic_fetch_add(n, 1, __ATOMIC_RELAXED);
}

SEC("xdp")
int to_dev(struct xdp_md *ctx)
{
	return bpf_redirect_map(&devs, 0, XDP_ABORTED);
}

SEC("xdp")
int to_cpu(struct xdp_md *ctx)
{
	return bpf_redirect_map(&cpus, 0, XDP_ABORTED);
}

/* Every packet to its receive queue's AF_XDP socket, or up the stack without one. */
SEC("xdp")
int to_xsk(struct xdp_md *ctx)
{
	if (!ours(ctx))
		return XDP_PASS;
	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

/* Runs on the devmap entry before the frame leaves: counts and records the egress device. */
SEC("xdp/devmap")
int on_dev(struct xdp_md *ctx)
{
	__u32 slot = DEV_EGRESS;
	__u64 *egress;

	if (!ours(ctx))
		return XDP_DROP;
	bump(DEV_RUNS);
	egress = bpf_map_lookup_elem(&seen, &slot);
	if (egress)
		*egress = ctx->egress_ifindex;
	return XDP_PASS;
}

/* Runs on the cpumap's kthread; the frame ends there. */
SEC("xdp/cpumap")
int on_cpu(struct xdp_md *ctx)
{
	if (ours(ctx))
		bump(CPU_RUNS);
	return XDP_DROP;
}

/* On the devmap's target's peer: proves the frame crossed the veth. */
SEC("xdp")
int peer(struct xdp_md *ctx)
{
	if (!ours(ctx))
		return XDP_PASS;
	bump(PEER_SEEN);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
