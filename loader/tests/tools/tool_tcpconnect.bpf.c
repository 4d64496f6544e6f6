// SPDX-License-Identifier: MIT OR GPL-2.0
//
// tcpconnect-style tracer in the two shapes libbpf-based tools ship:
// fentry/fexit where the kernel has BPF trampolines, kprobe/kretprobe
// elsewhere; userspace loads both and attaches the first that works. Counts
// successful IPv4 connects per destination port and reports each through a
// ring buffer.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "tools.h"

struct connect_event {
	u32 pid;
	u32 saddr;
	u32 daddr;
	u16 dport;
	u16 pad;
	char task[TASK_COMM_LEN];
};

const volatile pid_t targ_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u32);
	__type(value, struct sock *);
} sockets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u16);
	__type(value, u64);
} connects_by_dport SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} events SEC(".maps");

static __always_inline bool wanted(void)
{
	return !targ_tgid || targ_tgid == (pid_t)(bpf_get_current_pid_tgid() >> 32);
}

static __always_inline int report(struct sock *sk, int ret)
{
	struct connect_event *e;
	u64 one = 1, *n;
	u16 dport;

	if (ret)
		return 0;
	dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	n = bpf_map_lookup_elem(&connects_by_dport, &dport);
	if (n)
		ADD(n, 1);
	else
		bpf_map_update_elem(&connects_by_dport, &dport, &one, BPF_NOEXIST);

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->saddr = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
	e->daddr = BPF_CORE_READ(sk, __sk_common.skc_daddr);
	e->dport = dport;
	bpf_get_current_comm(&e->task, sizeof(e->task));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("kprobe/tcp_v4_connect")
int BPF_KPROBE(connect_entry, struct sock *sk)
{
	u32 tid = bpf_get_current_pid_tgid();

	if (wanted())
		bpf_map_update_elem(&sockets, &tid, &sk, BPF_ANY);
	return 0;
}

SEC("kretprobe/tcp_v4_connect")
int BPF_KRETPROBE(connect_return, int ret)
{
	u32 tid = bpf_get_current_pid_tgid();
	struct sock **skp = bpf_map_lookup_elem(&sockets, &tid);

	if (!skp)
		return 0;
	report(*skp, ret);
	bpf_map_delete_elem(&sockets, &tid);
	return 0;
}

SEC("fexit/tcp_v4_connect")
int BPF_PROG(connect_fexit, struct sock *sk, struct sockaddr *uaddr, int addr_len, int ret)
{
	if (wanted())
		report(sk, ret);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
