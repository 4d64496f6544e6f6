//! Safe wrappers over the commands every kind of bpf object shares: pinning,
//! info by fd, id enumeration, fd by id. Also BPF_BTF_LOAD.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::attr::{
    Attr, BPF_F_TOKEN_FD, BtfLoadAttr, GetIdAttr, InfoByFdAttr, InfoStruct, ObjPinAttr,
};
use super::{Cmd, SysError, bpf, bpf_fd};

fn c_path(cmd: Cmd, path: &Path) -> Result<CString, SysError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| SysError {
        cmd,
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
    })
}

/// BPF_OBJ_PIN: pins `fd` at `path` (which must be on a bpffs).
pub fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> Result<(), SysError> {
    let path = c_path(Cmd::ObjPin, path)?;
    let mut attr = Attr::new(ObjPinAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: fd.as_raw_fd() as u32,
        file_flags: 0,
    });
    // SAFETY: `pathname` is a NUL-terminated string alive for the call.
    unsafe { bpf(Cmd::ObjPin, &mut attr) }.map(drop)
}

/// Access a pinned object is opened with (BPF_F_RDONLY / BPF_F_WRONLY).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OpenFlags {
    /// Read and write (links and programs accept only this).
    #[default]
    ReadWrite,
    /// Read only (`BPF_F_RDONLY`): map lookups, no updates.
    ReadOnly,
    /// Write only (`BPF_F_WRONLY`).
    WriteOnly,
}

impl OpenFlags {
    fn bits(self) -> u32 {
        match self {
            OpenFlags::ReadWrite => 0,
            OpenFlags::ReadOnly => 1 << 3,
            OpenFlags::WriteOnly => 1 << 4,
        }
    }
}

/// BPF_OBJ_GET: opens the object pinned at `path`.
pub fn obj_get(path: &Path, flags: OpenFlags) -> Result<OwnedFd, SysError> {
    let path = c_path(Cmd::ObjGet, path)?;
    let mut attr = Attr::new(ObjPinAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: flags.bits(),
    });
    // SAFETY: `pathname` is a NUL-terminated string alive for the call.
    unsafe { bpf_fd(Cmd::ObjGet, &mut attr) }
}

/// BPF_OBJ_GET_INFO_BY_FD into `info` (whose pointer fields the caller may
/// have aimed at buffers it owns: see [`info_by_fd_with`]).
pub fn info_by_fd<T: InfoStruct>(fd: BorrowedFd<'_>) -> Result<T, SysError> {
    let mut info = T::default();
    // SAFETY: a default info struct carries no pointers (all zero), so the
    // kernel only fills the struct itself.
    unsafe { info_by_fd_with(fd, &mut info) }?;
    Ok(info)
}

/// BPF_OBJ_GET_INFO_BY_FD with caller-prepared pointer fields.
///
/// # Safety
/// Every pointer field set in `info` must address a writable buffer at least
/// as large as the count field beside it says.
pub unsafe fn info_by_fd_with<T: InfoStruct>(
    fd: BorrowedFd<'_>,
    info: &mut T,
) -> Result<(), SysError> {
    let mut attr = Attr::new(InfoByFdAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<T>() as u32,
        info: info as *mut T as u64,
    });
    // SAFETY: `info` is writable for `info_len` bytes; its own pointers are the caller's contract.
    unsafe { bpf(Cmd::ObjGetInfoByFd, &mut attr) }.map(drop)
}

/// A failed [`open_pinned`] or [`open_id`], with what errors call the object
/// (its pin path, or `id N`) and the operation; maps and programs turn it
/// into their own error type.
#[derive(Debug)]
pub(crate) struct OpenError {
    pub name: String,
    pub op: &'static str,
    pub source: SysError,
}

/// BPF_OBJ_GET, failing with the pin path as the object's name.
pub fn open_pinned(path: &Path, flags: OpenFlags) -> Result<OwnedFd, OpenError> {
    obj_get(path, flags).map_err(|source| OpenError {
        name: path.display().to_string(),
        op: "open pinned",
        source,
    })
}

/// BPF_*_GET_FD_BY_ID, failing with `id N` as the object's name.
pub fn open_id(kind: IdKind, id: u32) -> Result<OwnedFd, OpenError> {
    fd_by_id(kind, id).map_err(|source| OpenError {
        name: format!("id {id}"),
        op: "open by id",
        source,
    })
}

/// Which id space to walk or open from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    /// Programs.
    Prog,
    /// Maps.
    Map,
    /// BTF objects (the kernel's, modules' and loaded objects').
    Btf,
    /// bpf_links.
    Link,
}

/// BPF_*_GET_NEXT_ID: the id after `start` (0 for the first), `None` at the end.
pub fn next_id(kind: IdKind, start: u32) -> Result<Option<u32>, SysError> {
    let cmd = match kind {
        IdKind::Prog => Cmd::ProgGetNextId,
        IdKind::Map => Cmd::MapGetNextId,
        IdKind::Btf => Cmd::BtfGetNextId,
        IdKind::Link => Cmd::LinkGetNextId,
    };
    let mut attr = Attr::new(GetIdAttr {
        id: start,
        ..Default::default()
    });
    // SAFETY: integers only.
    match unsafe { bpf(cmd, &mut attr) } {
        Ok(_) => Ok(Some(attr.get().next_id)),
        Err(e) if e.errno() == libc::ENOENT => Ok(None),
        Err(e) => Err(e),
    }
}

/// BPF_*_GET_FD_BY_ID.
pub fn fd_by_id(kind: IdKind, id: u32) -> Result<OwnedFd, SysError> {
    let cmd = match kind {
        IdKind::Prog => Cmd::ProgGetFdById,
        IdKind::Map => Cmd::MapGetFdById,
        IdKind::Btf => Cmd::BtfGetFdById,
        IdKind::Link => Cmd::LinkGetFdById,
    };
    let mut attr = Attr::new(GetIdAttr {
        id,
        ..Default::default()
    });
    // SAFETY: integers only; the result is a new descriptor.
    unsafe { bpf_fd(cmd, &mut attr) }
}

/// BPF_BTF_LOAD. With `log`, the kernel explains a rejection there. With a
/// token in scope ([`super::token::with_token`]), the BTF is loaded through it.
pub fn btf_load(btf: &[u8], log: Option<(u32, &mut [u8])>) -> Result<OwnedFd, SysError> {
    let (level, size, buf) = match log {
        Some((level, buf)) => (
            level,
            buf.len().min(u32::MAX as usize >> 8) as u32,
            buf.as_mut_ptr() as u64,
        ),
        None => (0, 0, 0),
    };
    let token = super::token::in_scope();
    let mut attr = Attr::new(BtfLoadAttr {
        btf: btf.as_ptr() as u64,
        btf_log_buf: buf,
        btf_size: btf.len() as u32,
        btf_log_size: size,
        btf_log_level: level,
        btf_log_true_size: 0,
        btf_flags: token.map_or(0, |_| BPF_F_TOKEN_FD),
        btf_token_fd: token.unwrap_or(0),
    });
    // SAFETY: `btf` is readable for `btf_size` bytes and the log writable for `btf_log_size`.
    unsafe { bpf_fd(Cmd::BtfLoad, &mut attr) }
}

/// `union bpf_attr` for BPF_ENABLE_STATS.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct EnableStatsAttr {
    stats_type: u32,
}
// SAFETY: #[repr(C)], one u32.
unsafe impl super::attr::AttrFields for EnableStatsAttr {}

/// BPF_ENABLE_STATS (BPF_STATS_RUN_TIME): programs count `run_cnt` and
/// `run_time_ns` while the returned fd is open. Minimum kernel version: 5.8.
pub fn enable_run_time_stats() -> Result<OwnedFd, SysError> {
    let mut attr = Attr::new(EnableStatsAttr { stats_type: 0 });
    // SAFETY: integers only; the result is a new descriptor.
    unsafe { bpf_fd(Cmd::EnableStats, &mut attr) }
}
