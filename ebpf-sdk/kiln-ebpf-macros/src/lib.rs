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
    /// `SEC("fmod_ret/<function>")`: runs before an error-injectable kernel
    /// function and may replace its return value. Context: `BtfContext`.
    fmod_ret,
    /// `SEC("freplace/<function>")`: replaces a global function of another
    /// loaded program. Context: `BtfContext`.
    freplace,
    /// `SEC("iter/<target>")` (`task`, `bpf_map`, `tcp`, ...), or
    /// `SEC("iter.s/<target>")` with `#[iter("task", sleepable)]`. Context: `IterContext`.
    iter,
    /// `SEC("struct_ops/<name>")`, or `SEC("struct_ops.s/<name>")` with
    /// `sleepable`: one operation of a struct_ops map. Context: `BtfContext`.
    struct_ops,
    /// `SEC("netfilter")` (6.4+ netfilter links). Context: `NetfilterContext`.
    netfilter,
    /// `SEC("kprobe.multi/<pattern>")`: many kernel functions by glob. Context: `ProbeContext`.
    kprobe_multi,
    /// `SEC("kretprobe.multi/<pattern>")`. Context: `ProbeContext`.
    kretprobe_multi,
    /// `SEC("uprobe.multi")` or `SEC("uprobe.multi/<binary>:<pattern>")`. Context: `ProbeContext`.
    uprobe_multi,
    /// `SEC("uretprobe.multi")` or `SEC("uretprobe.multi/<binary>:<pattern>")`. Context: `ProbeContext`.
    uretprobe_multi,
    /// `SEC("usdt")` or `SEC("usdt/<binary>:<provider>:<name>")`: a USDT
    /// probe (the loader resolves the note's argument specs). Context: `ProbeContext`.
    usdt,
    /// `SEC("ksyscall/<syscall>")`: a kprobe on the arch's syscall entry. Context: `ProbeContext`.
    ksyscall,
    /// `SEC("kretsyscall/<syscall>")`. Context: `ProbeContext`.
    kretsyscall,
    /// `SEC("cgroup/sysctl")`: sysctl reads and writes in a cgroup. Context: `SysctlContext`.
    cgroup_sysctl,
    /// `SEC("cgroup/dev")`: device access in a cgroup. Context: `DeviceContext`.
    cgroup_device,
    /// `SEC("cgroup/getsockopt")` or `SEC("cgroup/setsockopt")`. Context: `SockoptContext`.
    cgroup_sockopt,
    /// `SEC("sk_reuseport")`, or `SEC("sk_reuseport/migrate")` with
    /// `#[sk_reuseport(migrate)]`. Context: `SkReuseportContext`.
    sk_reuseport,
    /// `SEC("syscall")`: run with BPF_PROG_TEST_RUN, may call bpf() itself
    /// (5.14+). Context: `SyscallContext`.
    syscall,
    /// `SEC("netkit/primary")` or `SEC("netkit/peer")` (6.7+). Context: `TcContext`.
    netkit,
}

/// Internal to `kiln_ebpf::log!`: `__log_section!("fmt"; <static item>)`
/// prefixes the static with `#[unsafe(link_section = ".kiln_log.<hash>")]`, a
/// section name unique to this expansion (within the final object).
///
/// Why unique: the BPF backend gives each global its own ELF section, so
/// several statics in one `.kiln_log` section name become several sections of
/// that name under one BTF DATASEC whose variables all sit at offset 0, which
/// the kernel's BTF check rejects. One section per entry keeps the object's
/// BTF loadable. The hash covers the crate name, the format literal's line,
/// column and text, and an expansion counter (deterministic: expansion order
/// is fixed within a crate), so two expansions of the same literal (a helper
/// macro) differ too.
#[doc(hidden)]
#[proc_macro]
pub fn __log_section(input: TokenStream) -> TokenStream {
    use std::sync::atomic::{AtomicU32, Ordering};
    static EXPANSIONS: AtomicU32 = AtomicU32::new(0);

    let mut tokens = input.into_iter();
    // A `$fmt:literal` fragment arrives wrapped in an invisible group.
    let first = match tokens.next() {
        Some(proc_macro::TokenTree::Group(g)) if g.delimiter() == proc_macro::Delimiter::None => {
            g.stream().into_iter().next()
        }
        other => other,
    };
    let Some(proc_macro::TokenTree::Literal(fmt)) = first else {
        return r#"::core::compile_error!("kiln-ebpf log: expected a format string literal")"#
            .parse()
            .unwrap_or_default();
    };
    let span = fmt.span();
    let n = EXPANSIONS.fetch_add(1, Ordering::Relaxed);
    // The crate being compiled (cargo sets it for rustc, which runs us)
    // separates crates whose counters coincide; no file path goes in, so
    // the name does not depend on where the sources are checked out.
    let krate = std::env::var("CARGO_CRATE_NAME").unwrap_or_default();
    let key = format!("{krate}:{}:{}:{fmt}:{n}", span.line(), span.column());
    let section = format!(".kiln_log.{:08x}", expand::fnv1a(key.as_bytes()));
    // Skip the `;` separating the literal from the item.
    let _separator = tokens.next();
    let item: TokenStream = tokens.collect();
    let attr: TokenStream = format!("#[unsafe(link_section = {section:?})]")
        .parse()
        .unwrap_or_default();
    let mut out = attr;
    out.extend(item);
    out
}
