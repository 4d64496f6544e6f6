//! BTF loaded into the kernel (BPF_BTF_LOAD): the object's types, referenced
//! by maps (key/value type ids) and programs (func and line info).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::sys::SysError;
use crate::sys::attr::BtfInfoRaw;
use crate::sys::object::{self, IdKind, btf_load};

/// A BTF blob the kernel accepted. Minimum kernel version: 4.18.
#[derive(Debug)]
pub struct Btf {
    fd: OwnedFd,
}

/// A failed BTF load, open or read.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The kernel refused a BTF blob; `log` is its explanation.
    #[error("the kernel refused the object's BTF: {source}{}", log_tail(.log))]
    Load {
        /// The failed BPF_BTF_LOAD.
        #[source]
        source: SysError,
        /// The kernel's BTF log (empty when it gave none).
        log: String,
    },
    /// Opening or reading the BTF object with this kernel id failed.
    #[error("BTF id {id}: {op} failed: {source}")]
    Kernel {
        /// The BTF object's id.
        id: u32,
        /// "open" or "read".
        op: &'static str,
        /// The failed bpf(2) call.
        #[source]
        source: SysError,
    },
}

impl BtfError {
    /// The failed bpf(2) call behind this error.
    pub fn sys_error(&self) -> &SysError {
        match self {
            BtfError::Load { source, .. } | BtfError::Kernel { source, .. } => source,
        }
    }
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
                            return Err(BtfError::Load {
                                source: first,
                                log: crate::util::c_name(&buf),
                            });
                        }
                    }
                }
            }
        }
    }

    /// The BTF object's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens the BTF object with kernel id `id` (the kernel's own, a
    /// module's, or one a loaded object brought: what a map's or program's
    /// info calls `btf_id`). Needs CAP_SYS_ADMIN. Minimum kernel version: 5.4.
    pub fn from_kernel_id(id: u32) -> Result<Btf, BtfError> {
        let fd = object::fd_by_id(IdKind::Btf, id).map_err(|source| BtfError::Kernel {
            id,
            op: "open",
            source,
        })?;
        Ok(Btf { fd })
    }

    /// The raw BTF blob the kernel holds (header, types and strings), as
    /// `kiln_obj::btf::Btf::parse` reads it. Minimum kernel version: 5.4.
    pub fn bytes(&self) -> Result<Vec<u8>, SysError> {
        let head: BtfInfoRaw = object::info_by_fd(self.fd.as_fd())?;
        let mut buf = vec![0u8; head.btf_size as usize];
        let mut info = BtfInfoRaw {
            btf: buf.as_mut_ptr() as u64,
            btf_size: head.btf_size,
            ..Default::default()
        };
        // SAFETY: `btf` points at `btf_size` writable bytes owned by `buf`,
        // alive for the call; no other pointer field is set.
        unsafe { object::info_by_fd_with(self.fd.as_fd(), &mut info) }?;
        buf.truncate(info.btf_size.min(head.btf_size) as usize);
        Ok(buf)
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
