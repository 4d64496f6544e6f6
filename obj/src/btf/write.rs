//! Writing BTF: marshals decoded [`Type`]s and a string section back into the
//! kernel's byte layout (little-endian), ready for `BPF_BTF_LOAD`.

use super::read::{HEADER_LEN, MAGIC};
use super::types::*;

/// Encodes `types` (index = type id; entry 0 must be [`Type::Void`] and is
/// not written) and `strings` into a complete BTF blob.
pub fn encode(types: &[Type], strings: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for t in types.iter().skip(1) {
        encode_type(t, &mut body);
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + strings.len());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.push(1); // version
    out.push(0); // flags
    for v in [
        HEADER_LEN as u32,
        0,
        body.len() as u32,
        body.len() as u32,
        strings.len() as u32,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&body);
    out.extend_from_slice(strings);
    out
}

fn info(kind: Kind, vlen: usize, kind_flag: bool) -> u32 {
    ((kind_flag as u32) << 31) | ((kind as u32) << 24) | (vlen as u32 & 0xffff)
}

/// Appends one type's bytes to `out`.
pub fn encode_type(t: &Type, out: &mut Vec<u8>) {
    let mut w = |v: u32| out.extend_from_slice(&v.to_le_bytes());
    let kind = t.kind();
    let name_off = t.name_off();
    match t {
        Type::Void => {}
        Type::Int {
            size,
            encoding,
            bit_offset,
            bits,
            ..
        } => {
            w(name_off);
            w(info(kind, 0, false));
            w(*size);
            w((u32::from(*encoding) << 24) | (u32::from(*bit_offset) << 16) | u32::from(*bits));
        }
        Type::Ptr { target, .. }
        | Type::Typedef { target, .. }
        | Type::Volatile { target, .. }
        | Type::Const { target, .. }
        | Type::Restrict { target, .. }
        | Type::TypeTag { target, .. } => {
            w(name_off);
            w(info(kind, 0, false));
            w(*target);
        }
        Type::Array {
            elem,
            index,
            nelems,
            ..
        } => {
            w(name_off);
            w(info(kind, 0, false));
            w(0);
            w(*elem);
            w(*index);
            w(*nelems);
        }
        Type::Struct {
            size,
            kind_flag,
            members,
            ..
        }
        | Type::Union {
            size,
            kind_flag,
            members,
            ..
        } => {
            w(name_off);
            w(info(kind, members.len(), *kind_flag));
            w(*size);
            for m in members {
                w(m.name_off);
                w(m.type_id);
                w(m.offset);
            }
        }
        Type::Enum {
            size,
            signed,
            values,
            ..
        } => {
            w(name_off);
            w(info(kind, values.len(), *signed));
            w(*size);
            for v in values {
                w(v.name_off);
                w(v.value as u32);
            }
        }
        Type::Enum64 {
            size,
            signed,
            values,
            ..
        } => {
            w(name_off);
            w(info(kind, values.len(), *signed));
            w(*size);
            for v in values {
                w(v.name_off);
                w(v.value as u32);
                w((v.value >> 32) as u32);
            }
        }
        Type::Fwd { union, .. } => {
            w(name_off);
            w(info(kind, 0, *union));
            w(0);
        }
        Type::Func { proto, linkage, .. } => {
            w(name_off);
            w(info(kind, usize::from(*linkage), false));
            w(*proto);
        }
        Type::FuncProto { ret, params, .. } => {
            w(name_off);
            w(info(kind, params.len(), false));
            w(*ret);
            for p in params {
                w(p.name_off);
                w(p.type_id);
            }
        }
        Type::Var {
            type_id, linkage, ..
        } => {
            w(name_off);
            w(info(kind, 0, false));
            w(*type_id);
            w(*linkage);
        }
        Type::DataSec { size, vars, .. } => {
            w(name_off);
            w(info(kind, vars.len(), false));
            w(*size);
            for v in vars {
                w(v.type_id);
                w(v.offset);
                w(v.size);
            }
        }
        Type::Float { size, .. } => {
            w(name_off);
            w(info(kind, 0, false));
            w(*size);
        }
        Type::DeclTag {
            target,
            component_idx,
            ..
        } => {
            w(name_off);
            w(info(kind, 0, false));
            w(*target);
            w(*component_idx as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Btf;
    use super::*;

    #[test]
    fn roundtrip_every_kind() {
        let strings = b"\0int\0s\0a\0e\0v\0.data\0f\0tag\0".to_vec();
        let types = vec![
            Type::Void,
            Type::Int {
                name_off: 1,
                size: 4,
                encoding: INT_SIGNED,
                bit_offset: 0,
                bits: 32,
            },
            Type::Ptr {
                name_off: 0,
                target: 1,
            },
            Type::Array {
                name_off: 0,
                elem: 1,
                index: 1,
                nelems: 3,
            },
            Type::Struct {
                name_off: 5,
                size: 8,
                kind_flag: true,
                members: vec![Member {
                    name_off: 7,
                    type_id: 1,
                    offset: (3 << 24) | 5,
                }],
            },
            Type::Enum {
                name_off: 9,
                size: 4,
                signed: true,
                values: vec![EnumValue {
                    name_off: 7,
                    value: (-2i64) as u64,
                }],
            },
            Type::Enum64 {
                name_off: 9,
                size: 8,
                signed: false,
                values: vec![EnumValue {
                    name_off: 7,
                    value: 1 << 40,
                }],
            },
            Type::Var {
                name_off: 11,
                type_id: 1,
                linkage: VAR_GLOBAL,
            },
            Type::DataSec {
                name_off: 13,
                size: 4,
                vars: vec![VarSecInfo {
                    type_id: 7,
                    offset: 0,
                    size: 4,
                }],
            },
            Type::FuncProto {
                name_off: 0,
                ret: 1,
                params: vec![Param {
                    name_off: 7,
                    type_id: 2,
                }],
            },
            Type::Func {
                name_off: 19,
                proto: 9,
                linkage: FUNC_GLOBAL,
            },
            Type::Float {
                name_off: 0,
                size: 8,
            },
            Type::DeclTag {
                name_off: 21,
                target: 4,
                component_idx: -1,
            },
            Type::TypeTag {
                name_off: 21,
                target: 1,
            },
            Type::Fwd {
                name_off: 5,
                union: true,
            },
        ];
        let bytes = encode(&types, &strings);
        let btf = Btf::parse(&bytes).unwrap();
        assert_eq!(btf.to_types().unwrap(), types);
        assert_eq!(btf.resolve_size(3).unwrap(), 12);
        assert_eq!(btf.name_of(10).unwrap(), "f");
        assert_eq!(encode(&btf.to_types().unwrap(), btf.strings()), bytes);
    }
}
