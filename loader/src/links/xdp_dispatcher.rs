//! Several XDP programs on one interface through the libxdp dispatcher
//! protocol, so Kiln and `xdp-loader` (or any libxdp user) share an interface.
//!
//! The interface runs a *dispatcher*: an XDP program named `xdp_dispatcher`
//! whose global functions `prog0` .. `prog9` are stubs, each replaced by a
//! component program loaded as `freplace` (`BPF_PROG_TYPE_EXT`). Its
//! read-only, frozen `.rodata` map holds `struct xdp_dispatcher_config`
//! (magic 236, version 2, the number of enabled slots, frags, and per slot
//! the chain-call actions bitmap, the run priority and the program flags).
//! The dispatcher calls the enabled slots in order; a slot's return value
//! continues the chain when its bit is set in the slot's chain-call actions
//! (bit 31 always is: an unreplaced stub returns 31), otherwise it is the
//! verdict. Components are sorted by run priority (lower first), then name.
//!
//! State lives in bpffs (`$LIBXDP_BPFFS` or `/sys/fs/bpf`):
//! `xdp/dispatch-<ifindex>-<dispatcher prog id>/prog<N>-{prog,link}` pin each
//! slot's program and freplace link, so the attachment outlives the process.
//! Every change takes `flock(LOCK_EX)` on the `xdp` directory, builds a new
//! dispatcher with the new set of components, links every component to it,
//! pins it, swaps it in atomically over netlink (`XDP_FLAGS_REPLACE` with the
//! old dispatcher as expected program), then unpins the old one.
//!
//! The dispatcher is generated here (instructions and BTF), not read from a
//! compiled object: a library cannot rely on a build output at run time.
//!
//! Minimum kernel version: 5.10 (freplace links to a second target, which
//! rebuilding needs); 5.18 for a dispatcher with frags (`BPF_F_XDP_HAS_FRAGS`,
//! used when every component is an `xdp.frags` program).

use super::freplace::{DeferredTarget, attach_freplace, load_deferred};
use super::xdp::{self, XdpFlags};
use super::{FdLink, Link, LinkError, Mechanism};
use crate::maps::{Map, UpdateFlags};
use crate::programs::{LoadOptions, ProgramBtf};
use crate::{Ebpf, Program};
use kiln_obj::btf::strings::StringTable;
use kiln_obj::btf::write::encode;
use kiln_obj::btf::{Kind, Member, Param, Type, VarSecInfo};
use kiln_obj::{Insn, MapOrigin, MapSpec, MapType, ObjectSpec, Pinning, ProgramKind};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const M: Mechanism = Mechanism::Xdp;

/// Slots in a dispatcher (`MAX_DISPATCHER_ACTIONS`).
pub const MAX_PROGRAMS: usize = 10;
/// Run priority of a component that declares none.
pub const DEFAULT_PRIORITY: u32 = 50;
/// `XDP_ABORTED`: the program failed; the packet is dropped (and traced).
pub const XDP_ABORTED: u32 = 0;
/// `XDP_DROP`: the packet is dropped.
pub const XDP_DROP: u32 = 1;
/// `XDP_PASS`: the packet goes on to the stack.
pub const XDP_PASS: u32 = 2;
/// `XDP_TX`: the packet goes back out of its interface.
pub const XDP_TX: u32 = 3;
/// `XDP_REDIRECT`: the packet goes where `bpf_redirect*` said.
pub const XDP_REDIRECT: u32 = 4;
const ACTION_NAMES: [&str; 5] = [
    "XDP_ABORTED",
    "XDP_DROP",
    "XDP_PASS",
    "XDP_TX",
    "XDP_REDIRECT",
];

const MAGIC: u8 = 236;
const VERSION: u8 = 2;
/// What an unreplaced stub returns; always a chain-call action.
const STUB_RETVAL: u32 = 31;
const BPF_F_RDONLY_PROG: u32 = 1 << 7;
/// `BPF_F_XDP_HAS_FRAGS`, as the config's `program_flags` record it.
const XDP_HAS_FRAGS: u32 = 1 << 5;
const CONFIG_SIZE: usize = 4 + 3 * 4 * MAX_PROGRAMS;
const DISPATCHER_NAME: &str = "xdp_dispatcher";
const BPF_FUNC_XDP_ADJUST_TAIL: i32 = 65;
const FUNC_GLOBAL: u16 = 1;

/// A component's place in the chain: run priority (lower runs first) and the
/// actions after which the next program runs (bit `1 << action`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RunConfig {
    /// Run priority: lower runs first.
    pub priority: u32,
    /// Bit `1 << action` set: the next program runs after this action (default: `XDP_PASS` only).
    pub chain_call_actions: u32,
}

impl Default for RunConfig {
    /// Priority 50, chain on `XDP_PASS`.
    fn default() -> Self {
        RunConfig {
            priority: DEFAULT_PRIORITY,
            chain_call_actions: 1 << XDP_PASS,
        }
    }
}

impl RunConfig {
    /// Whether the program after this one runs when this one returns `action`.
    pub fn chains_on(&self, action: u32) -> bool {
        action < 32 && self.chain_call_actions & (1 << action) != 0
    }

    /// The run config object `btf` declares for program `func` in section
    /// `.xdp_run_config` (a variable `_<func>` whose struct members
    /// `priority` and `XDP_<ACTION>` are `int (*)[N]`, as libxdp's
    /// `XDP_RUN_CONFIG` writes them); `None` when it declares none. Actions
    /// it does not name keep their default (only `XDP_PASS` chains).
    pub fn from_btf(btf: &kiln_obj::btf::Btf, func: &str) -> Result<Option<RunConfig>, String> {
        let bad = |e: kiln_obj::btf::BtfError| format!(".xdp_run_config: {e}");
        let Some(sec) = btf.id_by_name(".xdp_run_config", Kind::DataSec) else {
            return Ok(None);
        };
        let Type::DataSec { vars, .. } = btf.type_by_id(sec).map_err(bad)? else {
            return Ok(None);
        };
        let want = format!("_{func}");
        for v in vars {
            if btf.name_of(v.type_id).map_err(bad)? != want {
                continue;
            }
            let Type::Var { type_id, .. } = btf.type_by_id(v.type_id).map_err(bad)? else {
                return Err(format!("{want} is not a variable"));
            };
            let (_, def) = btf.skip_modifiers(type_id).map_err(bad)?;
            let Some((members, _)) = def.members() else {
                return Err(format!("{want} is not a struct"));
            };
            let mut cfg = RunConfig::default();
            for m in members {
                let name = btf.str_at(m.name_off).map_err(bad)?;
                let value = array_len_behind_ptr(btf, m.type_id)
                    .ok_or_else(|| format!("{want}.{name} is not declared as int (*)[N]"))?;
                if name == "priority" {
                    cfg.priority = value;
                } else if let Some(a) = ACTION_NAMES.iter().position(|n| *n == name) {
                    if value != 0 {
                        cfg.chain_call_actions |= 1 << a;
                    } else {
                        cfg.chain_call_actions &= !(1 << a);
                    }
                } else {
                    return Err(format!("{want}: unknown field '{name}'"));
                }
            }
            return Ok(Some(cfg));
        }
        Ok(None)
    }
}

fn array_len_behind_ptr(btf: &kiln_obj::btf::Btf, id: u32) -> Option<u32> {
    let (_, t) = btf.skip_modifiers(id).ok()?;
    let Type::Ptr { target, .. } = t else {
        return None;
    };
    match btf.skip_modifiers(target).ok()?.1 {
        Type::Array { nelems, .. } => Some(nelems),
        _ => None,
    }
}

/// One program in an interface's dispatcher, as [`XdpDispatcher::list`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    /// Its slot (`prog<N>`): the order it runs in.
    pub slot: usize,
    /// Kernel id of the component (the `freplace` program).
    pub prog_id: u32,
    /// Its kernel name (at most 15 bytes).
    pub name: String,
    /// Its priority and chain-call actions.
    pub run: RunConfig,
    /// The program handles multi-buffer packets (`xdp.frags`); the
    /// dispatcher is loaded with frags only when all of its programs do.
    pub frags: bool,
}

/// The `struct xdp_dispatcher_config` value (little- or big-endian as the host).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
struct Config {
    num_progs: u8,
    is_xdp_frags: u8,
    chain_call_actions: [u32; MAX_PROGRAMS],
    run_prios: [u32; MAX_PROGRAMS],
    program_flags: [u32; MAX_PROGRAMS],
}

impl Config {
    fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![MAGIC, VERSION, self.num_progs, self.is_xdp_frags];
        for arr in [
            &self.chain_call_actions,
            &self.run_prios,
            &self.program_flags,
        ] {
            for v in arr {
                b.extend_from_slice(&v.to_ne_bytes());
            }
        }
        b
    }

    fn parse(b: &[u8]) -> Result<Config, String> {
        if b.len() != CONFIG_SIZE {
            return Err(format!(
                "config map value is {} bytes, a version 2 dispatcher has {CONFIG_SIZE}",
                b.len()
            ));
        }
        if b[0] != MAGIC || b[1] != VERSION {
            return Err(format!(
                "not a version {VERSION} dispatcher (magic {}, version {})",
                b[0], b[1]
            ));
        }
        let word = |i: usize| u32::from_ne_bytes(b[4 + 4 * i..8 + 4 * i].try_into().unwrap());
        let mut c = Config {
            num_progs: b[2],
            is_xdp_frags: b[3],
            ..Default::default()
        };
        if c.num_progs as usize > MAX_PROGRAMS {
            return Err(format!(
                "{} programs enabled, at most {MAX_PROGRAMS}",
                c.num_progs
            ));
        }
        for i in 0..MAX_PROGRAMS {
            c.chain_call_actions[i] = word(i);
            c.run_prios[i] = word(MAX_PROGRAMS + i);
            c.program_flags[i] = word(2 * MAX_PROGRAMS + i);
        }
        Ok(c)
    }
}

fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// Index of the first instruction of stub `prog<n>` in [`dispatcher_insns`].
fn stub_start(n: usize) -> usize {
    MAIN_LEN + n * STUB_LEN
}
const BLOCK_LEN: usize = 9;
const MAIN_LEN: usize = 4 + MAX_PROGRAMS * BLOCK_LEN + 2;
const STUB_LEN: usize = 4;

/// The dispatcher: `xdp_dispatcher` (main) then the stubs `prog0` .. `prog9`.
/// `config_map` is the fd of the config map.
fn dispatcher_insns(config_map: i32) -> Vec<Insn> {
    let mut v = vec![
        ins(0xbf, 6, 1, 0, 0),          // r6 = ctx
        ins(0x18, 7, 2, 0, config_map), // r7 = &config (map value)
        ins(0, 0, 0, 0, 0),
        ins(0x71, 8, 7, 2, 0), // r8 = config.num_progs_enabled
    ];
    for n in 0..MAX_PROGRAMS {
        let at = v.len();
        let out = MAIN_LEN - 2;
        let call_at = at + 2;
        v.extend([
            // if r8 < n + 1 goto out
            ins(0xa5, 8, 0, (out - at - 1) as i16, n as i32 + 1),
            ins(0xbf, 1, 6, 0, 0), // r1 = ctx
            // call prog<n> (a global function: verified on its own, replaceable)
            ins(0x85, 0, 1, 0, (stub_start(n) - call_at - 1) as i32),
            ins(0x61, 2, 7, (4 + 4 * n) as i16, 0), // r2 = chain_call_actions[n]
            ins(0xb4, 3, 0, 0, 1),                  // w3 = 1
            ins(0x6c, 3, 0, 0, 0),                  // w3 <<= w0
            ins(0x5c, 3, 2, 0, 0),                  // w3 &= w2
            ins(0x55, 3, 0, 1, 0),                  // if r3 != 0 goto next
            ins(0x95, 0, 0, 0, 0),                  // return r0
        ]);
    }
    v.extend([ins(0xb7, 0, 0, 0, XDP_PASS as i32), ins(0x95, 0, 0, 0, 0)]);
    debug_assert_eq!(v.len(), MAIN_LEN);
    for _ in 0..MAX_PROGRAMS {
        // bpf_xdp_adjust_tail(ctx, 0): marks the stub as changing packet
        // data, so replacements that do (6.13+ checks) may take its place.
        v.extend([
            ins(0xb7, 2, 0, 0, 0),
            ins(0x85, 0, 0, 0, BPF_FUNC_XDP_ADJUST_TAIL),
            ins(0xb7, 0, 0, 0, STUB_RETVAL as i32),
            ins(0x95, 0, 0, 0, 0),
        ]);
    }
    v
}

/// BTF type id of `prog<n>` in [`dispatcher_btf`].
fn stub_btf_id(n: usize) -> u32 {
    7 + n as u32
}

/// The dispatcher's BTF: `int f(struct xdp_md *ctx)` for the main function
/// and every stub (what the verifier checks replacements against), and the
/// `xdp_metadata` section declaring `dispatcher_version`.
fn dispatcher_btf() -> Vec<u8> {
    let mut s = StringTable::new(vec![0]);
    let u32_t = 2;
    let member = |s: &mut StringTable, name: &str, i: u32| Member {
        name_off: s.add(name),
        type_id: u32_t,
        offset: 32 * i,
    };
    let mut types = vec![
        Type::Void,
        Type::Int {
            name_off: s.add("int"),
            size: 4,
            encoding: 1,
            bit_offset: 0,
            bits: 32,
        },
        Type::Int {
            name_off: s.add("unsigned int"),
            size: 4,
            encoding: 0,
            bit_offset: 0,
            bits: 32,
        },
    ];
    let fields = [
        "data",
        "data_end",
        "data_meta",
        "ingress_ifindex",
        "rx_queue_index",
        "egress_ifindex",
    ];
    let members = fields
        .iter()
        .zip(0..)
        .map(|(f, i)| member(&mut s, f, i))
        .collect::<Vec<_>>();
    types.push(Type::Struct {
        name_off: s.add("xdp_md"),
        size: 4 * fields.len() as u32,
        kind_flag: false,
        members,
    }); // 3
    types.push(Type::Ptr {
        name_off: 0,
        target: 3,
    }); // 4
    types.push(Type::FuncProto {
        name_off: 0,
        ret: 1,
        params: vec![Param {
            name_off: s.add("ctx"),
            type_id: 4,
        }],
    }); // 5
    types.push(Type::Func {
        name_off: s.add(DISPATCHER_NAME),
        proto: 5,
        linkage: FUNC_GLOBAL,
    }); // 6
    for n in 0..MAX_PROGRAMS {
        types.push(Type::Func {
            name_off: s.add(&format!("prog{n}")),
            proto: 5,
            linkage: FUNC_GLOBAL,
        }); // 7 + n
    }
    let arr = types.len() as u32;
    types.push(Type::Array {
        name_off: 0,
        elem: 1,
        index: 1,
        nelems: u32::from(VERSION),
    });
    types.push(Type::Ptr {
        name_off: 0,
        target: arr,
    });
    types.push(Type::Var {
        name_off: s.add("dispatcher_version"),
        type_id: arr + 1,
        linkage: 1,
    });
    types.push(Type::DataSec {
        name_off: s.add("xdp_metadata"),
        size: 8,
        vars: vec![VarSecInfo {
            type_id: arr + 2,
            offset: 0,
            size: 8,
        }],
    });
    encode(&types, s.as_bytes())
}

fn func_info_bytes() -> Vec<u8> {
    let mut b = Vec::new();
    let mut rec = |insn: usize, id: u32| {
        b.extend_from_slice(&(insn as u32).to_ne_bytes());
        b.extend_from_slice(&id.to_ne_bytes());
    };
    rec(0, 6);
    for n in 0..MAX_PROGRAMS {
        rec(stub_start(n), stub_btf_id(n));
    }
    b
}

/// A loaded dispatcher (not yet attached) with its config map.
struct Dispatcher {
    prog: Program,
    _map: Map,
}

/// Expected attach types a dispatcher is loaded with, in the order tried:
/// the kernel only relinks a component to a dispatcher whose type and
/// expected attach type match those of the one it was loaded for, and libxdp
/// (through libbpf 1.x) loads its dispatchers with `BPF_XDP`, older ones with 0.
const ATTACH_TYPES: [u32; 2] = [kiln_obj::AttachType::XDP.0, 0];

/// Loads a dispatcher for `config`. When every slot's program handles frags,
/// the dispatcher is loaded with `BPF_F_XDP_HAS_FRAGS` (and says so in its
/// config); on kernels without frags (before 5.18) it is loaded without.
fn load_dispatcher(config: &Config, attach_type: u32, what: &str) -> Result<Dispatcher, LinkError> {
    let mut config = config.clone();
    config.is_xdp_frags = u8::from(
        config.num_progs > 0
            && config.program_flags[..config.num_progs as usize]
                .iter()
                .all(|f| f & XDP_HAS_FRAGS != 0),
    );
    if config.is_xdp_frags != 0 {
        if let Ok(d) = load_dispatcher_as(&config, attach_type, what) {
            return Ok(d);
        }
        config.is_xdp_frags = 0;
    }
    load_dispatcher_as(&config, attach_type, what)
}

fn load_dispatcher_as(
    config: &Config,
    attach_type: u32,
    what: &str,
) -> Result<Dispatcher, LinkError> {
    let err = |e: String| LinkError::target(M, what, e);
    let spec = MapSpec {
        name: "xdp_disp.rodata".into(),
        map_type: MapType::ARRAY,
        key_size: 4,
        value_size: CONFIG_SIZE as u32,
        max_entries: 1,
        map_flags: BPF_F_RDONLY_PROG,
        numa_node: None,
        map_extra: 0,
        pinning: Pinning::None,
        origin: MapOrigin::GlobalData {
            section: ".rodata".into(),
        },
        initial_data: None,
        btf_key_type_id: None,
        btf_value_type_id: None,
        inner: None,
        variables: vec![],
    };
    let map = Map::create(&spec, None, None).map_err(|e| err(crate::error_chain(&e)))?;
    map.update_bytes(&0u32.to_ne_bytes(), &config.to_bytes(), UpdateFlags::ANY)
        .map_err(|e| err(crate::error_chain(&e)))?;
    // Frozen read-only: the verifier knows how many slots are enabled and
    // prunes the calls to the others.
    map.freeze().map_err(|e| err(crate::error_chain(&e)))?;
    let btf = crate::Btf::load(&dispatcher_btf()).map_err(|e| err(crate::error_chain(&e)))?;
    let func_info = func_info_bytes();
    let opts = LoadOptions {
        license: "Dual MIT/GPL",
        btf: Some(ProgramBtf {
            fd: btf.fd(),
            func_info: &func_info,
            func_info_rec_size: 8,
            line_info: &[],
            line_info_rec_size: kiln_obj::LINE_INFO_REC_SIZE,
        }),
        expected_attach_type: Some(attach_type),
        flags: if config.is_xdp_frags != 0 {
            crate::programs::ProgramFlags::XDP_HAS_FRAGS
        } else {
            crate::programs::ProgramFlags::empty()
        },
        ..Default::default()
    };
    let kind = ProgramKind::Xdp {
        frags: config.is_xdp_frags != 0,
        attach_type: None,
    };
    let prog = Program::load(
        DISPATCHER_NAME,
        kind,
        &dispatcher_insns(map.fd().as_raw_fd()),
        &opts,
    )
    .map_err(|e| {
        err(format!(
            "loading the dispatcher: {}",
            crate::error_chain(&e)
        ))
    })?;
    Ok(Dispatcher { prog, _map: map })
}

/// A program of the current dispatcher, or one to add.
struct Slot {
    prog: Program,
    name: String,
    run: RunConfig,
    flags: u32,
}

/// What is on the interface now.
struct Current {
    dispatcher: Program,
    /// `IFLA_XDP_ATTACHED` mode as flags for the replacement.
    mode: XdpFlags,
    slots: Vec<Slot>,
}

/// The dispatcher of one interface, under a bpffs root.
#[derive(Clone, Debug)]
pub struct XdpDispatcher {
    ifindex: u32,
    bpffs: PathBuf,
    mode: XdpFlags,
}

/// `flock(LOCK_EX)` on `<bpffs>/xdp`, released on drop.
struct Lock {
    _held: File,
}

impl Lock {
    fn take(dir: &Path) -> std::io::Result<Lock> {
        match std::fs::create_dir(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let f = File::open(dir)?;
        // SAFETY: flock(2) on a descriptor we own; released when it closes.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Lock { _held: f })
    }
}

impl XdpDispatcher {
    /// The dispatcher of `ifindex`, with state under `$LIBXDP_BPFFS` (as
    /// libxdp reads it) or `/sys/fs/bpf`.
    pub fn new(ifindex: u32) -> Self {
        let bpffs = std::env::var_os("LIBXDP_BPFFS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/sys/fs/bpf"));
        XdpDispatcher {
            ifindex,
            bpffs,
            mode: XdpFlags::empty(),
        }
    }

    /// Keeps the pins under another bpffs mount.
    pub fn with_bpffs(mut self, root: impl Into<PathBuf>) -> Self {
        self.bpffs = root.into();
        self
    }

    /// The mode a new dispatcher is attached in (`SKB_MODE`, `DRV_MODE`;
    /// empty: native where the driver has it). A rebuilt one keeps the mode
    /// of the one it replaces.
    pub fn with_mode(mut self, mode: XdpFlags) -> Self {
        self.mode = mode;
        self
    }

    fn what(&self) -> String {
        format!("interface index {}", self.ifindex)
    }

    fn state_dir(&self) -> PathBuf {
        self.bpffs.join("xdp")
    }

    fn pin_dir(&self, dispatcher_id: u32) -> PathBuf {
        self.state_dir()
            .join(format!("dispatch-{}-{dispatcher_id}", self.ifindex))
    }

    fn lock(&self) -> Result<Lock, LinkError> {
        let dir = self.state_dir();
        Lock::take(&dir).map_err(|e| {
            LinkError::kernel(M, "lock", format!("{} ({})", self.what(), dir.display()), e)
        })
    }

    /// Reads the dispatcher on the interface; `None` when it has no XDP program.
    fn current(&self) -> Result<Option<Current>, LinkError> {
        let what = self.what();
        let Some((id, mode)) = xdp::query_xdp(self.ifindex)? else {
            return Ok(None);
        };
        let not_ours = |reason: String| {
            LinkError::target(
                M,
                &what,
                format!("XDP program id {id} is attached but {reason}; detach it first"),
            )
        };
        let dispatcher = Program::from_id(id).map_err(|e| not_ours(crate::error_chain(&e)))?;
        let info = dispatcher
            .info()
            .map_err(|e| not_ours(crate::error_chain(&e)))?;
        if info.name != DISPATCHER_NAME || info.map_ids.len() != 1 {
            return Err(not_ours(format!(
                "it is '{}', not an XDP dispatcher",
                info.name
            )));
        }
        let map = Map::from_id(info.map_ids[0]).map_err(|e| not_ours(crate::error_chain(&e)))?;
        let minfo = map.info().map_err(|e| not_ours(crate::error_chain(&e)))?;
        if minfo.key_size != 4
            || minfo.max_entries != 1
            || minfo.flags.bits() & BPF_F_RDONLY_PROG == 0
        {
            return Err(not_ours("its map is not a dispatcher config".into()));
        }
        let value = map
            .lookup_bytes(&0u32.to_ne_bytes(), Default::default())
            .map_err(|e| not_ours(crate::error_chain(&e)))?
            .unwrap_or_default();
        let config = Config::parse(&value).map_err(not_ours)?;
        let dir = self.pin_dir(id);
        let mut slots = Vec::new();
        for n in 0..config.num_progs as usize {
            let path = dir.join(format!("prog{n}-prog"));
            let prog = Program::from_pin(&path, None).map_err(|e| {
                not_ours(format!(
                    "its slot {n} has no readable pin {}: {}",
                    path.display(),
                    crate::error_chain(&e)
                ))
            })?;
            slots.push(Slot {
                name: prog.name().to_owned(),
                prog,
                run: RunConfig {
                    priority: config.run_prios[n],
                    chain_call_actions: config.chain_call_actions[n] & !(1 << STUB_RETVAL),
                },
                flags: config.program_flags[n],
            });
        }
        let mode = match mode {
            2 => XdpFlags::SKB_MODE,
            3 => XdpFlags::HW_MODE,
            _ => XdpFlags::DRV_MODE,
        };
        Ok(Some(Current {
            dispatcher,
            mode,
            slots,
        }))
    }

    /// The programs on the interface's dispatcher in run order; empty when
    /// the interface has no XDP program. Fails when it has one that is not a
    /// dispatcher.
    pub fn list(&self) -> Result<Vec<Component>, LinkError> {
        let _lock = self.lock()?;
        Ok(self
            .current()?
            .map(|c| c.slots)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(slot, s)| Component {
                slot,
                prog_id: s.prog.id(),
                name: s.name,
                run: s.run,
                frags: s.flags & XDP_HAS_FRAGS != 0,
            })
            .collect())
    }

    /// Adds program `name` of `spec` (maps from `ebpf`, loaded from the same
    /// spec) to the interface's dispatcher, creating one if the interface
    /// has no XDP program. `run` overrides the object's `.xdp_run_config`
    /// (default: priority 50, chain on `XDP_PASS`). Returns the component's
    /// program id (what [`XdpDispatcher::detach`] takes).
    pub fn attach(
        &self,
        spec: &ObjectSpec,
        ebpf: &Ebpf,
        name: &str,
        run: Option<RunConfig>,
    ) -> Result<u32, LinkError> {
        let what = format!("program '{name}' on {}", self.what());
        let pspec = spec
            .program(name)
            .ok_or_else(|| LinkError::target(M, &what, "no such program in the object"))?;
        if !matches!(pspec.kind, ProgramKind::Xdp { .. }) {
            return Err(LinkError::target(M, &what, "not an XDP program"));
        }
        let run = match run {
            Some(r) => r,
            None => match &spec.btf {
                Some(b) => {
                    let btf = kiln_obj::btf::Btf::parse(b)
                        .map_err(|e| LinkError::target(M, &what, e.to_string()))?;
                    RunConfig::from_btf(&btf, name)
                        .map_err(|e| LinkError::target(M, &what, e))?
                        .unwrap_or_default()
                }
                None => RunConfig::default(),
            },
        };
        let _lock = self.lock()?;
        let current = self.current()?;
        // (kernel name, run config, program flags, slot in the current dispatcher)
        let mut order: Vec<(String, RunConfig, u32, Option<usize>)> = current
            .iter()
            .flat_map(|c| c.slots.iter().enumerate())
            .map(|(i, s)| (s.name.clone(), s.run, s.flags, Some(i)))
            .collect();
        if order.len() >= MAX_PROGRAMS {
            return Err(LinkError::target(
                M,
                &what,
                format!("the dispatcher already runs {MAX_PROGRAMS} programs"),
            ));
        }
        // The name it will have in the kernel, which later rebuilds sort by.
        let kname: String = name.chars().take(15).collect();
        let frags = matches!(pspec.kind, ProgramKind::Xdp { frags: true, .. });
        order.push((kname, run, if frags { XDP_HAS_FRAGS } else { 0 }, None));
        // Stable: existing programs stay ahead of a new one with the same key.
        order.sort_by(|a, b| (a.1.priority, &a.0).cmp(&(b.1.priority, &b.0)));
        let new_slot = order.iter().position(|o| o.3.is_none()).unwrap();

        let config = config_for(order.iter().map(|o| (o.1, o.2)));
        for (i, &attach_type) in ATTACH_TYPES.iter().enumerate() {
            let new = load_dispatcher(&config, attach_type, &what)?;
            let ext = load_deferred(
                spec,
                ebpf,
                name,
                M,
                &what,
                DeferredTarget {
                    attach_prog_fd: Some(new.prog.fd()),
                    attach_btf_obj_fd: None,
                    attach_btf_id: stub_btf_id(new_slot),
                    expected_attach_type: None,
                    program_kind: Some(ProgramKind::Extension {
                        target: Some(format!("prog{new_slot}")),
                    }),
                },
            )?;
            let progs: Vec<&Program> = order
                .iter()
                .map(|o| match (o.3, &current) {
                    (Some(i), Some(c)) => &c.slots[i].prog,
                    _ => &ext,
                })
                .collect();
            match link_all(&new, &progs, &what) {
                Err(e) if i + 1 < ATTACH_TYPES.len() && e.errno() == Some(libc::EINVAL) => {
                    continue;
                }
                Err(e) => return Err(e),
                Ok(links) => {
                    self.install(current.as_ref(), &new, &progs, links, &what)?;
                    return Ok(ext.id());
                }
            }
        }
        unreachable!("the last attach type returns")
    }

    /// Removes component `prog_id` from the interface's dispatcher: the
    /// others keep running in a rebuilt dispatcher; the last one takes the
    /// dispatcher (and its pins) away.
    pub fn detach(&self, prog_id: u32) -> Result<(), LinkError> {
        let what = format!("program id {prog_id} on {}", self.what());
        let _lock = self.lock()?;
        let current = self
            .current()?
            .ok_or_else(|| LinkError::target(M, &what, "the interface has no XDP program"))?;
        let Some(gone) = current.slots.iter().position(|s| s.prog.id() == prog_id) else {
            return Err(LinkError::target(
                M,
                &what,
                "not a program of the interface's dispatcher",
            ));
        };
        if current.slots.len() == 1 {
            xdp::replace_xdp_netlink(
                None,
                self.ifindex,
                current.mode,
                Some(current.dispatcher.fd()),
            )
            .map_err(|e| LinkError::kernel(M, "detach (netlink)", &what, e))?;
            return self.unpin(current.dispatcher.id(), 1, &what);
        }
        let keep: Vec<&Slot> = current
            .slots
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != gone)
            .map(|(_, s)| s)
            .collect();
        let config = config_for(keep.iter().map(|s| (s.run, s.flags)));
        let progs: Vec<&Program> = keep.iter().map(|s| &s.prog).collect();
        for (i, &attach_type) in ATTACH_TYPES.iter().enumerate() {
            let new = load_dispatcher(&config, attach_type, &what)?;
            match link_all(&new, &progs, &what) {
                Err(e) if i + 1 < ATTACH_TYPES.len() && e.errno() == Some(libc::EINVAL) => {}
                Err(e) => return Err(e),
                Ok(links) => return self.install(Some(&current), &new, &progs, links, &what),
            }
        }
        unreachable!("the last attach type returns")
    }

    /// Pins `progs` and their `links` into `new`, swaps `new` in for `old`
    /// (or attaches it), then unpins `old`.
    fn install(
        &self,
        old: Option<&Current>,
        new: &Dispatcher,
        progs: &[&Program],
        mut links: Vec<FdLink>,
        what: &str,
    ) -> Result<(), LinkError> {
        let dir = self.pin_dir(new.prog.id());
        let pinned = self.pin_all(&dir, progs, &mut links, what);
        let attached = pinned.and_then(|()| {
            let (mode, expected) = match old {
                Some(c) => (c.mode, Some(c.dispatcher.fd())),
                None => (self.mode | XdpFlags::UPDATE_IF_NOEXIST, None),
            };
            xdp::replace_xdp_netlink(Some(new.prog.fd()), self.ifindex, mode, expected)
                .map_err(|e| LinkError::kernel(M, "attach dispatcher (netlink)", what, e))
        });
        if let Err(e) = attached {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        match old {
            Some(c) => self.unpin(c.dispatcher.id(), c.slots.len(), what),
            None => Ok(()),
        }
    }

    fn pin_all(
        &self,
        dir: &Path,
        progs: &[&Program],
        links: &mut [FdLink],
        what: &str,
    ) -> Result<(), LinkError> {
        let io = |op, e| LinkError::kernel(M, op, format!("{what} ({})", dir.display()), e);
        std::fs::create_dir(dir).map_err(|e| io("create pin directory", e))?;
        for (n, (p, l)) in progs.iter().zip(links.iter_mut()).enumerate() {
            l.pin(&dir.join(format!("prog{n}-link")))?;
            p.pin(&dir.join(format!("prog{n}-prog")))
                .map_err(|e| LinkError::target(M, what, crate::error_chain(&e)))?;
        }
        Ok(())
    }

    fn unpin(&self, dispatcher_id: u32, slots: usize, what: &str) -> Result<(), LinkError> {
        let dir = self.pin_dir(dispatcher_id);
        let io = |e| LinkError::kernel(M, "unpin", format!("{what} ({})", dir.display()), e);
        for n in 0..slots {
            for kind in ["link", "prog"] {
                match std::fs::remove_file(dir.join(format!("prog{n}-{kind}"))) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                    _ => {}
                }
            }
        }
        std::fs::remove_dir(&dir).map_err(io)
    }
}

/// Links `progs` into `new`'s slots, in order.
fn link_all(new: &Dispatcher, progs: &[&Program], what: &str) -> Result<Vec<FdLink>, LinkError> {
    let mut links = Vec::with_capacity(progs.len());
    for (n, p) in progs.iter().enumerate() {
        let link = attach_freplace(p.fd(), new.prog.fd(), stub_btf_id(n)).map_err(|e| match e {
            LinkError::Kernel { source, .. } => LinkError::kernel(
                M,
                "link into the dispatcher",
                format!("{what}: '{}' in slot {n}", p.name()),
                source,
            ),
            e => e,
        })?;
        links.push(link);
    }
    Ok(links)
}

/// The config of a dispatcher running `slots` (run config, program flags) in order.
fn config_for(slots: impl Iterator<Item = (RunConfig, u32)>) -> Config {
    let mut c = Config::default();
    for (n, (run, flags)) in slots.enumerate() {
        c.chain_call_actions[n] = run.chain_call_actions | (1 << STUB_RETVAL);
        c.run_prios[n] = run.priority;
        c.program_flags[n] = flags;
        c.num_progs += 1;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_in_libxdp_layout() {
        let c = config_for(
            [
                (RunConfig::default(), 0),
                (
                    RunConfig {
                        priority: 10,
                        chain_call_actions: 1 << XDP_DROP,
                    },
                    32,
                ),
            ]
            .into_iter(),
        );
        let b = c.to_bytes();
        assert_eq!(b.len(), 124);
        assert_eq!(&b[..4], &[236, 2, 2, 0]);
        // chain_call_actions[0] = XDP_PASS | stub return value
        assert_eq!(
            u32::from_ne_bytes(b[4..8].try_into().unwrap()),
            (1 << 2) | (1 << 31)
        );
        // run_prios[1] at 4 + 40 + 4
        assert_eq!(u32::from_ne_bytes(b[48..52].try_into().unwrap()), 10);
        // program_flags[1]
        assert_eq!(u32::from_ne_bytes(b[88..92].try_into().unwrap()), 32);
        assert_eq!(Config::parse(&b).unwrap(), c);
        let mut v1 = b.clone();
        v1[1] = 1;
        assert!(Config::parse(&v1).is_err());
    }

    #[test]
    fn calls_land_on_the_stubs() {
        let insns = dispatcher_insns(3);
        assert_eq!(insns.len(), MAIN_LEN + MAX_PROGRAMS * STUB_LEN);
        let calls: Vec<usize> = insns
            .iter()
            .enumerate()
            .filter(|(_, i)| i.code == 0x85 && i.src_reg() == 1 && i.dst_reg() == 0)
            .map(|(at, i)| (at as i64 + 1 + i64::from(i.imm)) as usize)
            .collect();
        assert_eq!(calls, (0..MAX_PROGRAMS).map(stub_start).collect::<Vec<_>>());
        // Every "enabled?" test jumps to `r0 = XDP_PASS`.
        for (at, i) in insns.iter().enumerate().filter(|(_, i)| i.code == 0xa5) {
            assert_eq!(at as i64 + 1 + i64::from(i.off), MAIN_LEN as i64 - 2);
        }
    }

    #[test]
    fn btf_names_the_stubs_at_their_ids() {
        let btf = kiln_obj::btf::Btf::parse(&dispatcher_btf()).unwrap();
        for n in 0..MAX_PROGRAMS {
            assert_eq!(
                btf.id_by_name(&format!("prog{n}"), Kind::Func),
                Some(stub_btf_id(n))
            );
        }
        assert_eq!(btf.id_by_name(DISPATCHER_NAME, Kind::Func), Some(6));
        assert!(btf.id_by_name("xdp_metadata", Kind::DataSec).is_some());
    }
}
