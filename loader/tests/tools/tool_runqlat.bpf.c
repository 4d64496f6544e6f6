// SPDX-License-Identifier: MIT OR GPL-2.0
//
// runqlat-style histogram of run queue latency: a wakeup records when a task
// became runnable, the switch to it adds the wait to a log2 histogram. Each
// hook exists twice, as tp_btf (direct BTF access) and as raw_tp (CO-RE
// reads), and userspace keeps whichever this kernel takes, as such tools do.
// The task state field was renamed (state -> __state, 5.14): both spellings
// are declared as CO-RE flavors and the one the kernel has is used.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "tools.h"

#define MAX_SLOTS 26
#define TASK_RUNNING 0

struct hist {
	u32 slots[MAX_SLOTS];
	char comm[TASK_COMM_LEN];
};

const volatile bool targ_per_process = false;
const volatile bool targ_per_thread = false;
const volatile pid_t targ_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, u32);
	__type(value, u64);
} start SEC(".maps");

static struct hist zero;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, u32);
	__type(value, struct hist);
} hists SEC(".maps");

struct task_struct___pre_5_14 {
	long state;
} __attribute__((preserve_access_index));

struct task_struct___since_5_14 {
	unsigned int __state;
} __attribute__((preserve_access_index));

static __always_inline long task_state(void *task)
{
	struct task_struct___since_5_14 *t = task;

	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return BPF_CORE_READ((struct task_struct___pre_5_14 *)task, state);
}

static __always_inline u32 log2_u64(u64 v)
{
	u32 r = 0;

	while (v > 1 && r < 63) {
		v >>= 1;
		r++;
	}
	return r;
}

static __always_inline int enqueued(u32 tgid, u32 pid)
{
	u64 ts;

	if (!pid || (targ_tgid && targ_tgid != tgid))
		return 0;
	ts = bpf_ktime_get_ns();
	bpf_map_update_elem(&start, &pid, &ts, BPF_ANY);
	return 0;
}

static __always_inline int switched(struct task_struct *prev, struct task_struct *next)
{
	struct hist *h;
	u64 *started, wait_us;
	u32 pid, key, slot;

	if (task_state(prev) == TASK_RUNNING)
		enqueued(BPF_CORE_READ(prev, tgid), BPF_CORE_READ(prev, pid));

	pid = BPF_CORE_READ(next, pid);
	started = bpf_map_lookup_elem(&start, &pid);
	if (!started)
		return 0;
	wait_us = (bpf_ktime_get_ns() - *started) / 1000;
	if (targ_per_process)
		key = BPF_CORE_READ(next, tgid);
	else if (targ_per_thread)
		key = pid;
	else
		key = (u32)-1;

	h = bpf_map_lookup_elem(&hists, &key);
	if (!h) {
		bpf_map_update_elem(&hists, &key, &zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hists, &key);
		if (!h)
			goto done;
		if (targ_per_process || targ_per_thread)
			BPF_CORE_READ_STR_INTO(&h->comm, next, comm);
	}
	slot = log2_u64(wait_us);
	if (slot >= MAX_SLOTS)
		slot = MAX_SLOTS - 1;
	ADD(&h->slots[slot], 1);
done:
	bpf_map_delete_elem(&start, &pid);
	return 0;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(sched_wakeup, struct task_struct *p)
{
	return enqueued(p->tgid, p->pid);
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new, struct task_struct *p)
{
	return enqueued(p->tgid, p->pid);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return switched(prev, next);
}

SEC("raw_tp/sched_wakeup")
int BPF_PROG(raw_sched_wakeup, struct task_struct *p)
{
	return enqueued(BPF_CORE_READ(p, tgid), BPF_CORE_READ(p, pid));
}

SEC("raw_tp/sched_wakeup_new")
int BPF_PROG(raw_sched_wakeup_new, struct task_struct *p)
{
	return enqueued(BPF_CORE_READ(p, tgid), BPF_CORE_READ(p, pid));
}

SEC("raw_tp/sched_switch")
int BPF_PROG(raw_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return switched(prev, next);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
