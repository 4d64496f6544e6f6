// SPDX-License-Identifier: MIT OR GPL-2.0
// Initial `.values` of a prog array and of an array of maps, which the loader
// fills at load (loader/tests/map_slots.rs). `dispatch` tail-calls through
// `jumps` at the index in the packet's first byte; `via_outer` reaches
// `counter_b` only through `outer`'s slot 1.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} counter_a SEC(".maps"), counter_b SEC(".maps");

int tail_a(struct __sk_buff *skb);
int tail_b(struct __sk_buff *skb);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, int(struct __sk_buff *));
} jumps SEC(".maps") = {
	.values = { [0] = (void *)&tail_a, [1] = (void *)&tail_b },
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps") = {
	.values = { [1] = &counter_b },
};

SEC("tc")
int tail_a(struct __sk_buff *skb)
{
	return 10;
}

SEC("tc")
int tail_b(struct __sk_buff *skb)
{
	return 20;
}

SEC("tc")
int dispatch(struct __sk_buff *skb)
{
	__u8 *data = (void *)(long)skb->data;
	__u8 *end = (void *)(long)skb->data_end;

	if (data + 1 > end)
		return 98;
	bpf_tail_call(skb, &jumps, data[0]);
	return 99; /* empty slot: the tail call fell through */
}

/* outer[1]'s inner map: counter += 1; returns the new count, 97 when the slot is empty. */
SEC("tc")
int via_outer(struct __sk_buff *skb)
{
	__u32 slot = 1, zero = 0;
	void *inner = bpf_map_lookup_elem(&outer, &slot);
	__u32 *n;

	if (!inner)
		return 97;
	n = bpf_map_lookup_elem(inner, &zero);
	if (!n)
		return 96;
	*n += 1;
	return *n;
}

char LICENSE[] SEC("license") = "GPL";
