// Programs that record the cookie their attachment carries
// (bpf_get_attach_cookie), for loader/tests/attach_perf.rs and
// attach_multi.rs: `cookies[cookie] += 1`.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u64);
} cookies SEC(".maps");

/* Hits per CPU, for perf events on every CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} per_cpu_hits SEC(".maps");

static __always_inline void count_cookie(__u64 cookie)
{
	__u64 one = 1, *n;

	n = bpf_map_lookup_elem(&cookies, &cookie);
	if (n)
		__atomic_fetch_add(n, 1, __ATOMIC_RELAXED);
	else
		bpf_map_update_elem(&cookies, &cookie, &one, BPF_NOEXIST);
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int tp_cookie(void *ctx)
{
	count_cookie(bpf_get_attach_cookie(ctx));
	return 0;
}

SEC("perf_event")
int on_clock(struct bpf_perf_event_data *ctx)
{
	__u32 cpu = bpf_get_smp_processor_id();
	__u64 *n = bpf_map_lookup_elem(&per_cpu_hits, &cpu);

	if (n)
		__atomic_fetch_add(n, 1, __ATOMIC_RELAXED);
	count_cookie(bpf_get_attach_cookie(ctx));
	return 0;
}

SEC("kprobe.multi")
int kmulti_cookie(struct pt_regs *ctx)
{
	count_cookie(bpf_get_attach_cookie(ctx));
	return 0;
}

SEC("uprobe.multi")
int umulti_cookie(struct pt_regs *ctx)
{
	count_cookie(bpf_get_attach_cookie(ctx));
	return 0;
}

SEC("uprobe")
int uprobe_cookie(struct pt_regs *ctx)
{
	count_cookie(bpf_get_attach_cookie(ctx));
	return 0;
}
