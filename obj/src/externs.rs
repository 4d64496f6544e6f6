//! Resolving `extern` declarations with values the loader found on the
//! running kernel: `.kconfig` values written into the `.kconfig` map's
//! initial data, `.ksyms` references patched into the instructions.

use crate::insn::CALL;
use crate::{ExternKind, ExternSpec, KconfigValueKind, ObjectSpec, ProgramSpec};

/// `BPF_PSEUDO_BTF_ID`: `ld_imm64` of a kernel variable by BTF id.
pub const PSEUDO_BTF_ID: u8 = 3;
/// `BPF_PSEUDO_KFUNC_CALL`: a call to a kernel function by BTF id.
pub const PSEUDO_KFUNC_CALL: u8 = 2;
/// libbpf's poison for unresolved weak kfunc calls (`POISON_CALL_KFUNC_BASE`):
/// the verifier accepts it only in dead code, and names it otherwise.
pub const POISON_CALL_KFUNC_BASE: i32 = 2_002_000_000;

/// An extern the loader could not resolve or whose value does not fit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExternError {
    #[error("extern '{name}': {reason}")]
    Invalid { name: String, reason: String },
    #[error("extern '{name}' is not __weak and the running kernel does not provide it")]
    Unresolved { name: String },
}

/// Where a `.ksyms` extern lives in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KsymTarget {
    /// Typed variables and kfuncs: found in kernel BTF.
    Btf {
        /// The BTF id in vmlinux or a module's BTF.
        btf_id: u32,
        /// For variables: the module BTF object's fd, 0 for vmlinux.
        btf_obj_fd: i32,
        /// For kfuncs: the index in BPF_PROG_LOAD's `fd_array`, 0 for vmlinux.
        fd_array_index: i16,
    },
    /// Typeless variables (`extern const void x __ksym`): the address from
    /// `/proc/kallsyms`.
    Address(u64),
}

fn invalid(name: &str, reason: impl Into<String>) -> ExternError {
    ExternError::Invalid {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

/// Encodes a kernel-config style value (`y`, `m`, `n`, `42`, `0x2a`,
/// `"text"`) for an extern of `kind` and `size` bytes.
pub fn encode_kconfig(
    name: &str,
    kind: KconfigValueKind,
    size: u32,
    raw: &str,
) -> Result<Vec<u8>, ExternError> {
    let size = size as usize;
    let mut out = vec![0u8; size];
    match kind {
        KconfigValueKind::Bool => {
            out[0] = match raw {
                "y" => 1,
                "n" => 0,
                _ => return Err(invalid(name, format!("bool expects y or n, got '{raw}'"))),
            }
        }
        KconfigValueKind::Tristate => {
            // libbpf: `char` externs take the letter, tristate enums the number.
            out[0] = match (raw, size) {
                ("y", 1) => b'y',
                ("m", 1) => b'm',
                ("n", 1) => b'n',
                _ => {
                    return Err(invalid(
                        name,
                        format!("tristate expects y, m or n, got '{raw}'"),
                    ));
                }
            }
        }
        KconfigValueKind::Int { signed } => {
            let v: i128 = if let Some(hex) = raw.strip_prefix("0x") {
                i128::from_str_radix(hex, 16)
            } else {
                raw.parse()
            }
            .map_err(|_| invalid(name, format!("'{raw}' is not an integer")))?;
            let bits = (size * 8) as u32;
            let fits = if signed {
                bits >= 128 || (v >= -(1i128 << (bits - 1)) && v < (1i128 << (bits - 1)))
            } else {
                v >= 0 && (bits >= 128 || v < (1i128 << bits))
            };
            if !fits || size > 8 {
                return Err(invalid(name, format!("{raw} does not fit in {size} bytes")));
            }
            out.copy_from_slice(&(v as i64).to_le_bytes()[..size]);
        }
        KconfigValueKind::CharArray => {
            let s = raw
                .strip_prefix('"')
                .and_then(|r| r.strip_suffix('"'))
                .ok_or_else(|| invalid(name, format!("string value must be quoted, got {raw}")))?;
            if s.len() >= size {
                return Err(invalid(
                    name,
                    format!("string of {} bytes does not fit in char[{size}]", s.len()),
                ));
            }
            out[..s.len()].copy_from_slice(s.as_bytes());
        }
    }
    Ok(out)
}

impl ObjectSpec {
    /// Writes every `.kconfig` extern's value into the `.kconfig` map's
    /// initial data. `lookup(name)` answers with the kernel config text value
    /// (`CONFIG_BPF=y` → `"y"`), or `None` when unset. The loader answers the
    /// libbpf specials (`LINUX_KERNEL_VERSION`, `LINUX_HAS_BPF_COOKIE`...) too.
    /// Unset `CONFIG_*` values read as `n`/0, like libbpf; other unresolved
    /// non-weak externs are an error.
    pub fn resolve_kconfig(
        &mut self,
        mut lookup: impl FnMut(&str) -> Option<String>,
    ) -> Result<(), ExternError> {
        let Some(map_index) = self.map_index(".kconfig") else {
            return Ok(());
        };
        let mut writes = Vec::new();
        for e in &self.externs {
            let ExternKind::Kconfig {
                offset,
                size,
                value_kind,
            } = e.kind
            else {
                continue;
            };
            let value = match lookup(&e.name) {
                Some(v) => encode_kconfig(&e.name, value_kind, size, &v)?,
                None if e.weak || e.name.starts_with("CONFIG_") => vec![0; size as usize],
                None => {
                    return Err(ExternError::Unresolved {
                        name: e.name.clone(),
                    });
                }
            };
            writes.push((offset as usize, value, e.name.clone()));
        }
        let data = self.maps[map_index]
            .initial_data
            .get_or_insert_with(Vec::new);
        for (offset, value, name) in writes {
            let dst = data
                .get_mut(offset..offset + value.len())
                .ok_or_else(|| invalid(&name, "outside the .kconfig map"))?;
            dst.copy_from_slice(&value);
        }
        Ok(())
    }
}

impl ProgramSpec {
    /// Patches every `.ksyms` reference with what `resolve(extern index)`
    /// found in kernel BTF. Unresolved `__weak` variables become `0`,
    /// unresolved `__weak` kfunc calls are poisoned like libbpf does.
    ///
    /// Minimum kernel version: 5.11 (ksym variables), 5.13 (kfunc calls).
    pub fn resolve_ksyms(
        &mut self,
        externs: &[ExternSpec],
        mut resolve: impl FnMut(usize) -> Option<KsymTarget>,
    ) -> Result<(), ExternError> {
        for r in &self.extern_relocations {
            let e = externs.get(r.extern_index).ok_or_else(|| {
                invalid("?", format!("extern index {} out of range", r.extern_index))
            })?;
            let target = resolve(r.extern_index);
            let Some(insn) = self.insns.get(r.insn_index).copied() else {
                return Err(invalid(
                    &e.name,
                    format!("instruction {} out of range", r.insn_index),
                ));
            };
            match (insn.code, target) {
                (
                    CALL,
                    Some(KsymTarget::Btf {
                        btf_id,
                        fd_array_index,
                        ..
                    }),
                ) => {
                    let i = &mut self.insns[r.insn_index];
                    i.set_src_reg(PSEUDO_KFUNC_CALL);
                    i.imm = btf_id as i32;
                    i.off = fd_array_index;
                }
                (CALL, None) if e.weak => {
                    let i = &mut self.insns[r.insn_index];
                    i.set_src_reg(0);
                    i.off = 0;
                    i.imm = POISON_CALL_KFUNC_BASE + r.extern_index as i32;
                }
                (_, t) if insn.is_ld_imm64() && r.insn_index + 1 < self.insns.len() => {
                    let (src, lo, hi) = match t {
                        Some(KsymTarget::Btf {
                            btf_id, btf_obj_fd, ..
                        }) => (PSEUDO_BTF_ID, btf_id as i32, btf_obj_fd),
                        Some(KsymTarget::Address(a)) => (0, a as i32, (a >> 32) as i32),
                        None if e.weak => (0, 0, 0),
                        None => {
                            return Err(ExternError::Unresolved {
                                name: e.name.clone(),
                            });
                        }
                    };
                    self.insns[r.insn_index].set_src_reg(src);
                    self.insns[r.insn_index].imm = lo;
                    self.insns[r.insn_index + 1].imm = hi;
                }
                (CALL, None) => {
                    return Err(ExternError::Unresolved {
                        name: e.name.clone(),
                    });
                }
                (CALL, Some(KsymTarget::Address(_))) => {
                    return Err(invalid(
                        &e.name,
                        "a kfunc call needs a BTF id, not an address",
                    ));
                }
                _ => {
                    return Err(invalid(
                        &e.name,
                        format!(
                            "instruction {} is neither a call nor ld_imm64",
                            r.insn_index
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kconfig_values() {
        let int = KconfigValueKind::Int { signed: false };
        assert_eq!(
            encode_kconfig("X", int, 4, "0x10").unwrap(),
            vec![16, 0, 0, 0]
        );
        assert!(encode_kconfig("X", int, 1, "300").is_err());
        assert_eq!(
            encode_kconfig("X", KconfigValueKind::Int { signed: true }, 2, "-2").unwrap(),
            vec![0xfe, 0xff]
        );
        assert_eq!(
            encode_kconfig("X", KconfigValueKind::Bool, 1, "y").unwrap(),
            vec![1]
        );
        assert_eq!(
            encode_kconfig("X", KconfigValueKind::Tristate, 1, "m").unwrap(),
            vec![b'm']
        );
        assert_eq!(
            encode_kconfig("X", KconfigValueKind::CharArray, 4, "\"ab\"").unwrap(),
            b"ab\0\0".to_vec()
        );
    }
}
