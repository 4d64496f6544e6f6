//! USDT (user statically defined tracing) probes: the `.note.stapsdt` notes
//! that `<sys/sdt.h>` leaves in a binary name each probe site (provider,
//! name, address, optional semaphore, argument locations). Attaching a
//! program to `provider:name` puts a uprobe on every site, with the kernel
//! bumping the semaphore (so guarded probe code runs), and describes each
//! site's arguments in the program's `__bpf_usdt_specs` map as libbpf's
//! `<bpf/usdt.bpf.h>` reads it: the site's spec id is its BPF cookie, so
//! `bpf_usdt_arg()` / `BPF_USDT()` work unchanged.
//!
//! Kernels without BPF cookies (before 5.15) make `usdt.bpf.h` look the
//! spec id up by instruction address in `__bpf_usdt_ip_to_spec_id`: that
//! needs the address in the traced process, so there a pid is required.
//!
//! Minimum kernel version: 4.20 (uprobe reference counters for semaphores);
//! 5.15 to attach without a pid (BPF cookies).

use super::perf::PerfLink;
use super::uprobe::{attach_uprobe_ref_ctr, vaddr_file_offset};
use super::{Link, LinkError, Mechanism};
use crate::{Ebpf, Map};
use object::{Architecture, Object, ObjectSection};
use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

const M: Mechanism = Mechanism::Uprobe;
/// `BPF_USDT_MAX_ARG_CNT` of usdt.bpf.h.
pub const MAX_ARGS: usize = 12;
/// Bytes of one `struct __bpf_usdt_spec`.
pub const SPEC_SIZE: usize = 208;
/// The map usdt.bpf.h reads specs from.
pub const SPECS_MAP: &str = "__bpf_usdt_specs";
/// The map usdt.bpf.h finds spec ids in by address, without BPF cookies.
pub const IP_MAP: &str = "__bpf_usdt_ip_to_spec_id";
/// `BPF_FUNC_get_attach_cookie`.
const FUNC_GET_ATTACH_COOKIE: i32 = 174;

/// One probe site of a binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsdtNote {
    /// The provider (`libc`, `python`, ...).
    pub provider: String,
    /// The probe's name.
    pub name: String,
    /// The site's address, corrected for prelinking (`.stapsdt.base`).
    pub pc: u64,
    /// Where the uprobe goes: `pc` as a file offset.
    pub file_offset: u64,
    /// The semaphore's address, 0 when the probe has none.
    pub semaphore: u64,
    /// The semaphore's file offset (for the kernel's reference counter).
    pub semaphore_offset: Option<u64>,
    /// The raw argument spec (`-4@%eax 8@-8(%rbp)`).
    pub args: String,
}

fn err(target: &str, reason: impl Into<String>) -> LinkError {
    LinkError::target(M, target, reason)
}

/// The USDT notes of the ELF file `data` (named `file` in errors).
pub fn parse_notes(data: &[u8], file: &str) -> Result<Vec<UsdtNote>, LinkError> {
    let obj = object::File::parse(data).map_err(|e| err(file, format!("not an ELF: {e}")))?;
    let Some(notes) = obj.section_by_name(".note.stapsdt") else {
        return Ok(Vec::new());
    };
    let bytes = notes
        .data()
        .map_err(|e| err(file, format!(".note.stapsdt: {e}")))?;
    let base_section = obj.section_by_name(".stapsdt.base").map(|s| s.address());
    let le = obj.is_little_endian();
    let word = if obj.is_64() { 8 } else { 4 };
    let u32_at = |b: &[u8], o: usize| -> Option<u32> {
        let a: [u8; 4] = b.get(o..o + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    };
    let addr_at = |b: &[u8], o: usize| -> Option<u64> {
        if word == 4 {
            return u32_at(b, o).map(u64::from);
        }
        let a: [u8; 8] = b.get(o..o + 8)?.try_into().ok()?;
        Some(if le {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        })
    };
    let bad = |at: usize| err(file, format!(".note.stapsdt: malformed note at {at:#x}"));
    let align4 = |n: usize| (n + 3) & !3;
    let mut out = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let namesz = u32_at(bytes, at).ok_or_else(|| bad(at))? as usize;
        let descsz = u32_at(bytes, at + 4).ok_or_else(|| bad(at))? as usize;
        let ntype = u32_at(bytes, at + 8).ok_or_else(|| bad(at))?;
        let name_at = at + 12;
        let desc_at = name_at + align4(namesz);
        let desc = bytes
            .get(desc_at..desc_at + descsz)
            .ok_or_else(|| bad(at))?;
        let owner = bytes
            .get(name_at..name_at + namesz)
            .ok_or_else(|| bad(at))?;
        let next = desc_at + align4(descsz);
        if ntype != 3 || owner != b"stapsdt\0" {
            at = next;
            continue;
        }
        let pc = addr_at(desc, 0).ok_or_else(|| bad(at))?;
        let base = addr_at(desc, word).ok_or_else(|| bad(at))?;
        let semaphore = addr_at(desc, 2 * word).ok_or_else(|| bad(at))?;
        let mut strings = desc
            .get(3 * word..)
            .ok_or_else(|| bad(at))?
            .split(|b| *b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned());
        let provider = strings.next().unwrap_or_default();
        let name = strings.next().unwrap_or_default();
        let args = strings.next().unwrap_or_default();
        // A prelinked binary moved its sections after the notes were
        // written: shift by how far `.stapsdt.base` moved.
        let pc = match base_section {
            Some(now) if base != 0 => pc.wrapping_add(now).wrapping_sub(base),
            _ => pc,
        };
        let site = format!("{file}:{provider}:{name}@{pc:#x}");
        let file_offset = vaddr_file_offset(&obj, pc)
            .ok_or_else(|| err(&site, "probe address is in no loadable segment"))?;
        let semaphore_offset = if semaphore == 0 {
            None
        } else {
            Some(
                vaddr_file_offset(&obj, semaphore)
                    .ok_or_else(|| err(&site, "semaphore is in no loadable segment"))?,
            )
        };
        out.push(UsdtNote {
            provider,
            name,
            pc,
            file_offset,
            semaphore,
            semaphore_offset,
            args,
        });
        at = next;
    }
    Ok(out)
}

/// Where an argument lives, as `usdt.bpf.h`'s `enum __bpf_usdt_arg_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsdtArgKind {
    /// `val_off` is the value.
    Const = 0,
    /// In the register at `reg_off` of `struct pt_regs`.
    Reg = 1,
    /// In user memory at register + `val_off`.
    RegDeref = 2,
}

/// One decoded argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsdtArg {
    /// Where the value is.
    pub kind: UsdtArgKind,
    /// The constant, or the offset added to the register before dereferencing.
    pub val_off: u64,
    /// Offset of the register in the architecture's `struct pt_regs`.
    pub reg_off: i16,
    /// Whether the value is signed.
    pub signed: bool,
    /// Size in bytes (1, 2, 4 or 8).
    pub size: u8,
}

/// Instruction sets whose argument syntax is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsdtArch {
    /// x86_64 (AT&T syntax: `-4@%eax`, `8@16(%rbp)`).
    X86_64,
    /// arm64 (`-4@x0`, `8@[sp, 16]`).
    Aarch64,
}

/// `offsetof(struct pt_regs, <reg>)` on x86_64, any width of the register.
fn x86_reg(name: &str) -> Option<i16> {
    let off = match name {
        "r15" | "r15d" | "r15w" | "r15b" => 0,
        "r14" | "r14d" | "r14w" | "r14b" => 8,
        "r13" | "r13d" | "r13w" | "r13b" => 16,
        "r12" | "r12d" | "r12w" | "r12b" => 24,
        "rbp" | "ebp" | "bp" | "bpl" => 32,
        "rbx" | "ebx" | "bx" | "bl" | "bh" => 40,
        "r11" | "r11d" | "r11w" | "r11b" => 48,
        "r10" | "r10d" | "r10w" | "r10b" => 56,
        "r9" | "r9d" | "r9w" | "r9b" => 64,
        "r8" | "r8d" | "r8w" | "r8b" => 72,
        "rax" | "eax" | "ax" | "al" | "ah" => 80,
        "rcx" | "ecx" | "cx" | "cl" | "ch" => 88,
        "rdx" | "edx" | "dx" | "dl" | "dh" => 96,
        "rsi" | "esi" | "si" | "sil" => 104,
        "rdi" | "edi" | "di" | "dil" => 112,
        "rip" | "eip" | "ip" => 128,
        "rsp" | "esp" | "sp" | "spl" => 152,
        _ => return None,
    };
    Some(off)
}

/// `offsetof(struct user_pt_regs, <reg>)` on aarch64.
fn arm64_reg(name: &str) -> Option<i16> {
    match name {
        "sp" => return Some(31 * 8),
        "pc" => return Some(32 * 8),
        _ => {}
    }
    let n: i16 = name
        .strip_prefix('x')
        .or_else(|| name.strip_prefix('w'))?
        .parse()
        .ok()?;
    (0..=30).contains(&n).then_some(n * 8)
}

fn parse_int(s: &str) -> Option<i64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = match s.strip_prefix("0x") {
        Some(h) => i64::from_str_radix(h, 16).ok()?,
        None => s.parse().ok()?,
    };
    Some(if neg { -v } else { v })
}

fn parse_operand(op: &str, arch: UsdtArch) -> Option<(UsdtArgKind, u64, i16)> {
    use UsdtArgKind::*;
    match arch {
        UsdtArch::X86_64 => {
            if let Some(imm) = op.strip_prefix('$') {
                return Some((Const, parse_int(imm)? as u64, 0));
            }
            if let Some(reg) = op.strip_prefix('%') {
                return Some((Reg, 0, x86_reg(reg)?));
            }
            // OFF(%reg); index/scale forms are not decoded.
            let (off, rest) = op.split_once('(')?;
            let reg = rest.strip_suffix(')')?.strip_prefix('%')?;
            let off = if off.is_empty() { 0 } else { parse_int(off)? };
            Some((RegDeref, off as u64, x86_reg(reg)?))
        }
        UsdtArch::Aarch64 => {
            if let Some(inner) = op.strip_prefix('[') {
                let inner = inner.strip_suffix(']')?;
                let (reg, off) = match inner.split_once(',') {
                    Some((r, o)) => (r.trim(), parse_int(o.trim().trim_start_matches('#'))?),
                    None => (inner.trim(), 0),
                };
                return Some((RegDeref, off as u64, arm64_reg(reg)?));
            }
            if let Some(r) = arm64_reg(op) {
                return Some((Reg, 0, r));
            }
            Some((Const, parse_int(op.trim_start_matches('#'))? as u64, 0))
        }
    }
}

/// An argument spec string [`parse_args`] cannot decode; each names the token.
#[derive(Debug, thiserror::Error)]
pub enum UsdtArgError {
    /// The token has no `SIZE@` prefix.
    #[error("argument {token:?}: no SIZE@")]
    NoSize {
        /// The argument's spec.
        token: String,
    },
    /// The size is not a number.
    #[error("argument {token:?}: bad size")]
    BadSize {
        /// The argument's spec.
        token: String,
    },
    /// The size is not 1, 2, 4 or 8 bytes.
    #[error("argument {token:?}: size {size} is not 1, 2, 4 or 8")]
    Size {
        /// The argument's spec.
        token: String,
        /// The size given (negative: signed).
        size: i32,
    },
    /// The operand is no register, memory or constant form this architecture has.
    #[error("argument {token:?}: operand not understood for {arch:?}")]
    Operand {
        /// The argument's spec.
        token: String,
        /// The architecture decoded for.
        arch: UsdtArch,
    },
    /// More arguments than the BPF-side decoder holds.
    #[error("{count} arguments: at most {max}")]
    TooMany {
        /// Arguments in the spec.
        count: usize,
        /// What the decoder holds.
        max: usize,
    },
}

/// Where a file offset is mapped in a process could not be found ([`runtime_address`]).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeAddressError {
    /// The binary could not be examined.
    #[error("{}: {source}", path.display())]
    Stat {
        /// The binary.
        path: std::path::PathBuf,
        /// Why stat(2) failed.
        #[source]
        source: std::io::Error,
    },
    /// The process's memory map could not be read (it exited, or ptrace access is refused).
    #[error("/proc/{pid}/maps: {source}")]
    Maps {
        /// The process.
        pid: i32,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// No mapping of the file covers the offset.
    #[error("{} offset {offset:#x} is not mapped in process {pid}", path.display())]
    NotMapped {
        /// The binary.
        path: std::path::PathBuf,
        /// The file offset looked for.
        offset: u64,
        /// The process.
        pid: i32,
    },
}

/// Decodes an argument spec string (`-4@%eax 8@-8(%rbp) 4@$5`,
/// `8@x0 -4@[sp, 12]`).
pub fn parse_args(spec: &str, arch: UsdtArch) -> Result<Vec<UsdtArg>, UsdtArgError> {
    let mut out = Vec::new();
    // aarch64 operands contain ", ": split on spaces outside brackets.
    let mut tokens = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in spec.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ' ' if depth == 0 => {
                if i > start {
                    tokens.push(&spec[start..i]);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < spec.len() {
        tokens.push(&spec[start..]);
    }
    for tok in tokens {
        let (size, op) = tok
            .split_once('@')
            .ok_or_else(|| UsdtArgError::NoSize { token: tok.into() })?;
        let size: i32 = size
            .parse()
            .map_err(|_| UsdtArgError::BadSize { token: tok.into() })?;
        let bytes = size.unsigned_abs();
        if ![1, 2, 4, 8].contains(&bytes) {
            return Err(UsdtArgError::Size {
                token: tok.into(),
                size,
            });
        }
        let (kind, val_off, reg_off) =
            parse_operand(op, arch).ok_or_else(|| UsdtArgError::Operand {
                token: tok.into(),
                arch,
            })?;
        out.push(UsdtArg {
            kind,
            val_off,
            reg_off,
            signed: size < 0,
            size: bytes as u8,
        });
    }
    if out.len() > MAX_ARGS {
        return Err(UsdtArgError::TooMany {
            count: out.len(),
            max: MAX_ARGS,
        });
    }
    Ok(out)
}

/// `struct __bpf_usdt_spec` bytes (native endianness) for `args`.
pub fn spec_bytes(args: &[UsdtArg], usdt_cookie: u64) -> [u8; SPEC_SIZE] {
    let mut b = [0u8; SPEC_SIZE];
    for (i, a) in args.iter().take(MAX_ARGS).enumerate() {
        let o = i * 16;
        b[o..o + 8].copy_from_slice(&a.val_off.to_ne_bytes());
        b[o + 8..o + 12].copy_from_slice(&(a.kind as u32).to_ne_bytes());
        b[o + 12..o + 14].copy_from_slice(&a.reg_off.to_ne_bytes());
        b[o + 14] = u8::from(a.signed);
        // Bits to shift out so a 1/2/4-byte value is cast to 64 bits.
        b[o + 15] = 64 - a.size * 8;
    }
    b[192..200].copy_from_slice(&usdt_cookie.to_ne_bytes());
    b[200..202].copy_from_slice(&(args.len().min(MAX_ARGS) as i16).to_ne_bytes());
    b
}

/// Spec ids handed out per specs map (by map id), so several attachments
/// sharing one object do not overwrite each other's specs.
fn spec_ids() -> &'static Mutex<HashMap<u32, Vec<bool>>> {
    static IDS: OnceLock<Mutex<HashMap<u32, Vec<bool>>>> = OnceLock::new();
    IDS.get_or_init(Default::default)
}

/// Every uprobe of one `provider:name` attachment, plus the spec slots it
/// holds. Dropping it detaches every site and frees the slots.
#[derive(Debug)]
pub struct UsdtLink {
    target: String,
    sites: Vec<PerfLink>,
    map_id: u32,
    ids: Vec<u32>,
    /// Keys this attachment added to `__bpf_usdt_ip_to_spec_id`.
    ips: Vec<u64>,
    ip_map: Option<Map>,
}

impl UsdtLink {
    /// The uprobe of each site, in note order.
    pub fn sites(&self) -> &[PerfLink] {
        &self.sites
    }
    /// The spec id (BPF cookie) of each site.
    pub fn spec_ids(&self) -> &[u32] {
        &self.ids
    }
}

impl Link for UsdtLink {
    fn mechanism(&self) -> Mechanism {
        M
    }
    fn target(&self) -> String {
        self.target.clone()
    }
    fn update(
        &mut self,
        _new_prog: BorrowedFd<'_>,
        _old_prog: Option<BorrowedFd<'_>>,
    ) -> Result<(), LinkError> {
        Err(LinkError::unsupported(
            M,
            "update",
            "a USDT attachment is many perf-event links: attach the new program instead",
        ))
    }
    fn detach(&mut self) -> Result<(), LinkError> {
        let mut first = None;
        for mut s in self.sites.drain(..) {
            if let Err(e) = s.detach() {
                first.get_or_insert(e);
            }
        }
        if let Some(m) = &self.ip_map {
            for ip in self.ips.drain(..) {
                let _ = m.delete_bytes(&ip.to_ne_bytes());
            }
        }
        let mut ids = spec_ids().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(used) = ids.get_mut(&self.map_id) {
            for id in self.ids.drain(..) {
                if let Some(u) = used.get_mut(id as usize) {
                    *u = false;
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for UsdtLink {
    fn drop(&mut self) {
        let _ = self.detach();
    }
}

/// Options of [`attach_usdt`].
#[derive(Clone, Debug, Default)]
pub struct UsdtOptions {
    /// Only this process (default: every process running the binary).
    pub pid: Option<i32>,
    /// What `bpf_usdt_cookie()` returns.
    pub cookie: u64,
    /// Also record each site's address in the traced process in
    /// `__bpf_usdt_ip_to_spec_id` (needs `pid`), as kernels without BPF
    /// cookies require; done there whatever this says.
    pub ip_map: bool,
}

/// The address `file_offset` of `path` is mapped at in process `pid`, from
/// `/proc/PID/maps` (matched by device and inode, so any path to the file
/// works).
pub fn runtime_address(
    pid: i32,
    path: &Path,
    file_offset: u64,
) -> Result<u64, RuntimeAddressError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|source| RuntimeAddressError::Stat {
        path: path.to_owned(),
        source,
    })?;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|source| RuntimeAddressError::Maps { pid, source })?;
    for line in maps.lines() {
        // start-end perms offset major:minor inode path
        let f: Vec<&str> = line.split_whitespace().collect();
        let [range, _perms, off, dev, inode, ..] = f[..] else {
            continue;
        };
        if inode.parse::<u64>().ok() != Some(meta.ino()) {
            continue;
        }
        let (maj, min) = dev.split_once(':').unwrap_or(("", ""));
        let dev_ok = u64::from_str_radix(maj, 16).ok() == Some(libc::major(meta.dev()) as u64)
            && u64::from_str_radix(min, 16).ok() == Some(libc::minor(meta.dev()) as u64);
        let (Some((start, end)), Ok(off)) = (range.split_once('-'), u64::from_str_radix(off, 16))
        else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        if dev_ok && file_offset >= off && file_offset < off + (end - start) {
            return Ok(start + file_offset - off);
        }
    }
    Err(RuntimeAddressError::NotMapped {
        path: path.to_owned(),
        offset: file_offset,
        pid,
    })
}

/// Attaches `prog` (a uprobe/`usdt` program of `ebpf`) to every site of
/// `provider:name` in the binary at `path`, describing each site's arguments
/// in the object's `__bpf_usdt_specs` map.
pub fn attach_usdt(
    prog: BorrowedFd<'_>,
    ebpf: &Ebpf,
    path: &Path,
    provider: &str,
    name: &str,
    opts: &UsdtOptions,
) -> Result<UsdtLink, LinkError> {
    let target = format!("usdt {}:{provider}:{name}", path.display());
    let specs = ebpf.map(SPECS_MAP).ok_or_else(|| {
        err(
            &target,
            format!("the object has no {SPECS_MAP} map (include <bpf/usdt.bpf.h>)"),
        )
    })?;
    let cookies = crate::probe::probe_helper(kiln_obj::ProgramType::KPROBE, FUNC_GET_ATTACH_COOKIE);
    let ip_map = if opts.ip_map || !cookies {
        let Some(pid) = opts.pid else {
            return Err(err(
                &target,
                "this kernel has no BPF cookies (5.15): usdt.bpf.h finds specs by address, so attach to one pid",
            ));
        };
        let m = ebpf
            .map(IP_MAP)
            .ok_or_else(|| err(&target, format!("the object has no {IP_MAP} map")))?;
        let m = m
            .try_clone()
            .map_err(|e| err(&target, format!("{IP_MAP}: {e}")))?;
        Some((pid, m))
    } else {
        None
    };
    let data = std::fs::read(path).map_err(|e| err(&target, e.to_string()))?;
    let arch = match object::File::parse(&*data).map(|f| f.architecture()) {
        Ok(Architecture::X86_64) => UsdtArch::X86_64,
        Ok(Architecture::Aarch64) => UsdtArch::Aarch64,
        Ok(a) => return Err(err(&target, format!("arguments of {a:?} are not decoded"))),
        Err(e) => return Err(err(&target, format!("not an ELF: {e}"))),
    };
    let file = path.display().to_string();
    let notes: Vec<_> = parse_notes(&data, &file)?
        .into_iter()
        .filter(|n| n.provider == provider && n.name == name)
        .collect();
    if notes.is_empty() {
        return Err(err(&target, "no such probe in .note.stapsdt"));
    }
    if specs.value_size() as usize != SPEC_SIZE {
        return Err(err(
            &target,
            format!(
                "map {} holds {}-byte values, not struct __bpf_usdt_spec ({SPEC_SIZE})",
                specs.name(),
                specs.value_size()
            ),
        ));
    }
    let map_id = specs
        .info()
        .map_err(|e| err(&target, format!("map {}: {e}", specs.name())))?
        .id;
    let mut link = UsdtLink {
        target: target.clone(),
        sites: Vec::new(),
        map_id,
        ids: Vec::new(),
        ips: Vec::new(),
        ip_map: None,
    };
    let ip_pid = ip_map.as_ref().map(|(pid, _)| *pid);
    link.ip_map = ip_map.map(|(_, m)| m);
    for n in &notes {
        let site = format!("{target}@{:#x}", n.pc);
        let args = parse_args(&n.args, arch).map_err(|e| err(&site, e.to_string()))?;
        let id = {
            let mut all = spec_ids().lock().unwrap_or_else(|p| p.into_inner());
            let used = all
                .entry(map_id)
                .or_insert_with(|| vec![false; specs.max_entries() as usize]);
            let id = used
                .iter()
                .position(|u| !u)
                .ok_or_else(|| err(&site, format!("map {} is full", specs.name())))?;
            used[id] = true;
            id as u32
        };
        link.ids.push(id);
        specs
            .update_bytes(
                &id.to_ne_bytes(),
                &spec_bytes(&args, opts.cookie),
                Default::default(),
            )
            .map_err(|e| err(&site, format!("write spec: {e}")))?;
        if let (Some(pid), Some(m)) = (ip_pid, &link.ip_map) {
            let ip =
                runtime_address(pid, path, n.file_offset).map_err(|e| err(&site, e.to_string()))?;
            m.update_bytes(&ip.to_ne_bytes(), &id.to_ne_bytes(), Default::default())
                .map_err(|e| err(&site, format!("{IP_MAP}: {e}")))?;
            link.ips.push(ip);
        }
        let perf = attach_uprobe_ref_ctr(
            prog,
            path,
            n.file_offset,
            n.semaphore_offset.unwrap_or(0),
            false,
            opts.pid,
            if cookies { u64::from(id) } else { 0 },
        )?;
        link.sites.push(perf);
    }
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_specs_decode() {
        let a = parse_args("-4@%eax 8@-8(%rbp) -4@$5 2@(%rdi) 1@%r8b", UsdtArch::X86_64).unwrap();
        assert_eq!(a.len(), 5);
        assert_eq!(
            a[0],
            UsdtArg {
                kind: UsdtArgKind::Reg,
                val_off: 0,
                reg_off: 80,
                signed: true,
                size: 4
            }
        );
        assert_eq!(
            (a[1].kind, a[1].val_off as i64, a[1].reg_off, a[1].signed),
            (UsdtArgKind::RegDeref, -8, 32, false)
        );
        assert_eq!((a[2].kind, a[2].val_off), (UsdtArgKind::Const, 5));
        assert_eq!(
            (a[3].kind, a[3].val_off, a[3].reg_off),
            (UsdtArgKind::RegDeref, 0, 112)
        );
        assert_eq!((a[4].reg_off, a[4].size), (72, 1));
        assert!(parse_args("4@8(%rax,%rbx,2)", UsdtArch::X86_64).is_err());
        assert!(parse_args("3@%eax", UsdtArch::X86_64).is_err());
    }

    #[test]
    fn arm64_specs_decode() {
        let a = parse_args("8@x0 -4@[sp, 12] 4@[x19] -4@5 8@w3", UsdtArch::Aarch64).unwrap();
        assert_eq!((a[0].kind, a[0].reg_off), (UsdtArgKind::Reg, 0));
        assert_eq!(
            (a[1].kind, a[1].reg_off, a[1].val_off),
            (UsdtArgKind::RegDeref, 248, 12)
        );
        assert!(a[1].signed);
        assert_eq!(
            (a[2].kind, a[2].reg_off, a[2].val_off),
            (UsdtArgKind::RegDeref, 152, 0)
        );
        assert_eq!((a[3].kind, a[3].val_off as i64), (UsdtArgKind::Const, 5));
        assert_eq!(a[4].reg_off, 24);
        assert!(parse_args("8@[x99]", UsdtArch::Aarch64).is_err());
    }

    #[test]
    fn spec_layout_matches_usdt_bpf_h() {
        let a = parse_args("-4@%eax 8@$77", UsdtArch::X86_64).unwrap();
        let b = spec_bytes(&a, 0xabcd);
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 1);
        assert_eq!(i16::from_ne_bytes(b[12..14].try_into().unwrap()), 80);
        assert_eq!((b[14], b[15]), (1, 32));
        assert_eq!(u64::from_ne_bytes(b[16..24].try_into().unwrap()), 77);
        assert_eq!((b[30], b[31]), (0, 0));
        assert_eq!(u64::from_ne_bytes(b[192..200].try_into().unwrap()), 0xabcd);
        assert_eq!(i16::from_ne_bytes(b[200..202].try_into().unwrap()), 2);
    }
}
