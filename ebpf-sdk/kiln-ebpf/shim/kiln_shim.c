// Operations stable Rust cannot express for the BPF target, compiled to LLVM
// bitcode by kiln-ebpf's build script and linked into every program by
// bpf-linker, where LTO inlines them.
//
// - Atomic adds: the BPF target has no compare-and-swap, so core's
//   AtomicU64::fetch_add is unavailable; clang lowers __atomic_fetch_add with
//   an unused result to the non-fetching BPF_ADD that 5.10 accepts.
#include <linux/types.h>

#define KILN_INLINE __attribute__((always_inline))

KILN_INLINE void kiln_atomic_add_u64(__u64 *p, __u64 v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
KILN_INLINE void kiln_atomic_add_u32(__u32 *p, __u32 v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
