// SPDX-License-Identifier: MIT OR GPL-2.0
//
// Kiln example: every exec on the machine as a record in a ring buffer.
//
// trace_exec runs on the sched/sched_process_exec tracepoint (after the new
// program replaced the old one, so `comm` is already the new name) and
// submits one `struct exec_event` to the pinned ring buffer `events`. A
// reader opens <pin_root>/maps/events and consumes the records (see
// read_events.rs).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "Dual MIT/GPL";

#define COMM_LEN 16
#define FILENAME_LEN 128

// One exec. Userspace decodes it field by field (read_events.rs, event.rs).
struct exec_event {
	__u32 pid;           // the process (tgid) that exec'd
	__u32 old_pid;       // its thread id before exec (differs when a thread exec'd)
	char comm[COMM_LEN]; // the new task name, NUL-padded
	char filename[FILENAME_LEN]; // the path passed to execve, NUL-terminated
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

// Records dropped because the ring was full (the reader was too slow).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} lost SEC(".maps");

// The tracepoint's record, as /sys/kernel/tracing/events/sched/
// sched_process_exec/format describes it: the common 8-byte header, then
// the fields. `filename` is a __data_loc: low 16 bits are its offset from the
// start of the record, high 16 bits its length.
struct sched_process_exec_args {
	__u64 common;
	__u32 filename_loc;
	__s32 pid;
	__s32 old_pid;
};

SEC("tracepoint/sched/sched_process_exec")
int trace_exec(struct sched_process_exec_args *ctx)
{
	struct exec_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&lost, &zero);
		if (n)
			__atomic_fetch_add(n, 1, __ATOMIC_RELAXED);
		return 0;
	}
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->old_pid = ctx->old_pid;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	unsigned int off = ctx->filename_loc & 0xffff;
	if (bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), (void *)ctx + off) < 0)
		e->filename[0] = 0;
	bpf_ringbuf_submit(e, 0);
	return 0;
}
