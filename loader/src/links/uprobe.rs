//! uprobes and uretprobes through the `uprobe` perf PMU: a perf event on a
//! file offset in an ELF binary or library, for every process or one pid.
//! Symbols resolve to file offsets with the `object` crate.
//!
//! Minimum kernel version: 4.17 (uprobe PMU); pinnable `bpf_link` from 5.15.

use super::kprobe::dynamic_pmu;
use super::perf::{PerfLink, attach_perf_fd};
use super::{LinkError, Mechanism};
use crate::perf_event::{self, PerfEventAttr, PerfType};
use object::{Object, ObjectSegment, ObjectSymbol};
use std::ffi::CString;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The file offset of `symbol` (+ `offset`) in the ELF file at `path`: its
/// address mapped through the loadable segment that contains it.
pub fn symbol_file_offset(path: &Path, symbol: &str) -> Result<u64, LinkError> {
    let m = Mechanism::Uprobe;
    let target = format!("{}:{symbol}", path.display());
    let data = std::fs::read(path).map_err(|e| LinkError::target(m, &target, e.to_string()))?;
    let file = object::File::parse(&*data)
        .map_err(|e| LinkError::target(m, &target, format!("not an ELF file: {e}")))?;
    let sym = file
        .symbols()
        .chain(file.dynamic_symbols())
        .find(|s| s.name() == Ok(symbol) && s.address() != 0)
        .ok_or_else(|| LinkError::target(m, &target, "symbol not found (stripped binary?)"))?;
    vaddr_file_offset(&file, sym.address())
        .ok_or_else(|| LinkError::target(m, &target, "symbol is in no loadable segment"))
}

/// The file offset of virtual address `addr`, through the loadable segment
/// that maps it.
pub(crate) fn vaddr_file_offset(file: &object::File<'_>, addr: u64) -> Option<u64> {
    file.segments().find_map(|seg| {
        let (start, size) = (seg.address(), seg.size());
        (addr >= start && addr < start + size).then(|| addr - start + seg.file_range().0)
    })
}

/// The first bit of `config` where the uprobe PMU takes a reference counter
/// (USDT semaphore) offset, from its sysfs format file (`config:32-63`).
fn ref_ctr_shift(m: Mechanism, target: &str) -> Result<u32, LinkError> {
    let path = "/sys/bus/event_source/devices/uprobe/format/ref_ctr_offset";
    let text = std::fs::read_to_string(path).map_err(|e| {
        LinkError::target(
            m,
            target,
            format!("{path}: {e} (semaphores need kernel 4.20)"),
        )
    })?;
    text.trim()
        .strip_prefix("config:")
        .and_then(|r| r.split('-').next())
        .and_then(|b| b.parse().ok())
        .ok_or_else(|| LinkError::target(m, target, format!("{path}: unexpected {text:?}")))
}

/// Attaches a uprobe (or uretprobe) program at `offset` in `path`, for the
/// process `pid` only or for every process using the file.
pub fn attach_uprobe_offset(
    prog: BorrowedFd<'_>,
    path: &Path,
    offset: u64,
    retprobe: bool,
    pid: Option<i32>,
    cookie: u64,
) -> Result<PerfLink, LinkError> {
    attach_uprobe_ref_ctr(prog, path, offset, 0, retprobe, pid, cookie)
}

/// [`attach_uprobe_offset`] with a reference counter: the kernel increments
/// the u16 at file offset `ref_ctr_offset` (a USDT semaphore) in every
/// process the probe is installed in, and decrements it on detach. 0: none.
///
/// Minimum kernel version: 4.20 (reference counters).
pub fn attach_uprobe_ref_ctr(
    prog: BorrowedFd<'_>,
    path: &Path,
    offset: u64,
    ref_ctr_offset: u64,
    retprobe: bool,
    pid: Option<i32>,
    cookie: u64,
) -> Result<PerfLink, LinkError> {
    let m = Mechanism::Uprobe;
    let kind = if retprobe { "uretprobe" } else { "uprobe" };
    let target = format!("{kind} {}+{offset:#x}", path.display());
    let (ty, ret_bit) = dynamic_pmu("uprobe", m, &target)?;
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| LinkError::target(m, &target, "NUL in path"))?;
    let mut attr = PerfEventAttr::probe(PerfType(ty), if retprobe { ret_bit } else { 0 });
    attr.config1 = c.as_ptr() as u64;
    attr.config2 = offset;
    if ref_ctr_offset != 0 {
        attr.config |= ref_ctr_offset << ref_ctr_shift(m, &target)?;
    }
    let (p, cpu) = match pid {
        Some(p) => (p, -1),
        None => (-1, 0),
    };
    let perf = perf_event::perf_event_open(&attr, p, cpu)
        .map_err(|e| LinkError::kernel(m, "perf_event_open", &target, e))?;
    attach_perf_fd(prog, perf, cookie, m, target, None)
}

/// Where a uprobe target named without a directory lives, found as libbpf
/// finds it: a library (`libc.so.6`, any name with `.so`) in
/// `LD_LIBRARY_PATH` and then the system library directories, a program in
/// `PATH`. A name with a `/`, or one found nowhere, is returned unchanged.
pub fn resolve_library(path: &Path) -> std::path::PathBuf {
    let Some(name) = path.to_str().filter(|n| !n.contains('/')) else {
        return path.to_path_buf();
    };
    let dirs: Vec<String> = if name.contains(".so") {
        let mut d: Vec<String> = std::env::var("LD_LIBRARY_PATH")
            .unwrap_or_default()
            .split(':')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let multiarch = format!("{}-linux-gnu", std::env::consts::ARCH);
        for sys in ["/lib", "/usr/lib", "/lib64", "/usr/lib64"] {
            d.push(format!("{sys}/{multiarch}"));
            d.push(sys.to_string());
        }
        d
    } else {
        std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    dirs.iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| path.to_path_buf())
}

/// Attaches at `symbol` in `path` (a binary or shared library).
pub fn attach_uprobe(
    prog: BorrowedFd<'_>,
    path: &Path,
    symbol: &str,
    retprobe: bool,
    pid: Option<i32>,
) -> Result<PerfLink, LinkError> {
    let offset = symbol_file_offset(path, symbol)?;
    attach_uprobe_offset(prog, path, offset, retprobe, pid, 0)
}
