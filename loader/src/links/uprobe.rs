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
    let addr = sym.address();
    file.segments()
        .find_map(|seg| {
            let (start, size) = (seg.address(), seg.size());
            (addr >= start && addr < start + size).then(|| addr - start + seg.file_range().0)
        })
        .ok_or_else(|| LinkError::target(m, &target, "symbol is in no loadable segment"))
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
    let m = Mechanism::Uprobe;
    let kind = if retprobe { "uretprobe" } else { "uprobe" };
    let target = format!("{kind} {}+{offset:#x}", path.display());
    let (ty, ret_bit) = dynamic_pmu("uprobe", m, &target)?;
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| LinkError::target(m, &target, "NUL in path"))?;
    let mut attr = PerfEventAttr::probe(PerfType(ty), if retprobe { ret_bit } else { 0 });
    attr.config1 = c.as_ptr() as u64;
    attr.config2 = offset;
    let (p, cpu) = match pid {
        Some(p) => (p, -1),
        None => (-1, 0),
    };
    let perf = perf_event::perf_event_open(&attr, p, cpu)
        .map_err(|e| LinkError::kernel(m, "perf_event_open", &target, e))?;
    attach_perf_fd(prog, perf, cookie, m, target, None)
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
