//! Programs: one per global function in a program section, each followed by
//! every subprogram it reaches (BPF-to-BPF calls and callbacks), with call
//! offsets, map references, extern references, func/line info and CO-RE
//! records moved into the program's own instruction coordinates.

use object::elf;

use crate::btf::ext::BtfExt;
use crate::insn::{CALL, PSEUDO_CALL, PSEUDO_FUNC};
use crate::maps::Collected;
use crate::parse::Elf;
use crate::{
    CoreRelocation, ExternKind, ExternRelocation, FuncInfo, Insn, LineInfo, ParseError,
    ProgramSpec, Relocation, RelocationTarget,
};

/// One function of an executable section.
struct Func<'a> {
    name: &'a str,
    section: usize,
    /// First instruction, in section coordinates.
    start: usize,
    len: usize,
    global: bool,
}

/// An executable section, decoded.
struct Code<'a> {
    name: &'a str,
    insns: Vec<Insn>,
    /// Section instruction index → symbol index + 1 of its relocation
    /// (0: none). Dense: every lookup is one load, no hashing.
    relocs: Vec<u32>,
}

impl Code<'_> {
    fn reloc_at(&self, insn: usize) -> Option<usize> {
        self.relocs
            .get(insn)
            .and_then(|&r| r.checked_sub(1))
            .map(|r| r as usize)
    }
}

/// Executable sections by ELF section index (`None`: not code).
struct Codes<'a>(Vec<Option<Code<'a>>>);

impl<'a> std::ops::Index<usize> for Codes<'a> {
    type Output = Code<'a>;
    fn index(&self, section: usize) -> &Code<'a> {
        self.get(section)
            .unwrap_or_else(|| unreachable!("section {section} is code"))
    }
}

impl<'a> Codes<'a> {
    fn get(&self, section: usize) -> Option<&Code<'a>> {
        self.0.get(section).and_then(Option::as_ref)
    }
}

fn insn_err(section: &str, insn_index: usize, reason: impl Into<String>) -> ParseError {
    ParseError::Insn {
        section: section.to_owned(),
        insn_index,
        reason: reason.into(),
    }
}

pub(crate) fn link_programs(
    elf: &Elf<'_>,
    maps: &Collected,
    ext: Option<&BtfExt>,
) -> Result<Vec<ProgramSpec>, ParseError> {
    let mut codes = Codes(Vec::new());
    let mut funcs: Vec<Func<'_>> = Vec::new();
    for sec in elf
        .sections
        .iter()
        .filter(|s| s.is_exec() && !s.data.is_empty())
    {
        if sec.data.len() % Insn::SIZE != 0 {
            return Err(ParseError::section(
                sec.name,
                format!("size {} is not a multiple of 8", sec.data.len()),
            ));
        }
        // The byte order is decided once per object; native code sections
        // decode exactly as before it was a question.
        let chunks = sec.data.chunks_exact(Insn::SIZE);
        let bytes = |c: &[u8]| [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]];
        let insns: Vec<Insn> = if elf.order.is_native() {
            chunks.map(|c| Insn::from_native_bytes(bytes(c))).collect()
        } else {
            chunks
                .map(|c| Insn::from_bytes(bytes(c), elf.order))
                .collect()
        };
        let mut relocs = vec![0u32; insns.len()];
        for r in elf.relocs.get(&sec.index).into_iter().flatten() {
            if r.offset % Insn::SIZE as u64 != 0 || r.offset as usize >= sec.data.len() {
                return Err(ParseError::section(
                    sec.name,
                    format!(
                        "relocation at byte offset {} is not on an instruction",
                        r.offset
                    ),
                ));
            }
            let sym = u32::try_from(r.symbol)
                .ok()
                .and_then(|s| s.checked_add(1))
                .ok_or_else(|| {
                    ParseError::section(sec.name, format!("relocation symbol #{}", r.symbol))
                })?;
            relocs[r.offset as usize / Insn::SIZE] = sym;
        }
        let mut syms: Vec<_> = elf.symbols_in(sec.index).filter(|s| s.is_func()).collect();
        syms.sort_by_key(|s| s.value);
        let n = insns.len();
        if syms.is_empty() {
            // Hand-written assembly without symbols: the section is one function.
            funcs.push(Func {
                name: sec.name,
                section: sec.index,
                start: 0,
                len: n,
                global: sec.name != ".text",
            });
        }
        for (i, s) in syms.iter().enumerate() {
            if s.value % Insn::SIZE as u64 != 0 || s.size % Insn::SIZE as u64 != 0 {
                return Err(ParseError::symbol(
                    s.name,
                    "function not aligned to instructions",
                ));
            }
            let start = (s.value / 8) as usize;
            let len = if s.size > 0 {
                (s.size / 8) as usize
            } else {
                let next = syms.get(i + 1).map_or(n, |t| (t.value / 8) as usize);
                next.saturating_sub(start)
            };
            if start.checked_add(len).is_none_or(|end| end > n) {
                return Err(ParseError::symbol(
                    s.name,
                    format!("function extends past the end of section '{}'", sec.name),
                ));
            }
            funcs.push(Func {
                name: s.name,
                section: sec.index,
                start,
                len,
                global: s.is_global(),
            });
        }
        if codes.0.len() <= sec.index {
            codes.0.resize_with(sec.index + 1, || None);
        }
        codes.0[sec.index] = Some(Code {
            name: sec.name,
            insns,
            relocs,
        });
    }
    let mut programs = Vec::new();
    for (fi, f) in funcs.iter().enumerate() {
        if !f.global || codes[f.section].name == ".text" {
            continue;
        }
        programs.push(link_one(elf, maps, ext, &codes, &funcs, fi)?);
    }
    Ok(programs)
}

fn link_one(
    elf: &Elf<'_>,
    maps: &Collected,
    ext: Option<&BtfExt>,
    codes: &Codes<'_>,
    funcs: &[Func<'_>],
    entry: usize,
) -> Result<ProgramSpec, ParseError> {
    // The entry function's length is the usual size (subprograms are rare).
    let mut insns: Vec<Insn> = Vec::with_capacity(funcs[entry].len);
    let mut origins: Vec<(usize, usize)> = Vec::with_capacity(funcs[entry].len);
    // (function index, where it starts in `insns`).
    let mut placed: Vec<(usize, usize)> = Vec::new();
    let append = |fi: usize,
                  insns: &mut Vec<Insn>,
                  origins: &mut Vec<(usize, usize)>,
                  placed: &mut Vec<(usize, usize)>| {
        let f = &funcs[fi];
        let base = insns.len();
        insns.extend_from_slice(&codes[f.section].insns[f.start..f.start + f.len]);
        origins.extend((f.start..f.start + f.len).map(|i| (f.section, i)));
        placed.push((fi, base));
        base
    };
    append(entry, &mut insns, &mut origins, &mut placed);
    let mut relocations = Vec::new();
    let mut extern_relocations = Vec::new();
    let mut i = 0;
    while i < insns.len() {
        let (sec, sidx) = origins[i];
        let code = &codes[sec];
        let insn = insns[i];
        let wide = insn.is_ld_imm64();
        if wide && origins.get(i + 1) != Some(&(sec, sidx + 1)) {
            return Err(insn_err(
                code.name,
                sidx,
                "ld_imm64 without its second half",
            ));
        }
        let is_call = insn.code == CALL;
        let mut call_target: Option<(usize, i64)> = None;
        if let Some(sym_idx) = code.reloc_at(sidx) {
            let sym = elf.symbols.get(sym_idx).ok_or_else(|| {
                insn_err(
                    code.name,
                    sidx,
                    format!("relocation symbol #{sym_idx} does not exist"),
                )
            })?;
            let is_section_sym = sym.st_type == elf::STT_SECTION;
            match sym.section {
                None => {
                    let ei = maps.extern_index(sym.name).ok_or_else(|| {
                        insn_err(
                            code.name,
                            sidx,
                            format!("reference to undefined symbol '{}' that is neither a .kconfig nor a .ksyms extern", sym.name),
                        )
                    })?;
                    match &maps.externs[ei].kind {
                        ExternKind::Kconfig { offset, .. } => {
                            if !wide {
                                return Err(insn_err(
                                    code.name,
                                    sidx,
                                    format!(
                                        "kconfig extern '{}' used by a non-ld_imm64 instruction",
                                        sym.name
                                    ),
                                ));
                            }
                            let map = maps.kconfig_map.unwrap_or_else(|| unreachable!());
                            relocations.push(Relocation {
                                insn_index: i,
                                target: RelocationTarget::MapValue {
                                    map,
                                    offset: offset.wrapping_add(insn.imm as u32),
                                },
                            });
                            insns[i].imm = 0;
                        }
                        ExternKind::KsymVar { .. } | ExternKind::KsymFunc { .. } => {
                            extern_relocations.push(ExternRelocation {
                                insn_index: i,
                                extern_index: ei,
                            });
                        }
                    }
                }
                Some(tsec) => {
                    let def_off = if is_section_sym {
                        sym.value.wrapping_add(insn.imm as i64 as u64)
                    } else {
                        sym.value
                    };
                    if let Some(&map) = maps.by_definition.get(&(tsec, def_off)) {
                        if !wide {
                            return Err(insn_err(
                                code.name,
                                sidx,
                                format!(
                                    "map '{}' referenced by a non-ld_imm64 instruction",
                                    maps.specs[map].name
                                ),
                            ));
                        }
                        relocations.push(Relocation {
                            insn_index: i,
                            target: RelocationTarget::Map { map },
                        });
                        insns[i].imm = 0;
                    } else if let Some((map, size, arena)) = maps
                        .arena
                        .filter(|&(sec, ..)| sec == tsec)
                        .map(|(_, map, size)| (map, size, true))
                        .or_else(|| {
                            maps.data_by_section.get(&tsec).map(|&map| {
                                (map, u64::from(maps.specs[map].value_size.max(1)), false)
                            })
                        })
                    {
                        // Global data, or `__arena` globals: offsets into
                        // their bytes, which the loader places in the arena.
                        if !wide {
                            return Err(insn_err(
                                code.name,
                                sidx,
                                format!(
                                    "global '{}' referenced by a non-ld_imm64 instruction",
                                    sym.name
                                ),
                            ));
                        }
                        let offset = sym.value.wrapping_add(insn.imm as i64 as u64);
                        let offset = u32::try_from(offset)
                            .ok()
                            .filter(|&o| u64::from(o) < size)
                            .ok_or_else(|| {
                                insn_err(
                                    code.name,
                                    sidx,
                                    if arena {
                                        format!("offset {offset:#x} is outside the __arena globals")
                                    } else {
                                        format!(
                                            "offset {offset:#x} is outside section '{}'",
                                            maps.specs[map].name
                                        )
                                    },
                                )
                            })?;
                        relocations.push(Relocation {
                            insn_index: i,
                            target: RelocationTarget::MapValue { map, offset },
                        });
                        insns[i].imm = 0;
                    } else if codes.get(tsec).is_some() {
                        let base = (sym.value / 8) as i64;
                        if is_call {
                            call_target = Some((tsec, base + i64::from(insn.imm) + 1));
                        } else if wide {
                            let bytes = sym.value as i64 + i64::from(insn.imm);
                            if bytes % 8 != 0 {
                                return Err(insn_err(
                                    code.name,
                                    sidx,
                                    "function address not aligned to an instruction",
                                ));
                            }
                            call_target = Some((tsec, bytes / 8));
                        } else {
                            return Err(insn_err(
                                code.name,
                                sidx,
                                format!(
                                    "code symbol '{}' used by an instruction that is neither a call nor ld_imm64",
                                    sym.name
                                ),
                            ));
                        }
                    } else {
                        let sname = elf.section(tsec).map_or("?", |s| s.name);
                        return Err(insn_err(
                            code.name,
                            sidx,
                            format!(
                                "relocation against '{}' in section '{sname}', which holds no map, global data or code",
                                sym.name
                            ),
                        ));
                    }
                }
            }
        } else if (is_call && insn.src_reg() == PSEUDO_CALL)
            || (wide && insn.src_reg() == PSEUDO_FUNC)
        {
            // Calls the compiler resolved within one section (no relocation).
            call_target = Some((sec, sidx as i64 + i64::from(insn.imm) + 1));
        }
        if let Some((tsec, target)) = call_target {
            let fi = funcs
                .iter()
                .position(|f| {
                    f.section == tsec
                        && target >= f.start as i64
                        && target < (f.start + f.len) as i64
                })
                .ok_or_else(|| {
                    insn_err(
                        code.name,
                        sidx,
                        format!(
                            "call target {target} is not inside any function of '{}'",
                            codes[tsec].name
                        ),
                    )
                })?;
            let base = match placed.iter().find(|(p, _)| *p == fi) {
                Some(&(_, base)) => base,
                None => append(fi, &mut insns, &mut origins, &mut placed),
            };
            let pos = base as i64 + (target - funcs[fi].start as i64);
            let rel = i32::try_from(pos - i as i64 - 1)
                .map_err(|_| insn_err(code.name, sidx, "call offset overflows"))?;
            insns[i].imm = rel;
            insns[i].set_src_reg(if is_call { PSEUDO_CALL } else { PSEUDO_FUNC });
        }
        i += if wide { 2 } else { 1 };
    }

    let f = &funcs[entry];
    let section = codes[f.section].name;
    // libbpf's SEC("?name"): like SEC("name"), but not loaded by default.
    let (autoload, plain) = match section.strip_prefix('?') {
        Some(rest) => (false, rest),
        None => (true, section),
    };
    let (kind, sleepable) = crate::section::program_kind(plain);
    let mut prog = ProgramSpec {
        name: f.name.to_owned(),
        section: section.to_owned(),
        kind,
        insns,
        relocations,
        sleepable,
        autoload,
        func_info: Vec::new(),
        line_info: Vec::new(),
        core_relocations: Vec::new(),
        extern_relocations,
    };
    if let Some(ext) = ext {
        rebase_ext(&mut prog, ext, codes, funcs, &placed);
    }
    Ok(prog)
}

/// Moves `.BTF.ext` records of every placed function into program coordinates.
fn rebase_ext(
    prog: &mut ProgramSpec,
    ext: &BtfExt,
    codes: &Codes<'_>,
    funcs: &[Func<'_>],
    placed: &[(usize, usize)],
) {
    for &(fi, base) in placed {
        let f = &funcs[fi];
        let sec = codes[f.section].name;
        // Byte offset in the section → instruction index in the program.
        let map = |off: u32| {
            let idx = off as usize / Insn::SIZE;
            (off as usize % Insn::SIZE == 0 && idx >= f.start && idx < f.start + f.len)
                .then(|| base + idx - f.start)
        };
        for &(off, type_id) in ext.func_info.get(sec).into_iter().flatten() {
            if let Some(at) = map(off) {
                prog.func_info.push(FuncInfo {
                    insn_off: at as u32,
                    type_id,
                });
            }
        }
        for li in ext.line_info.get(sec).into_iter().flatten() {
            if let Some(at) = map(li.insn_off) {
                prog.line_info.push(LineInfo {
                    insn_off: at as u32,
                    ..*li
                });
            }
        }
        for r in ext.core_relos.get(sec).into_iter().flatten() {
            if let Some(at) = map(r.insn_off) {
                prog.core_relocations.push(CoreRelocation {
                    insn_index: at,
                    type_id: r.type_id,
                    access: r.access.clone(),
                    kind: r.kind,
                });
            }
        }
    }
}
