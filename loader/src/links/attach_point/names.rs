//! The words of a manifest for the parameters of attach points (`ingress`,
//! `generic`, `cgroup_inet_ingress`, `sk_msg`), and the names of the kernel
//! objects a point refers to by number (interfaces, cgroups, namespaces):
//! read and written in one place.

use super::XdpMode;
use super::netkit::NetkitSide;
use super::sockmap::SockMapHook;
use kiln_obj::{AttachType, Direction};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// `ingress` or `egress`.
pub fn direction(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

/// The direction named `name`.
pub fn direction_from(name: &str) -> Option<Direction> {
    match name {
        "ingress" => Some(Direction::Ingress),
        "egress" => Some(Direction::Egress),
        _ => None,
    }
}

/// `primary` or `peer`.
pub fn netkit_side(s: NetkitSide) -> &'static str {
    match s {
        NetkitSide::Primary => "primary",
        NetkitSide::Peer => "peer",
    }
}

/// The netkit side named `name`.
pub fn netkit_side_from(name: &str) -> Option<NetkitSide> {
    [NetkitSide::Primary, NetkitSide::Peer]
        .into_iter()
        .find(|s| netkit_side(*s) == name)
}

/// `auto`, `generic`, `native`, `offload`.
pub fn xdp_mode(m: XdpMode) -> &'static str {
    match m {
        XdpMode::Auto => "auto",
        XdpMode::Generic => "generic",
        XdpMode::Native => "native",
        XdpMode::Offload => "offload",
    }
}

/// The XDP mode named `name`.
pub fn xdp_mode_from(name: &str) -> Option<XdpMode> {
    [
        XdpMode::Auto,
        XdpMode::Generic,
        XdpMode::Native,
        XdpMode::Offload,
    ]
    .into_iter()
    .find(|m| xdp_mode(*m) == name)
}

/// `sk_msg`, `sk_skb/stream_parser`, `sk_skb/stream_verdict`, `sk_skb/verdict`.
pub fn sockmap_hook(h: SockMapHook) -> &'static str {
    match h {
        SockMapHook::MsgVerdict => "sk_msg",
        SockMapHook::StreamParser => "sk_skb/stream_parser",
        SockMapHook::StreamVerdict => "sk_skb/stream_verdict",
        SockMapHook::Verdict => "sk_skb/verdict",
    }
}

/// Cgroup attach types by the kernel's name without `BPF_`, lower case.
const CGROUP_ATTACH_TYPES: &[(&str, AttachType)] = &[
    ("cgroup_inet_ingress", AttachType::CGROUP_INET_INGRESS),
    ("cgroup_inet_egress", AttachType::CGROUP_INET_EGRESS),
    (
        "cgroup_inet_sock_create",
        AttachType::CGROUP_INET_SOCK_CREATE,
    ),
    ("cgroup_sock_ops", AttachType::CGROUP_SOCK_OPS),
    ("cgroup_device", AttachType::CGROUP_DEVICE),
    ("cgroup_inet4_bind", AttachType::CGROUP_INET4_BIND),
    ("cgroup_inet6_bind", AttachType::CGROUP_INET6_BIND),
    ("cgroup_inet4_connect", AttachType::CGROUP_INET4_CONNECT),
    ("cgroup_inet6_connect", AttachType::CGROUP_INET6_CONNECT),
    ("cgroup_inet4_post_bind", AttachType::CGROUP_INET4_POST_BIND),
    ("cgroup_inet6_post_bind", AttachType::CGROUP_INET6_POST_BIND),
    ("cgroup_udp4_sendmsg", AttachType::CGROUP_UDP4_SENDMSG),
    ("cgroup_udp6_sendmsg", AttachType::CGROUP_UDP6_SENDMSG),
    ("cgroup_sysctl", AttachType::CGROUP_SYSCTL),
    ("cgroup_udp4_recvmsg", AttachType::CGROUP_UDP4_RECVMSG),
    ("cgroup_udp6_recvmsg", AttachType::CGROUP_UDP6_RECVMSG),
    ("cgroup_getsockopt", AttachType::CGROUP_GETSOCKOPT),
    ("cgroup_setsockopt", AttachType::CGROUP_SETSOCKOPT),
    (
        "cgroup_inet4_getpeername",
        AttachType::CGROUP_INET4_GETPEERNAME,
    ),
    (
        "cgroup_inet6_getpeername",
        AttachType::CGROUP_INET6_GETPEERNAME,
    ),
    (
        "cgroup_inet4_getsockname",
        AttachType::CGROUP_INET4_GETSOCKNAME,
    ),
    (
        "cgroup_inet6_getsockname",
        AttachType::CGROUP_INET6_GETSOCKNAME,
    ),
    (
        "cgroup_inet_sock_release",
        AttachType::CGROUP_INET_SOCK_RELEASE,
    ),
    ("cgroup_unix_connect", AttachType::CGROUP_UNIX_CONNECT),
    ("cgroup_unix_sendmsg", AttachType::CGROUP_UNIX_SENDMSG),
    ("cgroup_unix_recvmsg", AttachType::CGROUP_UNIX_RECVMSG),
    (
        "cgroup_unix_getpeername",
        AttachType::CGROUP_UNIX_GETPEERNAME,
    ),
    (
        "cgroup_unix_getsockname",
        AttachType::CGROUP_UNIX_GETSOCKNAME,
    ),
];

/// The manifest's name of a cgroup attach type (`cgroup_inet_ingress`).
pub fn cgroup_attach_type(t: AttachType) -> Option<&'static str> {
    CGROUP_ATTACH_TYPES
        .iter()
        .find(|(_, a)| *a == t)
        .map(|(n, _)| *n)
}

/// The cgroup attach type named `name`.
pub fn cgroup_attach_type_from(name: &str) -> Option<AttachType> {
    CGROUP_ATTACH_TYPES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
}

/// Every cgroup attach type name, for help texts.
pub fn cgroup_attach_type_names() -> impl Iterator<Item = &'static str> {
    CGROUP_ATTACH_TYPES.iter().map(|(n, _)| *n)
}

/// The interface's name, or `ifindex N` when it has none (any more).
pub fn interface(ifindex: u32) -> String {
    interface_name(ifindex).unwrap_or_else(|| format!("ifindex {ifindex}"))
}

/// The name of interface `ifindex`, if it exists.
pub fn interface_name(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` holds IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the kernel wrote a NUL-terminated name into `buf`.
    Some(
        unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// The index of interface `name`, if it exists.
pub fn interface_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// The cgroup v2 directory whose inode is `id` (a bounded walk of the
/// cgroup2 mounts).
pub fn cgroup_path(id: u64) -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    for root in mounts.lines().filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    }) {
        let mut stack = vec![root];
        let mut seen = 0;
        while let Some(dir) = stack.pop() {
            seen += 1;
            if seen > 10_000 {
                break;
            }
            if std::fs::metadata(&dir).is_ok_and(|m| m.ino() == id) {
                return Some(dir);
            }
            if let Ok(rd) = std::fs::read_dir(&dir) {
                stack.extend(
                    rd.filter_map(|e| e.ok())
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
        }
    }
    None
}

/// A file naming the network namespace of inode `ino`: the caller's own
/// (process, then thread),
/// a named one under `/run/netns`, else `net:[INO]` (as `/proc` shows it).
pub fn netns_path(ino: u64) -> PathBuf {
    for own in ["/proc/self/ns/net", "/proc/thread-self/ns/net"] {
        if std::fs::metadata(own).is_ok_and(|m| m.ino() == ino) {
            return own.into();
        }
    }
    if let Ok(rd) = std::fs::read_dir("/run/netns") {
        for e in rd.filter_map(|e| e.ok()) {
            if std::fs::metadata(e.path()).is_ok_and(|m| m.ino() == ino) {
                return e.path();
            }
        }
    }
    PathBuf::from(format!("net:[{ino}]"))
}
