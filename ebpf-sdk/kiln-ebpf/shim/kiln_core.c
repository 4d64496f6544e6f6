// CO-RE accessors for Rust programs.
//
// Stable rustc cannot emit the `llvm.preserve.*.access.index` intrinsics
// that make the BPF backend record CO-RE relocations, but clang can: these
// accessors are compiled to bitcode with local struct definitions marked
// `preserve_access_index` (only the fields we touch; CO-RE matches by name,
// not layout), and bpf-linker links them into the Rust program. The BPF
// backend then emits the field-offset relocations into .BTF.ext, and the
// loader (libbpf or Kiln) rewrites each offset for the running kernel.
#include <linux/types.h>

#define KILN_INLINE __attribute__((always_inline))

struct task_struct {
	int pid;
	int tgid;
	struct task_struct *real_parent;
} __attribute__((preserve_access_index));

static long (*const probe_read_kernel)(void *dst, __u32 size, const void *src) = (void *)113;

// Each accessor reads one field through bpf_probe_read_kernel at the
// relocated offset; returns 0 when the read fails.
KILN_INLINE __u32 kiln_core_task_pid(const void *task)
{
	int v = 0;
	probe_read_kernel(&v, sizeof(v), &((const struct task_struct *)task)->pid);
	return v;
}

KILN_INLINE __u32 kiln_core_task_tgid(const void *task)
{
	int v = 0;
	probe_read_kernel(&v, sizeof(v), &((const struct task_struct *)task)->tgid);
	return v;
}

KILN_INLINE const void *kiln_core_task_real_parent(const void *task)
{
	const void *v = 0;
	probe_read_kernel(&v, sizeof(v), &((const struct task_struct *)task)->real_parent);
	return v;
}
