//! Attribute macros for `kiln-ebpf`: `#[map]` and one attribute per program
//! type, each emitting libbpf's section name so any libbpf-compatible loader
//! (Kiln's, libbpf, bpftool) recognises the program type and attach target.
//!
//! The expansion logic lives in plain functions over `proc_macro2` token
//! streams so it is unit-tested on the host.

mod expand;

use proc_macro::TokenStream;

/// Places a map definition static in `.maps` under its name (or
/// `#[map(name = "other")]`); `#[map(pinned)]` pins it by name and
/// `#[map(flags = EXPR)]` sets its creation flags.
///
/// ```ignore
/// #[map(pinned)]
/// static COUNTERS: HashMap<u32, u64, 16> = HashMap::new();
/// ```
#[proc_macro_attribute]
pub fn map(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::map(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

macro_rules! program_attr {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            #[proc_macro_attribute]
            pub fn $name(attr: TokenStream, item: TokenStream) -> TokenStream {
                expand::program(stringify!($name), attr.into(), item.into())
                    .unwrap_or_else(syn::Error::into_compile_error)
                    .into()
            }
        )*
    };
}

program_attr! {
    /// `SEC("xdp")`, or `SEC("xdp.frags")` with `#[xdp(frags)]`. Context: `XdpContext`.
    xdp,
    /// `SEC("tc")`: a TC classifier (cls_bpf, direct action). Context: `TcContext`.
    classifier,
    /// Same as `#[classifier]`: `SEC("tc")`.
    tc,
    /// `SEC("tcx/ingress")` or `SEC("tcx/egress")` (6.6+ tcx links). Context: `TcContext`.
    tcx,
    /// `SEC("tracepoint/<category>/<name>")`: `#[tracepoint("sched", "sched_switch")]`. Context: `TracePointContext`.
    tracepoint,
    /// `SEC("raw_tracepoint/<name>")`. Context: `RawTracePointContext`.
    raw_tracepoint,
    /// `SEC("tp_btf/<name>")`. Context: `BtfContext`.
    tp_btf,
    /// `SEC("kprobe/<function>")`. Context: `ProbeContext`.
    kprobe,
    /// `SEC("kretprobe/<function>")`. Context: `ProbeContext`.
    kretprobe,
    /// `SEC("uprobe")` or `SEC("uprobe/<binary>:<function>")`. Context: `ProbeContext`.
    uprobe,
    /// `SEC("uretprobe")` or `SEC("uretprobe/<binary>:<function>")`. Context: `ProbeContext`.
    uretprobe,
    /// `SEC("fentry/<function>")`. Context: `BtfContext`.
    fentry,
    /// `SEC("fexit/<function>")`. Context: `BtfContext`.
    fexit,
    /// `SEC("lsm/<hook>")`. Context: `BtfContext`.
    lsm,
    /// `SEC("cgroup_skb/ingress")` or `egress`. Context: `SkBuffContext`.
    cgroup_skb,
    /// `SEC("cgroup/<hook>")` for sock_create, sock_release, post_bind4, post_bind6. Context: `SockContext`.
    cgroup_sock,
    /// `SEC("cgroup/<hook>")` for connect4, bind4, sendmsg4, getpeername4, ... Context: `SockAddrContext`.
    cgroup_sock_addr,
    /// `SEC("socket")`. Context: `SkBuffContext`.
    socket_filter,
    /// `SEC("sk_msg")`. Context: `SkMsgContext`.
    sk_msg,
    /// `SEC("sk_skb/stream_verdict")`, `stream_parser`, `verdict`, or `SEC("sk_skb")`. Context: `SkBuffContext`.
    sk_skb,
    /// `SEC("sockops")`. Context: `SockOpsContext`.
    sock_ops,
    /// `SEC("sk_lookup")`. Context: `SkLookupContext`.
    sk_lookup,
    /// `SEC("perf_event")`. Context: `PerfEventContext`.
    perf_event,
    /// `SEC("flow_dissector")`. Context: `SkBuffContext`.
    flow_dissector,
}
