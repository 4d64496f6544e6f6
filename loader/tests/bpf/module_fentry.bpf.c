// fentry and fexit on functions of the veth module: their targets are in
// the module's BTF, not vmlinux's, so the loader passes the module's BTF fd
// (attach_btf_obj_fd). `veth:veth_close` names the module as libbpf allows.
// Only the device named `target_name` counts, so veths other processes
// bring up or down do not.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

const volatile char target_name[16] = {};
__u64 opened;
__u64 closed;

static __always_inline int is_target(struct net_device *dev)
{
	char name[16];

	if (bpf_probe_read_kernel(name, sizeof(name), dev->name))
		return 0;
	for (int i = 0; i < 16; i++) {
		if (name[i] != target_name[i])
			return 0;
		if (!name[i])
			break;
	}
	return 1;
}

SEC("fentry/veth_open")
int BPF_PROG(on_veth_open, struct net_device *dev)
{
	if (is_target(dev))
		__atomic_fetch_add(&opened, 1, __ATOMIC_RELAXED);
	return 0;
}

SEC("fexit/veth:veth_close")
int BPF_PROG(on_veth_close, struct net_device *dev, int ret)
{
	if (is_target(dev))
		__atomic_fetch_add(&closed, 1, __ATOMIC_RELAXED);
	return 0;
}
