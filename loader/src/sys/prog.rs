//! Safe wrappers over BPF_PROG_LOAD, BPF_PROG_TEST_RUN and BPF_PROG_BIND_MAP.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use kiln_obj::Insn;

use super::attr::{Attr, BPF_F_TOKEN_FD, ProgBindMapAttr, ProgLoadAttr, TestRunAttr};
use super::{Cmd, SysError, bpf, bpf_fd};

/// Everything BPF_PROG_LOAD reads, borrowed for the duration of the call.
#[derive(Default)]
pub struct ProgLoad<'a> {
    pub prog_type: u32,
    pub insns: &'a [Insn],
    pub license: Option<&'a CStr>,
    /// Verifier log level (0 = none, 1 = the failure path, 2 = everything) and buffer.
    pub log: Option<(u32, &'a mut [u8])>,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub name: [u8; 16],
    pub ifindex: u32,
    pub expected_attach_type: Option<u32>,
    pub btf_fd: Option<BorrowedFd<'a>>,
    /// `bpf_func_info` records and their size.
    pub func_info: Option<(&'a [u8], u32)>,
    /// `bpf_line_info` records and their size.
    pub line_info: Option<(&'a [u8], u32)>,
    pub attach_btf_id: u32,
    pub attach_prog_fd: Option<BorrowedFd<'a>>,
    pub attach_btf_obj_fd: Option<BorrowedFd<'a>>,
    /// Fds that kfunc calls (`off`) and map references index.
    pub fd_array: Option<&'a [std::os::fd::RawFd]>,
}

/// A failed load: the syscall error and, with a log, how large the log wanted to be
/// (`log_true_size`, 0 on kernels before 6.4).
#[derive(Debug)]
pub struct ProgLoadFailure {
    pub error: SysError,
    pub log_true_size: u32,
}

/// BPF_PROG_LOAD. With a token in scope ([`super::token::with_token`]), the
/// program is loaded through it.
pub fn prog_load(p: ProgLoad<'_>) -> Result<OwnedFd, ProgLoadFailure> {
    let (log_level, log_size, log_buf) = match p.log {
        Some((level, buf)) => (
            level,
            buf.len().min(u32::MAX as usize >> 8) as u32,
            buf.as_mut_ptr() as u64,
        ),
        None => (0, 0, 0),
    };
    let count = |recs: &[u8], size: u32| (recs.len() as u32).checked_div(size).unwrap_or(0);
    let (func_info, func_info_cnt, func_info_rec_size) = match p.func_info {
        Some((recs, size)) => (recs.as_ptr() as u64, count(recs, size), size),
        None => (0, 0, 0),
    };
    let (line_info, line_info_cnt, line_info_rec_size) = match p.line_info {
        Some((recs, size)) => (recs.as_ptr() as u64, count(recs, size), size),
        None => (0, 0, 0),
    };
    let fd_u32 = |fd: Option<BorrowedFd<'_>>| fd.map_or(0, |fd| fd.as_raw_fd() as u32);
    let token = super::token::in_scope().filter(|_| p.prog_flags & BPF_F_TOKEN_FD == 0);
    let mut attr = Attr::new(ProgLoadAttr {
        prog_type: p.prog_type,
        insn_cnt: p.insns.len() as u32,
        insns: p.insns.as_ptr() as u64,
        license: p.license.map_or(0, |l| l.as_ptr() as u64),
        log_level,
        log_size,
        log_buf,
        kern_version: p.kern_version,
        prog_flags: p.prog_flags | token.map_or(0, |_| BPF_F_TOKEN_FD),
        prog_name: p.name,
        prog_ifindex: p.ifindex,
        expected_attach_type: p.expected_attach_type.unwrap_or(0),
        prog_btf_fd: fd_u32(p.btf_fd),
        func_info_rec_size,
        func_info,
        func_info_cnt,
        line_info_rec_size,
        line_info,
        line_info_cnt,
        attach_btf_id: p.attach_btf_id,
        attach_prog_fd: fd_u32(p.attach_prog_fd.or(p.attach_btf_obj_fd)),
        prog_token_fd: token.unwrap_or(0),
        fd_array: p.fd_array.map_or(0, |a| a.as_ptr() as u64),
        ..Default::default()
    });
    // SAFETY: `Insn` is the kernel's 8-byte `struct bpf_insn`; every pointer
    // above comes from a slice or CStr borrowed for this call with the count or
    // size passed beside it (`fd_array` is read only at the indexes the
    // instructions name, which the caller built it for); the log buffer is writable for `log_size` bytes.
    unsafe { bpf_fd(Cmd::ProgLoad, &mut attr) }.map_err(|error| ProgLoadFailure {
        error,
        log_true_size: attr.get().log_true_size,
    })
}

/// Input of one BPF_PROG_TEST_RUN. Which fields a program type accepts is the
/// kernel's call (socket filters, tc and XDP take packet data; raw_tp and
/// syscall programs take ctx).
///
/// Minimum kernel version: 4.12 (ctx since 5.2, syscall programs since 5.14).
#[derive(Default)]
pub struct TestRun<'a> {
    /// The packet the program runs on.
    pub data_in: Option<&'a [u8]>,
    /// Space for the packet after the run; the result says how much was written.
    pub data_out: Option<&'a mut [u8]>,
    /// The context (`struct __sk_buff`, `struct xdp_md`, raw_tp arguments, ...).
    pub ctx_in: Option<&'a [u8]>,
    /// Space for the context after the run.
    pub ctx_out: Option<&'a mut [u8]>,
    /// Run this many times (0 or 1: once); the duration is then an average.
    pub repeat: u32,
    /// `BPF_F_TEST_RUN_ON_CPU` (1) or `BPF_F_TEST_XDP_LIVE_FRAMES` (2).
    pub flags: u32,
    /// The CPU to run on, with `BPF_F_TEST_RUN_ON_CPU`.
    pub cpu: u32,
}

/// What the kernel reported back from a test run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestRunResult {
    /// The program's return value.
    pub retval: u32,
    /// Nanoseconds per run (the average over `repeat` runs).
    pub duration_ns: u32,
    /// Bytes of the packet after the run (what `data_out` received, or would have).
    pub data_out_len: u32,
    /// Bytes of the context after the run.
    pub ctx_out_len: u32,
}

/// BPF_PROG_TEST_RUN.
pub fn test_run(fd: BorrowedFd<'_>, mut io: TestRun<'_>) -> Result<TestRunResult, SysError> {
    // The kernel reads a zero out-size as "no limit" and copies the whole
    // packet or context out: an empty out-buffer must reach it as no buffer.
    io.data_out = io.data_out.filter(|b| !b.is_empty());
    io.ctx_out = io.ctx_out.filter(|b| !b.is_empty());
    let len = |s: Option<usize>| s.unwrap_or(0).min(u32::MAX as usize) as u32;
    let data_size_out = len(io.data_out.as_deref().map(<[u8]>::len));
    let ctx_size_out = len(io.ctx_out.as_deref().map(<[u8]>::len));
    let mut attr = Attr::new(TestRunAttr {
        prog_fd: fd.as_raw_fd() as u32,
        data_size_in: len(io.data_in.map(<[u8]>::len)),
        data_size_out,
        data_in: io.data_in.map_or(0, |s| s.as_ptr() as u64),
        data_out: io.data_out.map_or(0, |s| s.as_mut_ptr() as u64),
        repeat: io.repeat,
        ctx_size_in: len(io.ctx_in.map(<[u8]>::len)),
        ctx_size_out,
        ctx_in: io.ctx_in.map_or(0, |s| s.as_ptr() as u64),
        ctx_out: io.ctx_out.map_or(0, |s| s.as_mut_ptr() as u64),
        flags: io.flags,
        cpu: io.cpu,
        ..Default::default()
    });
    // SAFETY: in-buffers are readable and out-buffers writable for the sizes
    // passed beside them (lengths clamped to u32, never above the slice); the
    // kernel writes at most `*_size_out` bytes, and an out-buffer is never
    // passed with size 0 (above). Kernels before 4.20 ignore
    // `data_size_out`; Kiln's oldest supported kernel is 5.10.
    unsafe { bpf(Cmd::ProgTestRun, &mut attr) }?;
    let a = attr.get();
    Ok(TestRunResult {
        retval: a.retval,
        duration_ns: a.duration,
        data_out_len: a.data_size_out,
        ctx_out_len: a.ctx_size_out,
    })
}

/// BPF_PROG_BIND_MAP: keep `map` alive as long as `prog` (Minimum kernel version: 5.10).
pub fn bind_map(prog: BorrowedFd<'_>, map: BorrowedFd<'_>) -> Result<(), SysError> {
    let mut attr = Attr::new(ProgBindMapAttr {
        prog_fd: prog.as_raw_fd() as u32,
        map_fd: map.as_raw_fd() as u32,
        flags: 0,
    });
    // SAFETY: integers only.
    unsafe { bpf(Cmd::ProgBindMap, &mut attr) }.map(drop)
}
