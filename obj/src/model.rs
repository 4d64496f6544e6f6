//! The data model every other crate builds on: specs of programs and maps.
//!
//! This file is the contract between `kiln-obj`, `kiln-loader` and
//! `kiln-manifest`. Add to it freely; change a field's meaning only with all
//! users in the same commit.

use crate::Insn;

/// A kernel `enum bpf_map_type` value. Open-ended: newer kernels add types.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct MapType(pub u32);

impl MapType {
    /// Reserved: no map has this type.
    pub const UNSPEC: Self = Self(0);
    /// `BPF_MAP_TYPE_HASH`: a hash table.
    ///
    /// Minimum kernel version: 3.19.
    pub const HASH: Self = Self(1);
    /// `BPF_MAP_TYPE_ARRAY`: an array indexed by `u32`, preallocated and zeroed.
    ///
    /// Minimum kernel version: 3.19.
    pub const ARRAY: Self = Self(2);
    /// `BPF_MAP_TYPE_PROG_ARRAY`: program fds, the targets of tail calls.
    ///
    /// Minimum kernel version: 4.2.
    pub const PROG_ARRAY: Self = Self(3);
    /// `BPF_MAP_TYPE_PERF_EVENT_ARRAY`: one perf event (ring) per CPU.
    ///
    /// Minimum kernel version: 4.3.
    pub const PERF_EVENT_ARRAY: Self = Self(4);
    /// `BPF_MAP_TYPE_PERCPU_HASH`: a hash table with one value per CPU.
    ///
    /// Minimum kernel version: 4.6.
    pub const PERCPU_HASH: Self = Self(5);
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`: an array with one value per CPU.
    ///
    /// Minimum kernel version: 4.6.
    pub const PERCPU_ARRAY: Self = Self(6);
    /// `BPF_MAP_TYPE_STACK_TRACE`: stack traces by id (`bpf_get_stackid`).
    ///
    /// Minimum kernel version: 4.6.
    pub const STACK_TRACE: Self = Self(7);
    /// `BPF_MAP_TYPE_CGROUP_ARRAY`: cgroup fds, for `bpf_skb_under_cgroup`.
    ///
    /// Minimum kernel version: 4.8.
    pub const CGROUP_ARRAY: Self = Self(8);
    /// `BPF_MAP_TYPE_LRU_HASH`: a hash table evicting the least recently used entry when full.
    ///
    /// Minimum kernel version: 4.10.
    pub const LRU_HASH: Self = Self(9);
    /// `BPF_MAP_TYPE_LRU_PERCPU_HASH`: an LRU hash table with one value per CPU.
    ///
    /// Minimum kernel version: 4.10.
    pub const LRU_PERCPU_HASH: Self = Self(10);
    /// `BPF_MAP_TYPE_LPM_TRIE`: longest-prefix match on `(prefix length, data)` keys.
    ///
    /// Minimum kernel version: 4.11.
    pub const LPM_TRIE: Self = Self(11);
    /// `BPF_MAP_TYPE_ARRAY_OF_MAPS`: an array whose values are maps.
    ///
    /// Minimum kernel version: 4.12.
    pub const ARRAY_OF_MAPS: Self = Self(12);
    /// `BPF_MAP_TYPE_HASH_OF_MAPS`: a hash table whose values are maps.
    ///
    /// Minimum kernel version: 4.12.
    pub const HASH_OF_MAPS: Self = Self(13);
    /// `BPF_MAP_TYPE_DEVMAP`: network devices by index, for XDP redirects.
    ///
    /// Minimum kernel version: 4.14.
    pub const DEVMAP: Self = Self(14);
    /// `BPF_MAP_TYPE_SOCKMAP`: sockets by index, for sk_skb/sk_msg redirects.
    ///
    /// Minimum kernel version: 4.14.
    pub const SOCKMAP: Self = Self(15);
    /// `BPF_MAP_TYPE_CPUMAP`: CPUs, for redirecting XDP frames to another CPU.
    ///
    /// Minimum kernel version: 4.15.
    pub const CPUMAP: Self = Self(16);
    /// `BPF_MAP_TYPE_XSKMAP`: AF_XDP sockets, for redirecting XDP frames to userspace.
    ///
    /// Minimum kernel version: 4.18.
    pub const XSKMAP: Self = Self(17);
    /// `BPF_MAP_TYPE_SOCKHASH`: sockets by key, for sk_skb/sk_msg redirects.
    ///
    /// Minimum kernel version: 4.18.
    pub const SOCKHASH: Self = Self(18);
    /// `BPF_MAP_TYPE_CGROUP_STORAGE`: storage per cgroup and attach type of a cgroup program.
    ///
    /// Minimum kernel version: 4.19.
    pub const CGROUP_STORAGE: Self = Self(19);
    /// `BPF_MAP_TYPE_REUSEPORT_SOCKARRAY`: sockets of a `SO_REUSEPORT` group, for sk_reuseport programs.
    ///
    /// Minimum kernel version: 4.19.
    pub const REUSEPORT_SOCKARRAY: Self = Self(20);
    /// `BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE`: cgroup storage with one value per CPU.
    ///
    /// Minimum kernel version: 4.20.
    pub const PERCPU_CGROUP_STORAGE: Self = Self(21);
    /// `BPF_MAP_TYPE_QUEUE`: a FIFO of values (no keys).
    ///
    /// Minimum kernel version: 4.20.
    pub const QUEUE: Self = Self(22);
    /// `BPF_MAP_TYPE_STACK`: a LIFO of values (no keys).
    ///
    /// Minimum kernel version: 4.20.
    pub const STACK: Self = Self(23);
    /// `BPF_MAP_TYPE_SK_STORAGE`: storage attached to sockets.
    ///
    /// Minimum kernel version: 5.2.
    pub const SK_STORAGE: Self = Self(24);
    /// `BPF_MAP_TYPE_DEVMAP_HASH`: network devices by key, for XDP redirects.
    ///
    /// Minimum kernel version: 5.4.
    pub const DEVMAP_HASH: Self = Self(25);
    /// `BPF_MAP_TYPE_STRUCT_OPS`: a kernel `struct ..._ops` implemented by BPF programs.
    ///
    /// Minimum kernel version: 5.6.
    pub const STRUCT_OPS: Self = Self(26);
    /// `BPF_MAP_TYPE_RINGBUF`: a ring buffer shared by all CPUs, read through mmap.
    ///
    /// Minimum kernel version: 5.8.
    pub const RINGBUF: Self = Self(27);
    /// `BPF_MAP_TYPE_INODE_STORAGE`: storage attached to inodes (LSM programs).
    ///
    /// Minimum kernel version: 5.10.
    pub const INODE_STORAGE: Self = Self(28);
    /// `BPF_MAP_TYPE_TASK_STORAGE`: storage attached to tasks.
    ///
    /// Minimum kernel version: 5.11.
    pub const TASK_STORAGE: Self = Self(29);
    /// `BPF_MAP_TYPE_BLOOM_FILTER`: a Bloom filter (membership, with false positives).
    ///
    /// Minimum kernel version: 5.16.
    pub const BLOOM_FILTER: Self = Self(30);
    /// `BPF_MAP_TYPE_USER_RINGBUF`: a ring buffer written by userspace, drained by programs.
    ///
    /// Minimum kernel version: 6.1.
    pub const USER_RINGBUF: Self = Self(31);
    /// `BPF_MAP_TYPE_CGRP_STORAGE`: storage attached to cgroups.
    ///
    /// Minimum kernel version: 6.2.
    pub const CGRP_STORAGE: Self = Self(32);
    /// `BPF_MAP_TYPE_ARENA`: memory shared by programs and userspace, mapped at the same address.
    ///
    /// Minimum kernel version: 6.9.
    pub const ARENA: Self = Self(33);

    /// The kernel's name for the type, as `bpftool` prints it (`hash`, `array`, ...).
    pub fn name(self) -> &'static str {
        const NAMES: [&str; 34] = [
            "unspec",
            "hash",
            "array",
            "prog_array",
            "perf_event_array",
            "percpu_hash",
            "percpu_array",
            "stack_trace",
            "cgroup_array",
            "lru_hash",
            "lru_percpu_hash",
            "lpm_trie",
            "array_of_maps",
            "hash_of_maps",
            "devmap",
            "sockmap",
            "cpumap",
            "xskmap",
            "sockhash",
            "cgroup_storage",
            "reuseport_sockarray",
            "percpu_cgroup_storage",
            "queue",
            "stack",
            "sk_storage",
            "devmap_hash",
            "struct_ops",
            "ringbuf",
            "inode_storage",
            "task_storage",
            "bloom_filter",
            "user_ringbuf",
            "cgrp_storage",
            "arena",
        ];
        NAMES.get(self.0 as usize).copied().unwrap_or("unknown")
    }

    /// Inverse of [`MapType::name`].
    ///
    /// ```
    /// use kiln_obj::MapType;
    ///
    /// assert_eq!(MapType::from_name("ringbuf"), Some(MapType::RINGBUF));
    /// assert_eq!(MapType::RINGBUF.name(), "ringbuf");
    /// assert_eq!(MapType::from_name("no_such_type"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Self> {
        (0..34u32).map(Self).find(|t| t.name() == name)
    }
}

/// A kernel `enum bpf_prog_type` value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ProgramType(pub u32);

impl ProgramType {
    /// Reserved: no program has this type.
    pub const UNSPEC: Self = Self(0);
    /// `BPF_PROG_TYPE_SOCKET_FILTER`: filters a socket's packets (`SO_ATTACH_BPF`).
    ///
    /// Minimum kernel version: 3.19.
    pub const SOCKET_FILTER: Self = Self(1);
    /// `BPF_PROG_TYPE_KPROBE`: kprobes and uprobes.
    ///
    /// Minimum kernel version: 4.1.
    pub const KPROBE: Self = Self(2);
    /// `BPF_PROG_TYPE_SCHED_CLS`: TC classifiers (clsact, tcx).
    ///
    /// Minimum kernel version: 4.1.
    pub const SCHED_CLS: Self = Self(3);
    /// `BPF_PROG_TYPE_SCHED_ACT`: TC actions (`act_bpf`).
    ///
    /// Minimum kernel version: 4.1.
    pub const SCHED_ACT: Self = Self(4);
    /// `BPF_PROG_TYPE_TRACEPOINT`: static kernel tracepoints.
    ///
    /// Minimum kernel version: 4.7.
    pub const TRACEPOINT: Self = Self(5);
    /// `BPF_PROG_TYPE_XDP`: packets at the driver, before the stack.
    ///
    /// Minimum kernel version: 4.8.
    pub const XDP: Self = Self(6);
    /// `BPF_PROG_TYPE_PERF_EVENT`: perf events (sampling, hardware counters).
    ///
    /// Minimum kernel version: 4.9.
    pub const PERF_EVENT: Self = Self(7);
    /// `BPF_PROG_TYPE_CGROUP_SKB`: packets entering or leaving a cgroup.
    ///
    /// Minimum kernel version: 4.10.
    pub const CGROUP_SKB: Self = Self(8);
    /// `BPF_PROG_TYPE_CGROUP_SOCK`: socket creation, release and bind of a cgroup.
    ///
    /// Minimum kernel version: 4.10.
    pub const CGROUP_SOCK: Self = Self(9);
    /// `BPF_PROG_TYPE_LWT_IN`: lightweight tunnel input.
    ///
    /// Minimum kernel version: 4.10.
    pub const LWT_IN: Self = Self(10);
    /// `BPF_PROG_TYPE_LWT_OUT`: lightweight tunnel output.
    ///
    /// Minimum kernel version: 4.10.
    pub const LWT_OUT: Self = Self(11);
    /// `BPF_PROG_TYPE_LWT_XMIT`: lightweight tunnel transmit.
    ///
    /// Minimum kernel version: 4.10.
    pub const LWT_XMIT: Self = Self(12);
    /// `BPF_PROG_TYPE_SOCK_OPS`: TCP socket events of a cgroup.
    ///
    /// Minimum kernel version: 4.13.
    pub const SOCK_OPS: Self = Self(13);
    /// `BPF_PROG_TYPE_SK_SKB`: stream parser and verdict of sockmap sockets.
    ///
    /// Minimum kernel version: 4.14.
    pub const SK_SKB: Self = Self(14);
    /// `BPF_PROG_TYPE_CGROUP_DEVICE`: device access control of a cgroup.
    ///
    /// Minimum kernel version: 4.15.
    pub const CGROUP_DEVICE: Self = Self(15);
    /// `BPF_PROG_TYPE_SK_MSG`: verdict on sendmsg of sockmap sockets.
    ///
    /// Minimum kernel version: 4.17.
    pub const SK_MSG: Self = Self(16);
    /// `BPF_PROG_TYPE_RAW_TRACEPOINT`: tracepoints with their raw arguments.
    ///
    /// Minimum kernel version: 4.17.
    pub const RAW_TRACEPOINT: Self = Self(17);
    /// `BPF_PROG_TYPE_CGROUP_SOCK_ADDR`: bind, connect, sendmsg, recvmsg addresses of a cgroup.
    ///
    /// Minimum kernel version: 4.17.
    pub const CGROUP_SOCK_ADDR: Self = Self(18);
    /// `BPF_PROG_TYPE_LWT_SEG6LOCAL`: SRv6 `End.BPF` actions.
    ///
    /// Minimum kernel version: 4.18.
    pub const LWT_SEG6LOCAL: Self = Self(19);
    /// `BPF_PROG_TYPE_LIRC_MODE2`: infrared remote control decoding.
    ///
    /// Minimum kernel version: 4.18.
    pub const LIRC_MODE2: Self = Self(20);
    /// `BPF_PROG_TYPE_SK_REUSEPORT`: picks the socket of a `SO_REUSEPORT` group.
    ///
    /// Minimum kernel version: 4.19.
    pub const SK_REUSEPORT: Self = Self(21);
    /// `BPF_PROG_TYPE_FLOW_DISSECTOR`: the kernel's flow dissector, in BPF.
    ///
    /// Minimum kernel version: 4.20.
    pub const FLOW_DISSECTOR: Self = Self(22);
    /// `BPF_PROG_TYPE_CGROUP_SYSCTL`: sysctl access of a cgroup.
    ///
    /// Minimum kernel version: 5.2.
    pub const CGROUP_SYSCTL: Self = Self(23);
    /// `BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE`: raw tracepoints that may write their buffer.
    ///
    /// Minimum kernel version: 5.2.
    pub const RAW_TRACEPOINT_WRITABLE: Self = Self(24);
    /// `BPF_PROG_TYPE_CGROUP_SOCKOPT`: getsockopt and setsockopt of a cgroup.
    ///
    /// Minimum kernel version: 5.3.
    pub const CGROUP_SOCKOPT: Self = Self(25);
    /// `BPF_PROG_TYPE_TRACING`: BTF-typed tracing (tp_btf, fentry, fexit, fmod_ret, iterators).
    ///
    /// Minimum kernel version: 5.5.
    pub const TRACING: Self = Self(26);
    /// `BPF_PROG_TYPE_STRUCT_OPS`: one operation of a `struct_ops` map.
    ///
    /// Minimum kernel version: 5.6.
    pub const STRUCT_OPS: Self = Self(27);
    /// `BPF_PROG_TYPE_EXT`: replaces a function of another program (freplace).
    ///
    /// Minimum kernel version: 5.6.
    pub const EXT: Self = Self(28);
    /// `BPF_PROG_TYPE_LSM`: Linux security module hooks.
    ///
    /// Minimum kernel version: 5.7.
    pub const LSM: Self = Self(29);
    /// `BPF_PROG_TYPE_SK_LOOKUP`: picks the socket for an incoming connection or packet.
    ///
    /// Minimum kernel version: 5.9.
    pub const SK_LOOKUP: Self = Self(30);
    /// `BPF_PROG_TYPE_SYSCALL`: runs bpf() and other syscalls from BPF (BPF_PROG_TEST_RUN only).
    ///
    /// Minimum kernel version: 5.14.
    pub const SYSCALL: Self = Self(31);
    /// `BPF_PROG_TYPE_NETFILTER`: netfilter hooks.
    ///
    /// Minimum kernel version: 6.4.
    pub const NETFILTER: Self = Self(32);
}

/// A kernel `enum bpf_attach_type` value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct AttachType(pub u32);

impl AttachType {
    /// `BPF_CGROUP_INET_INGRESS`: packets entering a cgroup (cgroup_skb).
    ///
    /// Minimum kernel version: 4.10.
    pub const CGROUP_INET_INGRESS: Self = Self(0);
    /// `BPF_CGROUP_INET_EGRESS`: packets leaving a cgroup (cgroup_skb).
    ///
    /// Minimum kernel version: 4.10.
    pub const CGROUP_INET_EGRESS: Self = Self(1);
    /// `BPF_CGROUP_INET_SOCK_CREATE`: socket creation in a cgroup (cgroup_sock).
    ///
    /// Minimum kernel version: 4.10.
    pub const CGROUP_INET_SOCK_CREATE: Self = Self(2);
    /// `BPF_CGROUP_SOCK_OPS`: TCP socket events of a cgroup (sock_ops).
    ///
    /// Minimum kernel version: 4.13.
    pub const CGROUP_SOCK_OPS: Self = Self(3);
    /// `BPF_SK_SKB_STREAM_PARSER`: the stream parser of a sockmap (sk_skb).
    ///
    /// Minimum kernel version: 4.14.
    pub const SK_SKB_STREAM_PARSER: Self = Self(4);
    /// `BPF_SK_SKB_STREAM_VERDICT`: the stream verdict of a sockmap (sk_skb).
    ///
    /// Minimum kernel version: 4.14.
    pub const SK_SKB_STREAM_VERDICT: Self = Self(5);
    /// `BPF_CGROUP_DEVICE`: device access of a cgroup (cgroup_device).
    ///
    /// Minimum kernel version: 4.15.
    pub const CGROUP_DEVICE: Self = Self(6);
    /// `BPF_SK_MSG_VERDICT`: the sendmsg verdict of a sockmap (sk_msg).
    ///
    /// Minimum kernel version: 4.17.
    pub const SK_MSG_VERDICT: Self = Self(7);
    /// `BPF_CGROUP_INET4_BIND`: IPv4 bind of a cgroup (cgroup_sock_addr).
    ///
    /// Minimum kernel version: 4.17.
    pub const CGROUP_INET4_BIND: Self = Self(8);
    /// `BPF_CGROUP_INET6_BIND`: IPv6 bind of a cgroup (cgroup_sock_addr).
    ///
    /// Minimum kernel version: 4.17.
    pub const CGROUP_INET6_BIND: Self = Self(9);
    /// `BPF_CGROUP_INET4_CONNECT`: IPv4 connect of a cgroup (cgroup_sock_addr).
    ///
    /// Minimum kernel version: 4.17.
    pub const CGROUP_INET4_CONNECT: Self = Self(10);
    /// `BPF_CGROUP_INET6_CONNECT`: IPv6 connect of a cgroup (cgroup_sock_addr).
    ///
    /// Minimum kernel version: 4.17.
    pub const CGROUP_INET6_CONNECT: Self = Self(11);
    /// `BPF_CGROUP_INET4_POST_BIND`: after an IPv4 bind in a cgroup (cgroup_sock).
    ///
    /// Minimum kernel version: 4.17.
    pub const CGROUP_INET4_POST_BIND: Self = Self(12);
    /// `BPF_CGROUP_INET6_POST_BIND`: after an IPv6 bind in a cgroup (cgroup_sock).
    ///
    /// Minimum kernel version: 4.17.
    pub const CGROUP_INET6_POST_BIND: Self = Self(13);
    /// `BPF_CGROUP_UDP4_SENDMSG`: UDP/IPv4 sendmsg of a cgroup (cgroup_sock_addr).
    ///
    /// Minimum kernel version: 4.18.
    pub const CGROUP_UDP4_SENDMSG: Self = Self(14);
    /// `BPF_CGROUP_UDP6_SENDMSG`: UDP/IPv6 sendmsg of a cgroup (cgroup_sock_addr).
    ///
    /// Minimum kernel version: 4.18.
    pub const CGROUP_UDP6_SENDMSG: Self = Self(15);
    /// `BPF_LIRC_MODE2`: an infrared receiver device (lirc_mode2).
    ///
    /// Minimum kernel version: 4.18.
    pub const LIRC_MODE2: Self = Self(16);
    /// `BPF_FLOW_DISSECTOR`: a network namespace's flow dissector.
    ///
    /// Minimum kernel version: 4.20.
    pub const FLOW_DISSECTOR: Self = Self(17);
    /// `BPF_CGROUP_SYSCTL`: sysctl access of a cgroup (cgroup_sysctl).
    ///
    /// Minimum kernel version: 5.2.
    pub const CGROUP_SYSCTL: Self = Self(18);
    /// `BPF_CGROUP_UDP4_RECVMSG`: UDP/IPv4 recvmsg of a cgroup (cgroup_sock_addr).
    ///
    /// Minimum kernel version: 5.2.
    pub const CGROUP_UDP4_RECVMSG: Self = Self(19);
    /// `BPF_CGROUP_UDP6_RECVMSG`: UDP/IPv6 recvmsg of a cgroup (cgroup_sock_addr).
    ///
    /// Minimum kernel version: 5.2.
    pub const CGROUP_UDP6_RECVMSG: Self = Self(20);
    /// `BPF_CGROUP_GETSOCKOPT`: getsockopt of a cgroup (cgroup_sockopt).
    ///
    /// Minimum kernel version: 5.3.
    pub const CGROUP_GETSOCKOPT: Self = Self(21);
    /// `BPF_CGROUP_SETSOCKOPT`: setsockopt of a cgroup (cgroup_sockopt).
    ///
    /// Minimum kernel version: 5.3.
    pub const CGROUP_SETSOCKOPT: Self = Self(22);
    /// `BPF_TRACE_RAW_TP`: a BTF-typed raw tracepoint (`tp_btf`).
    ///
    /// Minimum kernel version: 5.5.
    pub const TRACE_RAW_TP: Self = Self(23);
    /// `BPF_TRACE_FENTRY`: the entry of a kernel function (`fentry`).
    ///
    /// Minimum kernel version: 5.5.
    pub const TRACE_FENTRY: Self = Self(24);
    /// `BPF_TRACE_FEXIT`: the exit of a kernel function (`fexit`).
    ///
    /// Minimum kernel version: 5.5.
    pub const TRACE_FEXIT: Self = Self(25);
    /// `BPF_MODIFY_RETURN`: a kernel function whose return value the program replaces (`fmod_ret`).
    ///
    /// Minimum kernel version: 5.7.
    pub const MODIFY_RETURN: Self = Self(26);
    /// `BPF_LSM_MAC`: an LSM hook (`lsm`).
    ///
    /// Minimum kernel version: 5.7.
    pub const LSM_MAC: Self = Self(27);
    /// `BPF_TRACE_ITER`: a BPF iterator (`iter`).
    ///
    /// Minimum kernel version: 5.8.
    pub const TRACE_ITER: Self = Self(28);
    /// `BPF_CGROUP_INET4_GETPEERNAME`: IPv4 getpeername of a cgroup (cgroup_sock_addr).
    ///
    /// Minimum kernel version: 5.8.
    pub const CGROUP_INET4_GETPEERNAME: Self = Self(29);
    /// `BPF_CGROUP_INET6_GETPEERNAME`: IPv6 getpeername of a cgroup (cgroup_sock_addr).
    ///
    /// Minimum kernel version: 5.8.
    pub const CGROUP_INET6_GETPEERNAME: Self = Self(30);
    /// `BPF_CGROUP_INET4_GETSOCKNAME`: IPv4 getsockname of a cgroup (cgroup_sock_addr).
    ///
    /// Minimum kernel version: 5.8.
    pub const CGROUP_INET4_GETSOCKNAME: Self = Self(31);
    /// `BPF_CGROUP_INET6_GETSOCKNAME`: IPv6 getsockname of a cgroup (cgroup_sock_addr).
    ///
    /// Minimum kernel version: 5.8.
    pub const CGROUP_INET6_GETSOCKNAME: Self = Self(32);
    /// `BPF_XDP_DEVMAP`: an XDP program run on frames redirected to a devmap entry.
    ///
    /// Minimum kernel version: 5.8.
    pub const XDP_DEVMAP: Self = Self(33);
    /// `BPF_CGROUP_INET_SOCK_RELEASE`: socket release in a cgroup (cgroup_sock).
    ///
    /// Minimum kernel version: 5.9.
    pub const CGROUP_INET_SOCK_RELEASE: Self = Self(34);
    /// `BPF_XDP_CPUMAP`: an XDP program run on frames redirected to a cpumap entry.
    ///
    /// Minimum kernel version: 5.9.
    pub const XDP_CPUMAP: Self = Self(35);
    /// `BPF_SK_LOOKUP`: a network namespace's socket lookup (sk_lookup).
    ///
    /// Minimum kernel version: 5.9.
    pub const SK_LOOKUP: Self = Self(36);
    /// `BPF_XDP`: an interface, through a BPF link (XDP).
    ///
    /// Minimum kernel version: 5.9.
    pub const XDP: Self = Self(37);
    /// `BPF_SK_SKB_VERDICT`: the verdict of a sockmap without a stream parser (sk_skb).
    ///
    /// Minimum kernel version: 5.13.
    pub const SK_SKB_VERDICT: Self = Self(38);
    /// `BPF_SK_REUSEPORT_SELECT`: socket selection in a `SO_REUSEPORT` group (sk_reuseport).
    ///
    /// Minimum kernel version: 5.14.
    pub const SK_REUSEPORT_SELECT: Self = Self(39);
    /// `BPF_SK_REUSEPORT_SELECT_OR_MIGRATE`: socket selection or migration in a `SO_REUSEPORT` group (sk_reuseport).
    ///
    /// Minimum kernel version: 5.14.
    pub const SK_REUSEPORT_SELECT_OR_MIGRATE: Self = Self(40);
    /// `BPF_PERF_EVENT`: a perf event, through a BPF link (kprobe, uprobe, tracepoint, perf_event).
    ///
    /// Minimum kernel version: 5.15.
    pub const PERF_EVENT: Self = Self(41);
    /// `BPF_TRACE_KPROBE_MULTI`: many kernel functions at once (`kprobe.multi`).
    ///
    /// Minimum kernel version: 5.18.
    pub const TRACE_KPROBE_MULTI: Self = Self(42);
    /// `BPF_LSM_CGROUP`: an LSM hook, for the tasks of one cgroup (`lsm_cgroup`).
    ///
    /// Minimum kernel version: 6.0.
    pub const LSM_CGROUP: Self = Self(43);
    /// `BPF_STRUCT_OPS`: a struct_ops map, through a BPF link.
    ///
    /// Minimum kernel version: 6.4.
    pub const STRUCT_OPS: Self = Self(44);
    /// `BPF_NETFILTER`: a netfilter hook (netfilter).
    ///
    /// Minimum kernel version: 6.4.
    pub const NETFILTER: Self = Self(45);
    /// `BPF_TCX_INGRESS`: an interface's ingress through tcx (sched_cls).
    ///
    /// Minimum kernel version: 6.6.
    pub const TCX_INGRESS: Self = Self(46);
    /// `BPF_TCX_EGRESS`: an interface's egress through tcx (sched_cls).
    ///
    /// Minimum kernel version: 6.6.
    pub const TCX_EGRESS: Self = Self(47);
    /// `BPF_TRACE_UPROBE_MULTI`: many user functions at once (`uprobe.multi`).
    ///
    /// Minimum kernel version: 6.6.
    pub const TRACE_UPROBE_MULTI: Self = Self(48);
    /// `BPF_CGROUP_UNIX_CONNECT`: AF_UNIX connect of a cgroup (cgroup_sock_addr).
    ///
    /// Minimum kernel version: 6.7.
    pub const CGROUP_UNIX_CONNECT: Self = Self(49);
    /// `BPF_CGROUP_UNIX_SENDMSG`: AF_UNIX sendmsg of a cgroup (cgroup_sock_addr).
    ///
    /// Minimum kernel version: 6.7.
    pub const CGROUP_UNIX_SENDMSG: Self = Self(50);
    /// `BPF_CGROUP_UNIX_RECVMSG`: AF_UNIX recvmsg of a cgroup (cgroup_sock_addr).
    ///
    /// Minimum kernel version: 6.7.
    pub const CGROUP_UNIX_RECVMSG: Self = Self(51);
    /// `BPF_CGROUP_UNIX_GETPEERNAME`: AF_UNIX getpeername of a cgroup (cgroup_sock_addr).
    ///
    /// Minimum kernel version: 6.7.
    pub const CGROUP_UNIX_GETPEERNAME: Self = Self(52);
    /// `BPF_CGROUP_UNIX_GETSOCKNAME`: AF_UNIX getsockname of a cgroup (cgroup_sock_addr).
    ///
    /// Minimum kernel version: 6.7.
    pub const CGROUP_UNIX_GETSOCKNAME: Self = Self(53);
    /// `BPF_NETKIT_PRIMARY`: the primary device of a netkit pair (sched_cls).
    ///
    /// Minimum kernel version: 6.7.
    pub const NETKIT_PRIMARY: Self = Self(54);
    /// `BPF_NETKIT_PEER`: the peer device of a netkit pair (sched_cls).
    ///
    /// Minimum kernel version: 6.7.
    pub const NETKIT_PEER: Self = Self(55);
}

/// The byte order of an eBPF object (`bpfel` or `bpfeb`) or of a kernel.
///
/// A kernel loads only programs, BTF and map values in its own byte order;
/// [`ObjectSpec::parse`] reads either, so objects built for another
/// machine can still be inspected and checked.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ByteOrder {
    /// `bpfel`: x86_64, aarch64, riscv64, ppc64le, 32-bit arm, loongarch64.
    Little,
    /// `bpfeb`: s390x, big-endian powerpc64, mips.
    Big,
}

impl ByteOrder {
    /// The byte order of the machine this code runs on, which is also the
    /// running kernel's.
    pub const fn native() -> Self {
        if cfg!(target_endian = "big") {
            Self::Big
        } else {
            Self::Little
        }
    }

    /// The other byte order.
    pub fn other(self) -> Self {
        match self {
            Self::Little => Self::Big,
            Self::Big => Self::Little,
        }
    }

    /// True when this is the running machine's byte order.
    pub fn is_native(self) -> bool {
        self == Self::native()
    }

    /// `little-endian` or `big-endian`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Little => "little-endian",
            Self::Big => "big-endian",
        }
    }

    /// The eBPF target that produces this byte order: `bpfel` or `bpfeb`.
    pub fn target(self) -> &'static str {
        match self {
            Self::Little => "bpfel",
            Self::Big => "bpfeb",
        }
    }

    /// Reads a `u32` stored in this byte order.
    #[inline]
    pub fn u32(self, b: [u8; 4]) -> u32 {
        match self {
            Self::Little => u32::from_le_bytes(b),
            Self::Big => u32::from_be_bytes(b),
        }
    }

    /// Reads a `u16` stored in this byte order.
    #[inline]
    pub fn u16(self, b: [u8; 2]) -> u16 {
        match self {
            Self::Little => u16::from_le_bytes(b),
            Self::Big => u16::from_be_bytes(b),
        }
    }
}

impl std::fmt::Display for ByteOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.target())
    }
}

/// A whole parsed object: what `clang -target bpf` or `bpf-linker` produced.
#[derive(Clone, Debug)]
pub struct ObjectSpec {
    /// The object's byte order. Instructions, BTF and records are decoded
    /// whatever it is; global data and [`ObjectSpec::btf`] keep it, so an
    /// object loads only on a kernel of the same byte order.
    pub byte_order: ByteOrder,
    /// From the `license` section; the kernel checks it for GPL-only helpers.
    pub license: String,
    /// From the legacy `version` section, if any.
    pub kernel_version: Option<u32>,
    /// Entry programs (subprograms are already appended to each program that calls them).
    pub programs: Vec<ProgramSpec>,
    /// Every map: BTF `.maps`, legacy `maps`, and global data (`.data`, `.rodata`, `.bss`, ...).
    pub maps: Vec<MapSpec>,
    /// The object's `.BTF`, fixed up (datasec sizes, variable offsets) and ready
    /// to be sanitized for a kernel and uploaded. `None` when the object has none.
    pub btf: Option<Vec<u8>>,
    /// `extern` declarations in `.kconfig` and `.ksyms`, to be resolved by the
    /// loader (see [`ObjectSpec::resolve_kconfig`] and [`ProgramSpec::resolve_ksyms`]).
    pub externs: Vec<ExternSpec>,
    /// Initial entries of prog arrays and maps of maps, written in C as
    /// `.values = { [i] = &prog_or_map }` on a `.maps` definition. The loader
    /// stores each target's fd at `index` once programs and maps exist.
    pub map_slots: Vec<MapSlot>,
}

/// One initial entry of a `BPF_MAP_TYPE_PROG_ARRAY` or map-of-maps.
///
/// Minimum kernel version: 4.2 (prog arrays), 4.12 (maps of maps).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MapSlot {
    /// The outer map ([`ObjectSpec::maps`] index).
    pub map: usize,
    /// The key the entry is stored at.
    pub index: u32,
    /// What the entry holds.
    pub target: MapSlotTarget,
}

/// What a [`MapSlot`] holds.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MapSlotTarget {
    /// A program of this object, by name (prog arrays).
    Program(String),
    /// A map of this object ([`ObjectSpec::maps`] index; maps of maps).
    Map(usize),
}

impl ObjectSpec {
    /// The entry program named `name`.
    pub fn program(&self, name: &str) -> Option<&ProgramSpec> {
        self.programs.iter().find(|p| p.name == name)
    }
    /// The entry program named `name`, to edit before load.
    pub fn program_mut(&mut self, name: &str) -> Option<&mut ProgramSpec> {
        self.programs.iter_mut().find(|p| p.name == name)
    }
    /// The map named `name` (for global data, the section name: `.rodata`, `.bss`...).
    pub fn map(&self, name: &str) -> Option<&MapSpec> {
        self.maps.iter().find(|m| m.name == name)
    }
    /// The map named `name`, to edit before load (size, pinning, initial data).
    pub fn map_mut(&mut self, name: &str) -> Option<&mut MapSpec> {
        self.maps.iter_mut().find(|m| m.name == name)
    }
    /// The position of map `name` in [`ObjectSpec::maps`] (what relocations refer to).
    pub fn map_index(&self, name: &str) -> Option<usize> {
        self.maps.iter().position(|m| m.name == name)
    }
}

/// How a map is pinned (`LIBBPF_PIN_*`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Pinning {
    /// Not pinned: the map lives as long as a file descriptor or program uses it.
    #[default]
    None,
    /// `LIBBPF_PIN_BY_NAME`: pinned as `<pin dir>/<map name>`.
    ByName,
}

/// Where a map definition came from.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MapOrigin {
    /// A BTF-defined map in `.maps`.
    BtfMaps,
    /// A record of a legacy `maps` section.
    Legacy,
    /// Global data: the section (`.data`, `.rodata`, `.bss`, `.data.foo`, `.rodata.foo`, `.kconfig`).
    GlobalData {
        /// The section's name.
        section: String,
    },
}

/// A map as the object declares it. Edit before load (max_entries, pinning, initial data).
#[derive(Clone, Debug)]
pub struct MapSpec {
    /// The symbol name (BTF/legacy maps) or the section name (`.rodata`...) for global data.
    pub name: String,
    /// The kernel's map type.
    pub map_type: MapType,
    /// Size of a key in bytes (0 for maps without keys: queue, stack, ring buffer, Bloom filter).
    pub key_size: u32,
    /// Size of a value in bytes (for per-CPU maps, of one CPU's value).
    pub value_size: u32,
    /// Capacity in entries (for ring buffers, the size in bytes).
    pub max_entries: u32,
    /// `BPF_F_*` creation flags (`BPF_F_NO_PREALLOC`, `BPF_F_RDONLY_PROG`, ...).
    pub map_flags: u32,
    /// The NUMA node to allocate on (`BPF_F_NUMA_NODE`), if set.
    ///
    /// Minimum kernel version: 4.14.
    pub numa_node: Option<u32>,
    /// `map_extra`: the number of hash functions of a Bloom filter, or an arena's user address.
    ///
    /// Minimum kernel version: 5.16.
    pub map_extra: u64,
    /// Whether the loader pins the map (and reuses a pinned one).
    pub pinning: Pinning,
    /// Where the definition came from.
    pub origin: MapOrigin,
    /// Initial bytes of the value at key 0 for global data maps (`.bss`:
    /// zeros); for an arena map, the initial bytes of its `__arena` globals
    /// (`.addr_space.1`), which the loader copies into the arena.
    pub initial_data: Option<Vec<u8>>,
    /// BTF type ids in [`ObjectSpec::btf`], when the object carries them.
    pub btf_key_type_id: Option<u32>,
    /// The value's BTF type id in [`ObjectSpec::btf`].
    pub btf_value_type_id: Option<u32>,
    /// Map-in-map: the inner map's definition.
    pub inner: Option<Box<MapSpec>>,
    /// Variables of a global data section by name: (offset, size, BTF type id).
    pub variables: Vec<GlobalVariable>,
}

/// One variable in a global data section (from its BTF `DATASEC`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalVariable {
    /// The variable's name.
    pub name: String,
    /// Its offset in the section, in bytes.
    pub offset: u32,
    /// Its size in bytes.
    pub size: u32,
    /// Its type in [`ObjectSpec::btf`].
    pub btf_type_id: u32,
}

impl MapSpec {
    /// Whether this map is frozen after its initial data is written (`.rodata*`, `.kconfig`).
    pub fn is_read_only_data(&self) -> bool {
        matches!(&self.origin, MapOrigin::GlobalData { section } if section.starts_with(".rodata") || section == ".kconfig")
    }
}

/// An instruction that refers to something only the loader knows (a map fd).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Relocation {
    /// Index into [`ProgramSpec::insns`] of the `ld_imm64` to patch.
    pub insn_index: usize,
    /// What the instruction refers to.
    pub target: RelocationTarget,
}

/// What a [`Relocation`] refers to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RelocationTarget {
    /// `ld_imm64 rX, map` → `BPF_PSEUDO_MAP_FD` with the map's fd. `map` indexes [`ObjectSpec::maps`].
    Map {
        /// Index into [`ObjectSpec::maps`].
        map: usize,
    },
    /// `ld_imm64 rX, &global + offset` → `BPF_PSEUDO_MAP_VALUE` with the fd and offset.
    /// For an arena map (`__arena` globals) the offset is into the globals'
    /// bytes; the loader adds where it places them in the arena.
    MapValue {
        /// Index into [`ObjectSpec::maps`].
        map: usize,
        /// Offset of the variable in the map's value.
        offset: u32,
    },
}

/// A program as the object declares it.
#[derive(Clone, Debug)]
pub struct ProgramSpec {
    /// The function's symbol name.
    pub name: String,
    /// The ELF section it came from (`xdp`, `tracepoint/sched/sched_switch`, ...).
    pub section: String,
    /// What the section name says: type, attach type and attach target.
    pub kind: ProgramKind,
    /// The program followed by every subprogram it calls, with calls relocated.
    pub insns: Vec<Insn>,
    /// Map references still to be filled with fds by the loader.
    pub relocations: Vec<Relocation>,
    /// `BPF_F_SLEEPABLE` (the `.s` section forms).
    pub sleepable: bool,
    /// Loaded with the object (libbpf's autoload): false for `SEC("?...")`
    /// programs, which load only when asked for (they are often written to
    /// be refused, or for one kernel among several). Set it before loading.
    pub autoload: bool,
    /// `bpf_func_info` records (insn index, BTF FUNC id) for the program and
    /// each appended subprogram, in [`ProgramSpec::insns`] coordinates.
    pub func_info: Vec<FuncInfo>,
    /// `bpf_line_info` records in [`ProgramSpec::insns`] coordinates.
    pub line_info: Vec<LineInfo>,
    /// CO-RE relocations still to apply ([`ObjectSpec::relocate_core`] empties this).
    pub core_relocations: Vec<CoreRelocation>,
    /// References to `.ksyms` externs the loader resolves to kernel BTF ids.
    pub extern_relocations: Vec<ExternRelocation>,
}

/// One `bpf_func_info` record (kernel layout: `insn_off` in instructions, `type_id`).
///
/// Minimum kernel version: 5.0.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FuncInfo {
    /// The function's first instruction, in instructions.
    pub insn_off: u32,
    /// Its `BTF_KIND_FUNC` type id.
    pub type_id: u32,
}

/// One `bpf_line_info` record (kernel layout). `file_name_off` and `line_off`
/// index the string section of [`ObjectSpec::btf`]; `line_col` is
/// `line << 10 | column`.
///
/// Minimum kernel version: 5.0.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LineInfo {
    /// The first instruction of the line, in instructions.
    pub insn_off: u32,
    /// The source file's name, an offset in the BTF string section.
    pub file_name_off: u32,
    /// The source line's text, an offset in the BTF string section.
    pub line_off: u32,
    /// `line << 10 | column`.
    pub line_col: u32,
}

impl LineInfo {
    /// The source line number.
    pub fn line(&self) -> u32 {
        self.line_col >> 10
    }
    /// The source column.
    pub fn column(&self) -> u32 {
        self.line_col & 0x3ff
    }
}

/// `enum bpf_core_relo_kind`: what a CO-RE relocation computes.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum CoreRelocationKind {
    /// The byte offset of a field.
    FieldByteOffset = 0,
    /// The byte size of a field.
    FieldByteSize = 1,
    /// Whether a field exists (1 or 0).
    FieldExists = 2,
    /// Whether a field is signed.
    FieldSigned = 3,
    /// The left shift that extracts a bitfield from a `u64` load.
    FieldLShiftU64 = 4,
    /// The right shift that extracts a bitfield from a `u64` load.
    FieldRShiftU64 = 5,
    /// The type's id in the program's own BTF.
    TypeIdLocal = 6,
    /// The type's id in the kernel's BTF.
    TypeIdTarget = 7,
    /// Whether a type exists in the kernel.
    TypeExists = 8,
    /// A type's size in bytes.
    TypeSize = 9,
    /// Whether an enum value exists.
    EnumValueExists = 10,
    /// An enum value's integer value.
    EnumValue = 11,
    /// Whether a type matches the kernel's (`bpf_core_type_matches`, LLVM 15+).
    TypeMatches = 12,
}

impl CoreRelocationKind {
    /// The kind a `bpf_core_relo` record's `kind` field names; `None` for a kind this version does not know.
    pub fn from_u32(v: u32) -> Option<Self> {
        use CoreRelocationKind::*;
        Some(match v {
            0 => FieldByteOffset,
            1 => FieldByteSize,
            2 => FieldExists,
            3 => FieldSigned,
            4 => FieldLShiftU64,
            5 => FieldRShiftU64,
            6 => TypeIdLocal,
            7 => TypeIdTarget,
            8 => TypeExists,
            9 => TypeSize,
            10 => EnumValueExists,
            11 => EnumValue,
            12 => TypeMatches,
            _ => return None,
        })
    }
}

/// A `bpf_core_relo` record, in [`ProgramSpec::insns`] coordinates.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CoreRelocation {
    /// Index into [`ProgramSpec::insns`] of the instruction to patch.
    pub insn_index: usize,
    /// The local type (in [`ObjectSpec::btf`]) the access starts from.
    pub type_id: u32,
    /// The access string, e.g. `0:1:2` (kept decoded for error messages).
    pub access: String,
    /// What the relocation computes.
    pub kind: CoreRelocationKind,
}

/// An `extern` the loader must resolve.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ExternSpec {
    /// The extern's name (`CONFIG_HZ`, `bpf_task_acquire`, ...).
    pub name: String,
    /// `__weak`: unresolved is allowed (value 0 / address 0).
    pub weak: bool,
    /// What kind of extern it is.
    pub kind: ExternKind,
}

/// What an [`ExternSpec`] refers to.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ExternKind {
    /// `extern ... __kconfig`: a value in the `.kconfig` map at `offset`.
    Kconfig {
        /// Offset of the value in the `.kconfig` map.
        offset: u32,
        /// Size of the value in bytes.
        size: u32,
        /// What the value is, to parse `CONFIG_X=...` text correctly.
        value_kind: KconfigValueKind,
    },
    /// `extern ... __ksym` variable: a kernel variable by BTF id, or by
    /// address from kallsyms when `typeless` (`extern const void x __ksym`).
    KsymVar {
        /// Its `VAR` in [`ObjectSpec::btf`].
        btf_type_id: u32,
        /// Declared without a type: resolved by address from kallsyms.
        typeless: bool,
    },
    /// `extern ... __ksym` function: a kfunc call.
    KsymFunc {
        /// Its `FUNC` in [`ObjectSpec::btf`].
        btf_type_id: u32,
    },
}

/// How a `.kconfig` extern is declared, which decides how its value is encoded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KconfigValueKind {
    /// `bool`: y → 1, n/unset → 0.
    Bool,
    /// `enum libbpf_tristate`: y → 1, m → 2, n → 0.
    Tristate,
    /// A one-byte integer (`char`, `__u8`...): y/m/n → the letter, or a number.
    Char,
    /// A signed or unsigned integer of `size` bytes.
    Int {
        /// Whether the integer is signed.
        signed: bool,
    },
    /// `char[N]`: a string value.
    CharArray,
}

/// An instruction referring to a `.ksyms` extern ([`ObjectSpec::externs`] index).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ExternRelocation {
    /// Index into [`ProgramSpec::insns`] of the instruction to patch.
    pub insn_index: usize,
    /// Index into [`ObjectSpec::externs`].
    pub extern_index: usize,
}

impl ProgramSpec {
    /// The instructions with every map reference resolved through `map_fd(map index)`.
    /// Pure: the loader passes the fds it created.
    pub fn resolved_insns(&self, mut map_fd: impl FnMut(usize) -> i32) -> Vec<Insn> {
        let mut insns = self.insns.clone();
        for reloc in &self.relocations {
            let Some(insn) = insns.get_mut(reloc.insn_index) else {
                continue;
            };
            match reloc.target {
                RelocationTarget::Map { map } => {
                    insn.set_src_reg(crate::insn::PSEUDO_MAP_FD);
                    insn.imm = map_fd(map);
                }
                RelocationTarget::MapValue { map, offset } => {
                    insn.set_src_reg(crate::insn::PSEUDO_MAP_VALUE);
                    insn.imm = map_fd(map);
                    if let Some(next) = insns.get_mut(reloc.insn_index + 1) {
                        next.imm = offset as i32;
                    }
                }
            }
        }
        insns
    }
}

/// Direction for TC, tcx and cgroup skb programs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    /// Packets coming in.
    Ingress,
    /// Packets going out.
    Egress,
}

/// What a section name says about a program. The attach target written in
/// the section (`tracepoint/sched/sched_switch`) is kept so callers can
/// auto-attach. `None` targets mean the section gave none (`SEC("kprobe")`).
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum ProgramKind {
    /// `socket`: a socket filter (`SO_ATTACH_BPF`).
    ///
    /// Minimum kernel version: 3.19.
    SocketFilter,
    /// `kprobe/FN[+OFFSET]`, `kretprobe/FN`: a probe on a kernel function.
    ///
    /// Minimum kernel version: 4.1.
    Kprobe {
        /// The kernel function, when the section names one.
        function: Option<String>,
        /// The offset into the function (`kprobe/FN+OFFSET`).
        offset: u64,
        /// A return probe (`kretprobe`).
        retprobe: bool,
    },
    /// `uprobe/PATH:FN`, `uretprobe/...`: a probe on a user-space function.
    ///
    /// Minimum kernel version: 4.3.
    Uprobe {
        /// `PATH:FUNCTION[+OFFSET]`, when the section names one.
        target: Option<String>,
        /// A return probe (`uretprobe`).
        retprobe: bool,
    },
    /// `tracepoint/CATEGORY/NAME` (or `tp/...`): a static kernel tracepoint.
    ///
    /// Minimum kernel version: 4.7.
    Tracepoint {
        /// The tracepoint's category (`sched`).
        category: Option<String>,
        /// Its name (`sched_switch`).
        name: Option<String>,
    },
    /// `raw_tracepoint/NAME` (or `raw_tp/...`), `raw_tracepoint.w/NAME`: a tracepoint with its raw arguments.
    ///
    /// Minimum kernel version: 4.17 (writable: 5.2).
    RawTracepoint {
        /// The tracepoint's name.
        name: Option<String>,
        /// `raw_tracepoint.w`: `BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE`.
        writable: bool,
    },
    /// `tp_btf/NAME`, `fentry/FN`, `fexit/FN`, `fmod_ret/FN`, `iter/NAME`: BPF_PROG_TYPE_TRACING.
    Tracing {
        /// `TRACE_RAW_TP`, `TRACE_FENTRY`, `TRACE_FEXIT`, `MODIFY_RETURN` or `TRACE_ITER`.
        attach_type: AttachType,
        /// The function, tracepoint or iterator the section names.
        target: Option<String>,
    },
    /// `lsm/HOOK`, `lsm_cgroup/HOOK`: a Linux security module hook.
    ///
    /// Minimum kernel version: 5.7 (`lsm_cgroup`: 6.0).
    Lsm {
        /// The LSM hook (`file_open`), when the section names one.
        hook: Option<String>,
        /// `lsm_cgroup`: runs for the tasks of one cgroup.
        cgroup: bool,
    },
    /// `xdp`, `xdp.frags`, `xdp/devmap`, `xdp/cpumap`: an XDP program.
    ///
    /// Minimum kernel version: 4.8.
    Xdp {
        /// `xdp.frags`: accepts multi-buffer frames (`BPF_F_XDP_HAS_FRAGS`, 5.18).
        frags: bool,
        /// `XDP_DEVMAP` or `XDP_CPUMAP` for programs run on redirected frames.
        attach_type: Option<AttachType>,
    },
    /// `tc`, `classifier`: BPF_PROG_TYPE_SCHED_CLS attached with netlink/clsact.
    SchedCls,
    /// `action`: a TC action (`act_bpf`).
    ///
    /// Minimum kernel version: 4.1.
    SchedAct,
    /// `tcx/ingress`, `tcx/egress`.
    Tcx {
        /// Ingress or egress.
        direction: Direction,
    },
    /// `cgroup_skb/ingress`, `cgroup_skb/egress`: packets of a cgroup.
    ///
    /// Minimum kernel version: 4.10.
    CgroupSkb {
        /// The hook, when the section names one.
        direction: Option<Direction>,
    },
    /// Every other cgroup hook: the program type and the attach type.
    Cgroup {
        /// The program type (`cgroup_sock`, `cgroup_sock_addr`, `cgroup_sysctl`, ...).
        program_type: ProgramType,
        /// The hook.
        attach_type: AttachType,
    },
    /// `sockops`: TCP socket events of a cgroup.
    ///
    /// Minimum kernel version: 4.13.
    SockOps,
    /// `sk_skb/stream_parser`, `sk_skb/stream_verdict`, `sk_skb/verdict`: sockmap stream programs.
    ///
    /// Minimum kernel version: 4.14.
    SkSkb {
        /// The sockmap hook, when the section names one.
        attach_type: Option<AttachType>,
    },
    /// `sk_msg`: the sendmsg verdict of sockmap sockets.
    ///
    /// Minimum kernel version: 4.17.
    SkMsg,
    /// `sk_lookup`: picks the socket for incoming traffic of a network namespace.
    ///
    /// Minimum kernel version: 5.9.
    SkLookup,
    /// `flow_dissector`: the flow dissector of a network namespace.
    ///
    /// Minimum kernel version: 4.20.
    FlowDissector,
    /// `perf_event`: runs on a perf event (sampling, hardware counters).
    ///
    /// Minimum kernel version: 4.9.
    PerfEvent,
    /// `lirc_mode2`: infrared remote control decoding.
    ///
    /// Minimum kernel version: 4.18.
    LircMode2,
    /// `struct_ops/NAME`: one operation of a struct_ops map.
    ///
    /// Minimum kernel version: 5.6.
    StructOps {
        /// The operation, when the section names one.
        name: Option<String>,
    },
    /// `freplace/FN`: replaces function FN of another loaded program.
    ///
    /// Minimum kernel version: 5.6.
    Extension {
        /// The function to replace, when the section names one.
        target: Option<String>,
    },
    /// `syscall`: runs bpf() and other syscalls, through BPF_PROG_TEST_RUN only.
    ///
    /// Minimum kernel version: 5.14.
    Syscall,
    /// `netfilter`: a netfilter hook.
    ///
    /// Minimum kernel version: 6.4.
    Netfilter,
    /// A type Kiln parsed but does not model in detail yet.
    Other {
        /// The program type.
        program_type: ProgramType,
        /// The expected attach type, if any.
        attach_type: Option<AttachType>,
    },
}

impl ProgramKind {
    /// The kernel program type of this kind.
    pub fn program_type(&self) -> ProgramType {
        use ProgramKind::*;
        match self {
            SocketFilter => ProgramType::SOCKET_FILTER,
            Kprobe { .. } | Uprobe { .. } => ProgramType::KPROBE,
            Tracepoint { .. } => ProgramType::TRACEPOINT,
            RawTracepoint {
                writable: false, ..
            } => ProgramType::RAW_TRACEPOINT,
            RawTracepoint { writable: true, .. } => ProgramType::RAW_TRACEPOINT_WRITABLE,
            Tracing { .. } => ProgramType::TRACING,
            Lsm { .. } => ProgramType::LSM,
            Xdp { .. } => ProgramType::XDP,
            SchedCls | Tcx { .. } => ProgramType::SCHED_CLS,
            SchedAct => ProgramType::SCHED_ACT,
            CgroupSkb { .. } => ProgramType::CGROUP_SKB,
            Cgroup { program_type, .. } => *program_type,
            SockOps => ProgramType::SOCK_OPS,
            SkSkb { .. } => ProgramType::SK_SKB,
            SkMsg => ProgramType::SK_MSG,
            SkLookup => ProgramType::SK_LOOKUP,
            FlowDissector => ProgramType::FLOW_DISSECTOR,
            PerfEvent => ProgramType::PERF_EVENT,
            LircMode2 => ProgramType::LIRC_MODE2,
            StructOps { .. } => ProgramType::STRUCT_OPS,
            Extension { .. } => ProgramType::EXT,
            Syscall => ProgramType::SYSCALL,
            Netfilter => ProgramType::NETFILTER,
            Other { program_type, .. } => *program_type,
        }
    }

    /// `expected_attach_type` for BPF_PROG_LOAD, where the kernel wants one.
    pub fn expected_attach_type(&self) -> Option<AttachType> {
        use ProgramKind::*;
        match self {
            Tracing { attach_type, .. } => Some(*attach_type),
            Lsm { cgroup: false, .. } => Some(AttachType::LSM_MAC),
            Lsm { cgroup: true, .. } => Some(AttachType::LSM_CGROUP),
            Xdp { attach_type, .. } => *attach_type,
            Tcx {
                direction: Direction::Ingress,
            } => Some(AttachType::TCX_INGRESS),
            Tcx {
                direction: Direction::Egress,
            } => Some(AttachType::TCX_EGRESS),
            CgroupSkb {
                direction: Some(Direction::Ingress),
            } => Some(AttachType::CGROUP_INET_INGRESS),
            CgroupSkb {
                direction: Some(Direction::Egress),
            } => Some(AttachType::CGROUP_INET_EGRESS),
            Cgroup { attach_type, .. } => Some(*attach_type),
            SkSkb { attach_type } => *attach_type,
            SkMsg => Some(AttachType::SK_MSG_VERDICT),
            SkLookup => Some(AttachType::SK_LOOKUP),
            FlowDissector => Some(AttachType::FLOW_DISSECTOR),
            Netfilter => Some(AttachType::NETFILTER),
            Kprobe { .. }
            | Uprobe { .. }
            | Tracepoint { .. }
            | RawTracepoint { .. }
            | SocketFilter
            | SchedCls
            | SchedAct
            | CgroupSkb { direction: None }
            | SockOps
            | PerfEvent
            | LircMode2
            | StructOps { .. }
            | Extension { .. }
            | Syscall => None,
            Other { attach_type, .. } => *attach_type,
        }
    }
}
