// The program whose global function loader/tests/attach_freplace.rs replaces.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

__attribute__((noinline)) int kiln_decide(struct xdp_md *ctx)
{
	return ctx->data_end - ctx->data > 1 ? XDP_PASS : XDP_ABORTED;
}

SEC("xdp")
int xdp_entry(struct xdp_md *ctx)
{
	return kiln_decide(ctx);
}
