//! Tracepoints (`SEC("tracepoint/CAT/NAME")`): a perf event of type
//! `PERF_TYPE_TRACEPOINT` whose config is the id tracefs gives the event.
//!
//! Minimum kernel version: 4.7 (`PERF_EVENT_IOC_SET_BPF`); a pinnable
//! `bpf_link` from 5.15, 6.6 for cookies in tracepoint link info.

use super::perf::{PerfLink, attach_perf_fd};
use super::{LinkError, Mechanism};
use crate::perf_event::{self, PerfEventAttr, PerfType};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

/// The tracefs directory (`/sys/kernel/tracing`, or the old
/// `/sys/kernel/debug/tracing`); mounts tracefs at `/sys/kernel/tracing` when
/// neither is there (the host does not mount it by default).
pub fn tracefs_root() -> std::io::Result<PathBuf> {
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if Path::new(dir).join("events").is_dir() {
            return Ok(PathBuf::from(dir));
        }
    }
    let dir = Path::new("/sys/kernel/tracing");
    if !dir.is_dir() {
        std::fs::create_dir_all(dir)?;
    }
    // SAFETY: all arguments are NUL-terminated literals; mount(2) reads them only.
    let r = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        // A concurrent mount by another thread/test is fine.
        if !dir.join("events").is_dir() {
            return Err(e);
        }
    }
    Ok(dir.to_path_buf())
}

/// The id of tracepoint `category/name` from tracefs.
pub fn tracepoint_id(category: &str, name: &str) -> Result<u64, LinkError> {
    let target = format!("{category}/{name}");
    let bad = |reason: String| LinkError::target(Mechanism::Tracepoint, &target, reason);
    if [category, name]
        .iter()
        .any(|s| s.is_empty() || s.contains('/') || s.contains(".."))
    {
        return Err(bad("category and name must be plain names".into()));
    }
    let root = tracefs_root().map_err(|e| bad(format!("tracefs unavailable: {e}")))?;
    let path = root.join("events").join(category).join(name).join("id");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        bad(format!(
            "{}: {e} (no such tracepoint in this kernel?)",
            path.display()
        ))
    })?;
    text.trim()
        .parse()
        .map_err(|_| bad(format!("{}: not a number: {text:?}", path.display())))
}

/// Attaches a tracepoint program to `category/name` (e.g. `syscalls`,
/// `sys_enter_getpid`) on every CPU. `cookie` needs 5.15 (else pass 0).
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kiln_loader::links::Link;
/// use kiln_loader::links::tracepoint::attach_tracepoint;
///
/// let ebpf = kiln_loader::load_file("target/bpf/counter.bpf.o")?;
/// let program = ebpf.program("count_exec").ok_or("no program count_exec")?;
/// let mut link = attach_tracepoint(program.fd(), "sched", "sched_process_exec", 0)?;
/// // Detached when `link` is dropped; pinned, it outlives the process (5.15+).
/// link.pin("/sys/fs/bpf/count_exec".as_ref())?;
/// # Ok(())
/// # }
/// ```
pub fn attach_tracepoint(
    prog: BorrowedFd<'_>,
    category: &str,
    name: &str,
    cookie: u64,
) -> Result<PerfLink, LinkError> {
    let id = tracepoint_id(category, name)?;
    let target = format!("tracepoint {category}/{name}");
    let attr = PerfEventAttr::probe(PerfType::TRACEPOINT, id);
    // pid -1, cpu 0: a tracepoint event fires for every task on every CPU.
    let perf = perf_event::perf_event_open(&attr, -1, 0)
        .map_err(|e| LinkError::kernel(Mechanism::Tracepoint, "perf_event_open", &target, e))?;
    attach_perf_fd(prog, perf, cookie, Mechanism::Tracepoint, target, None)
}
