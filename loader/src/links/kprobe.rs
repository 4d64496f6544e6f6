//! kprobes and kretprobes through the `kprobe` perf PMU (a perf event whose
//! `config1` names the function), and `ksyscall` (the arch's syscall wrapper).
//!
//! Minimum kernel version: 4.17 (kprobe PMU; this module has no legacy
//! tracefs `kprobe_events` fallback yet); pinnable `bpf_link` from 5.15.

use super::perf::{PerfLink, attach_perf_fd};
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

/// `ksyscall/NAME`: a kprobe on the syscall's arch-specific entry point.
pub fn attach_ksyscall(
    prog: BorrowedFd<'_>,
    name: &str,
    retprobe: bool,
) -> Result<PerfLink, LinkError> {
    attach_kprobe(prog, &syscall_symbol(name)?, 0, retprobe, 0)
}
