// SPDX-License-Identifier: MIT OR GPL-2.0
// Global variables that live in an arena (`__arena`, section .addr_space.1):
// libbpf relocates references to them into the object's arena map and
// copies their initial values into the arena (loader/tests/arena_globals.rs).
// Kernel 6.9+ (arena maps).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define __arena __attribute__((address_space(1)))

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4); /* pages */
} arena SEC(".maps");

/* Initialised and zeroed arena globals. */
__u64 __arena counter = 40;
__u32 __arena ring[4] = { 1, 2, 3, 4 };
__u64 __arena zeroed;

/* What the program saw, for the test to compare with the arena's bytes. */
__u64 seen_counter;
__u64 seen_sum;

SEC("syscall")
int bump(void *ctx)
{
	counter += 2;
	zeroed = counter * 2;
	seen_counter = counter;
	seen_sum = ring[0] + ring[1] + ring[2] + ring[3];
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
