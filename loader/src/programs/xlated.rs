//! The kernel's translated instructions of a loaded program (`xlated`), in a
//! form two loaders can be compared on: map ids become a description of the
//! map, kernel addresses are masked, and subprograms are put in one canonical
//! order whatever order each loader appended them in.
//!
//! The differential tests against libbpf (`obj/tests/differential.rs`) and the
//! conformance suite (`kiln-conformance`) both compare through this module, so
//! a normalisation fix reaches both.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd};

use crate::sys::SysError;
use crate::sys::attr::ProgInfo;
use crate::sys::object::{self as sysobj, IdKind};
use kiln_obj::Insn;

const INSN_SIZE: usize = 8;
const LD_IMM64: u8 = 0x18;
const JMP_CALL: u8 = 0x85;
const PSEUDO_MAP_FD: u8 = 1;
const PSEUDO_MAP_VALUE: u8 = 2;
/// `src_reg` of a bpf-to-bpf call: after verification its `off` still holds
/// the relative target (the kernel moves the original `imm` there).
const PSEUDO_CALL: u8 = 1;

/// What the kernel reports about a program's BTF: how many func_info and
/// line_info records it kept, and where each function starts (instruction
/// index in the xlated code).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BtfExtInfo {
    /// The program's BTF object id.
    pub btf_id: u32,
    /// func_info records kept.
    pub func_info: u32,
    /// line_info records kept.
    pub line_info: u32,
    /// Where each function starts, as an instruction index in the xlated code.
    pub func_starts: Vec<u32>,
}

/// The raw xlated instructions and the program's BTF info counts.
/// Needs root (without it the kernel reports a length of 0).
pub fn xlated_raw(fd: BorrowedFd<'_>) -> Result<(Vec<u8>, BtfExtInfo), SysError> {
    let first: ProgInfo = sysobj::info_by_fd(fd)?;
    let mut insns = vec![0u8; first.xlated_prog_len as usize];
    // struct bpf_func_info: insn_off, type_id (the kernel writes records of
    // the size we ask for, so ask for exactly these two fields).
    let mut funcs = vec![[0u32; 2]; first.nr_func_info as usize];
    let mut info = ProgInfo {
        xlated_prog_len: insns.len() as u32,
        xlated_prog_insns: insns.as_mut_ptr() as u64,
        nr_func_info: funcs.len() as u32,
        func_info_rec_size: if funcs.is_empty() { 0 } else { 8 },
        func_info: funcs.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: `xlated_prog_insns` addresses `insns.len()` writable bytes and
    // `func_info` `nr_func_info` records of `func_info_rec_size` bytes; no
    // other pointer field is set.
    unsafe { sysobj::info_by_fd_with(fd, &mut info) }?;
    insns.truncate(info.xlated_prog_len.min(first.xlated_prog_len) as usize);
    funcs.truncate(info.nr_func_info.min(first.nr_func_info) as usize);
    Ok((
        insns,
        BtfExtInfo {
            btf_id: first.btf_id,
            func_info: first.nr_func_info,
            line_info: first.nr_line_info,
            func_starts: funcs.iter().map(|f| f[0]).collect(),
        },
    ))
}

/// A map as both loaders see it: its shape and the part of its name they
/// share (global data maps are prefixed with an object name that differs
/// between loaders, and 15-character truncation may cut either).
pub fn map_label(id: u32) -> Result<String, SysError> {
    let fd = sysobj::open_id(IdKind::Map, id).map_err(|e| e.source)?;
    let info = crate::maps::map_info(fd.as_fd())?;
    Ok(format!(
        "{} type {} key {} value {} max {}",
        shared_map_name(&info.name),
        info.map_type.0,
        info.key_size,
        info.value_size,
        info.max_entries
    ))
}

/// The part of a kernel map name two loaders agree on: from the first dot
/// on for global data (`obj.rodata` and `.rodata` both give `.rodata`).
pub fn shared_map_name(name: &str) -> &str {
    match name.find('.') {
        Some(dot) => &name[dot..],
        None => name,
    }
}

/// The program's xlated code, normalised (see [`normalize`]), with map ids
/// described by [`map_label`].
pub fn normalized_xlated(fd: BorrowedFd<'_>) -> Result<Vec<String>, SysError> {
    let (insns, ext) = xlated_raw(fd)?;
    let mut labels: HashMap<u32, String> = HashMap::new();
    normalize(&insns, &ext.func_starts, &mut |id| {
        if let Some(l) = labels.get(&id) {
            return Ok(l.clone());
        }
        let l = map_label(id)?;
        labels.insert(id, l.clone());
        Ok(l)
    })
}

/// One readable line per instruction of the xlated code `insns`, split into
/// functions that are emitted in a canonical order: the main program first,
/// then each subprogram in the order calls first reach it (breadth first),
/// then any function no call reaches (callbacks) in address order. Calls
/// name the callee by that order, so two loaders that placed subprograms
/// differently produce the same lines. `func_starts` are extra function
/// boundaries (the kernel's func_info); call targets are boundaries too.
/// `map_label` describes a map id.
pub fn normalize<E>(
    insns: &[u8],
    func_starts: &[u32],
    map_label: &mut dyn FnMut(u32) -> Result<String, E>,
) -> Result<Vec<String>, E> {
    let n = insns.len() / INSN_SIZE;
    // The kernel answers in its own (this machine's) byte order.
    let insn = |i: usize| {
        let b = <[u8; INSN_SIZE]>::try_from(&insns[i * INSN_SIZE..(i + 1) * INSN_SIZE])
            .unwrap_or_default();
        Insn::from_native_bytes(b)
    };
    let call_target = |i: usize| -> Option<usize> {
        let b = insn(i);
        if b.code != JMP_CALL || b.src_reg() != PSEUDO_CALL {
            return None;
        }
        let off = i64::from(b.off);
        let t = i as i64 + off + 1;
        (0..n as i64).contains(&t).then_some(t as usize)
    };
    let mut starts: BTreeSet<usize> = func_starts
        .iter()
        .map(|&s| s as usize)
        .filter(|&s| s < n)
        .collect();
    starts.insert(0);
    starts.extend((0..n).filter_map(call_target));
    let starts: Vec<usize> = starts.into_iter().collect();
    let func_of = |i: usize| starts.partition_point(|&s| s <= i) - 1;
    let end_of = |f: usize| starts.get(f + 1).copied().unwrap_or(n);

    // Canonical order: breadth first over calls from the main program.
    let mut order: Vec<usize> = Vec::new();
    let mut rank: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([0usize]);
    rank.insert(0, 0);
    while let Some(f) = queue.pop_front() {
        order.push(f);
        for i in starts[f]..end_of(f) {
            if let Some(t) = call_target(i) {
                let g = func_of(t);
                if !rank.contains_key(&g) {
                    rank.insert(g, rank.len());
                    queue.push_back(g);
                }
            }
        }
    }
    for f in 0..starts.len() {
        if !rank.contains_key(&f) {
            rank.insert(f, rank.len());
            order.push(f);
        }
    }

    let mut out = Vec::with_capacity(n + order.len());
    for &f in &order {
        out.push(format!("func {}:", rank[&f]));
        let mut i = starts[f];
        while i < end_of(f) {
            let b = insn(i);
            let (code, regs) = (b.code, b.src_reg() << 4 | b.dst_reg());
            let (src, dst) = (b.src_reg(), b.dst_reg());
            let off = b.off;
            let imm = b.imm as u32;
            if code == LD_IMM64 && i + 1 < n {
                let next_imm = insn(i + 1).imm as u32;
                out.push(match src {
                    PSEUDO_MAP_FD | PSEUDO_MAP_VALUE => format!(
                        "ld_imm64 r{dst} = map({}) src {src} +{next_imm}",
                        map_label(imm)?
                    ),
                    0 => {
                        let v = (u64::from(next_imm) << 32) | u64::from(imm);
                        if v >> 48 == 0xffff {
                            format!("ld_imm64 r{dst} = <kernel address>")
                        } else {
                            format!("ld_imm64 r{dst} = {v:#x}")
                        }
                    }
                    // BTF ids, functions, arena addresses: kernel pointers by now.
                    _ => format!("ld_imm64 r{dst} src {src} = <masked>"),
                });
                i += 2;
                continue;
            }
            match call_target(i) {
                Some(t) => out.push(format!("call func {}", rank[&func_of(t)])),
                None => out.push(format!(
                    "{code:#04x} regs {regs:#04x} off {off} imm {imm:#x}"
                )),
            }
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ins(code: u8, regs: u8, off: i16, imm: i32) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = code;
        b[1] = regs;
        b[2..4].copy_from_slice(&off.to_le_bytes());
        b[4..8].copy_from_slice(&imm.to_le_bytes());
        b
    }
    const MOV0: [u8; 8] = [0xb7, 0, 0, 0, 0, 0, 0, 0];
    const EXIT: [u8; 8] = [0x95, 0, 0, 0, 0, 0, 0, 0];
    fn call(from: usize, to: usize) -> [u8; 8] {
        ins(
            JMP_CALL,
            PSEUDO_CALL << 4,
            (to as i64 - from as i64 - 1) as i16,
            0,
        )
    }
    fn mov(v: i32) -> [u8; 8] {
        ins(0xb7, 0, 0, v)
    }
    fn bytes(v: &[[u8; 8]]) -> Vec<u8> {
        v.concat()
    }
    fn no_maps(id: u32) -> Result<String, String> {
        Err(format!("unexpected map {id}"))
    }

    #[test]
    fn subprogram_placement_does_not_matter() {
        // main calls A then B; A is `mov 1`, B is `mov 2`.
        // libbpf-like order: main, A, B.
        let a = bytes(&[
            call(0, 4),
            call(1, 6),
            MOV0,
            EXIT,
            mov(1),
            EXIT,
            mov(2),
            EXIT,
        ]);
        // Another loader placed B before A.
        let b = bytes(&[
            call(0, 6),
            call(1, 4),
            MOV0,
            EXIT,
            mov(2),
            EXIT,
            mov(1),
            EXIT,
        ]);
        let na = normalize(&a, &[], &mut no_maps).unwrap();
        let nb = normalize(&b, &[], &mut no_maps).unwrap();
        assert_eq!(na, nb);
        assert_eq!(na[0], "func 0:");
        assert_eq!(na[1], "call func 1");
        assert_eq!(na.iter().filter(|l| l.starts_with("func ")).count(), 3);
        // A different callee body is still a difference.
        let c = bytes(&[
            call(0, 4),
            call(1, 6),
            MOV0,
            EXIT,
            mov(1),
            EXIT,
            mov(3),
            EXIT,
        ]);
        assert_ne!(na, normalize(&c, &[], &mut no_maps).unwrap());
    }

    #[test]
    fn maps_are_described_and_kernel_addresses_masked() {
        let map = |id: u32| -> Result<String, String> { Ok(format!("m{id}")) };
        let code = bytes(&[
            ins(LD_IMM64, PSEUDO_MAP_FD << 4 | 1, 0, 7),
            ins(0, 0, 0, 0),
            ins(LD_IMM64, 2, 0, 0x1234_5678),
            ins(0, 0, 0, 0xffff_8880_u32 as i32),
            ins(LD_IMM64, 3, 0, 0x10),
            ins(0, 0, 0, 0),
            EXIT,
        ]);
        let n = normalize(&code, &[], &mut { map }).unwrap();
        assert_eq!(
            n,
            [
                "func 0:",
                "ld_imm64 r1 = map(m7) src 1 +0",
                "ld_imm64 r2 = <kernel address>",
                "ld_imm64 r3 = 0x10",
                "0x95 regs 0x00 off 0 imm 0x0",
            ]
        );
    }

    #[test]
    fn func_info_starts_split_callbacks_and_truncated_input_is_safe() {
        // A callback at 2 reached by no call: emitted after the main program.
        let code = bytes(&[MOV0, EXIT, mov(5), EXIT]);
        let n = normalize(&code, &[2, 99], &mut no_maps).unwrap();
        assert_eq!(n.iter().filter(|l| l.starts_with("func ")).count(), 2);
        // A call out of range and a dangling ld_imm64 half do not panic.
        let bad = bytes(&[
            ins(JMP_CALL, PSEUDO_CALL << 4, 100, 0),
            ins(LD_IMM64, 0, 0, 1),
        ]);
        assert_eq!(normalize(&bad, &[], &mut no_maps).unwrap().len(), 3);
        assert_eq!(shared_map_name("test_gl.rodata"), ".rodata");
        assert_eq!(shared_map_name("counts"), "counts");
    }
}
