// SPDX-License-Identifier: MIT OR GPL-2.0
//
// Kiln example: a latency histogram of vfs_read().
//
// read_enter (kprobe) stores the time each thread entered vfs_read;
// read_exit (kretprobe) takes it back, and counts the call in the log2
// bucket of its duration in nanoseconds: `latency[i]` holds the calls that
// took [2^i, 2^(i+1)) ns (bucket 0 also holds 0 and 1 ns).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "Dual MIT/GPL";

#define BUCKETS 64

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);   // pid_tgid of the thread inside vfs_read
	__type(value, __u64); // when it entered (bpf_ktime_get_ns)
	__uint(max_entries, 10240);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, BUCKETS);
} latency SEC(".maps");

static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0;
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) r += 1;
	return r;
}

SEC("kprobe/vfs_read")
int read_enter(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 now = bpf_ktime_get_ns();
	bpf_map_update_elem(&start, &id, &now, BPF_ANY);
	return 0;
}

SEC("kretprobe/vfs_read")
int read_exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 *t0 = bpf_map_lookup_elem(&start, &id);
	if (!t0)
		return 0; // entered before the kprobe was attached
	__u64 delta = bpf_ktime_get_ns() - *t0;
	bpf_map_delete_elem(&start, &id);
	__u32 bucket = log2_u64(delta);
	__u64 *n = bpf_map_lookup_elem(&latency, &bucket);
	if (n)
		__atomic_fetch_add(n, 1, __ATOMIC_RELAXED);
	return 0;
}
