//! Attaching from what the section name says (`tracepoint/syscalls/sys_enter_openat`,
//! `kprobe/do_unlinkat`, `uprobe//usr/lib/libc.so.6:malloc`, `tp_btf/...`):
//! the section's [`AttachPoint`], attached with [`attach`]. Hooks that need
//! a runtime target (an interface, a cgroup, a socket) have no default
//! point: the error says what to give instead.

use super::attach_point::{AttachPoint, attach};
use super::{Link, LinkError, Mechanism};
use kiln_obj::ProgramKind;
use std::os::fd::BorrowedFd;

/// Attaches `prog` (loaded as `kind`) to the target its section names.
pub fn auto_attach(prog: BorrowedFd<'_>, kind: &ProgramKind) -> Result<Box<dyn Link>, LinkError> {
    let point = AttachPoint::from_section(kind)
        .map_err(|e| LinkError::unsupported(Mechanism::Link, "auto-attach", e.to_string()))?;
    attach(prog, &point)
}
