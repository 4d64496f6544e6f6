//! BPF iterators (`SEC("iter/task")`, `iter/bpf_map`, ...): a link of attach
//! type `BPF_TRACE_ITER`, then `BPF_ITER_CREATE` opens a file whose reads run
//! the program over every object and return what it printed.
//!
//! Minimum kernel version: 5.8 (task, bpf_map, netlink, ...; map element
//! iterators 5.9).

use super::{FdLink, Link, LinkError, Mechanism};
use crate::sys::link_attr::{self, IterExtra, LinkCreateAttr, fd_u32};
use kiln_obj::AttachType;
use std::fs::File;
use std::io::Read;
use std::os::fd::BorrowedFd;

/// `union bpf_iter_link_info`: what to iterate over, for iterators that take
/// a parameter (map element iterators need the map).
#[derive(Clone, Copy, Debug)]
pub enum IterTarget<'a> {
    /// Every object of the iterator's kind (tasks, maps, ...).
    All,
    /// The elements of one map (`iter/bpf_map_elem`, `iter/sockmap`).
    Map(BorrowedFd<'a>),
}

/// An attached iterator: a `bpf_link` from which any number of iterations
/// can be started with [`IterLink::open`] or [`IterLink::read_to_vec`].
#[derive(Debug)]
pub struct IterLink {
    link: FdLink,
}

/// Attaches an iterator program (loaded with the `bpf_iter_<name>` BTF id,
/// which [`super::tracing::vmlinux_attach_btf_id`] resolves).
pub fn attach_iter(prog: BorrowedFd<'_>, target: IterTarget<'_>) -> Result<IterLink, LinkError> {
    let m = Mechanism::Iter;
    // `bpf_iter_link_info` is a union of one u32 (the map fd); it must outlive the call.
    let info: [u32; 2] = match target {
        IterTarget::All => [0, 0],
        IterTarget::Map(fd) => [fd_u32(fd), 0],
    };
    let mut attr = LinkCreateAttr {
        prog_fd: fd_u32(prog),
        attach_type: AttachType::TRACE_ITER.0,
        ..Default::default()
    };
    let what = match target {
        IterTarget::All => "iterator".to_string(),
        IterTarget::Map(fd) => format!("iterator over map fd {}", fd_u32(fd)),
    };
    if matches!(target, IterTarget::Map(_)) {
        attr.extra.iter = IterExtra {
            iter_info: info.as_ptr() as u64,
            iter_info_len: size_of_val(&info) as u32,
            _pad0: 0,
        };
    }
    // SAFETY: `iter_info` (when set) points at `info`, alive on this stack
    // frame across the call, with its size beside it.
    let fd = unsafe { link_attr::link_create_with_pointers(attr) }
        .map_err(|e| LinkError::sys(m, "attach", &what, e))?;
    Ok(IterLink {
        link: FdLink::new(fd, m, what),
    })
}

impl IterLink {
    /// Starts one iteration: reading the file runs the program.
    pub fn open(&self) -> Result<File, LinkError> {
        let fd = self
            .link
            .fd()
            .ok_or_else(|| LinkError::unsupported(Mechanism::Iter, "open", "link detached"))?;
        let out = link_attr::iter_create(fd)
            .map_err(|e| LinkError::sys(Mechanism::Iter, "BPF_ITER_CREATE", self.target(), e))?;
        Ok(File::from(out))
    }

    /// Runs one whole iteration and returns everything the program printed.
    pub fn read_to_vec(&self) -> Result<Vec<u8>, LinkError> {
        let mut f = self.open()?;
        let mut out = Vec::new();
        f.read_to_end(&mut out)
            .map_err(|e| LinkError::kernel(Mechanism::Iter, "read", self.target(), e))?;
        Ok(out)
    }

    /// The underlying link (to pin it: a pinned iterator is read with `cat`).
    pub fn link(&mut self) -> &mut FdLink {
        &mut self.link
    }
}

impl Link for IterLink {
    fn mechanism(&self) -> Mechanism {
        Mechanism::Iter
    }
    fn target(&self) -> String {
        self.link.target()
    }
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.link.fd()
    }
    fn pin(&mut self, path: &std::path::Path) -> Result<(), LinkError> {
        self.link.pin(path)
    }
    /// Iterator links swap programs in place (same iterator target). Minimum kernel version: 5.8.
    fn update(
        &mut self,
        new_prog: BorrowedFd<'_>,
        old_prog: Option<BorrowedFd<'_>>,
    ) -> Result<(), LinkError> {
        self.link.update(new_prog, old_prog)
    }
    fn detach(&mut self) -> Result<(), LinkError> {
        self.link.detach()
    }
}
