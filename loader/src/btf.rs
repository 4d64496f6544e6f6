//! BTF loaded into the kernel (BPF_BTF_LOAD): the object's types, referenced
//! by maps (key/value type ids) and programs (func and line info).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::sys::SysError;
use crate::sys::object::btf_load;

/// A BTF blob the kernel accepted. Minimum kernel version: 4.18.
#[derive(Debug)]
pub struct Btf {
    fd: OwnedFd,
}

/// The kernel refused a BTF blob; `log` is its explanation.
#[derive(Debug, thiserror::Error)]
#[error("the kernel refused the object's BTF: {source}{}", log_tail(.log))]
pub struct BtfError {
    /// The kernel's answer.
    #[source]
    pub source: SysError,
    /// The kernel's BTF verifier log.
    pub log: String,
}

fn log_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(10);
    lines[start..].iter().map(|l| format!("\n  {l}")).collect()
}

impl Btf {
    /// Loads `bytes`; on failure loads again with a log to say why.
    pub fn load(bytes: &[u8]) -> Result<Btf, BtfError> {
        match btf_load(bytes, None) {
            Ok(fd) => Ok(Btf { fd }),
            Err(first) => {
                let mut size = 64 * 1024;
                loop {
                    let mut buf = vec![0u8; size];
                    match btf_load(bytes, Some((1, &mut buf))) {
                        Ok(fd) => return Ok(Btf { fd }),
                        Err(e) if e.errno() == libc::ENOSPC && size < 16 << 20 => size *= 4,
                        Err(_) => {
                            return Err(BtfError {
                                source: first,
                                log: crate::util::c_name(&buf),
                            });
                        }
                    }
                }
            }
        }
    }

    /// The loaded BTF's file descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Wraps the fd of a BTF object obtained elsewhere (by id, from a program's info).
    pub fn from_fd(fd: OwnedFd) -> Btf {
        Btf { fd }
    }
}

impl AsFd for Btf {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
