// SPDX-License-Identifier: MIT OR GPL-2.0
//
// Benchmark object for W4 (per-element hash map ops), W5 (reading a
// 1,000,000-entry hash map) and W6 (draining a ring buffer). One
// BPF_PROG_TEST_RUN of `produce` writes RECORDS 64-byte records into `ring`
// with bpf_loop; the ring holds a little more than three runs, so user space
// drains after every run.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "Dual MIT/GPL";

#define RECORDS 16384

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 131072);
} w4_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1000000);
} w5_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} ring SEC(".maps");

__u64 produced = 0;

struct record {
	__u64 seq;
	__u64 pad[7];
};

static long emit(__u64 i, void *ctx)
{
	struct record r = { .seq = i };

	if (bpf_ringbuf_output(&ring, &r, sizeof(r), 0))
		return 1; // ring full: stop
	produced += 1;
	return 0;
}

SEC("xdp")
int produce(struct xdp_md *ctx)
{
	bpf_loop(RECORDS, emit, NULL, 0);
	return XDP_PASS;
}
