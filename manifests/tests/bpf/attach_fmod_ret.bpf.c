// SPDX-License-Identifier: MIT OR GPL-2.0
// fmod_ret fixture (manifests/tests/attach_kinds.rs): getppid() of the
// test's process returns `fake_ret` instead of running. Syscall entry
// points are on the kernel's error-injection list (ALLOW_ERROR_INJECTION),
// which fmod_ret requires; the target is x86_64's wrapper, so the test runs
// on x86_64 only.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Set by the manifest's `globals`. */
volatile const __u32 target_tgid = 0;
volatile const int fake_ret = 0;

SEC("fmod_ret/__x64_sys_getppid")
int fake_ppid(unsigned long long *ctx)
{
	/* ctx[0]: the syscall's pt_regs; ctx[1]: the return value so far. */
	if ((__u32)(bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	return fake_ret;
}

char LICENSE[] SEC("license") = "GPL";
