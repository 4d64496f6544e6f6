/* SPDX-License-Identifier: MIT OR GPL-2.0 */
/*
 * Shared definitions of the tool corpus: programs written the way
 * libbpf-based tools (BCC's libbpf-tools, xdp-tools, socket load balancers)
 * write theirs, so the loader is tested against what users actually ship:
 * vmlinux.h with CO-RE, `const volatile` knobs in .rodata set before load,
 * BTF-defined maps, perf and ring buffers, tp_btf with raw_tp fallbacks,
 * kprobes with fentry alternatives.
 */
#ifndef KILN_TOOLS_H
#define KILN_TOOLS_H

#define TASK_COMM_LEN 16
#define NAME_MAX 255
#define INVALID_UID ((uid_t)-1)

/* Not in vmlinux.h: they are #defines in the kernel's headers. */
#define AF_INET 2
#define AF_INET6 10
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

/* Increment without using the old value: a plain BPF_ADD, which 5.10's
 * verifier takes (a fetching atomic it refuses). */
#define ADD(p, n) __atomic_fetch_add((p), (n), __ATOMIC_RELAXED)

#endif
