//! Expansion of the `kiln-ebpf` attributes, over `proc_macro2` so the unit
//! tests can run it.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Error, Expr, ItemFn, ItemStatic, Lit, LitStr, Meta, Result, ReturnType, Token};

/// `#[map]` on a static.
pub fn map(attr: TokenStream, item: TokenStream) -> Result<TokenStream> {
    let mut st: ItemStatic = syn::parse2(item)?;
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(attr)?;
    let mut name = st.ident.to_string();
    let mut pinned = false;
    let mut flags: Option<Expr> = None;
    for m in metas {
        match &m {
            Meta::Path(p) if p.is_ident("pinned") => pinned = true,
            Meta::NameValue(nv) if nv.path.is_ident("name") => name = lit_str(&nv.value)?.value(),
            Meta::NameValue(nv) if nv.path.is_ident("flags") => flags = Some(nv.value.clone()),
            _ => {
                return Err(Error::new_spanned(
                    m,
                    "expected `pinned`, `name = \"...\"` or `flags = EXPR`",
                ));
            }
        }
    }
    if matches!(st.mutability, syn::StaticMutability::Mut(_)) {
        return Err(Error::new_spanned(
            &st.mutability,
            "map statics must not be `mut`: the loader rewrites references to them",
        ));
    }
    let mut ty = (*st.ty).clone();
    if let Some(f) = flags {
        ty = syn::parse_quote!(<#ty as ::kiln_ebpf::maps::MapDef>::WithFlags<{ #f }>);
    }
    if pinned {
        ty = syn::parse_quote!(<#ty as ::kiln_ebpf::maps::MapDef>::Pinned);
    }
    *st.ty = ty;
    let attrs = &st.attrs;
    let vis = &st.vis;
    let ident = &st.ident;
    let ty = &st.ty;
    let expr = &st.expr;
    Ok(quote! {
        #(#attrs)*
        #[unsafe(link_section = ".maps")]
        #[unsafe(export_name = #name)]
        #vis static #ident: #ty = #expr;
    })
}

fn lit_str(e: &Expr) -> Result<LitStr> {
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Str(s) => Ok(s.clone()),
            _ => Err(Error::new_spanned(e, "expected a string literal")),
        },
        _ => Err(Error::new_spanned(e, "expected a string literal")),
    }
}

/// The attribute's arguments: string literals and bare identifiers, in order.
fn args(attr: TokenStream) -> Result<Vec<(String, Span)>> {
    let exprs = Punctuated::<Expr, Token![,]>::parse_terminated.parse2(attr)?;
    exprs
        .iter()
        .map(|e| match e {
            Expr::Lit(l) => match &l.lit {
                Lit::Str(s) => Ok((s.value(), s.span())),
                _ => Err(Error::new_spanned(e, "expected a string or an identifier")),
            },
            Expr::Path(p) if p.path.get_ident().is_some() => {
                let id = p.path.get_ident().expect("checked above");
                Ok((id.to_string(), id.span()))
            }
            _ => Err(Error::new_spanned(e, "expected a string or an identifier")),
        })
        .collect()
}

/// The libbpf section name and SDK context type of program kind `kind`.
pub fn section(kind: &str, attr: TokenStream) -> Result<(String, &'static str)> {
    let a = args(attr)?;
    let err = |msg: String| {
        Err(Error::new(
            a.first().map(|x| x.1).unwrap_or_else(Span::call_site),
            msg,
        ))
    };
    let one = |what: &str| -> Result<String> {
        match a.as_slice() {
            [(v, _)] if !v.is_empty() => Ok(v.clone()),
            _ => Err(Error::new(
                a.first().map(|x| x.1).unwrap_or_else(Span::call_site),
                format!("#[{kind}] takes one argument: the {what}"),
            )),
        }
    };
    let choice = |allowed: &[&str]| -> Result<String> {
        match a.as_slice() {
            [(v, s)] if allowed.contains(&v.as_str()) => {
                let _ = s;
                Ok(v.clone())
            }
            _ => Err(Error::new(
                a.first().map(|x| x.1).unwrap_or_else(Span::call_site),
                format!("#[{kind}] takes one of: {}", allowed.join(", ")),
            )),
        }
    };
    let none = || -> Result<()> {
        if a.is_empty() {
            Ok(())
        } else {
            Err(Error::new(a[0].1, format!("#[{kind}] takes no arguments")))
        }
    };
    Ok(match kind {
        "xdp" => match a.as_slice() {
            [] => ("xdp".into(), "XdpContext"),
            [(f, _)] if f == "frags" => ("xdp.frags".into(), "XdpContext"),
            _ => return err("#[xdp] takes no argument or `frags`".into()),
        },
        "classifier" | "tc" => {
            none()?;
            ("tc".into(), "TcContext")
        }
        "tcx" => (
            format!("tcx/{}", choice(&["ingress", "egress"])?),
            "TcContext",
        ),
        "tracepoint" => match a.as_slice() {
            [(c, _), (n, _)] => (format!("tracepoint/{c}/{n}"), "TracePointContext"),
            [(cn, _)] if cn.contains('/') => (format!("tracepoint/{cn}"), "TracePointContext"),
            _ => return err("#[tracepoint] takes (\"category\", \"name\")".into()),
        },
        "raw_tracepoint" => (
            format!("raw_tracepoint/{}", one("tracepoint name")?),
            "RawTracePointContext",
        ),
        "tp_btf" => (format!("tp_btf/{}", one("tracepoint name")?), "BtfContext"),
        "kprobe" => (
            format!("kprobe/{}", one("kernel function")?),
            "ProbeContext",
        ),
        "kretprobe" => (
            format!("kretprobe/{}", one("kernel function")?),
            "ProbeContext",
        ),
        "uprobe" | "uretprobe" => match a.as_slice() {
            [] => (kind.to_string(), "ProbeContext"),
            [(t, _)] => (format!("{kind}/{t}"), "ProbeContext"),
            _ => return err(format!("#[{kind}] takes nothing or \"binary:function\"")),
        },
        "fentry" => (format!("fentry/{}", one("kernel function")?), "BtfContext"),
        "fexit" => (format!("fexit/{}", one("kernel function")?), "BtfContext"),
        "lsm" => (format!("lsm/{}", one("LSM hook")?), "BtfContext"),
        "cgroup_skb" => (
            format!("cgroup_skb/{}", choice(&["ingress", "egress"])?),
            "SkBuffContext",
        ),
        "cgroup_sock" => (
            format!(
                "cgroup/{}",
                choice(&["sock_create", "sock_release", "post_bind4", "post_bind6"])?
            ),
            "SockContext",
        ),
        "cgroup_sock_addr" => (
            format!(
                "cgroup/{}",
                choice(&[
                    "bind4",
                    "bind6",
                    "connect4",
                    "connect6",
                    "getpeername4",
                    "getpeername6",
                    "getsockname4",
                    "getsockname6",
                    "sendmsg4",
                    "sendmsg6",
                    "recvmsg4",
                    "recvmsg6",
                    "connect_unix",
                    "sendmsg_unix",
                    "recvmsg_unix",
                    "getpeername_unix",
                    "getsockname_unix",
                ])?
            ),
            "SockAddrContext",
        ),
        "socket_filter" => {
            none()?;
            ("socket".into(), "SkBuffContext")
        }
        "sk_msg" => {
            none()?;
            ("sk_msg".into(), "SkMsgContext")
        }
        "sk_skb" => match a.as_slice() {
            [] => ("sk_skb".into(), "SkBuffContext"),
            _ => (
                format!(
                    "sk_skb/{}",
                    choice(&["stream_parser", "stream_verdict", "verdict"])?
                ),
                "SkBuffContext",
            ),
        },
        "sock_ops" => {
            none()?;
            ("sockops".into(), "SockOpsContext")
        }
        "sk_lookup" => {
            none()?;
            ("sk_lookup".into(), "SkLookupContext")
        }
        "perf_event" => {
            none()?;
            ("perf_event".into(), "PerfEventContext")
        }
        "flow_dissector" => {
            none()?;
            ("flow_dissector".into(), "SkBuffContext")
        }
        "fmod_ret" => (
            format!("fmod_ret/{}", one("kernel function")?),
            "BtfContext",
        ),
        "freplace" => (
            format!("freplace/{}", one("function to replace")?),
            "BtfContext",
        ),
        "iter" | "struct_ops" => {
            let ctx = if kind == "iter" {
                "IterContext"
            } else {
                "BtfContext"
            };
            match a.as_slice() {
                [(t, _)] if !t.is_empty() => (format!("{kind}/{t}"), ctx),
                [(t, _), (s, _)] if !t.is_empty() && s == "sleepable" => {
                    (format!("{kind}.s/{t}"), ctx)
                }
                _ => {
                    return err(format!(
                        "#[{kind}] takes (\"name\") or (\"name\", sleepable)"
                    ));
                }
            }
        }
        "netfilter" => {
            none()?;
            ("netfilter".into(), "NetfilterContext")
        }
        "kprobe_multi" | "kretprobe_multi" => (
            format!(
                "{}/{}",
                kind.replace('_', "."),
                one("kernel function pattern")?
            ),
            "ProbeContext",
        ),
        "uprobe_multi" | "uretprobe_multi" | "usdt" => match a.as_slice() {
            [] => (kind.replace('_', "."), "ProbeContext"),
            [(t, _)] if !t.is_empty() => {
                (format!("{}/{t}", kind.replace('_', ".")), "ProbeContext")
            }
            _ => {
                return err(format!(
                    "#[{kind}] takes nothing or one \"binary:...\" target"
                ));
            }
        },
        "ksyscall" | "kretsyscall" => (format!("{kind}/{}", one("syscall name")?), "ProbeContext"),
        "cgroup_sysctl" => {
            none()?;
            ("cgroup/sysctl".into(), "SysctlContext")
        }
        "cgroup_device" => {
            none()?;
            ("cgroup/dev".into(), "DeviceContext")
        }
        "cgroup_sockopt" => (
            format!("cgroup/{}", choice(&["getsockopt", "setsockopt"])?),
            "SockoptContext",
        ),
        "sk_reuseport" => match a.as_slice() {
            [] => ("sk_reuseport".into(), "SkReuseportContext"),
            _ => (
                format!("sk_reuseport/{}", choice(&["migrate"])?),
                "SkReuseportContext",
            ),
        },
        "syscall" => {
            none()?;
            ("syscall".into(), "SyscallContext")
        }
        "netkit" => (
            format!("netkit/{}", choice(&["primary", "peer"])?),
            "TcContext",
        ),
        other => return err(format!("unknown program kind {other}")),
    })
}

/// A program attribute on `fn name(ctx: Ctx) -> R { ... }`: keeps the user's
/// function as an inner function and exports `extern "C" fn name(ctx: *mut
/// c_void)` in the program's section.
pub fn program(kind: &str, attr: TokenStream, item: TokenStream) -> Result<TokenStream> {
    let (section, ctx_ty) = section(kind, attr)?;
    let f: ItemFn = syn::parse2(item)?;
    if f.sig.inputs.len() > 1 {
        return Err(Error::new_spanned(
            &f.sig.inputs,
            "a program takes one argument: its context",
        ));
    }
    if f.sig.asyncness.is_some() || !f.sig.generics.params.is_empty() {
        return Err(Error::new_spanned(
            &f.sig,
            "a program is a plain, non-generic fn",
        ));
    }
    let name = &f.sig.ident;
    let inner = format_ident!("__kiln_{}", name);
    let ctx_ty = format_ident!("{}", ctx_ty);
    let vis = &f.vis;
    let attrs = &f.attrs;
    let mut inner_fn = f.clone();
    inner_fn.sig.ident = inner.clone();
    inner_fn.attrs.clear();
    inner_fn.vis = syn::Visibility::Inherited;
    let call = if f.sig.inputs.is_empty() {
        quote!(#inner())
    } else {
        quote!(#inner(::kiln_ebpf::programs::#ctx_ty::new(ctx)))
    };
    let (ret, body) = match &f.sig.output {
        ReturnType::Default => (quote!(u32), quote!({ #call; 0 })),
        ReturnType::Type(_, t) => (quote!(#t), quote!({ #call })),
    };
    Ok(quote! {
        #(#attrs)*
        #[unsafe(no_mangle)]
        #[unsafe(link_section = #section)]
        #vis extern "C" fn #name(ctx: *mut ::core::ffi::c_void) -> #ret {
            #[inline(always)]
            #inner_fn
            #body
        }
    })
}

/// 32-bit FNV-1a (names `.kiln_log.*` sections).
pub fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ *b as u32).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(kind: &str, attr: TokenStream) -> String {
        section(kind, attr).unwrap().0
    }

    #[test]
    fn section_names() {
        assert_eq!(sec("xdp", quote!()), "xdp");
        assert_eq!(sec("xdp", quote!(frags)), "xdp.frags");
        assert_eq!(sec("classifier", quote!()), "tc");
        assert_eq!(sec("tc", quote!()), "tc");
        assert_eq!(sec("tcx", quote!(ingress)), "tcx/ingress");
        assert_eq!(
            sec("tracepoint", quote!("sched", "sched_switch")),
            "tracepoint/sched/sched_switch"
        );
        assert_eq!(
            sec("tracepoint", quote!("syscalls/sys_enter_openat")),
            "tracepoint/syscalls/sys_enter_openat"
        );
        assert_eq!(
            sec("raw_tracepoint", quote!("sys_enter")),
            "raw_tracepoint/sys_enter"
        );
        assert_eq!(sec("tp_btf", quote!("sched_switch")), "tp_btf/sched_switch");
        assert_eq!(sec("kprobe", quote!("do_unlinkat")), "kprobe/do_unlinkat");
        assert_eq!(
            sec("kretprobe", quote!("do_unlinkat")),
            "kretprobe/do_unlinkat"
        );
        assert_eq!(sec("uprobe", quote!()), "uprobe");
        assert_eq!(
            sec("uprobe", quote!("/bin/bash:readline")),
            "uprobe//bin/bash:readline"
        );
        assert_eq!(sec("fentry", quote!("do_unlinkat")), "fentry/do_unlinkat");
        assert_eq!(sec("fexit", quote!("do_unlinkat")), "fexit/do_unlinkat");
        assert_eq!(sec("lsm", quote!("file_open")), "lsm/file_open");
        assert_eq!(sec("cgroup_skb", quote!(ingress)), "cgroup_skb/ingress");
        assert_eq!(
            sec("cgroup_sock", quote!(sock_create)),
            "cgroup/sock_create"
        );
        assert_eq!(sec("cgroup_sock_addr", quote!(connect4)), "cgroup/connect4");
        assert_eq!(sec("socket_filter", quote!()), "socket");
        assert_eq!(sec("sk_msg", quote!()), "sk_msg");
        assert_eq!(
            sec("sk_skb", quote!(stream_verdict)),
            "sk_skb/stream_verdict"
        );
        assert_eq!(sec("sock_ops", quote!()), "sockops");
        assert_eq!(sec("sk_lookup", quote!()), "sk_lookup");
        assert_eq!(sec("perf_event", quote!()), "perf_event");
        assert_eq!(sec("flow_dissector", quote!()), "flow_dissector");
    }

    /// The program types added for parity with libbpf: each gives libbpf's
    /// section name (libbpf's `section_defs`), so libbpf loads the objects too.
    #[test]
    fn more_section_names() {
        for (kind, attr, want) in [
            (
                "fmod_ret",
                quote!("bpf_modify_return_test"),
                "fmod_ret/bpf_modify_return_test",
            ),
            ("freplace", quote!("xdp_main"), "freplace/xdp_main"),
            ("iter", quote!("task"), "iter/task"),
            ("iter", quote!("task", sleepable), "iter.s/task"),
            ("struct_ops", quote!("cong_avoid"), "struct_ops/cong_avoid"),
            ("struct_ops", quote!("init", sleepable), "struct_ops.s/init"),
            ("netfilter", quote!(), "netfilter"),
            ("kprobe_multi", quote!("tcp_*"), "kprobe.multi/tcp_*"),
            ("kretprobe_multi", quote!("tcp_*"), "kretprobe.multi/tcp_*"),
            ("uprobe_multi", quote!(), "uprobe.multi"),
            (
                "uprobe_multi",
                quote!("/bin/x:f*"),
                "uprobe.multi//bin/x:f*",
            ),
            ("uretprobe_multi", quote!(), "uretprobe.multi"),
            ("usdt", quote!(), "usdt"),
            ("usdt", quote!("/bin/x:prov:name"), "usdt//bin/x:prov:name"),
            ("ksyscall", quote!("openat"), "ksyscall/openat"),
            ("kretsyscall", quote!("openat"), "kretsyscall/openat"),
            ("cgroup_sysctl", quote!(), "cgroup/sysctl"),
            ("cgroup_device", quote!(), "cgroup/dev"),
            ("cgroup_sockopt", quote!(getsockopt), "cgroup/getsockopt"),
            ("cgroup_sockopt", quote!(setsockopt), "cgroup/setsockopt"),
            ("sk_reuseport", quote!(), "sk_reuseport"),
            ("sk_reuseport", quote!(migrate), "sk_reuseport/migrate"),
            ("syscall", quote!(), "syscall"),
            ("netkit", quote!(primary), "netkit/primary"),
            ("netkit", quote!(peer), "netkit/peer"),
        ] {
            assert_eq!(sec(kind, attr), want, "#[{kind}]");
        }
        assert!(section("iter", quote!()).is_err());
        assert!(section("iter", quote!("task", fast)).is_err());
        assert!(section("cgroup_sockopt", quote!()).is_err());
        assert!(section("netkit", quote!(both)).is_err());
        assert!(section("syscall", quote!(x)).is_err());
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(section("xdp", quote!(nonsense)).is_err());
        assert!(section("tcx", quote!()).is_err());
        assert!(section("cgroup_skb", quote!(sideways)).is_err());
        assert!(section("kprobe", quote!()).is_err());
        assert!(section("socket_filter", quote!(x)).is_err());
        assert!(section("tracepoint", quote!("sched")).is_err());
    }

    #[test]
    fn program_expansion() {
        let out = program(
            "tracepoint",
            quote!("sched", "sched_process_exec"),
            quote!(
                fn count_exec(ctx: TracePointContext) -> u32 {
                    0
                }
            ),
        )
        .unwrap()
        .to_string();
        assert!(
            out.contains("link_section = \"tracepoint/sched/sched_process_exec\""),
            "{out}"
        );
        assert!(out.contains("no_mangle"), "{out}");
        assert!(out.contains("extern \"C\" fn count_exec"), "{out}");
        assert!(out.contains("TracePointContext :: new (ctx)"), "{out}");
        assert!(
            program(
                "xdp",
                quote!(),
                quote!(
                    fn f(a: u32, b: u32) -> u32 {
                        0
                    }
                )
            )
            .is_err()
        );
    }

    #[test]
    fn map_expansion() {
        let out = map(
            quote!(pinned, name = "counters"),
            quote!(
                static COUNTERS: HashMap<u32, u64, 16> = HashMap::new();
            ),
        )
        .unwrap()
        .to_string();
        assert!(out.contains("link_section = \".maps\""), "{out}");
        assert!(out.contains("export_name = \"counters\""), "{out}");
        assert!(out.contains("MapDef > :: Pinned"), "{out}");
        assert!(
            map(
                quote!(),
                quote!(
                    static mut M: HashMap<u32, u64, 1> = HashMap::new();
                )
            )
            .is_err()
        );
        assert!(
            map(
                quote!(bogus),
                quote!(
                    static M: HashMap<u32, u64, 1> = HashMap::new();
                )
            )
            .is_err()
        );
    }
}
