// SPDX-License-Identifier: MIT OR GPL-2.0
//
// tcpstates-style tracer: every TCP state change from the
// sock/inet_sock_set_state tracepoint, with the time spent in the old state,
// the addresses read from struct sock (CO-RE), and port filters kept in hash
// maps that userspace fills before attaching.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "tools.h"

struct tcp_state_event {
	u64 skaddr;
	u64 ts_us;
	u64 delta_us;
	u32 pid;
	int oldstate;
	int newstate;
	u16 family;
	u16 sport;
	u16 dport;
	u16 pad;
	u8 saddr[16];
	u8 daddr[16];
	char task[TASK_COMM_LEN];
};

const volatile bool filter_by_sport = false;
const volatile bool filter_by_dport = false;
const volatile short target_family = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u16);
	__type(value, u16);
} sports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u16);
	__type(value, u16);
} dports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct sock *);
	__type(value, u64);
} timestamps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(u32));
} events SEC(".maps");

SEC("tracepoint/sock/inet_sock_set_state")
int tcp_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	struct sock *sk = (struct sock *)ctx->skaddr;
	u16 family = ctx->family, sport = ctx->sport, dport = ctx->dport;
	struct tcp_state_event event = {};
	u64 *last, now;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	if (target_family && target_family != family)
		return 0;
	if (filter_by_sport && !bpf_map_lookup_elem(&sports, &sport))
		return 0;
	if (filter_by_dport && !bpf_map_lookup_elem(&dports, &dport))
		return 0;

	now = bpf_ktime_get_ns();
	last = bpf_map_lookup_elem(&timestamps, &sk);
	event.skaddr = (u64)sk;
	event.ts_us = now / 1000;
	event.delta_us = last ? (now - *last) / 1000 : 0;
	event.pid = bpf_get_current_pid_tgid() >> 32;
	event.oldstate = ctx->oldstate;
	event.newstate = ctx->newstate;
	event.family = family;
	event.sport = sport;
	event.dport = dport;
	bpf_get_current_comm(&event.task, sizeof(event.task));
	if (family == AF_INET) {
		BPF_CORE_READ_INTO(&event.saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO(&event.daddr, sk, __sk_common.skc_daddr);
	} else {
		BPF_CORE_READ_INTO(&event.saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32);
		BPF_CORE_READ_INTO(&event.daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr32);
	}
	bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &event, sizeof(event));

	if (ctx->newstate == TCP_CLOSE)
		bpf_map_delete_elem(&timestamps, &sk);
	else
		bpf_map_update_elem(&timestamps, &sk, &now, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
