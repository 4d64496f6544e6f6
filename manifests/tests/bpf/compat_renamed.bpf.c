// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
// Test fixture for `kiln check --kernels`: reads `task_struct.state`, which
// 5.14 renamed to `__state`, without a flavor fallback. So the CO-RE
// relocation resolves on 5.10 and on no later kernel; `read_pid` reads a
// field every kernel has.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct {
	long state;
	int pid;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 2);
} seen SEC(".maps");

SEC("tracepoint/sched/sched_process_exec")
int read_state(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 key = 0;
	__u64 value = BPF_CORE_READ(task, state);

	bpf_map_update_elem(&seen, &key, &value, BPF_ANY);
	return 0;
}

SEC("tracepoint/sched/sched_process_exec")
int read_pid(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 key = 1;
	__u64 value = BPF_CORE_READ(task, pid);

	bpf_map_update_elem(&seen, &key, &value, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
