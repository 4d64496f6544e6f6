// SPDX-License-Identifier: MIT OR GPL-2.0
//
// Benchmark object for W2 (open), W3 (load) and W7 (manifest apply): twenty
// programs of several types, BTF-defined maps of four kinds, .data/.bss/.rodata
// globals, and CO-RE reads of kernel structs (relocated against the running
// kernel's BTF at load). Every program loads on a stock kernel as root; none
// needs kprobes or fentry.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char _license[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 4096);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 64);
} slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 16);
} per_cpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64);
	__type(value, __u32);
	__uint(max_entries, 1024);
} recent SEC(".maps");

volatile const __u32 sample_every = 1; // .rodata
__u64 total_hits = 0;                   // .bss
__u32 last_pid = 7;                     // .data

struct event {
	__u32 pid;
	__u32 tgid;
	char comm[16];
};

static __always_inline void bump(__u32 key)
{
	__u64 one = 1, *v = bpf_map_lookup_elem(&counts, &key);
	if (v)
		__atomic_fetch_add(v, 1, __ATOMIC_RELAXED);
	else
		bpf_map_update_elem(&counts, &key, &one, BPF_ANY);
	__atomic_fetch_add(&total_hits, 1, __ATOMIC_RELAXED);
}

static __always_inline void slot(__u32 key)
{
	__u64 *v = bpf_map_lookup_elem(&slots, &key);
	if (v)
		__atomic_fetch_add(v, 1, __ATOMIC_RELAXED);
	v = bpf_map_lookup_elem(&per_cpu, &key);
	if (v)
		*v += 1;
}

// CO-RE: read pid/tgid/comm of the current task (and its parent) through
// preserve_access_index types from vmlinux.h.
static __always_inline void task_event(__u32 tag)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct event *e;

	if (tag % sample_every)
		return;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return;
	e->pid = BPF_CORE_READ(t, pid);
	e->tgid = BPF_CORE_READ(t, real_parent, tgid);
	BPF_CORE_READ_STR_INTO(&e->comm, t, comm);
	last_pid = e->pid;
	bpf_ringbuf_submit(e, 0);
}

#define SOCKET_PROG(n)                                                         \
	SEC("socket") int sock_##n(struct __sk_buff *skb)                      \
	{                                                                      \
		bump(100 + n + skb->protocol);                                 \
		return skb->len;                                               \
	}

#define XDP_PROG(n)                                                            \
	SEC("xdp") int xdp_##n(struct xdp_md *ctx)                             \
	{                                                                      \
		slot(n);                                                       \
		bump(200 + n + (ctx->data_end - ctx->data));                   \
		return XDP_PASS;                                               \
	}

#define TC_PROG(n)                                                             \
	SEC("tc") int tc_##n(struct __sk_buff *skb)                            \
	{                                                                      \
		slot(n + 8);                                                   \
		bump(300 + n + skb->ifindex);                                  \
		return 0;                                                      \
	}

#define RAWTP_PROG(n, tp)                                                      \
	SEC("raw_tp/" #tp) int rawtp_##n(void *ctx)                            \
	{                                                                      \
		__u64 id = bpf_get_current_pid_tgid();                         \
		__u32 v = n;                                                   \
		bpf_map_update_elem(&recent, &id, &v, BPF_ANY);                \
		task_event(n);                                                 \
		return 0;                                                      \
	}

#define TPBTF_PROG(n, tp)                                                      \
	SEC("tp_btf/" #tp) int tpbtf_##n(void *ctx)                            \
	{                                                                      \
		task_event(n);                                                 \
		bump(400 + n);                                                 \
		return 0;                                                      \
	}

#define CGSKB_PROG(n)                                                          \
	SEC("cgroup_skb/ingress") int cgskb_##n(struct __sk_buff *skb)        \
	{                                                                      \
		slot(n + 16);                                                  \
		return 1;                                                      \
	}

SOCKET_PROG(0)
SOCKET_PROG(1)
SOCKET_PROG(2)
SOCKET_PROG(3)
XDP_PROG(0)
XDP_PROG(1)
XDP_PROG(2)
XDP_PROG(3)
TC_PROG(0)
TC_PROG(1)
TC_PROG(2)
TC_PROG(3)
RAWTP_PROG(0, sys_enter)
RAWTP_PROG(1, sys_exit)
RAWTP_PROG(2, sched_switch)
RAWTP_PROG(3, sched_process_exec)
TPBTF_PROG(0, sched_process_fork)
TPBTF_PROG(1, sched_process_exit)
CGSKB_PROG(0)
CGSKB_PROG(1)
