//! Raw tracepoints (`SEC("raw_tp/NAME")`): the program sees the tracepoint's
//! raw arguments. Minimum kernel version: 4.17 (`BPF_RAW_TRACEPOINT_OPEN`,
//! which returns a `bpf_link` fd from 5.7, pinnable from 5.7).

use super::{FdLink, LinkError, Mechanism};
use crate::sys::link_attr;
use std::ffi::CString;
use std::os::fd::BorrowedFd;

/// Attaches a raw_tracepoint (or raw_tracepoint_writable) program to the
/// tracepoint `name` (e.g. `sys_enter`, `sched_switch`).
pub fn attach_raw_tracepoint(prog: BorrowedFd<'_>, name: &str) -> Result<FdLink, LinkError> {
    let target = format!("raw tracepoint {name}");
    let c = CString::new(name)
        .map_err(|_| LinkError::target(Mechanism::RawTracepoint, &target, "NUL in name"))?;
    let fd = link_attr::raw_tracepoint_open(prog, Some(&c), 0)
        .map_err(|e| LinkError::sys(Mechanism::RawTracepoint, "attach", &target, e))?;
    Ok(FdLink::new(fd, Mechanism::RawTracepoint, target))
}
