// SPDX-License-Identifier: MIT OR GPL-2.0
// An arena (BPF_MAP_TYPE_ARENA, kernel 6.9+) written by a program through an
// `__arena` pointer and read by user space through its mapping
// (loader/tests/maps_arena.rs). Apart from the other map fixtures because
// the map type and the kfunc do not exist on older kernels.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define __arena __attribute__((address_space(1)))

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4); /* pages */
} arena SEC(".maps");

void __arena *bpf_arena_alloc_pages(void *map, void __arena *addr, __u32 page_cnt,
				    int node_id, __u64 flags) __ksym;

/* The user-space address of the page the program allocated (0: none yet). */
__u64 page_addr;

/* Allocates one arena page on the first run; every run stores a marker at
 * word 0 and twice word 1 (which user space writes) at word 2. */
SEC("syscall")
int fill(void *ctx)
{
	__u64 __arena *p;

	if (!page_addr) {
		p = bpf_arena_alloc_pages(&arena, (void __arena *)0, 1, -1, 0);
		if (!p)
			return 1;
		page_addr = (__u64)p;
	}
	p = (__u64 __arena *)page_addr;
	p[0] = 0x6b696c6e; /* "kiln" */
	p[2] = p[1] * 2;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
