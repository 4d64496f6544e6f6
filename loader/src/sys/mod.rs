//! The only place that calls bpf(2). Everything above speaks typed attributes.
//!
//! `union bpf_attr` is modelled as one `#[repr(C)]` struct per command family
//! (in `attr.rs`), each zero-padded to [`ATTR_SIZE`] so that the kernel's
//! "unused tail must be zero" check always holds.

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

/// `enum bpf_cmd`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum Cmd {
    MapCreate = 0,
    MapLookupElem = 1,
    MapUpdateElem = 2,
    MapDeleteElem = 3,
    MapGetNextKey = 4,
    ProgLoad = 5,
    ObjPin = 6,
    ObjGet = 7,
    ProgAttach = 8,
    ProgDetach = 9,
    ProgTestRun = 10,
    ProgGetNextId = 11,
    MapGetNextId = 12,
    ProgGetFdById = 13,
    MapGetFdById = 14,
    ObjGetInfoByFd = 15,
    ProgQuery = 16,
    RawTracepointOpen = 17,
    BtfLoad = 18,
    BtfGetFdById = 19,
    TaskFdQuery = 20,
    MapLookupAndDeleteElem = 21,
    MapFreeze = 22,
    BtfGetNextId = 23,
    MapLookupBatch = 24,
    MapLookupAndDeleteBatch = 25,
    MapUpdateBatch = 26,
    MapDeleteBatch = 27,
    LinkCreate = 28,
    LinkUpdate = 29,
    LinkGetFdById = 30,
    LinkGetNextId = 31,
    EnableStats = 32,
    IterCreate = 33,
    LinkDetach = 34,
    ProgBindMap = 35,
    TokenCreate = 36,
}

/// A failed bpf(2) call: which command, and the errno. On EPERM/EACCES the
/// message names the capability the command needs and the ones this process lacks.
///
/// It prints its errno itself and so is the end of an error chain: returning
/// the `io::Error` as its source too would print "Permission denied" twice.
#[derive(Debug)]
pub struct SysError {
    pub cmd: Cmd,
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
    pub fn errno(&self) -> i32 {
        self.source.raw_os_error().unwrap_or(0)
    }
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
