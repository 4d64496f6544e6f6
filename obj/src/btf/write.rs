//! Writing BTF: marshals decoded [`Type`]s and a string section back into the
//! kernel's byte layout in this machine's byte order (the running kernel's),
//! ready for `BPF_BTF_LOAD`.

use super::read::{HEADER_LEN, MAGIC};
use super::types::*;

/// `native` (a BTF blob in this machine's byte order, as [`encode`] and
/// [`super::Btf::into_bytes`] give it) in `order`: BTF for a kernel or a
/// file of the other byte order. Returns a copy either way.
pub fn in_byte_order(native: &[u8], order: crate::ByteOrder) -> Vec<u8> {
    let mut out = native.to_vec();
    if order.is_native() || out.len() < HEADER_LEN {
        return out;
    }
    let word = |at: usize| u32::from_ne_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]);
    let (hdr_len, type_off, type_len) = (word(4), word(8), word(12));
    super::read::swap_blob(&mut out, hdr_len, type_off, type_len);
    out
}

/// Encodes `types` (index = type id; entry 0 must be [`Type::Void`] and is
/// not written) and `strings` into a complete BTF blob.
pub fn encode(types: &[Type], strings: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for t in types.iter().skip(1) {
        encode_type(t, &mut body);
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + strings.len());
    out.extend_from_slice(&MAGIC.to_ne_bytes());
    out.push(1); // version
    out.push(0); // flags
    for v in [
        HEADER_LEN as u32,
        0,
        body.len() as u32,
        body.len() as u32,
        strings.len() as u32,
    ] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    out.extend_from_slice(&body);
    out.extend_from_slice(strings);
    out
}

fn info(kind: Kind, vlen: usize, kind_flag: bool) -> u32 {
    ((kind_flag as u32) << 31) | ((kind as u32) << 24) | (vlen as u32 & 0xffff)
}

/// Appends one type's bytes to `out`: the three header words every kind
/// has (name, info, size or type), then the kind's own words.
pub fn encode_type(t: &Type, out: &mut Vec<u8>) {
    let mut w = |v: u32| out.extend_from_slice(&v.to_ne_bytes());
    // (vlen, kind_flag, size or type) of the header.
    let (vlen, kind_flag, third) = match t {
        Type::Void => return,
        Type::Int { size, .. } | Type::Float { size, .. } => (0, false, *size),
        Type::Ptr { target, .. }
        | Type::Typedef { target, .. }
        | Type::Volatile { target, .. }
        | Type::Const { target, .. }
        | Type::Restrict { target, .. }
        | Type::TypeTag { target, .. }
        | Type::DeclTag { target, .. } => (0, false, *target),
        Type::Array { .. } => (0, false, 0),
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
        } => (members.len(), *kind_flag, *size),
        Type::Enum {
            size,
            signed,
            values,
            ..
        }
        | Type::Enum64 {
            size,
            signed,
            values,
            ..
        } => (values.len(), *signed, *size),
        Type::Fwd { union, .. } => (0, *union, 0),
        Type::Func { proto, linkage, .. } => (usize::from(*linkage), false, *proto),
        Type::FuncProto { ret, params, .. } => (params.len(), false, *ret),
        Type::Var { type_id, .. } => (0, false, *type_id),
        Type::DataSec { size, vars, .. } => (vars.len(), false, *size),
    };
    w(t.name_off());
    w(info(t.kind(), vlen, kind_flag));
    w(third);
    match t {
        Type::Int {
            encoding,
            bit_offset,
            bits,
            ..
        } => w((u32::from(*encoding) << 24) | (u32::from(*bit_offset) << 16) | u32::from(*bits)),
        Type::Array {
            elem,
            index,
            nelems,
            ..
        } => [*elem, *index, *nelems].into_iter().for_each(w),
        Type::Struct { members, .. } | Type::Union { members, .. } => {
            members.iter().for_each(|m| {
                [m.name_off, m.type_id, m.offset]
                    .into_iter()
                    .for_each(&mut w)
            })
        }
        Type::Enum { values, .. } => values
            .iter()
            .for_each(|v| [v.name_off, v.value as u32].into_iter().for_each(&mut w)),
        Type::Enum64 { values, .. } => values.iter().for_each(|v| {
            [v.name_off, v.value as u32, (v.value >> 32) as u32]
                .into_iter()
                .for_each(&mut w)
        }),
        Type::FuncProto { params, .. } => params
            .iter()
            .for_each(|p| [p.name_off, p.type_id].into_iter().for_each(&mut w)),
        Type::Var { linkage, .. } => w(*linkage),
        Type::DataSec { vars, .. } => vars
            .iter()
            .for_each(|v| [v.type_id, v.offset, v.size].into_iter().for_each(&mut w)),
        Type::DeclTag { component_idx, .. } => w(*component_idx as u32),
        _ => {}
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
