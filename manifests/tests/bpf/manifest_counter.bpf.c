// Test fixture for kiln-manifest: the quickstart counter's interface in C
// (map COUNTERS: key 0 execs, key 1 packets), so the manifest tests do not
// depend on the Rust SDK. manifest_counter_v2.bpf.c is the "upgraded" build.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 16);
} COUNTERS SEC(".maps");

// How much each event adds; set through `globals = { step = N }`.
volatile const __u64 step = 1;

static __always_inline void bump(__u32 key)
{
	__u64 *v = bpf_map_lookup_elem(&COUNTERS, &key);
	if (v) {
		__atomic_fetch_add(v, step, __ATOMIC_RELAXED);
	} else {
		__u64 init = step;
		bpf_map_update_elem(&COUNTERS, &key, &init, BPF_NOEXIST);
	}
}

SEC("tracepoint/sched/sched_process_exec")
int count_exec(void *ctx)
{
	bump(0);
	return 0;
}

SEC("xdp")
int count_packets(struct xdp_md *ctx)
{
	bump(1);
#ifdef MANIFEST_COUNTER_V2
	bump(2);
#endif
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
