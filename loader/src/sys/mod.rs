//! The only place that calls bpf(2). Everything above speaks typed attributes.
//!
//! `union bpf_attr` is modelled as one `#[repr(C)]` struct per command family
//! (in `attr.rs`), each zero-padded to [`ATTR_SIZE`] so that the kernel's
//! "unused tail must be zero" check always holds.
// The raw layer mirrors the kernel's uapi names and is on its way to
// being crate-private; the public API above it is what is documented.
#![allow(missing_docs)]

use std::os::fd::{FromRawFd, OwnedFd};

pub mod attr;
pub mod caps;
pub mod link_attr;
pub mod map;
pub mod object;
pub mod prog;
pub mod token;

/// Size of the attribute buffer handed to the kernel. The kernel accepts a
/// larger buffer as long as the bytes it does not know are zero.
pub const ATTR_SIZE: usize = 160;

/// `enum bpf_cmd`: the command of a bpf(2) call, as a [`SysError`] names it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum Cmd {
    /// `BPF_MAP_CREATE`.
    MapCreate = 0,
    /// `BPF_MAP_LOOKUP_ELEM`.
    MapLookupElem = 1,
    /// `BPF_MAP_UPDATE_ELEM`.
    MapUpdateElem = 2,
    /// `BPF_MAP_DELETE_ELEM`.
    MapDeleteElem = 3,
    /// `BPF_MAP_GET_NEXT_KEY`.
    MapGetNextKey = 4,
    /// `BPF_PROG_LOAD`.
    ProgLoad = 5,
    /// `BPF_OBJ_PIN`.
    ObjPin = 6,
    /// `BPF_OBJ_GET`.
    ObjGet = 7,
    /// `BPF_PROG_ATTACH`.
    ProgAttach = 8,
    /// `BPF_PROG_DETACH`.
    ProgDetach = 9,
    /// `BPF_PROG_TEST_RUN`.
    ProgTestRun = 10,
    /// `BPF_PROG_GET_NEXT_ID`.
    ProgGetNextId = 11,
    /// `BPF_MAP_GET_NEXT_ID`.
    MapGetNextId = 12,
    /// `BPF_PROG_GET_FD_BY_ID`.
    ProgGetFdById = 13,
    /// `BPF_MAP_GET_FD_BY_ID`.
    MapGetFdById = 14,
    /// `BPF_OBJ_GET_INFO_BY_FD`.
    ObjGetInfoByFd = 15,
    /// `BPF_PROG_QUERY`.
    ProgQuery = 16,
    /// `BPF_RAW_TRACEPOINT_OPEN`.
    RawTracepointOpen = 17,
    /// `BPF_BTF_LOAD`.
    BtfLoad = 18,
    /// `BPF_BTF_GET_FD_BY_ID`.
    BtfGetFdById = 19,
    /// `BPF_TASK_FD_QUERY`.
    TaskFdQuery = 20,
    /// `BPF_MAP_LOOKUP_AND_DELETE_ELEM`.
    MapLookupAndDeleteElem = 21,
    /// `BPF_MAP_FREEZE`.
    MapFreeze = 22,
    /// `BPF_BTF_GET_NEXT_ID`.
    BtfGetNextId = 23,
    /// `BPF_MAP_LOOKUP_BATCH`.
    MapLookupBatch = 24,
    /// `BPF_MAP_LOOKUP_AND_DELETE_BATCH`.
    MapLookupAndDeleteBatch = 25,
    /// `BPF_MAP_UPDATE_BATCH`.
    MapUpdateBatch = 26,
    /// `BPF_MAP_DELETE_BATCH`.
    MapDeleteBatch = 27,
    /// `BPF_LINK_CREATE`.
    LinkCreate = 28,
    /// `BPF_LINK_UPDATE`.
    LinkUpdate = 29,
    /// `BPF_LINK_GET_FD_BY_ID`.
    LinkGetFdById = 30,
    /// `BPF_LINK_GET_NEXT_ID`.
    LinkGetNextId = 31,
    /// `BPF_ENABLE_STATS`.
    EnableStats = 32,
    /// `BPF_ITER_CREATE`.
    IterCreate = 33,
    /// `BPF_LINK_DETACH`.
    LinkDetach = 34,
    /// `BPF_PROG_BIND_MAP`.
    ProgBindMap = 35,
    /// `BPF_TOKEN_CREATE`.
    TokenCreate = 36,
}

/// A failed bpf(2) call: which command, and the errno. On EPERM/EACCES the
/// message names the capability the command needs and the ones this process lacks.
///
/// It prints its errno itself and so is the end of an error chain: returning
/// the `io::Error` as its source too would print "Permission denied" twice.
#[derive(Debug)]
pub struct SysError {
    /// The command that failed.
    pub cmd: Cmd,
    /// The errno, as an `io::Error` (printed in the message, not a `source`).
    pub source: std::io::Error,
}

impl std::fmt::Display for SysError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bpf({:?}) failed: {}{}",
            self.cmd,
            self.source,
            caps::eperm_hint(self.cmd, self.errno())
        )
    }
}

/// No `source()`: the errno is already in the message.
impl std::error::Error for SysError {}

impl SysError {
    /// The errno the kernel answered.
    pub fn errno(&self) -> i32 {
        self.source.raw_os_error().unwrap_or(0)
    }

    /// Whether the kernel refused the call for want of privilege (EPERM):
    /// capabilities, a LSM, lockdown, `kernel.unprivileged_bpf_disabled`, a
    /// token that does not delegate the command, or (before 5.11) RLIMIT_MEMLOCK.
    pub fn is_permission_denied(&self) -> bool {
        self.errno() == libc::EPERM
    }
}

/// Whether any error in `error`'s chain is a bpf(2) call the kernel refused
/// for want of privilege ([`SysError::is_permission_denied`]): what a CLI
/// maps to its "insufficient privilege" exit code.
pub fn permission_denied(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| {
        e.downcast_ref::<SysError>()
            .is_some_and(SysError::is_permission_denied)
    })
}

/// Calls bpf(2) with `attr`, a `#[repr(C)]` value of exactly [`ATTR_SIZE`] bytes.
///
/// # Safety
/// `attr` must be the attribute layout the kernel expects for `cmd`; every
/// pointer it carries must be valid for the access the kernel makes through it
/// (reads of the given lengths, writes of the given lengths) for the duration
/// of the call.
#[allow(
    clippy::useless_conversion,
    reason = "syscall(2) returns a c_long: 32 bits on 32-bit arm"
)]
pub unsafe fn bpf<A>(cmd: Cmd, attr: &mut A) -> Result<i64, SysError> {
    const { assert!(std::mem::size_of::<A>() == ATTR_SIZE) };
    let mut call = || {
        // SAFETY: the caller guarantees `attr` is a valid attribute block for `cmd`;
        // its size is checked above.
        let ret =
            unsafe { libc::syscall(libc::SYS_bpf, cmd as u32, attr as *mut A, ATTR_SIZE as u32) };
        if ret < 0 {
            Err(SysError {
                cmd,
                source: std::io::Error::last_os_error(),
            })
        } else {
            Ok(i64::from(ret))
        }
    };
    let result = match call() {
        // Kernels before 5.11 charge maps, programs and BTF to
        // RLIMIT_MEMLOCK and answer EPERM when it is exhausted (64 KiB by
        // default: one mid-sized hash map). Raise it when that happens, as
        // libbpf does, and try once more; on newer kernels (memory cgroup
        // accounting) this never triggers, so the limit is left alone there.
        Err(e)
            if e.errno() == libc::EPERM
                && matches!(cmd, Cmd::MapCreate | Cmd::ProgLoad | Cmd::BtfLoad)
                && caps::memlock_limit().is_some()
                && caps::raise_memlock().is_ok() =>
        {
            call()
        }
        other => other,
    };
    if let Err(e) = &result
        && e.errno() == libc::EPERM
    {
        token::note_refusal(cmd);
    }
    result
}

/// Like [`bpf`], for the commands that return a new file descriptor.
///
/// # Safety
/// As for [`bpf`]; additionally `cmd` must be a command whose success value is
/// a new file descriptor owned by the caller.
pub unsafe fn bpf_fd<A>(cmd: Cmd, attr: &mut A) -> Result<OwnedFd, SysError> {
    // SAFETY: forwarded contract.
    let fd = unsafe { bpf(cmd, attr)? };
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_error_prints_its_errno_once_in_a_chain() {
        let e = SysError {
            cmd: Cmd::MapUpdateElem,
            source: std::io::Error::from_raw_os_error(libc::EPERM),
        };
        assert!(std::error::Error::source(&e).is_none());
        let text = e.to_string();
        assert_eq!(text.matches("Operation not permitted").count(), 1, "{text}");
    }
}
