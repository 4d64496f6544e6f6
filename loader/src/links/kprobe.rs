//! kprobes and kretprobes through the `kprobe` perf PMU (a perf event whose
//! `config1` names the function), and `ksyscall` (the arch's syscall wrapper).
//!
//! Without the PMU (before 4.17, or a kernel built without it) the probe is
//! created through tracefs `kprobe_events` and removed again when the link goes.
//!
//! Minimum kernel version: 4.1 (tracefs probes), 4.17 (kprobe PMU); pinnable
//! `bpf_link` from 5.15.

use super::perf::{Cleanup, PerfLink, attach_perf_fd};
use super::{LinkError, Mechanism};
use crate::perf_event::{self, PerfEventAttr, PerfType};
use std::ffi::CString;
use std::os::fd::BorrowedFd;
use std::path::Path;

/// A dynamic PMU's type number and the config bit that makes it a return probe.
pub(crate) fn dynamic_pmu(name: &str, m: Mechanism, target: &str) -> Result<(u32, u64), LinkError> {
    let dir = Path::new("/sys/bus/event_source/devices").join(name);
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| {
            LinkError::target(
                m,
                target,
                format!("{}: {e} (kernel without the {name} PMU?)", p.display()),
            )
        })
    };
    let ty = read(&dir.join("type"))?;
    let ty: u32 = ty
        .trim()
        .parse()
        .map_err(|_| LinkError::target(m, target, format!("bad PMU type {ty:?}")))?;
    // `config:0` → bit 0.
    let fmt = read(&dir.join("format/retprobe")).unwrap_or_else(|_| "config:0".into());
    let bit: u32 = fmt
        .trim()
        .strip_prefix("config:")
        .and_then(|b| b.parse().ok())
        .unwrap_or(0);
    Ok((ty, 1u64 << bit))
}

/// Attaches a kprobe (or kretprobe) program to `function` + `offset`.
pub fn attach_kprobe(
    prog: BorrowedFd<'_>,
    function: &str,
    offset: u64,
    retprobe: bool,
    cookie: u64,
) -> Result<PerfLink, LinkError> {
    let m = Mechanism::Kprobe;
    let kind = if retprobe { "kretprobe" } else { "kprobe" };
    let target = format!("{kind} {function}+{offset:#x}");
    if !Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        return attach_kprobe_tracefs(prog, function, offset, retprobe, cookie);
    }
    let (ty, ret_bit) = dynamic_pmu("kprobe", m, &target)?;
    let name = CString::new(function).map_err(|_| LinkError::target(m, &target, "NUL in name"))?;
    let mut attr = PerfEventAttr::probe(PerfType(ty), if retprobe { ret_bit } else { 0 });
    attr.config1 = name.as_ptr() as u64;
    attr.config2 = offset;
    let perf = perf_event::perf_event_open(&attr, -1, 0)
        .map_err(|e| LinkError::kernel(m, "perf_event_open", &target, e))?;
    attach_perf_fd(prog, perf, cookie, m, target, None)
}

/// The kernel symbol of syscall `name` on this architecture
/// (`__x64_sys_openat`, `__arm64_sys_openat`), or `sys_NAME` on kernels
/// without syscall wrappers. Reads `/proc/kallsyms`.
pub fn syscall_symbol(name: &str) -> Result<String, LinkError> {
    let prefix = match std::env::consts::ARCH {
        "x86_64" => "__x64_",
        "aarch64" => "__arm64_",
        "s390x" => "__s390x_",
        "riscv64" => "__riscv_",
        _ => "",
    };
    let candidates = [format!("{prefix}sys_{name}"), format!("sys_{name}")];
    let syms = std::fs::read_to_string("/proc/kallsyms")
        .map_err(|e| LinkError::target(Mechanism::Kprobe, name, format!("/proc/kallsyms: {e}")))?;
    let present = |c: &str| syms.lines().any(|l| l.split_whitespace().nth(2) == Some(c));
    candidates.into_iter().find(|c| present(c)).ok_or_else(|| {
        LinkError::target(Mechanism::Kprobe, name, "no such syscall in /proc/kallsyms")
    })
}

/// Whether `name` is a function symbol of the running kernel (`/proc/kallsyms`).
pub fn is_kernel_function(name: &str) -> bool {
    std::fs::read_to_string("/proc/kallsyms").is_ok_and(|syms| {
        syms.lines().any(|l| {
            let mut f = l.split_whitespace();
            let kind = f.nth(1);
            matches!(kind, Some("t" | "T")) && f.next() == Some(name)
        })
    })
}

/// `ksyscall/NAME`: a kprobe on the syscall's arch-specific entry point.
pub fn attach_ksyscall(
    prog: BorrowedFd<'_>,
    name: &str,
    retprobe: bool,
) -> Result<PerfLink, LinkError> {
    attach_kprobe(prog, &syscall_symbol(name)?, 0, retprobe, 0)
}

/// A probe created in tracefs `kprobe_events`, removed when dropped.
#[derive(Debug)]
struct TracefsProbe {
    events: std::path::PathBuf,
    /// `kiln/NAME`.
    event: String,
}

impl Cleanup for TracefsProbe {}

impl Drop for TracefsProbe {
    fn drop(&mut self) {
        // Best effort: the probe disappears at reboot anyway.
        let _ = append_line(&self.events, &format!("-:{}", self.event));
    }
}

/// Appends one command to a tracefs control file. Opening without append
/// would truncate it, which removes every probe of every tool.
fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(format!("{line}\n").as_bytes())
}

/// A tracefs event name for a probe: unique per process and call, made of
/// the characters tracefs accepts.
pub(crate) fn tracefs_event_name(kind: &str, what: &str, offset: u64) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let clean: String = what
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(32)
        .collect();
    format!(
        "kiln_{kind}_{}_{}_{clean}_{offset:x}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// The legacy path: `p:kiln/NAME FUNC+OFF` (or `r:` for a return probe) in
/// `kprobe_events`, then a tracepoint perf event on the new event's id.
/// Minimum kernel version: 4.1.
pub fn attach_kprobe_tracefs(
    prog: BorrowedFd<'_>,
    function: &str,
    offset: u64,
    retprobe: bool,
    cookie: u64,
) -> Result<PerfLink, LinkError> {
    let m = Mechanism::Kprobe;
    let kind = if retprobe { "kretprobe" } else { "kprobe" };
    let target = format!("{kind} {function}+{offset:#x} (tracefs)");
    if function.is_empty() || function.contains(char::is_whitespace) {
        return Err(LinkError::target(m, &target, "not a function name"));
    }
    let root = super::tracepoint::tracefs_root()
        .map_err(|e| LinkError::target(m, &target, format!("tracefs unavailable: {e}")))?;
    let events = root.join("kprobe_events");
    let name = tracefs_event_name(kind, function, offset);
    let cmd = format!(
        "{}:kiln/{name} {function}+{offset}",
        if retprobe { 'r' } else { 'p' }
    );
    append_line(&events, &cmd)
        .map_err(|e| LinkError::kernel(m, "create probe in kprobe_events", &target, e))?;
    // From here on the probe exists: the guard removes it on every path.
    let probe = TracefsProbe {
        events,
        event: format!("kiln/{name}"),
    };
    let id = super::tracepoint::tracepoint_id("kiln", &name)
        .map_err(|e| LinkError::target(m, &target, crate::error_chain(&e)))?;
    let attr = PerfEventAttr::probe(PerfType::TRACEPOINT, id);
    let perf = perf_event::perf_event_open(&attr, -1, 0)
        .map_err(|e| LinkError::kernel(m, "perf_event_open", &target, e))?;
    attach_perf_fd(prog, perf, cookie, m, target, Some(Box::new(probe)))
}
