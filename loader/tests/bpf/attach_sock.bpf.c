// Socket-level hooks for loader/tests/attach_sock.rs: each program bumps its
// own slot of `counts` and lets traffic through.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

/* Slots 7 and 8 were netfilter's, now in attach_nf.bpf.c (a 6.4 program
 * type: one object per kernel feature, so older kernels load this one). */
enum {
	MSG_V1, MSG_V2, STREAM_VERDICT, LOOKUP, SOCKOPS, DISSECT, DISSECT_V2,
	UNUSED_7, UNUSED_8, LOOKUP_V2, NSLOTS
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NSLOTS);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} socks SEC(".maps");

/* Where sk_lookup steers: slot 0 holds the listening socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lookup_target SEC(".maps");

/* The port sk_lookup steers from (set by the test). */
volatile const __u16 steer_port = 7777;

static __always_inline void bump(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&counts, &slot);

	if (n)
		__atomic_fetch_add(n, 1, __ATOMIC_RELAXED);
}

SEC("sk_msg")
int msg_v1(struct sk_msg_md *msg)
{
	bump(MSG_V1);
	return SK_PASS;
}

SEC("sk_msg")
int msg_v2(struct sk_msg_md *msg)
{
	bump(MSG_V2);
	return SK_PASS;
}

SEC("sk_skb/stream_parser")
int parser(struct __sk_buff *skb)
{
	return skb->len;
}

SEC("sk_skb/stream_verdict")
int stream_verdict(struct __sk_buff *skb)
{
	bump(STREAM_VERDICT);
	return SK_PASS;
}

static __always_inline int steer(struct bpf_sk_lookup *ctx, __u32 slot)
{
	struct bpf_sock *sk;
	__u32 key = 0;
	long err;

	if (ctx->local_port != steer_port)
		return SK_PASS;
	sk = bpf_map_lookup_elem(&lookup_target, &key);
	if (!sk)
		return SK_PASS;
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	bump(slot);
	return err ? SK_DROP : SK_PASS;
}

SEC("sk_lookup")
int lookup(struct bpf_sk_lookup *ctx)
{
	return steer(ctx, LOOKUP);
}

SEC("sk_lookup")
int lookup_v2(struct bpf_sk_lookup *ctx)
{
	return steer(ctx, LOOKUP_V2);
}

SEC("sockops")
int count_sockops(struct bpf_sock_ops *skops)
{
	bump(SOCKOPS);
	return 1;
}

SEC("flow_dissector")
int dissect(struct __sk_buff *skb)
{
	bump(DISSECT);
	return BPF_OK;
}

SEC("flow_dissector")
int dissect_v2(struct __sk_buff *skb)
{
	bump(DISSECT_V2);
	return BPF_OK;
}
