//! `BPF_PROG_ATTACH`: the pre-link way to attach to a cgroup, a sockmap, a
//! network namespace (flow dissector) or a lirc device. The kernel keeps the
//! attachment without any fd: [`ProgAttachLink`] detaches on drop unless
//! [`Link::keep`] is called. Minimum kernel version: 4.10.

use super::{Link, LinkError, Mechanism};
use crate::sys::link_attr::{self, AttachFlags, ProgAttachAttr, fd_u32};
use kiln_obj::AttachType;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// A program attached with `BPF_PROG_ATTACH`. Holds duplicates of the target
/// and program fds, which `BPF_PROG_DETACH` needs.
#[derive(Debug)]
pub struct ProgAttachLink {
    mechanism: Mechanism,
    target_name: String,
    /// `None` for targets named by the caller's namespace (flow dissector).
    target: Option<OwnedFd>,
    prog: Option<OwnedFd>,
    attach_type: AttachType,
    flags: AttachFlags,
}

fn dup(fd: BorrowedFd<'_>, m: Mechanism, what: &str) -> Result<OwnedFd, LinkError> {
    fd.try_clone_to_owned()
        .map_err(|e| LinkError::kernel(m, "dup fd", what, e))
}

impl ProgAttachLink {
    /// `BPF_PROG_ATTACH` of `prog` to `target` (a cgroup/map fd, or `None`
    /// for the caller's network namespace) with `flags`.
    pub fn attach(
        mechanism: Mechanism,
        target_name: String,
        prog: BorrowedFd<'_>,
        target: Option<BorrowedFd<'_>>,
        attach_type: AttachType,
        flags: AttachFlags,
    ) -> Result<Self, LinkError> {
        let attr = ProgAttachAttr {
            target: target.map_or(0, fd_u32),
            attach_bpf_fd: fd_u32(prog),
            attach_type: attach_type.0,
            attach_flags: flags.bits(),
            ..Default::default()
        };
        link_attr::prog_attach(attr, false)
            .map_err(|e| LinkError::sys(mechanism, "attach (BPF_PROG_ATTACH)", &target_name, e))?;
        Ok(ProgAttachLink {
            mechanism,
            target: target
                .map(|t| dup(t, mechanism, &target_name))
                .transpose()?,
            prog: Some(dup(prog, mechanism, &target_name)?),
            target_name,
            attach_type,
            flags,
        })
    }
}

impl Link for ProgAttachLink {
    fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    fn target(&self) -> String {
        self.target_name.clone()
    }

    /// `BPF_F_REPLACE` (5.6+) when attached with `BPF_F_ALLOW_MULTI`: swaps
    /// `old_prog` (default: the program this handle attached) atomically.
    /// Otherwise attaching again replaces the single program.
    fn update(
        &mut self,
        new_prog: BorrowedFd<'_>,
        old_prog: Option<BorrowedFd<'_>>,
    ) -> Result<(), LinkError> {
        let mine = self.prog.as_ref().map(|p| p.as_fd());
        let mut attr = ProgAttachAttr {
            target: self.target.as_ref().map_or(0, |t| fd_u32(t.as_fd())),
            attach_bpf_fd: fd_u32(new_prog),
            attach_type: self.attach_type.0,
            attach_flags: self.flags.bits(),
            ..Default::default()
        };
        if self.flags.contains(AttachFlags::ALLOW_MULTI) {
            let old = old_prog.or(mine).ok_or_else(|| {
                LinkError::unsupported(self.mechanism, "update", "link already detached")
            })?;
            attr.attach_flags |= AttachFlags::REPLACE.bits();
            attr.replace_bpf_fd = fd_u32(old);
        } else if old_prog.is_some() {
            return Err(LinkError::unsupported(
                self.mechanism,
                "update with old program check",
                "needs an attachment made with BPF_F_ALLOW_MULTI",
            ));
        }
        link_attr::prog_attach(attr, false)
            .map_err(|e| LinkError::sys(self.mechanism, "update", &self.target_name, e))?;
        self.prog = Some(dup(new_prog, self.mechanism, &self.target_name)?);
        Ok(())
    }

    fn detach(&mut self) -> Result<(), LinkError> {
        let Some(prog) = self.prog.take() else {
            return Ok(());
        };
        let attr = ProgAttachAttr {
            target: self.target.as_ref().map_or(0, |t| fd_u32(t.as_fd())),
            attach_bpf_fd: fd_u32(prog.as_fd()),
            attach_type: self.attach_type.0,
            ..Default::default()
        };
        match link_attr::prog_attach(attr, true) {
            // ENOENT: someone else detached or replaced it already.
            Err(e) if e.errno() != libc::ENOENT => Err(LinkError::sys(
                self.mechanism,
                "detach (BPF_PROG_DETACH)",
                &self.target_name,
                e,
            )),
            _ => Ok(()),
        }
    }

    fn keep(&mut self) -> Result<(), LinkError> {
        self.prog = None;
        Ok(())
    }
}

impl Drop for ProgAttachLink {
    fn drop(&mut self) {
        let _ = self.detach();
    }
}
