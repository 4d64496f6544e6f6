// SPDX-License-Identifier: MIT OR GPL-2.0
//
// execsnoop-style tracer: execve entry stashes the filename and arguments
// per pid, the exit reports them with the return value through a perf event
// array. Knobs in .rodata (set by userspace before load); a zeroed event in
// .rodata as the template; CO-RE read of task->real_parent->tgid.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "tools.h"

#define ARG_LEN 128
#define ARGS_MAX 60
#define ARGS_BYTES (ARGS_MAX * ARG_LEN)
#define LAST_ARG_AT (ARGS_BYTES - ARG_LEN)

struct exec_event {
	pid_t pid;
	pid_t ppid;
	uid_t uid;
	int retval;
	int args_count;
	unsigned int args_size;
	char comm[TASK_COMM_LEN];
	char args[ARGS_BYTES];
};

const volatile bool ignore_failed = true;
const volatile uid_t targ_uid = INVALID_UID;
const volatile int max_args = 20;

static const struct exec_event empty_event = {};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, pid_t);
	__type(value, struct exec_event);
} execs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(u32));
} events SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_execve")
int execve_enter(struct trace_event_raw_sys_enter *ctx)
{
	u64 id = bpf_get_current_pid_tgid();
	pid_t pid = id >> 32;
	uid_t uid = (u32)bpf_get_current_uid_gid();
	struct task_struct *task;
	struct exec_event *e;
	const char **argv;
	long n;
	int i;

	if (targ_uid != INVALID_UID && targ_uid != uid)
		return 0;
	if (bpf_map_update_elem(&execs, &pid, &empty_event, BPF_NOEXIST))
		return 0;
	e = bpf_map_lookup_elem(&execs, &pid);
	if (!e)
		return 0;

	e->pid = pid;
	e->uid = uid;
	task = (struct task_struct *)bpf_get_current_task();
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);

	n = bpf_probe_read_user_str(e->args, ARG_LEN, (const char *)ctx->args[0]);
	if (n < 0)
		return 0;
	e->args_size = n <= ARG_LEN ? n : ARG_LEN;
	e->args_count = 1;

	argv = (const char **)ctx->args[1];
	for (i = 1; i < ARGS_MAX && i < max_args; i++) {
		const char *arg;

		if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) || !arg)
			return 0;
		if (e->args_size > LAST_ARG_AT)
			return 0;
		n = bpf_probe_read_user_str(&e->args[e->args_size], ARG_LEN, arg);
		if (n < 0)
			return 0;
		e->args_count++;
		e->args_size += n;
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_execve")
int execve_exit(struct trace_event_raw_sys_exit *ctx)
{
	pid_t pid = bpf_get_current_pid_tgid() >> 32;
	struct exec_event *e;
	unsigned int len;

	e = bpf_map_lookup_elem(&execs, &pid);
	if (!e)
		return 0;
	e->retval = ctx->ret;
	if (ignore_failed && ctx->ret < 0)
		goto done;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	len = __builtin_offsetof(struct exec_event, args) + e->args_size;
	if (len <= sizeof(*e))
		bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, e, len);
done:
	bpf_map_delete_elem(&execs, &pid);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
