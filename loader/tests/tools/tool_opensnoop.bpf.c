// SPDX-License-Identifier: MIT OR GPL-2.0
//
// opensnoop-style tracer: openat entry remembers the filename pointer and
// flags per thread, the exit sends pid, comm, path, flags and result through
// a ring buffer. Filters are .rodata knobs set before load.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tools.h"

struct open_args {
	const char *path;
	int flags;
};

struct open_event {
	pid_t pid;
	uid_t uid;
	int ret;
	int flags;
	char comm[TASK_COMM_LEN];
	char path[NAME_MAX + 1];
};

const volatile pid_t targ_tgid = 0;
const volatile bool targ_failed = false;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, u32);
	__type(value, struct open_args);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_openat")
int openat_enter(struct trace_event_raw_sys_enter *ctx)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tid = id;
	struct open_args args = {};

	if (targ_tgid && targ_tgid != (pid_t)(id >> 32))
		return 0;
	args.path = (const char *)ctx->args[1];
	args.flags = (int)ctx->args[2];
	bpf_map_update_elem(&start, &tid, &args, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int openat_exit(struct trace_event_raw_sys_exit *ctx)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tid = id;
	struct open_args *args;
	struct open_event *e;

	args = bpf_map_lookup_elem(&start, &tid);
	if (!args)
		return 0;
	if (targ_failed && ctx->ret >= 0)
		goto done;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		goto done;
	e->pid = id >> 32;
	e->uid = (u32)bpf_get_current_uid_gid();
	e->ret = ctx->ret;
	e->flags = args->flags;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	bpf_probe_read_user_str(&e->path, sizeof(e->path), args->path);
	bpf_ringbuf_submit(e, 0);
done:
	bpf_map_delete_elem(&start, &tid);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
