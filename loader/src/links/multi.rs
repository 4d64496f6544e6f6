//! One link, many probes: `kprobe.multi` (a kernel function list or glob,
//! through fprobe; minimum kernel version 5.18) and `uprobe.multi` (many
//! offsets in one binary; minimum kernel version 6.6). Each probe can carry
//! its own cookie (`bpf_get_attach_cookie`).

use super::uprobe::symbol_file_offset;
use super::{FdLink, LinkError, Mechanism};
use crate::sys::link_attr::{self, KprobeMultiExtra, LinkCreateAttr, UprobeMultiExtra, fd_u32};
use kiln_obj::AttachType;
use object::{Object, ObjectSymbol};
use std::ffi::CString;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `BPF_F_KPROBE_MULTI_RETURN` / `BPF_F_UPROBE_MULTI_RETURN`.
const MULTI_RETURN: u32 = 1;

/// Shell-style match of `name` against `pattern` (`*` any run, `?` one char).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and the name position it currently covers up to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// Kernel functions matching `pattern`, from tracefs
/// `available_filter_functions` (the functions fprobe can attach to), else
/// the text symbols of `/proc/kallsyms`. Sorted, without duplicates.
pub fn resolve_kernel_glob(pattern: &str) -> Result<Vec<String>, LinkError> {
    let m = Mechanism::KprobeMulti;
    let from_tracefs = super::tracepoint::tracefs_root()
        .ok()
        .and_then(|r| std::fs::read_to_string(r.join("available_filter_functions")).ok());
    let names: Vec<String> = match from_tracefs {
        Some(text) => text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|f| glob_match(pattern, f))
            .map(str::to_owned)
            .collect(),
        None => {
            let text = std::fs::read_to_string("/proc/kallsyms")
                .map_err(|e| LinkError::target(m, pattern, format!("/proc/kallsyms: {e}")))?;
            text.lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace();
                    let (_, kind, name) = (f.next()?, f.next()?, f.next()?);
                    matches!(kind, "t" | "T").then_some(name)
                })
                .filter(|f| glob_match(pattern, f))
                .map(str::to_owned)
                .collect()
        }
    };
    let mut names = names;
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(LinkError::target(m, pattern, "no kernel function matches"));
    }
    Ok(names)
}

/// Attaches a `kprobe.multi` (or `kretprobe.multi`) program to every
/// function in `functions` (names, or globs resolved by
/// [`resolve_kernel_glob`]). `cookies`, when given, has one cookie per
/// resolved function, in the order of `functions` after glob expansion.
pub fn attach_kprobe_multi(
    prog: BorrowedFd<'_>,
    functions: &[&str],
    retprobe: bool,
    cookies: Option<&[u64]>,
) -> Result<FdLink, LinkError> {
    let m = Mechanism::KprobeMulti;
    let mut names = Vec::new();
    for f in functions {
        if is_glob(f) {
            names.extend(resolve_kernel_glob(f)?);
        } else {
            names.push((*f).to_owned());
        }
    }
    let target = format!(
        "{} {} function(s): {}",
        if retprobe {
            "kretprobe.multi"
        } else {
            "kprobe.multi"
        },
        names.len(),
        functions.join(",")
    );
    if names.is_empty() {
        return Err(LinkError::target(m, &target, "no functions given"));
    }
    if let Some(c) = cookies
        && c.len() != names.len()
    {
        return Err(LinkError::target(
            m,
            &target,
            format!("{} cookies for {} functions", c.len(), names.len()),
        ));
    }
    let cstrs = names
        .iter()
        .map(|n| CString::new(n.as_str()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| LinkError::target(m, &target, "NUL in a function name"))?;
    // The kernel reads an array of string pointers; both outlive the call.
    let ptrs: Vec<u64> = cstrs.iter().map(|c| c.as_ptr() as u64).collect();
    let mut attr = LinkCreateAttr {
        prog_fd: fd_u32(prog),
        attach_type: AttachType::TRACE_KPROBE_MULTI.0,
        ..Default::default()
    };
    attr.extra.kprobe_multi = KprobeMultiExtra {
        flags: if retprobe { MULTI_RETURN } else { 0 },
        cnt: ptrs.len() as u32,
        syms: ptrs.as_ptr() as u64,
        addrs: 0,
        cookies: cookies.map_or(0, |c| c.as_ptr() as u64),
    };
    // SAFETY: `syms` points at `cnt` string pointers (`ptrs`, into `cstrs`),
    // `cookies` (checked above) at as many u64s; all live across the call.
    let fd = unsafe { link_attr::link_create_with_pointers(attr) }
        .map_err(|e| LinkError::sys(m, "attach", &target, e))?;
    Ok(FdLink::new(fd, m, target))
}

/// Function symbols of the ELF file at `path` matching `pattern`, sorted.
pub fn resolve_elf_glob(path: &Path, pattern: &str) -> Result<Vec<String>, LinkError> {
    let m = Mechanism::UprobeMulti;
    let target = format!("{}:{pattern}", path.display());
    let data = std::fs::read(path).map_err(|e| LinkError::target(m, &target, e.to_string()))?;
    let file = object::File::parse(&*data)
        .map_err(|e| LinkError::target(m, &target, format!("not an ELF file: {e}")))?;
    let mut names: Vec<String> = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == object::SymbolKind::Text && s.address() != 0)
        .filter_map(|s| s.name().ok())
        .filter(|n| glob_match(pattern, n))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(LinkError::target(m, &target, "no function symbol matches"));
    }
    Ok(names)
}

/// Attaches a `uprobe.multi` program at every symbol of `symbols` (names or
/// globs) in the binary `path`, for `pid` only or every process.
/// `cookies` has one cookie per resolved symbol, in resolution order.
pub fn attach_uprobe_multi(
    prog: BorrowedFd<'_>,
    path: &Path,
    symbols: &[&str],
    retprobe: bool,
    pid: Option<i32>,
    cookies: Option<&[u64]>,
) -> Result<FdLink, LinkError> {
    let mut names = Vec::new();
    for s in symbols {
        if is_glob(s) {
            names.extend(resolve_elf_glob(path, s)?);
        } else {
            names.push((*s).to_owned());
        }
    }
    let offsets = names
        .iter()
        .map(|n| symbol_file_offset(path, n))
        .collect::<Result<Vec<u64>, _>>()?;
    attach_uprobe_multi_offsets(prog, path, &offsets, retprobe, pid, cookies)
}

/// [`attach_uprobe_multi`] at raw file offsets.
pub fn attach_uprobe_multi_offsets(
    prog: BorrowedFd<'_>,
    path: &Path,
    offsets: &[u64],
    retprobe: bool,
    pid: Option<i32>,
    cookies: Option<&[u64]>,
) -> Result<FdLink, LinkError> {
    let m = Mechanism::UprobeMulti;
    let target = format!(
        "{} {} probe(s) in {}",
        if retprobe {
            "uretprobe.multi"
        } else {
            "uprobe.multi"
        },
        offsets.len(),
        path.display()
    );
    if offsets.is_empty() {
        return Err(LinkError::target(m, &target, "no offsets"));
    }
    if let Some(c) = cookies
        && c.len() != offsets.len()
    {
        return Err(LinkError::target(
            m,
            &target,
            format!("{} cookies for {} probes", c.len(), offsets.len()),
        ));
    }
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| LinkError::target(m, &target, "NUL in path"))?;
    let mut attr = LinkCreateAttr {
        prog_fd: fd_u32(prog),
        attach_type: AttachType::TRACE_UPROBE_MULTI.0,
        ..Default::default()
    };
    attr.extra.uprobe_multi = UprobeMultiExtra {
        path: cpath.as_ptr() as u64,
        offsets: offsets.as_ptr() as u64,
        ref_ctr_offsets: 0,
        cookies: cookies.map_or(0, |c| c.as_ptr() as u64),
        cnt: offsets.len() as u32,
        flags: if retprobe { MULTI_RETURN } else { 0 },
        pid: pid.map_or(0, |p| p as u32),
        _pad0: 0,
    };
    // SAFETY: `path` is the NUL-terminated `cpath`, `offsets` and `cookies`
    // (checked above) hold `cnt` u64s; all live across the call.
    let fd = unsafe { link_attr::link_create_with_pointers(attr) }
        .map_err(|e| LinkError::sys(m, "attach", &target, e))?;
    Ok(FdLink::new(fd, m, target))
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("tcp_*", "tcp_v4_connect"));
        assert!(glob_match("*connect", "tcp_v4_connect"));
        assert!(glob_match("tcp_v?_connect", "tcp_v6_connect"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(!glob_match("tcp_*", "udp_send"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }
}
