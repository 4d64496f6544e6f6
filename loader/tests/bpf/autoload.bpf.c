// libbpf's SEC("?...") convention: programs that load only when asked for
// (often written to be refused, or for one kernel among several). Kept out
// of dropin.bpf.c: bpftool 7.1 fails `prog loadall` on such objects.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("socket")
int always(void *ctx)
{
	return 0;
}

/* The verifier refuses it: a NULL read. */
SEC("?socket")
int optional(void *ctx)
{
	return *(volatile int *)0;
}
