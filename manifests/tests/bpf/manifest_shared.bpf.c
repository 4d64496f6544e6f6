// Test fixture for kiln-manifest: one object whose programs share what
// libbpf shares between the programs of an object (its .bss, its maps), and
// maps only the loader knows how to create: a perf event array without
// max_entries (one slot per CPU), an array of maps and a program array
// filled from `.values`, a devmap used by two XDP programs.
//
// The exec programs count only processes named `comm_name` (set through
// the manifest's globals), so each test counts its own execs on a busy
// machine.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

// Counted by both exec programs: one variable for the whole object.
__u64 hits = 0;
// Counted by the tail-call target.
__u64 tail_hits = 0;

struct inner_map {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} inner0 SEC(".maps"), inner1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner_map);
} outer SEC(".maps") = {
	.values = { &inner0, &inner1 },
};

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

int shared_tail(void *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, int(void *));
} jumps SEC(".maps") = {
	.values = { [1] = (void *)&shared_tail },
};

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} ports SEC(".maps");

volatile const char comm_name[16] = "kilnsum";

static __always_inline int ours(void)
{
	char comm[16];

	if (bpf_get_current_comm(comm, sizeof(comm)))
		return 0;
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (comm[i] != comm_name[i])
			return 0;
		if (!comm[i])
			break;
	}
	return 1;
}

SEC("tracepoint/sched/sched_process_exec")
int shared_a(void *ctx)
{
	if (!ours())
		return 0;
	__atomic_fetch_add(&hits, 1, __ATOMIC_RELAXED);
	bpf_tail_call(ctx, &jumps, 1);
	return 0;
}

SEC("tracepoint/sched/sched_process_exec")
int shared_b(void *ctx)
{
	__u32 zero = 0;
	__u64 one = 1;
	void *inner;

	if (!ours())
		return 0;
	__atomic_fetch_add(&hits, 1, __ATOMIC_RELAXED);
	inner = bpf_map_lookup_elem(&outer, &zero);
	if (inner) {
		__u64 *v = bpf_map_lookup_elem(inner, &zero);

		if (v)
			__atomic_fetch_add(v, 1, __ATOMIC_RELAXED);
	}
	bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &one, sizeof(one));
	return 0;
}

SEC("tracepoint/sched/sched_process_exec")
int shared_tail(void *ctx)
{
	__atomic_fetch_add(&tail_hits, 1, __ATOMIC_RELAXED);
	return 0;
}

SEC("xdp")
int redirect_a(struct xdp_md *ctx)
{
	return bpf_redirect_map(&ports, 0, XDP_PASS);
}

SEC("xdp")
int redirect_b(struct xdp_md *ctx)
{
	return bpf_redirect_map(&ports, 1, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";
