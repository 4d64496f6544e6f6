// SPDX-License-Identifier: MIT OR GPL-2.0
//
// Socket-level load balancer, as Cilium and Katran-style tools do it with
// cgroup sock_addr hooks: connect() and UDP sendmsg() to a service address
// are rewritten to a backend before any packet exists. Service and backend
// addresses are in network byte order; a cgroup_skb egress program counts
// the bytes the cgroup sends.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tools.h"

struct service {
	u32 addr;
	u16 port;
	u16 pad;
};

struct backend {
	u32 addr;
	u16 port;
	u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct service);
	__type(value, struct backend);
} services SEC(".maps");

enum lb_counter { LB_REWRITTEN, LB_PASSED, LB_EGRESS_BYTES, LB_COUNTERS };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_COUNTERS);
	__type(key, u32);
	__type(value, u64);
} lb_stats SEC(".maps");

static __always_inline void bump(u32 counter, u64 by)
{
	u64 *c = bpf_map_lookup_elem(&lb_stats, &counter);

	if (c)
		ADD(c, by);
}

static __always_inline int rewrite(struct bpf_sock_addr *ctx)
{
	struct service svc = {};
	struct backend *be;

	svc.addr = ctx->user_ip4;
	svc.port = (u16)ctx->user_port;
	be = bpf_map_lookup_elem(&services, &svc);
	if (!be) {
		bump(LB_PASSED, 1);
		return 1;
	}
	ctx->user_ip4 = be->addr;
	ctx->user_port = be->port;
	bump(LB_REWRITTEN, 1);
	return 1;
}

SEC("cgroup/connect4")
int lb_connect4(struct bpf_sock_addr *ctx)
{
	return rewrite(ctx);
}

SEC("cgroup/sendmsg4")
int lb_sendmsg4(struct bpf_sock_addr *ctx)
{
	return rewrite(ctx);
}

SEC("cgroup_skb/egress")
int lb_egress_bytes(struct __sk_buff *skb)
{
	bump(LB_EGRESS_BYTES, skb->len);
	return 1;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
