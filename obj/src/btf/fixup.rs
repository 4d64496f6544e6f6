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
        if *size == 0 {
            *size = sec_size;
        }
        for v in vars.iter_mut() {
            if btf.kind_of(v.type_id).ok() != Some(Kind::Var) {
                // FUNCs in `.ksyms`; anything else is left for the kernel to judge.
                continue;
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
