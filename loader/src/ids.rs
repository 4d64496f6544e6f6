//! The ids of every program, map, BTF object and link loaded in the kernel
//! (`BPF_*_GET_NEXT_ID`; walking them needs CAP_SYS_ADMIN).
//!
//! Open what an id names with [`Map::from_id`](crate::Map::from_id),
//! [`Program::from_id`](crate::Program::from_id),
//! [`Btf::from_kernel_id`](crate::Btf::from_kernel_id) or [`open`].
//!
//! ```no_run
//! use kiln_loader::ids::{IdKind, ids};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! for id in ids(IdKind::Prog) {
//!     let info = kiln_loader::Program::from_id(id?)?.info()?;
//!     println!("{} {}", info.id, info.name);
//! }
//! # Ok(())
//! # }
//! ```

use std::os::fd::OwnedFd;

use crate::sys::SysError;
use crate::sys::object;

pub use crate::sys::object::IdKind;

/// The id after `after` (0 for the first one), `None` past the last.
/// Minimum kernel version: 4.13 (programs and maps), 5.4 (BTF), 5.8 (links).
pub fn next_id(kind: IdKind, after: u32) -> Result<Option<u32>, SysError> {
    object::next_id(kind, after)
}

/// Every id of `kind`, in increasing order. The walk stops after the first error.
pub fn ids(kind: IdKind) -> Ids {
    Ids {
        kind,
        last: 0,
        done: false,
    }
}

/// Iterator returned by [`ids`].
#[derive(Debug)]
pub struct Ids {
    kind: IdKind,
    last: u32,
    done: bool,
}

impl Iterator for Ids {
    type Item = Result<u32, SysError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = next_id(self.kind, self.last).transpose();
        match &next {
            Some(Ok(id)) => self.last = *id,
            _ => self.done = true,
        }
        next
    }
}

/// A new descriptor for the object with this id (`BPF_*_GET_FD_BY_ID`), for
/// kinds without their own handle type (links).
pub fn open(kind: IdKind, id: u32) -> Result<OwnedFd, SysError> {
    object::fd_by_id(kind, id)
}
