// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
// Test fixture for `kiln agent` holding perf-event attachments: a tracepoint
// counts execs (key 0) and a kprobe counts file opens (key 1).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 2);
} COUNTERS SEC(".maps");

static __always_inline void bump(__u32 key)
{
	__u64 *v = bpf_map_lookup_elem(&COUNTERS, &key);

	if (v)
		__atomic_fetch_add(v, 1, __ATOMIC_RELAXED);
}

SEC("tracepoint/sched/sched_process_exec")
int count_exec(void *ctx)
{
	bump(0);
	return 0;
}

SEC("kprobe/do_sys_openat2")
int count_open(void *ctx)
{
	bump(1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
