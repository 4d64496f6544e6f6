// Iterators for loader/tests/attach_iter.rs: one lists every BPF map, its
// replacement lists them with another prefix, one counts tasks.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} iter_counts SEC(".maps");

SEC("iter/bpf_map")
int dump_maps(struct bpf_iter__bpf_map *ctx)
{
	struct bpf_map *map = ctx->map;

	if (!map)
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "map %u\n", map->id);
	return 0;
}

SEC("iter/bpf_map")
int dump_maps_v2(struct bpf_iter__bpf_map *ctx)
{
	struct bpf_map *map = ctx->map;

	if (!map)
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "v2 map %u\n", map->id);
	return 0;
}

SEC("iter/task")
int list_tasks(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	__u32 key = 0;
	__u64 *n;

	if (!task)
		return 0;
	n = bpf_map_lookup_elem(&iter_counts, &key);
	if (n)
		__atomic_fetch_add(n, 1, __ATOMIC_RELAXED);
	if (task->pid == task->tgid)
		BPF_SEQ_PRINTF(ctx->meta->seq, "pid %d\n", task->tgid);
	return 0;
}
