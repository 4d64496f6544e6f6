//! What compilers leave for the loader: DATASEC sizes and variable offsets
//! are 0 in clang's output and must come from the ELF section and symbol
//! tables (libbpf's `btf_fixup_datasec`). The kernel also wants a DATASEC's
//! variables sorted by offset.

use super::types::*;
use super::{Btf, BtfError};

/// What fixing up needs from the ELF file.
pub trait ElfLayout {
    /// Size of the section named `name`, if present.
    fn section_size(&self, name: &str) -> Option<u32>;
    /// `st_value` of the symbol `var` in section `section`.
    fn symbol_offset(&self, section: &str, var: &str) -> Option<u32>;
}

/// Fixes DATASEC sizes and variable offsets in place (each DATASEC is
/// rewritten where it lies: nothing else is decoded or re-encoded).
///
/// Sections the ELF file does not have (`.kconfig`, `.ksyms`: extern
/// sections whose layout the loader decides) are left untouched.
pub fn fixup_datasecs(btf: &mut Btf, elf: &dyn ElfLayout) -> Result<(), BtfError> {
    // DATASECs always have a name.
    let datasecs: Vec<TypeId> = btf
        .named_type_ids()
        .filter(|&id| btf.kind_of(id).ok() == Some(Kind::DataSec))
        .collect();
    for id in datasecs {
        let mut t = btf.type_by_id(id)?;
        let Type::DataSec {
            name_off,
            size,
            vars,
        } = &mut t
        else {
            continue;
        };
        let sec_name = btf.str_at(*name_off)?;
        let Some(sec_size) = elf.section_size(sec_name) else {
            continue;
        };
        // A linker (`bpftool gen object`) has laid the section out already,
        // with every variable at its place: only clang's 0-sized DATASECs
        // need offsets, and there only the global variables (clang places
        // static ones itself, and two statics of linked files can share a
        // name), as libbpf's `btf_fixup_datasec` does.
        if *size != 0 {
            vars.sort_by_key(|v| v.offset);
            btf.replace_type(id, &t)?;
            continue;
        }
        *size = sec_size;
        for v in vars.iter_mut() {
            match btf.type_by_id(v.type_id) {
                Ok(Type::Var { linkage, .. }) if linkage != VAR_STATIC && linkage != VAR_EXTERN => {
                }
                // Statics and externs, FUNCs in `.ksyms`; anything else is
                // left for the kernel to judge.
                _ => continue,
            }
            let var_name = btf.name_of(v.type_id)?;
            let offset = elf
                .symbol_offset(sec_name, var_name)
                .ok_or_else(|| BtfError::Type {
                    type_id: id,
                    reason: format!(
                        "DATASEC '{sec_name}': variable '{var_name}' has no ELF symbol"
                    ),
                })?;
            v.offset = offset;
        }
        vars.sort_by_key(|v| v.offset);
        btf.replace_type(id, &t)?;
    }
    Ok(())
}

/// Rewrites the extern DATASECs (`.kconfig`, `.ksyms`) into what the
/// kernel's BTF loader accepts, as libbpf does when it collects externs.
/// Clang leaves them as `extern` VARs and FUNCs of a 0-sized section, which
/// the kernel refuses ("Linkage not supported"), so without this the whole
/// object BTF, and with it every program's func and line info, is lost.
///
/// * `.kconfig`: each VAR becomes a global VAR at the offset the loader
///   gave its value (`kconfig_offset(name)`), the section as large as the
///   layout (`kconfig_size`).
/// * `.ksyms`: each entry becomes a 4-byte `int` VAR at 4 × its index; a
///   kfunc's entry points at an added `dummy_ksym` VAR instead and its FUNC
///   becomes global, with every unnamed parameter named (the kernel wants
///   names in a global function's prototype).
///
/// Returns the BTF unchanged when it has neither section.
pub fn fixup_extern_datasecs(
    btf: Btf,
    kconfig_offset: impl Fn(&str) -> Option<u32>,
    kconfig_size: u32,
) -> Result<Btf, BtfError> {
    let kconfig = btf.id_by_name(".kconfig", Kind::DataSec);
    let ksyms = btf.id_by_name(".ksyms", Kind::DataSec);
    if kconfig.is_none() && ksyms.is_none() {
        return Ok(btf);
    }
    let mut types = btf.to_types()?;
    let mut strings = super::strings::StringTable::new(btf.strings().to_vec());
    if let Some(id) = kconfig {
        let Type::DataSec { mut vars, .. } = types[id as usize].clone() else {
            unreachable!("found as a DATASEC")
        };
        for v in &mut vars {
            let Some(Type::Var {
                name_off, linkage, ..
            }) = types.get_mut(v.type_id as usize)
            else {
                continue;
            };
            let name = strings.get(*name_off)?;
            if let Some(offset) = kconfig_offset(name) {
                v.offset = offset;
            }
            *linkage = VAR_GLOBAL;
        }
        vars.sort_by_key(|v| v.offset);
        if let Type::DataSec {
            vars: old, size, ..
        } = &mut types[id as usize]
        {
            *old = vars;
            *size = kconfig_size;
        }
    }
    if let Some(id) = ksyms {
        let Type::DataSec { mut vars, .. } = types[id as usize].clone() else {
            unreachable!("found as a DATASEC")
        };
        let int = match types.iter().position(|t| {
            matches!(t, Type::Int { size: 4, bits: 32, bit_offset: 0, encoding, .. } if encoding & INT_BOOL == 0)
        }) {
            Some(i) => i as TypeId,
            None => {
                let name_off = strings.add("int");
                types.push(Type::Int {
                    name_off,
                    size: 4,
                    encoding: INT_SIGNED,
                    bit_offset: 0,
                    bits: 32,
                });
                (types.len() - 1) as TypeId
            }
        };
        let mut dummy: Option<(TypeId, u32)> = None;
        for (i, v) in vars.iter_mut().enumerate() {
            match types.get(v.type_id as usize).cloned() {
                Some(Type::Var { name_off, .. }) => {
                    types[v.type_id as usize] = Type::Var {
                        name_off,
                        type_id: int,
                        linkage: VAR_GLOBAL,
                    };
                }
                Some(Type::Func {
                    name_off, proto, ..
                }) => {
                    let (dummy_id, dummy_name) = *dummy.get_or_insert_with(|| {
                        let name_off = strings.add("dummy_ksym");
                        types.push(Type::Var {
                            name_off,
                            type_id: int,
                            linkage: VAR_GLOBAL,
                        });
                        ((types.len() - 1) as TypeId, name_off)
                    });
                    types[v.type_id as usize] = Type::Func {
                        name_off,
                        proto,
                        linkage: FUNC_GLOBAL,
                    };
                    if let Some(Type::FuncProto { params, .. }) = types.get_mut(proto as usize) {
                        for p in params
                            .iter_mut()
                            .filter(|p| p.type_id != 0 && p.name_off == 0)
                        {
                            p.name_off = dummy_name;
                        }
                    }
                    v.type_id = dummy_id;
                }
                _ => continue,
            }
            v.offset = (i as u32) * 4;
            v.size = 4;
        }
        let n = vars.len() as u32;
        if let Type::DataSec {
            vars: old, size, ..
        } = &mut types[id as usize]
        {
            *old = vars;
            *size = n * 4;
        }
    }
    Btf::from_bytes(super::write::encode(&types, strings.as_bytes()))
}
