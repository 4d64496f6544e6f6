// An object shaped like the ones libbpf users ship, with everything that
// made Kiln drop its BTF or refuse it (issue 13): several program sections
// sharing static and global subprograms, string literals (.rodata.str1.1),
// custom data sections, .kconfig externs of every kind (libbpf's virtual
// LINUX_* ones included), a kfunc and local storage maps (which need their
// BTF key and value ids), and a ring buffer as the inner map of a
// map-in-map with a size libbpf rounds up to a page multiple.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

/* libbpf provides these itself, for any integer or bool declaration. */
extern int LINUX_HAS_SYSCALL_WRAPPER __kconfig;
extern bool LINUX_HAS_BPF_COOKIE __kconfig;
extern unsigned long long LINUX_KERNEL_VERSION __kconfig;
extern char CONFIG_BPF_SYSCALL __kconfig;
extern enum libbpf_tristate CONFIG_BPF_JIT __kconfig;
extern int CONFIG_HZ __kconfig;
extern char CONFIG_DEFAULT_HOSTNAME[8] __kconfig __weak;
extern bool CONFIG_KILN_NO_SUCH_OPTION __kconfig __weak;

extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} task_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u32);
} sk_marks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} cgrp_bytes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_INODE_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u32);
} inode_marks SEC(".maps");

struct ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 3 * 4096 + 1);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, int);
	__array(values, struct ring);
} rings SEC(".maps");

/* Read back by the test after a run. */
struct kconfig_seen {
	int syscall_wrapper;
	int bpf_cookie;
	__u64 kernel_version;
	char bpf_syscall;
	int bpf_jit;
	int hz;
	char hostname[8];
	int no_such_option;
};
struct kconfig_seen seen SEC(".data.seen");
__u32 mask SEC(".data.mask");
const volatile __u32 factor SEC(".rodata.factor") = 3;
__u64 new_tasks;

static __noinline int scaled(int x)
{
	return x * factor;
}

__noinline int global_add(int a, int b)
{
	return a + b + mask;
}

SEC("xdp")
int dropin_xdp(struct xdp_md *ctx)
{
	bpf_printk("dropin: %d", ctx->ingress_ifindex);
	seen.syscall_wrapper = LINUX_HAS_SYSCALL_WRAPPER;
	seen.bpf_cookie = LINUX_HAS_BPF_COOKIE;
	seen.kernel_version = LINUX_KERNEL_VERSION;
	seen.bpf_syscall = CONFIG_BPF_SYSCALL;
	seen.bpf_jit = CONFIG_BPF_JIT;
	seen.hz = CONFIG_HZ;
	__builtin_memcpy(seen.hostname, CONFIG_DEFAULT_HOSTNAME, sizeof(seen.hostname));
	seen.no_such_option = CONFIG_KILN_NO_SUCH_OPTION;
	return global_add(scaled(1), 0) == 3 ? XDP_PASS : XDP_DROP;
}

SEC("tc")
int dropin_tc(struct __sk_buff *skb)
{
	/* A plain string literal lands in .rodata.str1.1. */
	bpf_trace_printk("dropin tc: %u\n", sizeof("dropin tc: %u\n"), skb->len);
	return scaled(global_add(0, 0));
}

SEC("tp_btf/task_newtask")
int BPF_PROG(dropin_newtask, struct task_struct *task, u64 clone_flags)
{
	struct task_struct *held = bpf_task_acquire(task);
	__u64 *n;

	if (!held)
		return 0;
	n = bpf_task_storage_get(&task_seen, held, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (n)
		*n += scaled(1);
	bpf_task_release(held);
	__atomic_fetch_add(&new_tasks, 1, __ATOMIC_RELAXED);
	return 0;
}
