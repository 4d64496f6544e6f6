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
    /// The extern's value does not fit its declaration, or its declaration is unusable.
    #[error("extern '{name}': {reason}")]
    Invalid {
        /// The extern's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A non-`__weak` extern the running kernel does not provide.
    #[error("extern '{name}' is not __weak and the running kernel does not provide it")]
    Unresolved {
        /// The extern's name.
        name: String,
    },
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
/// `"text"`) for an extern of `kind` and `size` bytes, by libbpf's rules
/// (`set_kcfg_value_tri`, `_num`, `_str`): `y`/`m`/`n` suit `bool` (not
/// `m`), `enum libbpf_tristate` (1, 2, 0) and `char` (the letter); numbers
/// suit any integer width they fit, `char`, and `bool` when 0 or 1 (libbpf's
/// own `LINUX_*` values); quoted text suits `char[N]`, truncated to N - 1
/// bytes. `n` also reads as 0 (or "") for an integer or string: it is what
/// a `# CONFIG_X is not set` line means.
pub fn encode_kconfig(
    name: &str,
    kind: KconfigValueKind,
    size: u32,
    raw: &str,
) -> Result<Vec<u8>, ExternError> {
    let size = size as usize;
    let mut out = vec![0u8; size];
    let raw = raw.trim();
    match (raw.as_bytes().first(), kind) {
        (Some(b'n'), KconfigValueKind::Int { .. } | KconfigValueKind::CharArray) if raw == "n" => {}
        (Some(&letter @ (b'y' | b'n' | b'm')), _) => {
            let value: u64 = match (kind, letter) {
                (KconfigValueKind::Bool, b'm') => {
                    return Err(invalid(
                        name,
                        "value 'm' implies a tristate or char type, not bool",
                    ));
                }
                (KconfigValueKind::Bool | KconfigValueKind::Tristate, b'y') => 1,
                (KconfigValueKind::Tristate, b'm') => 2,
                (KconfigValueKind::Bool | KconfigValueKind::Tristate, _) => 0,
                (KconfigValueKind::Char, l) => u64::from(l),
                _ => {
                    return Err(invalid(
                        name,
                        format!(
                            "value '{raw}' implies a bool, tristate or char type, not {}",
                            kind_name(kind)
                        ),
                    ));
                }
            };
            put_num(&mut out, value);
        }
        (Some(b'"'), KconfigValueKind::CharArray) => {
            let s = raw
                .strip_prefix('"')
                .and_then(|r| r.strip_suffix('"'))
                .ok_or_else(|| invalid(name, format!("invalid string value {raw}")))?;
            // libbpf truncates a long string (with a warning), keeping the NUL.
            let n = s.len().min(size.saturating_sub(1));
            out[..n].copy_from_slice(&s.as_bytes()[..n]);
        }
        (Some(b'"'), _) => {
            return Err(invalid(
                name,
                format!("value {raw} implies a char array, not {}", kind_name(kind)),
            ));
        }
        _ => {
            let v = parse_u64(raw)
                .ok_or_else(|| invalid(name, format!("'{raw}' is not an integer")))?;
            match kind {
                KconfigValueKind::Int { .. } | KconfigValueKind::Char => {}
                KconfigValueKind::Bool if v <= 1 => {}
                _ => {
                    return Err(invalid(
                        name,
                        format!(
                            "value {raw} implies an integer type, not {}",
                            kind_name(kind)
                        ),
                    ));
                }
            }
            let signed = matches!(kind, KconfigValueKind::Int { signed: true });
            let bits = (size * 8) as u32;
            let fits = match (size, signed) {
                (8, _) => true,
                (1 | 2 | 4, true) => v.wrapping_add(1 << (bits - 1)) < (1 << bits),
                (1 | 2 | 4, false) => v >> bits == 0,
                _ => false,
            };
            if !fits {
                return Err(invalid(name, format!("{raw} does not fit in {size} bytes")));
            }
            put_num(&mut out, v);
        }
    }
    Ok(out)
}

fn kind_name(kind: KconfigValueKind) -> &'static str {
    match kind {
        KconfigValueKind::Bool => "bool",
        KconfigValueKind::Tristate => "enum libbpf_tristate",
        KconfigValueKind::Char => "char",
        KconfigValueKind::Int { .. } => "an integer",
        KconfigValueKind::CharArray => "a char array",
    }
}

/// In the running kernel's byte order (the only one it loads), as wide as
/// `out` (at most 8 bytes).
fn put_num(out: &mut [u8], v: u64) {
    let n = out.len().min(8);
    let bytes = v.to_ne_bytes();
    let value = if cfg!(target_endian = "big") {
        &bytes[8 - n..]
    } else {
        &bytes[..n]
    };
    out[..n].copy_from_slice(value);
}

/// `strtoull(s, NULL, 0)` over the whole string: decimal, `0x` hex, `0`
/// octal, and a leading `-` that wraps as C's does.
fn parse_u64(s: &str) -> Option<u64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()?
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8).ok()?
    } else {
        s.parse().ok()?
    };
    Some(if neg { v.wrapping_neg() } else { v })
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
        assert_eq!(encode_kconfig("X", int, 2, "010").unwrap(), vec![8, 0]);
        assert!(encode_kconfig("X", int, 1, "300").is_err());
        assert_eq!(
            encode_kconfig("X", KconfigValueKind::Int { signed: true }, 2, "-2").unwrap(),
            vec![0xfe, 0xff]
        );
        assert_eq!(
            encode_kconfig("X", KconfigValueKind::Bool, 1, "y").unwrap(),
            vec![1]
        );
        assert!(encode_kconfig("X", KconfigValueKind::Bool, 1, "m").is_err());
        assert_eq!(
            encode_kconfig("X", KconfigValueKind::Char, 1, "m").unwrap(),
            vec![b'm']
        );
        assert_eq!(
            encode_kconfig("X", KconfigValueKind::Tristate, 4, "m").unwrap(),
            vec![2, 0, 0, 0]
        );
        assert_eq!(
            encode_kconfig("X", KconfigValueKind::Tristate, 4, "y").unwrap(),
            vec![1, 0, 0, 0]
        );
        assert_eq!(
            encode_kconfig("X", KconfigValueKind::CharArray, 4, "\"ab\"").unwrap(),
            b"ab\0\0".to_vec()
        );
        // Truncated like libbpf, keeping the NUL.
        assert_eq!(
            encode_kconfig("X", KconfigValueKind::CharArray, 4, "\"abcdef\"").unwrap(),
            b"abc\0".to_vec()
        );
        assert!(encode_kconfig("X", int, 4, "\"ab\"").is_err());
        assert!(encode_kconfig("X", int, 4, "y").is_err());
        assert_eq!(encode_kconfig("X", int, 4, "n").unwrap(), vec![0; 4]);
    }

    /// libbpf's virtual `LINUX_*` externs take a number and suit any
    /// integer width, `bool` and `char` (`LINUX_HAS_SYSCALL_WRAPPER`).
    #[test]
    fn virtual_values_suit_every_integer_declaration() {
        for (kind, size, want) in [
            (KconfigValueKind::Bool, 1, vec![1]),
            (KconfigValueKind::Char, 1, vec![1]),
            (KconfigValueKind::Int { signed: true }, 4, vec![1, 0, 0, 0]),
            (
                KconfigValueKind::Int { signed: false },
                8,
                vec![1, 0, 0, 0, 0, 0, 0, 0],
            ),
            (KconfigValueKind::Int { signed: false }, 2, vec![1, 0]),
        ] {
            assert_eq!(
                encode_kconfig("LINUX_HAS_SYSCALL_WRAPPER", kind, size, "1").unwrap(),
                want,
                "{kind:?}"
            );
        }
        assert!(encode_kconfig("LINUX_X", KconfigValueKind::Bool, 1, "2").is_err());
    }
}
