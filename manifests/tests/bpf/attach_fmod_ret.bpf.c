// SPDX-License-Identifier: MIT OR GPL-2.0
// fmod_ret fixture (manifests/tests/attach_kinds.rs): the LSM check of
// getpgid(PID) fails with `fake_ret` for the test's process. The kernel
// lets fmod_ret modify security_* functions (and those on the
// error-injection list, which distro kernels without
// CONFIG_FUNCTION_ERROR_INJECTION do not have).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Set by the manifest's `globals`. */
volatile const __u32 target_tgid = 0;
volatile const int fake_ret = 0;

SEC("fmod_ret/security_task_getpgid")
int fake_denial(unsigned long long *ctx)
{
	/* ctx[0]: the task asked about; ctx[1]: the return value so far. */
	if ((__u32)(bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	return fake_ret;
}

char LICENSE[] SEC("license") = "GPL";
