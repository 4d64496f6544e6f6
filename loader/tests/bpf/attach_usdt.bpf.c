// Counts the kiln:hit USDT probe of attach_util/usdt_target.c and sums its
// first argument, through libbpf's <bpf/usdt.bpf.h> (the loader fills its
// __bpf_usdt_specs map and gives each probe site its spec id as cookie).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

char LICENSE[] SEC("license") = "GPL";

__u64 hits;
__s64 arg_sum;
__s64 last_arg1;
__u64 last_cookie;
__u64 last_ip;

SEC("usdt")
int BPF_USDT(kiln_hit, int i, long k)
{
	__atomic_fetch_add(&hits, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&arg_sum, i, __ATOMIC_RELAXED);
	last_arg1 = k;
	last_cookie = bpf_usdt_cookie(ctx);
	last_ip = PT_REGS_IP(ctx);
	return 0;
}
