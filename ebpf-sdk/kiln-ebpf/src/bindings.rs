//! UAPI constants and context structs from `linux/bpf.h`, written out by hand
//! (they are ABI: the kernel only ever appends to them).
#![allow(non_camel_case_types, non_upper_case_globals)]

/// `enum bpf_map_type`.
pub mod map_type {
    pub const BPF_MAP_TYPE_HASH: usize = 1;
    pub const BPF_MAP_TYPE_ARRAY: usize = 2;
    pub const BPF_MAP_TYPE_PROG_ARRAY: usize = 3;
    pub const BPF_MAP_TYPE_PERF_EVENT_ARRAY: usize = 4;
    pub const BPF_MAP_TYPE_PERCPU_HASH: usize = 5;
    pub const BPF_MAP_TYPE_PERCPU_ARRAY: usize = 6;
    pub const BPF_MAP_TYPE_STACK_TRACE: usize = 7;
    pub const BPF_MAP_TYPE_CGROUP_ARRAY: usize = 8;
    pub const BPF_MAP_TYPE_LRU_HASH: usize = 9;
    pub const BPF_MAP_TYPE_LRU_PERCPU_HASH: usize = 10;
    pub const BPF_MAP_TYPE_LPM_TRIE: usize = 11;
    pub const BPF_MAP_TYPE_ARRAY_OF_MAPS: usize = 12;
    pub const BPF_MAP_TYPE_HASH_OF_MAPS: usize = 13;
    pub const BPF_MAP_TYPE_DEVMAP: usize = 14;
    pub const BPF_MAP_TYPE_SOCKMAP: usize = 15;
    pub const BPF_MAP_TYPE_CPUMAP: usize = 16;
    pub const BPF_MAP_TYPE_XSKMAP: usize = 17;
    pub const BPF_MAP_TYPE_SOCKHASH: usize = 18;
    pub const BPF_MAP_TYPE_QUEUE: usize = 22;
    pub const BPF_MAP_TYPE_STACK: usize = 23;
    pub const BPF_MAP_TYPE_SK_STORAGE: usize = 24;
    pub const BPF_MAP_TYPE_DEVMAP_HASH: usize = 25;
    pub const BPF_MAP_TYPE_RINGBUF: usize = 27;
    pub const BPF_MAP_TYPE_BLOOM_FILTER: usize = 30;
}

/// Flags of `bpf_map_update_elem`.
pub const BPF_ANY: u64 = 0;
pub const BPF_NOEXIST: u64 = 1;
pub const BPF_EXIST: u64 = 2;

/// Map creation flags (`map_flags`).
pub const BPF_F_NO_PREALLOC: usize = 1 << 0;
pub const BPF_F_RDONLY_PROG: usize = 1 << 7;
pub const BPF_F_MMAPABLE: usize = 1 << 10;

/// libbpf's `pinning` values for BTF map definitions.
pub const LIBBPF_PIN_NONE: usize = 0;
pub const LIBBPF_PIN_BY_NAME: usize = 1;

/// `BPF_F_CURRENT_CPU` for `bpf_perf_event_output`'s flags.
pub const BPF_F_CURRENT_CPU: u64 = 0xffff_ffff;

/// `bpf_ringbuf_output`/`submit` wake-up flags.
pub const BPF_RB_NO_WAKEUP: u64 = 1 << 0;
pub const BPF_RB_FORCE_WAKEUP: u64 = 1 << 1;

/// `enum xdp_action`.
pub mod xdp_action {
    pub const XDP_ABORTED: u32 = 0;
    pub const XDP_DROP: u32 = 1;
    pub const XDP_PASS: u32 = 2;
    pub const XDP_TX: u32 = 3;
    pub const XDP_REDIRECT: u32 = 4;
}

/// TC verdicts (`linux/pkt_cls.h`).
pub mod tc_action {
    pub const TC_ACT_UNSPEC: i32 = -1;
    pub const TC_ACT_OK: i32 = 0;
    pub const TC_ACT_RECLASSIFY: i32 = 1;
    pub const TC_ACT_SHOT: i32 = 2;
    pub const TC_ACT_PIPE: i32 = 3;
    pub const TC_ACT_STOLEN: i32 = 4;
    pub const TC_ACT_REDIRECT: i32 = 7;
}

/// `sk_action` for sk_skb/sk_msg/sk_lookup programs.
pub mod sk_action {
    pub const SK_DROP: u32 = 0;
    pub const SK_PASS: u32 = 1;
}

/// `struct xdp_md`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct xdp_md {
    pub data: u32,
    pub data_end: u32,
    pub data_meta: u32,
    pub ingress_ifindex: u32,
    pub rx_queue_index: u32,
    pub egress_ifindex: u32,
}

/// `struct __sk_buff` (the context of TC, socket filter, cgroup_skb, sk_skb
/// and flow dissector programs).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct __sk_buff {
    pub len: u32,
    pub pkt_type: u32,
    pub mark: u32,
    pub queue_mapping: u32,
    pub protocol: u32,
    pub vlan_present: u32,
    pub vlan_tci: u32,
    pub vlan_proto: u32,
    pub priority: u32,
    pub ingress_ifindex: u32,
    pub ifindex: u32,
    pub tc_index: u32,
    pub cb: [u32; 5],
    pub hash: u32,
    pub tc_classid: u32,
    pub data: u32,
    pub data_end: u32,
    pub napi_id: u32,
    pub family: u32,
    pub remote_ip4: u32,
    pub local_ip4: u32,
    pub remote_ip6: [u32; 4],
    pub local_ip6: [u32; 4],
    pub remote_port: u32,
    pub local_port: u32,
    pub data_meta: u32,
    pub flow_keys: u64,
    pub tstamp: u64,
    pub wire_len: u32,
    pub gso_segs: u32,
    pub sk: u64,
    pub gso_size: u32,
    pub tstamp_type: u8,
    pub _pad: [u8; 3],
    pub hwtstamp: u64,
}

/// `struct bpf_sock`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct bpf_sock {
    pub bound_dev_if: u32,
    pub family: u32,
    pub r#type: u32,
    pub protocol: u32,
    pub mark: u32,
    pub priority: u32,
    pub src_ip4: u32,
    pub src_ip6: [u32; 4],
    pub src_port: u32,
    pub dst_port: u16,
    pub _pad: u16,
    pub dst_ip4: u32,
    pub dst_ip6: [u32; 4],
    pub state: u32,
    pub rx_queue_mapping: i32,
}

/// `struct bpf_sock_addr` (cgroup connect/bind/sendmsg hooks).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct bpf_sock_addr {
    pub user_family: u32,
    pub user_ip4: u32,
    pub user_ip6: [u32; 4],
    pub user_port: u32,
    pub family: u32,
    pub r#type: u32,
    pub protocol: u32,
    pub msg_src_ip4: u32,
    pub msg_src_ip6: [u32; 4],
    pub sk: u64,
}

/// `struct sk_msg_md`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sk_msg_md {
    pub data: u64,
    pub data_end: u64,
    pub family: u32,
    pub remote_ip4: u32,
    pub local_ip4: u32,
    pub remote_ip6: [u32; 4],
    pub local_ip6: [u32; 4],
    pub remote_port: u32,
    pub local_port: u32,
    pub size: u32,
    pub sk: u64,
}

/// `struct bpf_sock_ops` (the fields up to `sk`; later ones are appended by
/// newer kernels and reached through the raw pointer).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct bpf_sock_ops {
    pub op: u32,
    /// `args`/`reply`/`replylong` union.
    pub args: [u32; 4],
    pub family: u32,
    pub remote_ip4: u32,
    pub local_ip4: u32,
    pub remote_ip6: [u32; 4],
    pub local_ip6: [u32; 4],
    pub remote_port: u32,
    pub local_port: u32,
    pub is_fullsock: u32,
    pub snd_cwnd: u32,
    pub srtt_us: u32,
    pub bpf_sock_ops_cb_flags: u32,
    pub state: u32,
    pub rtt_min: u32,
    pub snd_ssthresh: u32,
    pub rcv_nxt: u32,
    pub snd_nxt: u32,
    pub snd_una: u32,
    pub mss_cache: u32,
    pub ecn_flags: u32,
    pub rate_delivered: u32,
    pub rate_interval_us: u32,
    pub packets_out: u32,
    pub retrans_out: u32,
    pub total_retrans: u32,
    pub segs_in: u32,
    pub data_segs_in: u32,
    pub segs_out: u32,
    pub data_segs_out: u32,
    pub lost_out: u32,
    pub sacked_out: u32,
    pub sk_txhash: u32,
    pub bytes_received: u64,
    pub bytes_acked: u64,
    pub sk: u64,
}

/// `struct bpf_sk_lookup`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct bpf_sk_lookup {
    /// `sk`/`cookie` union.
    pub sk: u64,
    pub family: u32,
    pub protocol: u32,
    pub remote_ip4: u32,
    pub remote_ip6: [u32; 4],
    pub remote_port: u16,
    pub _pad: u16,
    pub local_ip4: u32,
    pub local_ip6: [u32; 4],
    pub local_port: u32,
    pub ingress_ifindex: u32,
}

/// `struct bpf_perf_event_data`: the sampled registers (this
/// architecture's [`pt_regs`]), then the sample period and address.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct bpf_perf_event_data {
    pub regs: pt_regs,
    pub sample_period: u64,
    pub addr: u64,
}

pub use crate::arch::pt_regs;

/// `struct bpf_lpm_trie_key` followed by `N` bytes of data: the key of an
/// LPM trie.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LpmKey<const N: usize> {
    /// Prefix length in bits.
    pub prefix_len: u32,
    pub data: [u8; N],
}

impl<const N: usize> LpmKey<N> {
    pub const fn new(prefix_len: u32, data: [u8; N]) -> Self {
        Self { prefix_len, data }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    // Offsets the verifier checks context accesses against.
    #[test]
    fn uapi_layouts() {
        assert_eq!(size_of::<xdp_md>(), 24);
        assert_eq!(offset_of!(__sk_buff, data), 76);
        assert_eq!(offset_of!(__sk_buff, data_end), 80);
        assert_eq!(offset_of!(__sk_buff, flow_keys), 144);
        assert_eq!(offset_of!(__sk_buff, hwtstamp), 184);
        assert_eq!(size_of::<__sk_buff>(), 192);
        assert_eq!(size_of::<bpf_sock>(), 80);
        assert_eq!(size_of::<bpf_sock_addr>(), 72);
        assert_eq!(offset_of!(sk_msg_md, size), 68);
        assert_eq!(offset_of!(bpf_sock_ops, sk), 184);
        assert_eq!(offset_of!(bpf_sk_lookup, local_ip4), 40);
        if crate::arch::NAME == "x86_64" {
            assert_eq!(size_of::<pt_regs>(), 21 * 8);
        }
    }
}

/// `struct bpf_sysctl` (`cgroup/sysctl`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct bpf_sysctl {
    /// 1 for a write, 0 for a read.
    pub write: u32,
    pub file_pos: u32,
}

/// `struct bpf_cgroup_dev_ctx` (`cgroup/dev`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct bpf_cgroup_dev_ctx {
    /// `BPF_DEVCG_DEV_*` type in the low 16 bits, `BPF_DEVCG_ACC_*` above.
    pub access_type: u32,
    pub major: u32,
    pub minor: u32,
}

/// `struct bpf_sockopt` (`cgroup/getsockopt`, `cgroup/setsockopt`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct bpf_sockopt {
    pub sk: u64,
    pub optval: u64,
    pub optval_end: u64,
    pub level: i32,
    pub optname: i32,
    pub optlen: i32,
    pub retval: i32,
}

/// `struct sk_reuseport_md` (`sk_reuseport`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sk_reuseport_md {
    pub data: u64,
    pub data_end: u64,
    pub len: u32,
    pub eth_protocol: u32,
    pub ip_protocol: u32,
    pub bind_inany: u32,
    pub hash: u32,
    pub _pad: u32,
    pub sk: u64,
    pub migrating_sk: u64,
}

/// `struct bpf_nf_ctx` (`netfilter`): kernel pointers, read as BTF-typed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct bpf_nf_ctx {
    /// `const struct nf_hook_state *`.
    pub state: u64,
    /// `struct sk_buff *`.
    pub skb: u64,
}
