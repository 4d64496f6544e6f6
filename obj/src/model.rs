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
    pub const UNSPEC: Self = Self(0);
    pub const HASH: Self = Self(1);
    pub const ARRAY: Self = Self(2);
    pub const PROG_ARRAY: Self = Self(3);
    pub const PERF_EVENT_ARRAY: Self = Self(4);
    pub const PERCPU_HASH: Self = Self(5);
    pub const PERCPU_ARRAY: Self = Self(6);
    pub const STACK_TRACE: Self = Self(7);
    pub const CGROUP_ARRAY: Self = Self(8);
    pub const LRU_HASH: Self = Self(9);
    pub const LRU_PERCPU_HASH: Self = Self(10);
    pub const LPM_TRIE: Self = Self(11);
    pub const ARRAY_OF_MAPS: Self = Self(12);
    pub const HASH_OF_MAPS: Self = Self(13);
    pub const DEVMAP: Self = Self(14);
    pub const SOCKMAP: Self = Self(15);
    pub const CPUMAP: Self = Self(16);
    pub const XSKMAP: Self = Self(17);
    pub const SOCKHASH: Self = Self(18);
    pub const CGROUP_STORAGE: Self = Self(19);
    pub const REUSEPORT_SOCKARRAY: Self = Self(20);
    pub const PERCPU_CGROUP_STORAGE: Self = Self(21);
    pub const QUEUE: Self = Self(22);
    pub const STACK: Self = Self(23);
    pub const SK_STORAGE: Self = Self(24);
    pub const DEVMAP_HASH: Self = Self(25);
    pub const STRUCT_OPS: Self = Self(26);
    pub const RINGBUF: Self = Self(27);
    pub const INODE_STORAGE: Self = Self(28);
    pub const TASK_STORAGE: Self = Self(29);
    pub const BLOOM_FILTER: Self = Self(30);
    pub const USER_RINGBUF: Self = Self(31);
    pub const CGRP_STORAGE: Self = Self(32);
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
    pub fn from_name(name: &str) -> Option<Self> {
        (0..34u32).map(Self).find(|t| t.name() == name)
    }
}

/// A kernel `enum bpf_prog_type` value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ProgramType(pub u32);

impl ProgramType {
    pub const UNSPEC: Self = Self(0);
    pub const SOCKET_FILTER: Self = Self(1);
    pub const KPROBE: Self = Self(2);
    pub const SCHED_CLS: Self = Self(3);
    pub const SCHED_ACT: Self = Self(4);
    pub const TRACEPOINT: Self = Self(5);
    pub const XDP: Self = Self(6);
    pub const PERF_EVENT: Self = Self(7);
    pub const CGROUP_SKB: Self = Self(8);
    pub const CGROUP_SOCK: Self = Self(9);
    pub const LWT_IN: Self = Self(10);
    pub const LWT_OUT: Self = Self(11);
    pub const LWT_XMIT: Self = Self(12);
    pub const SOCK_OPS: Self = Self(13);
    pub const SK_SKB: Self = Self(14);
    pub const CGROUP_DEVICE: Self = Self(15);
    pub const SK_MSG: Self = Self(16);
    pub const RAW_TRACEPOINT: Self = Self(17);
    pub const CGROUP_SOCK_ADDR: Self = Self(18);
    pub const LWT_SEG6LOCAL: Self = Self(19);
    pub const LIRC_MODE2: Self = Self(20);
    pub const SK_REUSEPORT: Self = Self(21);
    pub const FLOW_DISSECTOR: Self = Self(22);
    pub const CGROUP_SYSCTL: Self = Self(23);
    pub const RAW_TRACEPOINT_WRITABLE: Self = Self(24);
    pub const CGROUP_SOCKOPT: Self = Self(25);
    pub const TRACING: Self = Self(26);
    pub const STRUCT_OPS: Self = Self(27);
    pub const EXT: Self = Self(28);
    pub const LSM: Self = Self(29);
    pub const SK_LOOKUP: Self = Self(30);
    pub const SYSCALL: Self = Self(31);
    pub const NETFILTER: Self = Self(32);
}

/// A kernel `enum bpf_attach_type` value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct AttachType(pub u32);

impl AttachType {
    pub const CGROUP_INET_INGRESS: Self = Self(0);
    pub const CGROUP_INET_EGRESS: Self = Self(1);
    pub const CGROUP_INET_SOCK_CREATE: Self = Self(2);
    pub const CGROUP_SOCK_OPS: Self = Self(3);
    pub const SK_SKB_STREAM_PARSER: Self = Self(4);
    pub const SK_SKB_STREAM_VERDICT: Self = Self(5);
    pub const CGROUP_DEVICE: Self = Self(6);
    pub const SK_MSG_VERDICT: Self = Self(7);
    pub const CGROUP_INET4_BIND: Self = Self(8);
    pub const CGROUP_INET6_BIND: Self = Self(9);
    pub const CGROUP_INET4_CONNECT: Self = Self(10);
    pub const CGROUP_INET6_CONNECT: Self = Self(11);
    pub const CGROUP_INET4_POST_BIND: Self = Self(12);
    pub const CGROUP_INET6_POST_BIND: Self = Self(13);
    pub const CGROUP_UDP4_SENDMSG: Self = Self(14);
    pub const CGROUP_UDP6_SENDMSG: Self = Self(15);
    pub const LIRC_MODE2: Self = Self(16);
    pub const FLOW_DISSECTOR: Self = Self(17);
    pub const CGROUP_SYSCTL: Self = Self(18);
    pub const CGROUP_UDP4_RECVMSG: Self = Self(19);
    pub const CGROUP_UDP6_RECVMSG: Self = Self(20);
    pub const CGROUP_GETSOCKOPT: Self = Self(21);
    pub const CGROUP_SETSOCKOPT: Self = Self(22);
    pub const TRACE_RAW_TP: Self = Self(23);
    pub const TRACE_FENTRY: Self = Self(24);
    pub const TRACE_FEXIT: Self = Self(25);
    pub const MODIFY_RETURN: Self = Self(26);
    pub const LSM_MAC: Self = Self(27);
    pub const TRACE_ITER: Self = Self(28);
    pub const CGROUP_INET4_GETPEERNAME: Self = Self(29);
    pub const CGROUP_INET6_GETPEERNAME: Self = Self(30);
    pub const CGROUP_INET4_GETSOCKNAME: Self = Self(31);
    pub const CGROUP_INET6_GETSOCKNAME: Self = Self(32);
    pub const XDP_DEVMAP: Self = Self(33);
    pub const CGROUP_INET_SOCK_RELEASE: Self = Self(34);
    pub const XDP_CPUMAP: Self = Self(35);
    pub const SK_LOOKUP: Self = Self(36);
    pub const XDP: Self = Self(37);
    pub const SK_SKB_VERDICT: Self = Self(38);
    pub const SK_REUSEPORT_SELECT: Self = Self(39);
    pub const SK_REUSEPORT_SELECT_OR_MIGRATE: Self = Self(40);
    pub const PERF_EVENT: Self = Self(41);
    pub const TRACE_KPROBE_MULTI: Self = Self(42);
    pub const LSM_CGROUP: Self = Self(43);
    pub const STRUCT_OPS: Self = Self(44);
    pub const NETFILTER: Self = Self(45);
    pub const TCX_INGRESS: Self = Self(46);
    pub const TCX_EGRESS: Self = Self(47);
    pub const TRACE_UPROBE_MULTI: Self = Self(48);
    pub const CGROUP_UNIX_CONNECT: Self = Self(49);
    pub const CGROUP_UNIX_SENDMSG: Self = Self(50);
    pub const CGROUP_UNIX_RECVMSG: Self = Self(51);
    pub const CGROUP_UNIX_GETPEERNAME: Self = Self(52);
    pub const CGROUP_UNIX_GETSOCKNAME: Self = Self(53);
    pub const NETKIT_PRIMARY: Self = Self(54);
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
    /// loader (see [`ObjectSpec::resolve_kconfig`] and [`ObjectSpec::resolve_ksym`]).
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
    pub fn program(&self, name: &str) -> Option<&ProgramSpec> {
        self.programs.iter().find(|p| p.name == name)
    }
    pub fn program_mut(&mut self, name: &str) -> Option<&mut ProgramSpec> {
        self.programs.iter_mut().find(|p| p.name == name)
    }
    pub fn map(&self, name: &str) -> Option<&MapSpec> {
        self.maps.iter().find(|m| m.name == name)
    }
    pub fn map_mut(&mut self, name: &str) -> Option<&mut MapSpec> {
        self.maps.iter_mut().find(|m| m.name == name)
    }
    pub fn map_index(&self, name: &str) -> Option<usize> {
        self.maps.iter().position(|m| m.name == name)
    }
}

/// How a map is pinned (`LIBBPF_PIN_*`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Pinning {
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
    GlobalData { section: String },
}

/// A map as the object declares it. Edit before load (max_entries, pinning, initial data).
#[derive(Clone, Debug)]
pub struct MapSpec {
    /// The symbol name (BTF/legacy maps) or the section name (`.rodata`...) for global data.
    pub name: String,
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub numa_node: Option<u32>,
    pub map_extra: u64,
    pub pinning: Pinning,
    pub origin: MapOrigin,
    /// Initial bytes of the value at key 0 for global data maps (`.bss`:
    /// zeros); for an arena map, the initial bytes of its `__arena` globals
    /// (`.addr_space.1`), which the loader copies into the arena.
    pub initial_data: Option<Vec<u8>>,
    /// BTF type ids in [`ObjectSpec::btf`], when the object carries them.
    pub btf_key_type_id: Option<u32>,
    pub btf_value_type_id: Option<u32>,
    /// Map-in-map: the inner map's definition.
    pub inner: Option<Box<MapSpec>>,
    /// Variables of a global data section by name: (offset, size, BTF type id).
    pub variables: Vec<GlobalVariable>,
}

/// One variable in a global data section (from its BTF `DATASEC`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalVariable {
    pub name: String,
    pub offset: u32,
    pub size: u32,
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
    pub target: RelocationTarget,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RelocationTarget {
    /// `ld_imm64 rX, map` → `BPF_PSEUDO_MAP_FD` with the map's fd. `map` indexes [`ObjectSpec::maps`].
    Map { map: usize },
    /// `ld_imm64 rX, &global + offset` → `BPF_PSEUDO_MAP_VALUE` with the fd and offset.
    /// For an arena map (`__arena` globals) the offset is into the globals'
    /// bytes; the loader adds where it places them in the arena.
    MapValue { map: usize, offset: u32 },
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
    pub insn_off: u32,
    pub type_id: u32,
}

/// One `bpf_line_info` record (kernel layout). `file_name_off` and `line_off`
/// index the string section of [`ObjectSpec::btf`]; `line_col` is
/// `line << 10 | column`.
///
/// Minimum kernel version: 5.0.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LineInfo {
    pub insn_off: u32,
    pub file_name_off: u32,
    pub line_off: u32,
    pub line_col: u32,
}

impl LineInfo {
    pub fn line(&self) -> u32 {
        self.line_col >> 10
    }
    pub fn column(&self) -> u32 {
        self.line_col & 0x3ff
    }
}

/// `enum bpf_core_relo_kind`: what a CO-RE relocation computes.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum CoreRelocationKind {
    FieldByteOffset = 0,
    FieldByteSize = 1,
    FieldExists = 2,
    FieldSigned = 3,
    FieldLShiftU64 = 4,
    FieldRShiftU64 = 5,
    TypeIdLocal = 6,
    TypeIdTarget = 7,
    TypeExists = 8,
    TypeSize = 9,
    EnumValueExists = 10,
    EnumValue = 11,
    TypeMatches = 12,
}

impl CoreRelocationKind {
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
    pub insn_index: usize,
    /// The local type (in [`ObjectSpec::btf`]) the access starts from.
    pub type_id: u32,
    /// The access string, e.g. `0:1:2` (kept decoded for error messages).
    pub access: String,
    pub kind: CoreRelocationKind,
}

/// An `extern` the loader must resolve.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ExternSpec {
    pub name: String,
    /// `__weak`: unresolved is allowed (value 0 / address 0).
    pub weak: bool,
    pub kind: ExternKind,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ExternKind {
    /// `extern ... __kconfig`: a value in the `.kconfig` map at `offset`.
    Kconfig {
        offset: u32,
        size: u32,
        /// What the value is, to parse `CONFIG_X=...` text correctly.
        value_kind: KconfigValueKind,
    },
    /// `extern ... __ksym` variable: a kernel variable by BTF id, or by
    /// address from kallsyms when `typeless` (`extern const void x __ksym`).
    KsymVar { btf_type_id: u32, typeless: bool },
    /// `extern ... __ksym` function: a kfunc call.
    KsymFunc { btf_type_id: u32 },
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
    Int { signed: bool },
    /// `char[N]`: a string value.
    CharArray,
}

/// An instruction referring to a `.ksyms` extern ([`ObjectSpec::externs`] index).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ExternRelocation {
    pub insn_index: usize,
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
    Ingress,
    Egress,
}

/// What a section name says about a program. The attach target written in
/// the section (`tracepoint/sched/sched_switch`) is kept so callers can
/// auto-attach. `None` targets mean the section gave none (`SEC("kprobe")`).
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum ProgramKind {
    SocketFilter,
    Kprobe {
        function: Option<String>,
        offset: u64,
        retprobe: bool,
    },
    Uprobe {
        target: Option<String>,
        retprobe: bool,
    },
    Tracepoint {
        category: Option<String>,
        name: Option<String>,
    },
    RawTracepoint {
        name: Option<String>,
        writable: bool,
    },
    /// `tp_btf/NAME`, `fentry/FN`, `fexit/FN`, `fmod_ret/FN`, `iter/NAME`: BPF_PROG_TYPE_TRACING.
    Tracing {
        attach_type: AttachType,
        target: Option<String>,
    },
    Lsm {
        hook: Option<String>,
        cgroup: bool,
    },
    Xdp {
        frags: bool,
        attach_type: Option<AttachType>,
    },
    /// `tc`, `classifier`: BPF_PROG_TYPE_SCHED_CLS attached with netlink/clsact.
    SchedCls,
    SchedAct,
    /// `tcx/ingress`, `tcx/egress`.
    Tcx {
        direction: Direction,
    },
    CgroupSkb {
        direction: Option<Direction>,
    },
    /// Every other cgroup hook: the program type and the attach type.
    Cgroup {
        program_type: ProgramType,
        attach_type: AttachType,
    },
    SockOps,
    SkSkb {
        attach_type: Option<AttachType>,
    },
    SkMsg,
    SkLookup,
    FlowDissector,
    PerfEvent,
    LircMode2,
    StructOps {
        name: Option<String>,
    },
    Extension {
        target: Option<String>,
    },
    Syscall,
    Netfilter,
    /// A type Kiln parsed but does not model in detail yet.
    Other {
        program_type: ProgramType,
        attach_type: Option<AttachType>,
    },
}

impl ProgramKind {
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
