// Calls kfuncs that the nf_conntrack module defines (5.18+): the loader
// finds them in the module's BTF and passes its fd in BPF_PROG_LOAD's
// fd_array. A lookup of a connection that does not exist reports -ENOENT
// in the options' `error`, which the program keeps for the test.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

/* The options as 5.18 to 6.x all accept them (12 bytes, before ct_zone_id). */
struct bpf_ct_opts___local {
	s32 netns_id;
	s32 error;
	u8 l4proto;
	u8 dir;
	u8 reserved[2];
};

extern struct nf_conn *bpf_xdp_ct_lookup(struct xdp_md *xdp_ctx, struct bpf_sock_tuple *bpf_tuple,
					 u32 tuple__sz, struct bpf_ct_opts___local *opts,
					 u32 opts__sz) __ksym;
extern void bpf_ct_release(struct nf_conn *ct) __ksym;

int lookup_error = 1;
int found = -1;

SEC("xdp")
int ct_lookup(struct xdp_md *ctx)
{
	struct bpf_sock_tuple tuple = {};
	struct bpf_ct_opts___local opts = { .netns_id = -1, .l4proto = IPPROTO_TCP };
	struct nf_conn *ct;

	tuple.ipv4.saddr = bpf_htonl(0x0a0b0c01);
	tuple.ipv4.daddr = bpf_htonl(0x0a0b0c02);
	tuple.ipv4.sport = bpf_htons(4242);
	tuple.ipv4.dport = bpf_htons(4243);
	ct = bpf_xdp_ct_lookup(ctx, &tuple, sizeof(tuple.ipv4), &opts, sizeof(opts));
	if (ct) {
		found = 1;
		bpf_ct_release(ct);
	} else {
		found = 0;
	}
	lookup_error = opts.error;
	return XDP_PASS;
}
