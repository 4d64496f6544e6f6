// Test fixture for `kiln apply --token`: a raw tracepoint on exec counting
// into an array map. A raw tracepoint attaches with bpf() alone
// (BPF_RAW_TRACEPOINT_OPEN), so a process whose only privilege is a BPF
// token can attach it; a perf-event tracepoint would also need
// perf_event_open, which a user namespace does not grant.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} EXECS SEC(".maps");

SEC("raw_tp/sched_process_exec")
int count_exec(void *ctx)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&EXECS, &key);

	if (v)
		__atomic_fetch_add(v, 1, __ATOMIC_RELAXED);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
