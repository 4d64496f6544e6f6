//! What the running kernel supports, found by trying (never by version
//! numbers), computed once per process.
//!
//! Each probe loads a trivial program, creates a tiny map or uploads a tiny
//! BTF blob and keeps only the verdict.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::OnceLock;

use kiln_obj::btf::BtfFeatures;
use kiln_obj::{AttachType, Insn, MapType, ProgramType};

use crate::sys::attr::MapCreateAttr;
use crate::sys::link_attr::{LinkCreateAttr, link_create};
use crate::sys::map::map_create;
use crate::sys::object::btf_load;
use crate::sys::prog::{ProgLoad, prog_load};

/// The kernel's features, as probed.
#[derive(Clone, Debug, Default)]
pub struct Features {
    /// Program type name (`socket_filter`, `xdp`...) → loads.
    pub program_types: BTreeMap<&'static str, bool>,
    /// Map type name (`hash`, `ringbuf`...) → can be created.
    pub map_types: BTreeMap<&'static str, bool>,
    /// `helper@program_type` → the verifier accepts the call.
    pub helpers: BTreeMap<String, bool>,
    /// BPF_BTF_LOAD works at all. Minimum kernel version: 4.18.
    pub btf_load: bool,
    /// Which BTF kinds the kernel's BTF loader accepts (what kiln-obj's sanitizer keeps).
    pub btf: BtfFeatures,
    /// BPF_LINK_CREATE exists. Minimum kernel version: 5.7.
    pub bpf_link: bool,
    /// bpf_link kinds → the kernel can create them: `cgroup` (5.7), `raw_tracepoint`,
    /// `perf_event` (5.15), `netns` (flow dissector, 5.8), `xdp` (5.9),
    /// `kprobe_multi` (5.18 with fprobe), `netfilter` (6.4), `tcx` (6.6), `netkit` (6.7, CONFIG_NETKIT), `sockmap` (6.10).
    pub link_kinds: BTreeMap<&'static str, bool>,
    /// tcx links (attach with `BPF_TCX_INGRESS`). Minimum kernel version: 6.6.
    pub tcx: bool,
    /// `BPF_MAP_TYPE_RINGBUF`. Minimum kernel version: 5.8.
    pub ringbuf: bool,
    /// `BPF_F_MMAPABLE` arrays. Minimum kernel version: 5.5.
    pub mmapable_arrays: bool,
    /// BPF_MAP_*_BATCH on hash maps. Minimum kernel version: 5.6.
    pub batch_ops: bool,
    /// `bpf_get_attach_cookie`. Minimum kernel version: 5.15.
    pub bpf_cookie: bool,
    /// BPF_PROG_BIND_MAP. Minimum kernel version: 5.10.
    pub prog_bind_map: bool,
}

impl Features {
    /// The report as JSON (stable key order).
    pub fn to_json(&self) -> String {
        fn obj<K: AsRef<str>>(m: &BTreeMap<K, bool>) -> String {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{:?}: {v}", k.as_ref()))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        let b = self.btf;
        format!(
            "{{\"program_types\": {}, \"map_types\": {}, \"helpers\": {}, \"btf\": {{\"load\": {}, \"func\": {}, \"func_global\": {}, \"datasec\": {}, \"float\": {}, \"decl_tag\": {}, \"type_tag\": {}, \"enum64\": {}}}, \"bpf_link\": {}, \"link_kinds\": {}, \"tcx\": {}, \"ringbuf\": {}, \"mmapable_arrays\": {}, \"batch_ops\": {}, \"bpf_cookie\": {}, \"prog_bind_map\": {}}}",
            obj(&self.program_types),
            obj(&self.map_types),
            obj(&self.helpers),
            self.btf_load,
            b.func,
            b.func_global,
            b.datasec,
            b.float,
            b.decl_tag,
            b.type_tag,
            b.enum64,
            self.bpf_link,
            obj(&self.link_kinds),
            self.tcx,
            self.ringbuf,
            self.mmapable_arrays,
            self.batch_ops,
            self.bpf_cookie,
            self.prog_bind_map,
        )
    }
}

/// Probes once per process and returns the cached answer.
///
/// ```no_run
/// let features = kiln_loader::probe::features();
/// if features.map_types.get("ringbuf") == Some(&true) {
///     println!("ring buffers (5.8+) are available");
/// }
/// ```
pub fn features() -> &'static Features {
    static F: OnceLock<Features> = OnceLock::new();
    F.get_or_init(probe_all)
}

/// (BTF loads at all, what it accepts), probed once.
fn btf_probed() -> (bool, BtfFeatures) {
    static B: OnceLock<(bool, BtfFeatures)> = OnceLock::new();
    if let Some(known) = B.get() {
        return *known;
    }
    let probed = probe_btf();
    // A refusal of every BTF load says nothing about the kernel when it
    // comes from the caller's privileges (a user namespace before its BPF
    // token is in scope): kept only once BTF loads.
    if probed.0 {
        let _ = B.set(probed);
    }
    probed
}

/// Verdicts of [`feature`] for this process (`None` until first asked).
static KNOWN: std::sync::Mutex<Option<BTreeMap<String, bool>>> = std::sync::Mutex::new(None);

/// Makes [`feature`] answer `false` for `name` in this process, as on a
/// kernel without it, so the fallback a probe chooses (clsact instead of
/// tcx, netlink XDP instead of links) can be exercised on a newer kernel.
/// Not stored in the boot cache.
pub fn assume_missing(name: &str) {
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    known
        .get_or_insert_with(crate::probe_cache::read)
        .insert(name.to_owned(), false);
    ASSUMED_MISSING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(name.to_owned());
}

/// Whether [`assume_missing`] was called for `name` in this process.
pub fn assumed_missing(name: &str) -> bool {
    ASSUMED_MISSING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|n| n == name)
}

static ASSUMED_MISSING: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Feature `name` (a program or map type name, or one of `bpf_link`,
/// `tcx`, `xdp_link` (5.9), `cgroup_link` (5.7), `netns_link` (5.8),
/// `sockmap_link` (6.10), `btf`, `ringbuf`, `bpf_cookie`, `batch_ops`, `mmapable_arrays`,
/// `prog_bind_map`): probed only when first asked, unlike [`features`],
/// which probes everything. The verdict is kept for the process and, as
/// root, for the rest of the boot (a root-only cache in `/run/kiln`), so a
/// later command pays nothing. `None`: no such feature.
pub fn feature(name: &str) -> Option<bool> {
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    let known = known.get_or_insert_with(crate::probe_cache::read);
    if let Some(v) = known.get(name) {
        return Some(*v);
    }
    let v = probe_one(name)?;
    known.insert(name.to_owned(), v);
    // Without bpf(2) every probe fails: that says nothing about the kernel.
    if v || probe_one("socket_filter") == Some(true) {
        crate::probe_cache::store(&BTreeMap::from([(name.to_owned(), v)]));
    }
    Some(v)
}

/// Every name [`feature`] answers for.
pub fn feature_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = PROGRAM_TYPES.iter().map(|(n, _, _)| *n).collect();
    names.extend(
        (1..=33u32)
            .map(MapType)
            .filter(|t| *t != MapType::STRUCT_OPS)
            .map(MapType::name),
    );
    names.extend([
        "bpf_link",
        "tcx",
        "xdp_link",
        "sockmap_link",
        "cgroup_link",
        "netns_link",
        "btf",
        "ringbuf",
        "bpf_cookie",
        "batch_ops",
        "mmapable_arrays",
        "prog_bind_map",
    ]);
    names
}

fn probe_one(name: &str) -> Option<bool> {
    if let Some((_, t, eat)) = PROGRAM_TYPES.iter().find(|(n, _, _)| *n == name) {
        return Some(probe_program_type(*t, *eat));
    }
    if let Some(t) = (1..=33u32)
        .map(MapType)
        .find(|t| *t != MapType::STRUCT_OPS && t.name() == name)
    {
        return Some(probe_map_type(t));
    }
    Some(match name {
        "bpf_link" => probe_link_create(),
        "tcx" => probe_tcx(),
        "xdp_link" => probe_link_create() && probe_xdp_link(),
        "cgroup_link" => {
            probe_link_create()
                && probe_link_kind(ProgramType::CGROUP_SKB, AttachType::CGROUP_INET_INGRESS)
        }
        "netns_link" => {
            probe_link_create()
                && probe_link_kind(ProgramType::FLOW_DISSECTOR, AttachType::FLOW_DISSECTOR)
        }
        "sockmap_link" => {
            probe_link_create()
                && probe_link_kind(ProgramType::SK_SKB, AttachType::SK_SKB_STREAM_VERDICT)
        }
        "btf" => btf_ok(&[int_type(1)], b"\0int\0"),
        "ringbuf" => probe_map_type(MapType::RINGBUF),
        "bpf_cookie" => probe_helper(ProgramType::KPROBE, 174),
        "batch_ops" => probe_batch(),
        "mmapable_arrays" => mmapable_arrays(),
        "prog_bind_map" => probe_bind_map(),
        _ => return None,
    })
}

/// BTF features for kiln-obj's sanitizer, probed once.
pub fn btf_features() -> BtfFeatures {
    btf_probed().1
}

/// Whether the kernel loads BTF at all (4.18+), probed once: only without
/// it may a loader go on without an object's BTF.
pub fn btf_loads() -> bool {
    btf_probed().0
}

/// Whether BPF_PROG_BIND_MAP works (5.10+), probed once ([`feature`]).
pub fn prog_bind_map() -> bool {
    feature("prog_bind_map").unwrap_or(false)
}

/// The kernel's name of a program type (`socket_filter`, `xdp`, ...), as bpftool prints it.
pub fn program_type_name(t: ProgramType) -> &'static str {
    if t == ProgramType::UNSPEC {
        return "unspec";
    }
    PROGRAM_TYPES
        .iter()
        .find(|(_, pt, _)| *pt == t)
        .map_or("unknown", |(name, _, _)| name)
}

/// Whether the kernel has BPF tokens (BPF_TOKEN_CREATE, 6.9+), probed once.
/// Whether this process may create one depends on its user namespace and
/// bpffs: see [`crate::token::Token`].
pub fn tokens() -> bool {
    static T: OnceLock<bool> = OnceLock::new();
    *T.get_or_init(crate::sys::token::token_create_known)
}

/// Whether `BPF_F_MMAPABLE` arrays exist (cached separately: the loader asks on every load).
pub fn mmapable_arrays() -> bool {
    static M: OnceLock<bool> = OnceLock::new();
    *M.get_or_init(|| try_map(MapType::ARRAY, 4, 4, 1, 1 << 10, None, None))
}

const RET0: [Insn; 2] = [
    Insn {
        code: 0xb7,
        regs: 0,
        off: 0,
        imm: 0,
    },
    Insn {
        code: 0x95,
        regs: 0,
        off: 0,
        imm: 0,
    },
];

const PROGRAM_TYPES: &[(&str, ProgramType, Option<AttachType>)] = &[
    ("socket_filter", ProgramType::SOCKET_FILTER, None),
    ("kprobe", ProgramType::KPROBE, None),
    ("sched_cls", ProgramType::SCHED_CLS, None),
    ("sched_act", ProgramType::SCHED_ACT, None),
    ("tracepoint", ProgramType::TRACEPOINT, None),
    ("xdp", ProgramType::XDP, None),
    ("perf_event", ProgramType::PERF_EVENT, None),
    ("cgroup_skb", ProgramType::CGROUP_SKB, None),
    ("cgroup_sock", ProgramType::CGROUP_SOCK, None),
    ("lwt_in", ProgramType::LWT_IN, None),
    ("lwt_out", ProgramType::LWT_OUT, None),
    ("lwt_xmit", ProgramType::LWT_XMIT, None),
    ("sock_ops", ProgramType::SOCK_OPS, None),
    ("sk_skb", ProgramType::SK_SKB, None),
    ("cgroup_device", ProgramType::CGROUP_DEVICE, None),
    ("sk_msg", ProgramType::SK_MSG, None),
    ("raw_tracepoint", ProgramType::RAW_TRACEPOINT, None),
    (
        "cgroup_sock_addr",
        ProgramType::CGROUP_SOCK_ADDR,
        Some(AttachType::CGROUP_INET4_CONNECT),
    ),
    ("lwt_seg6local", ProgramType::LWT_SEG6LOCAL, None),
    ("lirc_mode2", ProgramType::LIRC_MODE2, None),
    ("sk_reuseport", ProgramType::SK_REUSEPORT, None),
    ("flow_dissector", ProgramType::FLOW_DISSECTOR, None),
    ("cgroup_sysctl", ProgramType::CGROUP_SYSCTL, None),
    (
        "raw_tracepoint_writable",
        ProgramType::RAW_TRACEPOINT_WRITABLE,
        None,
    ),
    (
        "cgroup_sockopt",
        ProgramType::CGROUP_SOCKOPT,
        Some(AttachType::CGROUP_GETSOCKOPT),
    ),
    (
        "tracing",
        ProgramType::TRACING,
        Some(AttachType::TRACE_FENTRY),
    ),
    ("struct_ops", ProgramType::STRUCT_OPS, None),
    ("ext", ProgramType::EXT, None),
    ("lsm", ProgramType::LSM, Some(AttachType::LSM_MAC)),
    (
        "sk_lookup",
        ProgramType::SK_LOOKUP,
        Some(AttachType::SK_LOOKUP),
    ),
    ("syscall", ProgramType::SYSCALL, None),
    (
        "netfilter",
        ProgramType::NETFILTER,
        Some(AttachType::NETFILTER),
    ),
];

/// Loads `insns` as `t`. Supported when it loads, or when the verifier had
/// something to say (types needing an attach target reject the trivial
/// program *inside* the verifier; unknown types fail before it, with no log).
fn try_load(t: ProgramType, eat: Option<AttachType>, insns: &[Insn], flags: u32) -> (bool, String) {
    let license = c"GPL";
    let mut log = vec![0u8; 4096];
    let r = prog_load(ProgLoad {
        prog_type: t.0,
        insns,
        license: Some(license),
        log: Some((1, &mut log)),
        prog_flags: flags,
        expected_attach_type: eat.map(|a| a.0),
        kern_version: crate::util::kernel_version_code(),
        ..Default::default()
    });
    let log = crate::util::c_name(&log);
    match r {
        Ok(_) => (true, log),
        Err(f) if f.error.errno() == libc::ENOSPC => (true, log),
        Err(_) => (false, log),
    }
}

/// Whether the kernel has program type `t`.
pub fn probe_program_type(t: ProgramType, eat: Option<AttachType>) -> bool {
    let flags = if t == ProgramType::SYSCALL { 1 << 4 } else { 0 };
    let (ok, log) = try_load(t, eat, &RET0, flags);
    ok || !log.trim().is_empty()
}

/// Whether an `ld_imm64` of a map value may carry any offset (the verifier
/// no longer limits direct offsets, for arenas: libbpf's
/// `FEAT_LDIMM64_FULL_RANGE_OFF`). libbpf then puts an object's `__arena`
/// globals at the end of the arena instead of its start, and so does Kiln,
/// for the same instructions. Probed once: a 1-byte array's value at offset
/// 2^30 is refused either way, but older kernels say why in these words.
pub fn ldimm64_full_range_off() -> bool {
    static F: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *F.get_or_init(|| {
        let Ok(map) = map_create(MapCreateAttr {
            map_type: MapType::ARRAY.0,
            key_size: 4,
            value_size: 1,
            max_entries: 1,
            ..Default::default()
        }) else {
            return false;
        };
        use std::os::fd::AsRawFd;
        let insns = [
            Insn {
                code: 0x18,
                regs: 1 | (2 << 4), // r1 = BPF_PSEUDO_MAP_VALUE
                off: 0,
                imm: map.as_raw_fd(),
            },
            Insn {
                code: 0,
                regs: 0,
                off: 0,
                imm: 1 << 30,
            },
            RET0[1],
        ];
        let (loaded, log) = try_load(ProgramType::SOCKET_FILTER, None, &insns, 0);
        !loaded && !log.is_empty() && !log.contains("direct value offset of")
    })
}

/// Whether programs of type `t` may call helper `id`.
pub fn probe_helper(t: ProgramType, id: i32) -> bool {
    let insns = [
        Insn {
            code: 0x85,
            regs: 0,
            off: 0,
            imm: id,
        },
        RET0[0],
        RET0[1],
    ];
    let (ok, log) = try_load(t, None, &insns, 0);
    ok || (!log.is_empty()
        && !log.contains("invalid func")
        && !log.contains("unknown func")
        && !log.contains("cannot use helper")
        && !log.contains("not supported"))
}

fn try_map(
    map_type: MapType,
    key: u32,
    value: u32,
    max: u32,
    flags: u32,
    inner: Option<i32>,
    btf: Option<(i32, u32, u32)>,
) -> bool {
    map_create(MapCreateAttr {
        map_type: map_type.0,
        key_size: key,
        value_size: value,
        max_entries: max,
        map_flags: flags,
        inner_map_fd: inner.unwrap_or(0) as u32,
        btf_fd: btf.map_or(0, |b| b.0 as u32),
        btf_key_type_id: btf.map_or(0, |b| b.1),
        btf_value_type_id: btf.map_or(0, |b| b.2),
        ..Default::default()
    })
    .is_ok()
}

/// Whether the kernel can create maps of type `t`.
pub fn probe_map_type(t: MapType) -> bool {
    const NO_PREALLOC: u32 = 1;
    const MMAPABLE: u32 = 1 << 10;
    let page = crate::util::page_size() as u32;
    match t {
        MapType::LPM_TRIE => try_map(t, 8, 4, 1, NO_PREALLOC, None, None),
        MapType::QUEUE | MapType::STACK | MapType::BLOOM_FILTER => {
            try_map(t, 0, 4, 1, 0, None, None)
        }
        MapType::RINGBUF | MapType::USER_RINGBUF => try_map(t, 0, 0, page, 0, None, None),
        MapType::STACK_TRACE => try_map(t, 4, 8, 1, 0, None, None),
        MapType::CGROUP_STORAGE | MapType::PERCPU_CGROUP_STORAGE => {
            try_map(t, 16, 4, 0, 0, None, None)
        }
        MapType::REUSEPORT_SOCKARRAY => try_map(t, 4, 8, 1, 0, None, None),
        MapType::ARENA => try_map(t, 0, 0, 1, MMAPABLE, None, None),
        MapType::ARRAY_OF_MAPS | MapType::HASH_OF_MAPS => {
            let Ok(inner) = map_create(MapCreateAttr {
                map_type: MapType::ARRAY.0,
                key_size: 4,
                value_size: 4,
                max_entries: 1,
                ..Default::default()
            }) else {
                return false;
            };
            try_map(t, 4, 4, 1, 0, Some(inner.as_raw_fd()), None)
        }
        MapType::SK_STORAGE
        | MapType::INODE_STORAGE
        | MapType::TASK_STORAGE
        | MapType::CGRP_STORAGE => {
            // Storage maps demand BTF for key and value: an `int`.
            let Ok(btf) = btf_load(&btf_blob(&[int_type(1)], b"\0int\0"), None) else {
                return false;
            };
            try_map(
                t,
                4,
                4,
                0,
                NO_PREALLOC,
                None,
                Some((btf.as_fd().as_raw_fd(), 1, 1)),
            )
        }
        MapType::STRUCT_OPS | MapType::UNSPEC => false,
        _ => try_map(t, 4, 4, 1, 0, None, None),
    }
}

// --- tiny BTF blobs -------------------------------------------------------

/// In this machine's byte order: the kernel reads BTF only in its own.
fn btf_blob(types: &[Vec<u32>], strings: &[u8]) -> Vec<u8> {
    let type_bytes: Vec<u8> = types
        .iter()
        .flatten()
        .flat_map(|w| w.to_ne_bytes())
        .collect();
    let mut out = Vec::new();
    out.extend_from_slice(&0xeb9fu16.to_ne_bytes());
    out.push(1);
    out.push(0);
    for w in [
        24u32,
        0,
        type_bytes.len() as u32,
        type_bytes.len() as u32,
        strings.len() as u32,
    ] {
        out.extend_from_slice(&w.to_ne_bytes());
    }
    out.extend_from_slice(&type_bytes);
    out.extend_from_slice(strings);
    out
}

fn info(kind: u32, vlen: u32) -> u32 {
    (kind << 24) | vlen
}

/// `int` (4 bytes, signed) named by string offset `name`.
fn int_type(name: u32) -> Vec<u32> {
    vec![name, info(1, 0), 4, (1 << 24) | 32]
}

fn btf_ok(types: &[Vec<u32>], strings: &[u8]) -> bool {
    btf_load(&btf_blob(types, strings), None).is_ok()
}

fn probe_btf() -> (bool, BtfFeatures) {
    // Strings: 1 "int", 5 "f", 7 "x", 9 ".data", 15 "float", 21 "tag", 25 "t", 27 "e"
    let s = b"\0int\0f\0x\0.data\0float\0tag\0t\0e\0";
    let int = int_type(1);
    let proto = vec![0, info(13, 0), 1];
    let load = btf_ok(std::slice::from_ref(&int), s);
    let features = BtfFeatures {
        func: btf_ok(&[int.clone(), proto.clone(), vec![5, info(12, 0), 2]], s),
        func_global: btf_ok(&[int.clone(), proto.clone(), vec![5, info(12, 1), 2]], s),
        datasec: btf_ok(
            &[
                int.clone(),
                vec![7, info(14, 0), 1, 1],
                vec![9, info(15, 1), 4, 2, 0, 4],
            ],
            s,
        ),
        float: btf_ok(&[vec![15, info(16, 0), 4]], s),
        decl_tag: btf_ok(
            &[
                int.clone(),
                vec![25, info(8, 0), 1],
                vec![21, info(17, 0), 2, u32::MAX],
            ],
            s,
        ),
        type_tag: btf_ok(
            &[
                int.clone(),
                vec![21, info(18, 0), 1],
                vec![0, info(2, 0), 2],
            ],
            s,
        ),
        enum64: btf_ok(&[vec![27, info(19, 1), 8, 25, 1, 0]], s),
    };
    (load, features)
}

fn probe_all() -> Features {
    let (btf_load, btf) = probe_btf();
    let mut f = Features {
        btf_load,
        btf,
        ..Default::default()
    };
    for (name, t, eat) in PROGRAM_TYPES {
        f.program_types.insert(name, probe_program_type(*t, *eat));
    }
    for i in 1..=33u32 {
        let t = MapType(i);
        if t != MapType::STRUCT_OPS {
            f.map_types.insert(t.name(), probe_map_type(t));
        }
    }
    const HELPERS: &[(&str, i32, ProgramType, &str)] = &[
        (
            "map_lookup_elem",
            1,
            ProgramType::SOCKET_FILTER,
            "socket_filter",
        ),
        (
            "ktime_get_ns",
            5,
            ProgramType::SOCKET_FILTER,
            "socket_filter",
        ),
        ("perf_event_output", 25, ProgramType::SCHED_CLS, "sched_cls"),
        ("redirect_map", 51, ProgramType::XDP, "xdp"),
        ("probe_read_kernel", 113, ProgramType::KPROBE, "kprobe"),
        (
            "ringbuf_output",
            130,
            ProgramType::SOCKET_FILTER,
            "socket_filter",
        ),
        ("get_current_task_btf", 158, ProgramType::KPROBE, "kprobe"),
        (
            "for_each_map_elem",
            164,
            ProgramType::SOCKET_FILTER,
            "socket_filter",
        ),
        ("get_attach_cookie", 174, ProgramType::KPROBE, "kprobe"),
        ("loop", 181, ProgramType::SOCKET_FILTER, "socket_filter"),
    ];
    for (name, id, t, tname) in HELPERS {
        f.helpers
            .insert(format!("{name}@{tname}"), probe_helper(*t, *id));
    }
    f.ringbuf = f.map_types.get("ringbuf").copied().unwrap_or(false);
    f.mmapable_arrays = mmapable_arrays();
    f.batch_ops = probe_batch();
    f.bpf_cookie = f
        .helpers
        .get("get_attach_cookie@kprobe")
        .copied()
        .unwrap_or(false);
    f.bpf_link = probe_link_create();
    f.tcx = probe_tcx();
    f.prog_bind_map = probe_bind_map();
    f.link_kinds.insert("tcx", f.tcx);
    f.link_kinds
        .insert("raw_tracepoint", probe_raw_tracepoint_open());
    // Both reach the target lookup only when the kernel has the link kind:
    // a bad target fd then answers EBADF; kernels without it answer EINVAL first.
    f.link_kinds.insert(
        "cgroup",
        f.bpf_link && probe_link_kind(ProgramType::CGROUP_SKB, AttachType::CGROUP_INET_INGRESS),
    );
    f.link_kinds.insert(
        "perf_event",
        f.bpf_link && probe_link_kind(ProgramType::KPROBE, AttachType::PERF_EVENT),
    );
    // Flow dissector links target a netns fd, sockmap links a map fd: the
    // same bad-fd test as above (5.8 and 6.10).
    f.link_kinds.insert(
        "netns",
        f.bpf_link && probe_link_kind(ProgramType::FLOW_DISSECTOR, AttachType::FLOW_DISSECTOR),
    );
    f.link_kinds.insert(
        "sockmap",
        f.bpf_link && probe_link_kind(ProgramType::SK_SKB, AttachType::SK_SKB_STREAM_VERDICT),
    );
    // netkit links (6.7, CONFIG_NETKIT) look the device up first: ENODEV for
    // a missing one; EINVAL where the kernel or the driver lacks them.
    f.link_kinds.insert(
        "netkit",
        f.bpf_link
            && probe_link_errno(
                ProgramType::SCHED_CLS,
                AttachType::NETKIT_PRIMARY,
                libc::ENODEV,
            ),
    );
    // XDP and netfilter links answer EINVAL both for a bad target and for an
    // unknown link kind, and kprobe.multi needs fprobe besides the link kind:
    // these attach for real, where it harms nothing.
    f.link_kinds.insert("xdp", f.bpf_link && probe_xdp_link());
    f.link_kinds
        .insert("netfilter", f.bpf_link && probe_netfilter_link());
    f.link_kinds
        .insert("kprobe_multi", f.bpf_link && probe_kprobe_multi_link());
    f
}

/// Runs `f` on a new thread moved into a new, empty network namespace, so a
/// probe's attachment touches no real interface or hook; the namespace goes
/// away with the thread. `None` when the namespace cannot be made.
pub fn in_private_netns<T: Send>(f: impl FnOnce() -> T + Send) -> Option<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare(2) with a constant flag; it changes only this
            // (fresh, short-lived) thread's network namespace.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return None;
            }
            Some(f())
        })
        .join()
        .ok()
        .flatten()
    })
}

/// An XDP link (5.9) on the loopback device of a private netns (generic mode).
fn probe_xdp_link() -> bool {
    const SKB_MODE: u32 = 1 << 1;
    let Some(prog) = load_ret0(ProgramType::XDP, None) else {
        return false;
    };
    in_private_netns(|| {
        link_create(LinkCreateAttr {
            prog_fd: prog.as_raw_fd() as u32,
            target: 1, // lo, the only device of a new netns
            attach_type: AttachType::XDP.0,
            flags: SKB_MODE,
            ..Default::default()
        })
        .is_ok()
    })
    .unwrap_or(false)
}

/// A netfilter link (6.4) at IPv4 LOCAL_OUT of a private netns.
fn probe_netfilter_link() -> bool {
    use crate::links::netfilter::{NetfilterFlags, NfHook, NfProto, attach_netfilter};
    let Some(prog) = load_ret0(ProgramType::NETFILTER, Some(AttachType::NETFILTER)) else {
        return false;
    };
    in_private_netns(|| {
        attach_netfilter(
            prog.as_fd(),
            NfProto::Ipv4,
            NfHook::LocalOut,
            1,
            NetfilterFlags::empty(),
        )
        .is_ok()
    })
    .unwrap_or(false)
}

/// A function fprobe can attach to on every kernel with BPF and networking:
/// BPF_PROG_TEST_RUN's own tracing target, called by nothing else.
pub const KPROBE_MULTI_PROBE_TARGET: &str = "bpf_fentry_test1";

/// A kprobe.multi link (5.18, needs fprobe) on [`KPROBE_MULTI_PROBE_TARGET`].
fn probe_kprobe_multi_link() -> bool {
    let Some(prog) = load_ret0(ProgramType::KPROBE, Some(AttachType::TRACE_KPROBE_MULTI)) else {
        return false;
    };
    crate::links::multi::attach_kprobe_multi(
        prog.as_fd(),
        &[KPROBE_MULTI_PROBE_TARGET],
        false,
        None,
    )
    .is_ok()
}

fn probe_batch() -> bool {
    let Ok(fd) = map_create(MapCreateAttr {
        map_type: MapType::HASH.0,
        key_size: 4,
        value_size: 4,
        max_entries: 1,
        ..Default::default()
    }) else {
        return false;
    };
    let map = match crate::maps::Map::from_fd(fd, Some("probe")) {
        Ok(m) => m,
        Err(_) => return false,
    };
    let (mut keys, mut values, mut out) = ([0u8; 4], [0u8; 4], [0u8; 4]);
    // An empty map answers ENOENT when batches exist, EINVAL when the command is unknown.
    map.lookup_batch_bytes(false, None, &mut out, &mut keys, &mut values, 1)
        .is_ok()
}

fn probe_link_create() -> bool {
    crate::sys::link_attr::link_create_known()
}

/// LINK_CREATE of a real program of type `t` at a bad target fd.
fn probe_link_kind(t: ProgramType, attach: AttachType) -> bool {
    probe_link_errno(t, attach, libc::EBADF)
}

/// LINK_CREATE of a real program of type `t` at target `u32::MAX`: the link
/// kind exists when the kernel gets as far as looking the target up and
/// answers `errno` (a bad fd, no such device).
fn probe_link_errno(t: ProgramType, attach: AttachType, errno: i32) -> bool {
    let Some(prog) = load_ret0(t, Some(attach)) else {
        return false;
    };
    match link_create(LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target: u32::MAX,
        attach_type: attach.0,
        ..Default::default()
    }) {
        Ok(_) => true,
        Err(e) => e.errno() == errno,
    }
}

/// BPF_RAW_TRACEPOINT_OPEN exists (raw_tp links).
fn probe_raw_tracepoint_open() -> bool {
    crate::sys::link_attr::raw_tracepoint_open_known()
}

fn load_ret0(t: ProgramType, eat: Option<AttachType>) -> Option<std::os::fd::OwnedFd> {
    prog_load(ProgLoad {
        prog_type: t.0,
        insns: &RET0,
        license: Some(c"GPL"),
        expected_attach_type: eat.map(|a| a.0),
        ..Default::default()
    })
    .ok()
}

/// Attaches a pass-through tc program with a tcx link to the loopback device
/// of a private netns (never the host's: a probe touches nothing real) and
/// closes it at once (the link's fd is the only reference).
fn probe_tcx() -> bool {
    let Some(prog) = load_ret0(ProgramType::SCHED_CLS, Some(AttachType::TCX_INGRESS)) else {
        return false;
    };
    in_private_netns(|| {
        link_create(LinkCreateAttr {
            prog_fd: prog.as_raw_fd() as u32,
            target: 1, // lo, the only device of a new netns
            attach_type: AttachType::TCX_INGRESS.0,
            ..Default::default()
        })
        .is_ok()
    })
    .unwrap_or(false)
}

fn probe_bind_map() -> bool {
    let Some(prog) = load_ret0(ProgramType::SOCKET_FILTER, None) else {
        return false;
    };
    let Ok(map) = map_create(MapCreateAttr {
        map_type: MapType::ARRAY.0,
        key_size: 4,
        value_size: 4,
        max_entries: 1,
        ..Default::default()
    }) else {
        return false;
    };
    crate::sys::prog::bind_map(prog.as_fd(), map.as_fd()).is_ok()
}
