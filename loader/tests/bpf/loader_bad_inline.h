// A library-style helper, inlined into its caller: the verifier rejects the
// dereference here, but the mistake (no NULL check) is the caller's.
// loader/tests/programs.rs asserts both lines are named.
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

static __always_inline __u64 counter_plus_one(const __u64 *counter)
{
	return *counter + 1; /* KILN-INLINE-LINE */
}
