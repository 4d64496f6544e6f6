//! Rewriting BTF for a kernel that lacks some kinds (libbpf's
//! `bpf_object__sanitize_btf`). Every rewrite keeps type ids stable, so map
//! key/value ids and func_info stay valid. The loader probes the kernel and
//! fills a [`BtfFeatures`].

use super::BtfError;
use super::strings::StringTable;
use super::types::*;

/// What the target kernel's BTF loader accepts.
///
/// Minimum kernel versions: func and func_proto 5.0, datasec/var 5.2, global
/// func linkage 5.6, float 5.13, decl_tag 5.16, type_tag 5.17, enum64 6.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BtfFeatures {
    /// `BTF_KIND_FUNC` and `FUNC_PROTO` (5.0).
    pub func: bool,
    /// Global function linkage (5.6).
    pub func_global: bool,
    /// `BTF_KIND_VAR` and `DATASEC` (5.2).
    pub datasec: bool,
    /// `BTF_KIND_FLOAT` (5.13).
    pub float: bool,
    /// `BTF_KIND_DECL_TAG` (5.16).
    pub decl_tag: bool,
    /// `BTF_KIND_TYPE_TAG` (5.17).
    pub type_tag: bool,
    /// `BTF_KIND_ENUM64` (6.0).
    pub enum64: bool,
}

impl BtfFeatures {
    /// Everything supported: sanitizing is a no-op.
    pub const ALL: Self = Self {
        func: true,
        func_global: true,
        datasec: true,
        float: true,
        decl_tag: true,
        type_tag: true,
        enum64: true,
    };
}

impl Default for BtfFeatures {
    fn default() -> Self {
        Self::ALL
    }
}

/// Rewrites `types` in place for a kernel with `features`. May append a type
/// (an `int` that ENUM64 replacements refer to) and strings.
pub fn sanitize(
    types: &mut Vec<Type>,
    strings: &mut StringTable,
    features: BtfFeatures,
) -> Result<(), BtfError> {
    let mut enum64_int: Option<TypeId> = None;
    let n = types.len();
    for id in 1..n {
        let replacement = match &types[id] {
            Type::Var { .. } if !features.datasec => Some(Type::Int {
                name_off: 0,
                size: 1,
                encoding: 0,
                bit_offset: 0,
                bits: 8,
            }),
            Type::DataSec {
                name_off,
                size,
                vars,
            } if !features.datasec => {
                // A struct name may not contain '.', so `.data` becomes `_data`.
                let name = strings.get(*name_off)?.replace('.', "_");
                let name_off = strings.add(&name);
                let members = vars
                    .iter()
                    .map(|v| {
                        let var_name = match types.get(v.type_id as usize) {
                            Some(t) => t.name_off(),
                            None => 0,
                        };
                        Member {
                            name_off: var_name,
                            type_id: v.type_id,
                            offset: v.offset.saturating_mul(8),
                        }
                    })
                    .collect();
                Some(Type::Struct {
                    name_off,
                    size: *size,
                    kind_flag: false,
                    members,
                })
            }
            Type::FuncProto { params, .. } if !features.func => Some(Type::Enum {
                name_off: 0,
                size: 4,
                signed: false,
                values: params
                    .iter()
                    .map(|p| EnumValue {
                        name_off: p.name_off,
                        value: u64::from(p.type_id),
                    })
                    .collect(),
            }),
            Type::Func {
                name_off, proto, ..
            } if !features.func => Some(Type::Typedef {
                name_off: *name_off,
                target: *proto,
            }),
            Type::Func {
                name_off,
                proto,
                linkage: FUNC_GLOBAL,
            } if !features.func_global => Some(Type::Func {
                name_off: *name_off,
                proto: *proto,
                linkage: FUNC_STATIC,
            }),
            Type::Float { size, .. } if !features.float => Some(Type::Struct {
                name_off: 0,
                size: *size,
                kind_flag: false,
                members: Vec::new(),
            }),
            Type::DeclTag { .. } if !features.decl_tag => Some(Type::Int {
                name_off: 0,
                size: 1,
                encoding: 0,
                bit_offset: 0,
                bits: 8,
            }),
            Type::TypeTag { target, .. } if !features.type_tag => Some(Type::Const {
                name_off: 0,
                target: *target,
            }),
            Type::Enum64 {
                name_off,
                size,
                values,
                ..
            } if !features.enum64 => {
                let int = *enum64_int.get_or_insert(n as TypeId);
                Some(Type::Union {
                    name_off: *name_off,
                    size: *size,
                    kind_flag: false,
                    members: values
                        .iter()
                        .map(|v| Member {
                            name_off: v.name_off,
                            type_id: int,
                            offset: 0,
                        })
                        .collect(),
                })
            }
            // Signed enums (kind_flag) arrived with ENUM64.
            Type::Enum {
                name_off,
                size,
                signed: true,
                values,
            } if !features.enum64 => Some(Type::Enum {
                name_off: *name_off,
                size: *size,
                signed: false,
                values: values.clone(),
            }),
            _ => None,
        };
        if let Some(t) = replacement {
            types[id] = t;
        }
    }
    if enum64_int.is_some() {
        let name_off = strings.add("__kiln_enum64_placeholder");
        types.push(Type::Int {
            name_off,
            size: 8,
            encoding: 0,
            bit_offset: 0,
            bits: 64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_what_is_missing_and_keeps_ids() {
        let mut strings = StringTable::new(b"\0int\0.data\0x\0f\0".to_vec());
        let mut types = vec![
            Type::Void,
            Type::Int {
                name_off: 1,
                size: 4,
                encoding: INT_SIGNED,
                bit_offset: 0,
                bits: 32,
            },
            Type::Var {
                name_off: 11,
                type_id: 1,
                linkage: VAR_GLOBAL,
            },
            Type::DataSec {
                name_off: 5,
                size: 4,
                vars: vec![VarSecInfo {
                    type_id: 2,
                    offset: 0,
                    size: 4,
                }],
            },
            Type::Float {
                name_off: 0,
                size: 8,
            },
            Type::Enum64 {
                name_off: 0,
                size: 8,
                signed: false,
                values: vec![EnumValue {
                    name_off: 11,
                    value: 1 << 40,
                }],
            },
            Type::FuncProto {
                name_off: 0,
                ret: 1,
                params: vec![],
            },
            Type::Func {
                name_off: 13,
                proto: 6,
                linkage: FUNC_GLOBAL,
            },
        ];
        let before = types.clone();
        sanitize(&mut types, &mut strings, BtfFeatures::ALL).unwrap();
        assert_eq!(types, before);
        let features = BtfFeatures {
            func_global: false,
            datasec: false,
            float: false,
            enum64: false,
            ..BtfFeatures::ALL
        };
        sanitize(&mut types, &mut strings, features).unwrap();
        assert_eq!(types.len(), before.len() + 1);
        assert_eq!(types[2].kind(), Kind::Int);
        let Type::Struct { name_off, .. } = &types[3] else {
            panic!("datasec not rewritten: {:?}", types[3])
        };
        assert_eq!(strings.get(*name_off).unwrap(), "_data");
        assert_eq!(types[4].kind(), Kind::Struct);
        assert_eq!(types[5].kind(), Kind::Union);
        assert!(matches!(
            types[7],
            Type::Func {
                linkage: FUNC_STATIC,
                ..
            }
        ));
    }
}
