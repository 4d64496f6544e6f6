// A minimal TCP congestion control registered through a struct_ops link:
// Reno-like window growth, each callback counting its calls in `calls` so
// the test sees which ones the kernel ran.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

/* calls[0]: init, [1]: ssthresh, [2]: cong_avoid, [3]: undo_cwnd,
 * [4]: init of kiln_cc_v2. */
__u64 calls[5];

static __always_inline void bump(int slot)
{
	__atomic_fetch_add(&calls[slot], 1, __ATOMIC_RELAXED);
}

SEC("struct_ops/kiln_init")
void BPF_PROG(kiln_init, struct sock *sk)
{
	bump(0);
}

SEC("struct_ops/kiln_init_v2")
void BPF_PROG(kiln_init_v2, struct sock *sk)
{
	bump(4);
}

SEC("struct_ops/kiln_ssthresh")
__u32 BPF_PROG(kiln_ssthresh, struct sock *sk)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;

	bump(1);
	return tp->snd_cwnd > 4 ? tp->snd_cwnd >> 1 : 2;
}

SEC("struct_ops/kiln_cong_avoid")
void BPF_PROG(kiln_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;

	bump(2);
	/* Grow by one segment per ACK: enough for the test's transfer. */
	if (tp->snd_cwnd < tp->snd_cwnd_clamp)
		tp->snd_cwnd += 1;
}

SEC("struct_ops/kiln_undo_cwnd")
__u32 BPF_PROG(kiln_undo_cwnd, struct sock *sk)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;

	bump(3);
	return tp->snd_cwnd;
}

SEC(".struct_ops.link")
struct tcp_congestion_ops kiln_cc = {
	.init = (void *)kiln_init,
	.ssthresh = (void *)kiln_ssthresh,
	.cong_avoid = (void *)kiln_cong_avoid,
	.undo_cwnd = (void *)kiln_undo_cwnd,
	.name = "kiln_cc",
};

/* The same callbacks as a pre-6.4 table: registered by the map update
 * itself, unregistered by deleting the map's element. */
SEC(".struct_ops")
struct tcp_congestion_ops kiln_cc_old = {
	.init = (void *)kiln_init,
	.ssthresh = (void *)kiln_ssthresh,
	.cong_avoid = (void *)kiln_cong_avoid,
	.undo_cwnd = (void *)kiln_undo_cwnd,
	.name = "kiln_cc_old",
};

/* A replacement for kiln_cc through its link: TCP wants the same name. */
SEC(".struct_ops.link")
struct tcp_congestion_ops kiln_cc_v2 = {
	.init = (void *)kiln_init_v2,
	.ssthresh = (void *)kiln_ssthresh,
	.cong_avoid = (void *)kiln_cong_avoid,
	.undo_cwnd = (void *)kiln_undo_cwnd,
	.name = "kiln_cc",
};
