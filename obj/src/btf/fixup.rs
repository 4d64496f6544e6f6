//! What compilers leave for the loader: DATASEC sizes and variable offsets
//! are 0 in clang's output and must come from the ELF section and symbol
//! tables (libbpf's `btf_fixup_datasec`). The kernel also wants a DATASEC's
//! variables sorted by offset.

use super::BtfError;
use super::strings::str_at;
use super::types::*;

/// What fixing up needs from the ELF file.
pub trait ElfLayout {
    /// Size of the section named `name`, if present.
    fn section_size(&self, name: &str) -> Option<u32>;
    /// `st_value` of the symbol `var` in section `section`.
    fn symbol_offset(&self, section: &str, var: &str) -> Option<u32>;
}

/// Fixes DATASEC sizes and variable offsets in place.
///
/// Sections the ELF file does not have (`.kconfig`, `.ksyms`: extern
/// sections whose layout the loader decides) are left untouched.
pub fn fixup_datasecs(
    types: &mut [Type],
    strings: &[u8],
    elf: &dyn ElfLayout,
) -> Result<(), BtfError> {
    let var_names: Vec<Option<u32>> = types
        .iter()
        .map(|t| match t {
            Type::Var { name_off, .. } => Some(*name_off),
            _ => None,
        })
        .collect();
    for (id, t) in types.iter_mut().enumerate() {
        let Type::DataSec {
            name_off,
            size,
            vars,
        } = t
        else {
            continue;
        };
        let sec_name = str_at(strings, *name_off)?;
        let Some(sec_size) = elf.section_size(sec_name) else {
            continue;
        };
        if *size == 0 {
            *size = sec_size;
        }
        for v in vars.iter_mut() {
            let Some(Some(var_name_off)) = var_names.get(v.type_id as usize) else {
                // FUNCs in `.ksyms`; anything else is left for the kernel to judge.
                continue;
            };
            let var_name = str_at(strings, *var_name_off)?;
            let offset = elf
                .symbol_offset(sec_name, var_name)
                .ok_or_else(|| BtfError::Type {
                    type_id: id as TypeId,
                    reason: format!(
                        "DATASEC '{sec_name}': variable '{var_name}' has no ELF symbol"
                    ),
                })?;
            v.offset = offset;
        }
        vars.sort_by_key(|v| v.offset);
    }
    Ok(())
}
