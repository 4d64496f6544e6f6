//! Live programs: [`Program`] owns the fd of a loaded program.
//!
//! Attaching lives in `crate::links` (it works from [`Program::fd`] and
//! [`Program::kind`]); this module loads, test-runs, describes and pins.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use kiln_obj::{Insn, ProgramKind, ProgramType};

use crate::sys::SysError;
use crate::sys::attr::{ProgInfo, object_name};
use crate::sys::object::{self as sysobj, IdKind, OpenFlags};
use crate::sys::prog::{self as sysprog, ProgLoad};
use crate::util::c_name;

mod verifier;
pub mod xlated;
pub use crate::sys::link_attr::QueryResult;
pub use crate::sys::prog::{TestRun, TestRunResult};
pub use verifier::{LoadError, VerifierLogLevel, failing_insn};

/// `BPF_F_*` program load flags.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct ProgramFlags(u32);

bitflags::bitflags! {
    impl ProgramFlags: u32 {
        /// `BPF_F_STRICT_ALIGNMENT`: the verifier checks alignment as on strict architectures.
        const STRICT_ALIGNMENT = 1 << 0;
        /// `BPF_F_ANY_ALIGNMENT`: the verifier skips alignment checks (testing).
        const ANY_ALIGNMENT = 1 << 1;
        /// `BPF_F_TEST_RND_HI32`: the verifier randomizes upper halves of 32-bit registers (testing).
        const TEST_RND_HI32 = 1 << 2;
        /// `BPF_F_TEST_STATE_FREQ`: the verifier checkpoints states often (testing).
        const TEST_STATE_FREQ = 1 << 3;
        /// `BPF_F_SLEEPABLE`: the program may sleep (5.10).
        const SLEEPABLE = 1 << 4;
        /// `BPF_F_XDP_HAS_FRAGS`: an XDP program that handles multi-buffer frames (5.18).
        const XDP_HAS_FRAGS = 1 << 5;
        /// `BPF_F_XDP_DEV_BOUND_ONLY`: an XDP program bound to one device (6.3).
        const XDP_DEV_BOUND_ONLY = 1 << 6;
        // Flags newer than this list survive a round trip through the kernel.
        const _ = !0;
    }
}

/// Errors of operations on a loaded program; each names the program.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    /// A bpf(2) call on the program failed.
    #[error("program '{name}': {op} failed")]
    Syscall {
        /// The program's name.
        name: String,
        /// The bpf(2) command (`get info`, `test run`, ...).
        op: &'static str,
        /// The kernel's answer.
        #[source]
        source: SysError,
    },
}

impl From<sysobj::OpenError> for ProgramError {
    fn from(e: sysobj::OpenError) -> Self {
        let sysobj::OpenError { name, op, source } = e;
        ProgramError::Syscall { name, op, source }
    }
}

/// Everything BPF_PROG_LOAD needs beyond the instructions.
#[derive(Clone, Default)]
pub struct LoadOptions<'a> {
    /// The license string (`GPL`, `Dual MIT/GPL`); GPL-only helpers need a GPL-compatible one.
    pub license: &'a str,
    /// `kern_version` for kprobes on kernels before 5.0, which check it.
    pub kern_version: Option<u32>,
    /// `BPF_F_*` load flags.
    pub flags: ProgramFlags,
    /// How much the verifier logs.
    pub log_level: VerifierLogLevel,
    /// Object BTF fd with `bpf_func_info` / `bpf_line_info` records.
    pub btf: Option<ProgramBtf<'a>>,
    /// The BTF id of the attach target (fentry, LSM, tp_btf, freplace, struct_ops).
    pub attach_btf_id: Option<u32>,
    /// The target program of freplace (and fentry on a BPF program).
    pub attach_prog_fd: Option<BorrowedFd<'a>>,
    /// The BTF object of the attach target, when it is in a module (5.11).
    pub attach_btf_obj_fd: Option<BorrowedFd<'a>>,
    /// BPF_PROG_LOAD's `fd_array`: the module BTF fds that kfunc calls
    /// name by index in their `off` (index 0 is vmlinux and never read), as
    /// [`crate::module_btf::object_fd_array`] gives them (5.16).
    pub fd_array: Option<&'a [std::os::fd::RawFd]>,
    /// The device of a device-bound (offloaded or XDP metadata) program; 0 otherwise.
    pub ifindex: u32,
    /// Overrides `kind.expected_attach_type()`.
    pub expected_attach_type: Option<u32>,
    /// `file:line: text` of an instruction index (from the object's line
    /// info), to point a verifier rejection at the source.
    pub source_line: Option<&'a dyn Fn(u32) -> Option<String>>,
    /// First verifier log buffer size in bytes (0: 64 KiB). It grows while the
    /// kernel reports the log truncated (ENOSPC).
    pub initial_log_size: usize,
}

/// BTF extension records for one program (already relocated to its instructions).
#[derive(Clone, Copy, Debug)]
pub struct ProgramBtf<'a> {
    /// The object's BTF, loaded.
    pub fd: BorrowedFd<'a>,
    /// `bpf_func_info` records, back to back.
    pub func_info: &'a [u8],
    /// Size of one func_info record.
    pub func_info_rec_size: u32,
    /// `bpf_line_info` records, back to back.
    pub line_info: &'a [u8],
    /// Size of one line_info record.
    pub line_info_rec_size: u32,
}

/// A loaded program.
///
/// Minimum kernel version: 3.18 (socket filters); each program type has its own.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
    name: String,
    kind: ProgramKind,
    tag: [u8; 8],
    id: u32,
    verifier_log: Option<String>,
}

impl Program {
    /// Loads `insns` (map references already resolved) as a program of `kind`.
    /// On rejection, loads again with the verifier log (see [`LoadError`]).
    pub fn load(
        name: &str,
        kind: ProgramKind,
        insns: &[Insn],
        opts: &LoadOptions<'_>,
    ) -> Result<Program, LoadError> {
        let (fd, verifier_log) = verifier::load_with_log(name, &kind, insns, opts)?;
        let info: ProgInfo =
            sysobj::info_by_fd(fd.as_fd()).map_err(|source| LoadError::Syscall {
                program: name.to_owned(),
                source,
            })?;
        Ok(Program {
            fd,
            name: name.to_owned(),
            kind,
            tag: info.tag,
            id: info.id,
            verifier_log,
        })
    }

    /// The verifier's log of a successful load, when a log level other than
    /// [`VerifierLogLevel::OnFailure`] was asked for.
    pub fn verifier_log(&self) -> Option<&str> {
        self.verifier_log.as_deref()
    }

    /// Wraps a program fd (pinned, by id, or from elsewhere). `kind` is what the
    /// caller knows; the kernel only remembers the type.
    pub fn from_fd(fd: OwnedFd, kind: Option<ProgramKind>) -> Result<Program, ProgramError> {
        let info: ProgInfo =
            sysobj::info_by_fd(fd.as_fd()).map_err(|source| ProgramError::Syscall {
                name: "?".into(),
                op: "get info",
                source,
            })?;
        let kind = kind.unwrap_or(ProgramKind::Other {
            program_type: ProgramType(info.prog_type),
            attach_type: None,
        });
        Ok(Program {
            fd,
            name: c_name(&info.name),
            kind,
            tag: info.tag,
            id: info.id,
            verifier_log: None,
        })
    }

    /// Opens the program pinned at `path`.
    pub fn from_pin(path: &Path, kind: Option<ProgramKind>) -> Result<Program, ProgramError> {
        Program::from_fd(sysobj::open_pinned(path, OpenFlags::ReadWrite)?, kind)
    }

    /// Opens the program with kernel id `id`.
    pub fn from_id(id: u32) -> Result<Program, ProgramError> {
        Program::from_fd(sysobj::open_id(IdKind::Prog, id)?, None)
    }

    /// Pins the program at `path` (on a bpffs).
    pub fn pin(&self, path: &Path) -> Result<(), crate::pin::PinError> {
        crate::pin::pin_fd(self.fd.as_fd(), path, &self.name)
    }

    /// The program's file descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
    /// A second handle on the same kernel program (one program pinned or
    /// attached under two names).
    pub fn try_clone(&self) -> std::io::Result<Program> {
        Ok(Program {
            fd: self.fd.try_clone()?,
            name: self.name.clone(),
            kind: self.kind.clone(),
            tag: self.tag,
            id: self.id,
            verifier_log: None,
        })
    }
    /// The program's file descriptor, owned.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
    /// The program's name (its function name in the object).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// What the program's section said: type, attach type and target.
    pub fn kind(&self) -> &ProgramKind {
        &self.kind
    }
    /// The kernel program type.
    pub fn program_type(&self) -> ProgramType {
        self.kind.program_type()
    }
    /// The kernel's hash of the instructions (as `bpftool prog` shows it).
    pub fn tag(&self) -> [u8; 8] {
        self.tag
    }
    /// The program's id (`bpftool prog show`).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The kernel's view of the program now (run counts need `kernel.bpf_stats_enabled=1`).
    pub fn info(&self) -> Result<ProgramInfo, ProgramError> {
        program_info(self.fd.as_fd()).map_err(|source| ProgramError::Syscall {
            name: self.name.clone(),
            op: "get info",
            source,
        })
    }

    /// Keeps `map` alive as long as this program (BPF_PROG_BIND_MAP). Minimum kernel version: 5.10.
    pub fn bind_map(&self, map: BorrowedFd<'_>) -> Result<(), ProgramError> {
        sysprog::bind_map(self.fd.as_fd(), map).map_err(|source| ProgramError::Syscall {
            name: self.name.clone(),
            op: "bind map",
            source,
        })
    }

    /// Runs the program once or `repeat` times on `run`'s input (BPF_PROG_TEST_RUN).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use kiln_loader::programs::TestRun;
    ///
    /// let ebpf = kiln_loader::load_file("target/bpf/sdk-log.bpf.o")?;
    /// let program = ebpf.program("log_packet").ok_or("no program log_packet")?;
    /// let packet = [0u8; 64];
    /// let result = program.test_run(TestRun { data_in: Some(&packet), ..Default::default() })?;
    /// println!("returned {} in {} ns", result.retval, result.duration_ns);
    /// # Ok(())
    /// # }
    /// ```
    pub fn test_run(&self, run: TestRun<'_>) -> Result<TestRunResult, ProgramError> {
        sysprog::test_run(self.fd.as_fd(), run).map_err(|source| ProgramError::Syscall {
            name: self.name.clone(),
            op: "test run",
            source,
        })
    }
}

impl AsFd for Program {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Where [`query_attached`] looks: the object a program is attached to.
#[derive(Clone, Copy, Debug)]
pub enum QueryTarget<'a> {
    /// A cgroup directory or network namespace (`/proc/PID/ns/net`) opened by the caller.
    Fd(BorrowedFd<'a>),
    /// A network interface (tcx, netkit, XDP).
    Ifindex(u32),
}

/// The programs (and, from 6.6, links) attached at `target` for
/// `attach_type`, with the hook's revision (`BPF_PROG_QUERY`).
/// Minimum kernel version: 4.15 (cgroups), 5.1 (flow dissector), 6.6 (tcx).
pub fn query_attached(
    target: QueryTarget<'_>,
    attach_type: kiln_obj::AttachType,
) -> Result<QueryResult, SysError> {
    use std::os::fd::AsRawFd;
    let target = match target {
        QueryTarget::Fd(fd) => fd.as_raw_fd() as u32,
        QueryTarget::Ifindex(ifindex) => ifindex,
    };
    crate::sys::link_attr::prog_query(target, attach_type.0)
}

/// Run-time statistics switched on for every program (`BPF_ENABLE_STATS`):
/// while this value lives, [`ProgramInfo::run_cnt`] and
/// [`ProgramInfo::run_time_ns`] count. Minimum kernel version: 5.8.
#[derive(Debug)]
pub struct RunTimeStats {
    _fd: OwnedFd,
}

/// Switches run-time statistics on until the returned guard is dropped. Needs CAP_SYS_ADMIN.
pub fn enable_run_time_stats() -> Result<RunTimeStats, SysError> {
    Ok(RunTimeStats {
        _fd: sysobj::enable_run_time_stats()?,
    })
}

/// What the kernel reports about a program (`struct bpf_prog_info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramInfo {
    /// The program type.
    pub program_type: ProgramType,
    /// The program's id (`bpftool prog show`).
    pub id: u32,
    /// The kernel's hash of the instructions.
    pub tag: [u8; 8],
    /// The name given at load (at most 15 bytes).
    pub name: String,
    /// Runs counted while `kernel.bpf_stats_enabled` was 1 (5.1).
    pub run_cnt: u64,
    /// Time spent in those runs (5.1).
    pub run_time_ns: u64,
    /// Runs skipped because the program was already running on that CPU (5.12).
    pub recursion_misses: u64,
    /// Instructions the verifier processed (5.16).
    pub verified_insns: u32,
    /// Size of the translated instructions in bytes (0 without root).
    pub xlated_len: u32,
    /// Size of the JIT-compiled code in bytes.
    pub jited_len: u32,
    /// Ids of the maps the program uses.
    pub map_ids: Vec<u32>,
    /// Its BTF object's id (0: none).
    pub btf_id: u32,
    /// `bpf_func_info` and `bpf_line_info` records the kernel kept (0
    /// without program BTF: no source lines in the verifier's log or dumps).
    pub nr_func_info: u32,
    /// `bpf_line_info` records the kernel kept.
    pub nr_line_info: u32,
    /// When it was loaded, in ns since boot.
    pub load_time_ns: u64,
    /// Whether its license is GPL-compatible.
    pub gpl_compatible: bool,
}

/// Reads the kernel's description of any program fd, with its map ids.
pub fn program_info(fd: BorrowedFd<'_>) -> Result<ProgramInfo, SysError> {
    let first: ProgInfo = sysobj::info_by_fd(fd)?;
    let mut map_ids = vec![0u32; first.nr_map_ids as usize];
    let mut info = ProgInfo {
        nr_map_ids: map_ids.len() as u32,
        map_ids: map_ids.as_mut_ptr() as u64,
        ..Default::default()
    };
    if !map_ids.is_empty() {
        // SAFETY: `map_ids` points at `nr_map_ids` writable u32s; no other pointer is set.
        unsafe { sysobj::info_by_fd_with(fd, &mut info) }?;
        map_ids.truncate(info.nr_map_ids.min(first.nr_map_ids) as usize);
    }
    Ok(ProgramInfo {
        program_type: ProgramType(first.prog_type),
        id: first.id,
        tag: first.tag,
        name: c_name(&first.name),
        run_cnt: first.run_cnt,
        run_time_ns: first.run_time_ns,
        recursion_misses: first.recursion_misses,
        verified_insns: first.verified_insns,
        xlated_len: first.xlated_prog_len,
        jited_len: first.jited_prog_len,
        map_ids,
        btf_id: first.btf_id,
        nr_func_info: first.nr_func_info,
        nr_line_info: first.nr_line_info,
        load_time_ns: first.load_time,
        gpl_compatible: first.flags & 1 != 0,
    })
}

pub(crate) fn build_load<'a>(
    name: &str,
    kind: &ProgramKind,
    insns: &'a [Insn],
    license: &'a CString,
    opts: &'a LoadOptions<'a>,
) -> ProgLoad<'a> {
    let prog_type = kind.program_type();
    let kern_version = opts.kern_version.unwrap_or_else(|| {
        if prog_type == ProgramType::KPROBE {
            crate::util::kernel_version_code()
        } else {
            0
        }
    });
    ProgLoad {
        prog_type: prog_type.0,
        insns,
        license: Some(license.as_c_str()),
        log: None,
        kern_version,
        prog_flags: opts.flags.bits(),
        name: object_name(name),
        ifindex: opts.ifindex,
        expected_attach_type: opts
            .expected_attach_type
            .or(kind.expected_attach_type().map(|a| a.0)),
        btf_fd: opts.btf.map(|b| b.fd),
        func_info: opts
            .btf
            .filter(|b| !b.func_info.is_empty())
            .map(|b| (b.func_info, b.func_info_rec_size)),
        line_info: opts
            .btf
            .filter(|b| !b.line_info.is_empty())
            .map(|b| (b.line_info, b.line_info_rec_size)),
        attach_btf_id: opts.attach_btf_id.unwrap_or(0),
        attach_prog_fd: opts.attach_prog_fd,
        attach_btf_obj_fd: opts.attach_btf_obj_fd,
        fd_array: opts.fd_array,
    }
}
