//! Reading BTF: [`Btf`] indexes a raw blob (object `.BTF` or the kernel's
//! `/sys/kernel/btf/vmlinux`) and decodes types on demand.
//!
//! Parsing only walks the type section once to record where each type
//! starts; nothing is decoded or allocated per type. The name index used by
//! CO-RE candidate search is built on the first lookup by name.

use std::sync::OnceLock;

use super::BtfError;
use super::strings::str_at;
use super::types::*;

pub(crate) const MAGIC: u16 = 0xeb9f;
pub(crate) const HEADER_LEN: usize = 24;
/// libbpf's `MAX_RESOLVE_DEPTH`: guards against type cycles in malformed BTF.
pub(crate) const MAX_RESOLVE_DEPTH: usize = 32;

/// Parsed BTF: the raw bytes plus an offset index.
pub struct Btf {
    data: Vec<u8>,
    types: std::ops::Range<usize>,
    strings: std::ops::Range<usize>,
    /// `offsets[id - 1]`: where type `id` starts, relative to `types.start`.
    offsets: Vec<u32>,
    /// (hash of essential name, id), sorted; built on first lookup by name.
    name_index: OnceLock<Vec<(u64, TypeId)>>,
}

impl std::fmt::Debug for Btf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Btf")
            .field("types", &self.offsets.len())
            .field("string_bytes", &self.strings.len())
            .finish()
    }
}

fn u32_at(data: &[u8], off: usize) -> Option<u32> {
    let b = data.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn header_err(reason: impl Into<String>) -> BtfError {
    BtfError::Header(reason.into())
}

impl Btf {
    /// Parses a BTF blob, copying it.
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        Self::from_bytes(data.to_vec())
    }

    /// Parses a BTF blob, taking ownership (no copy: use this for vmlinux).
    pub fn from_bytes(data: Vec<u8>) -> Result<Self, BtfError> {
        if data.len() < HEADER_LEN {
            return Err(header_err(format!(
                "{} bytes, shorter than the 24-byte header",
                data.len()
            )));
        }
        let magic = u16::from_le_bytes([data[0], data[1]]);
        if magic != MAGIC {
            if magic.swap_bytes() == MAGIC {
                return Err(header_err("big-endian BTF is not supported"));
            }
            return Err(header_err(format!("bad magic {magic:#06x}")));
        }
        if data[2] != 1 {
            return Err(header_err(format!("unsupported version {}", data[2])));
        }
        let hdr_len = u32_at(&data, 4).unwrap_or(0) as usize;
        if hdr_len < HEADER_LEN || hdr_len > data.len() {
            return Err(header_err(format!("bad header length {hdr_len}")));
        }
        let field = |i: usize| u32_at(&data, 8 + 4 * i).unwrap_or(0) as usize;
        let (type_off, type_len, str_off, str_len) = (field(0), field(1), field(2), field(3));
        let range = |off: usize, len: usize, what: &str| {
            let start = hdr_len
                .checked_add(off)
                .ok_or_else(|| header_err(format!("{what} offset overflows")))?;
            let end = start
                .checked_add(len)
                .ok_or_else(|| header_err(format!("{what} length overflows")))?;
            if end > data.len() {
                return Err(header_err(format!(
                    "{what} section {start}..{end} is past the end ({} bytes)",
                    data.len()
                )));
            }
            Ok(start..end)
        };
        let types = range(type_off, type_len, "type")?;
        let strings = range(str_off, str_len, "string")?;
        if !strings.is_empty() && data[strings.start] != 0 {
            return Err(header_err("string section does not start with NUL"));
        }
        if types.len() % 4 != 0 {
            return Err(header_err("type section length is not a multiple of 4"));
        }
        let offsets = index_types(&data[types.clone()])?;
        Ok(Self {
            data,
            types,
            strings,
            offsets,
            name_index: OnceLock::new(),
        })
    }

    /// Number of type ids, including `void` (id 0).
    pub fn len(&self) -> u32 {
        self.offsets.len() as u32 + 1
    }

    /// Always false: `void` exists in every BTF.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The raw string section.
    pub fn strings(&self) -> &[u8] {
        &self.data[self.strings.clone()]
    }

    /// The whole blob as parsed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// The string at `offset` of the string section.
    pub fn str_at(&self, offset: u32) -> Result<&str, BtfError> {
        str_at(self.strings(), offset)
    }

    /// The name of type `id` (empty for anonymous types).
    pub fn name_of(&self, id: TypeId) -> Result<&str, BtfError> {
        if id == 0 {
            return Ok("");
        }
        let off = self.raw_offset(id)?;
        let name_off = u32_at(&self.data, off).unwrap_or(0);
        self.str_at(name_off)
    }

    fn raw_offset(&self, id: TypeId) -> Result<usize, BtfError> {
        let rel = *self
            .offsets
            .get((id as usize).wrapping_sub(1))
            .ok_or(BtfError::Type {
                type_id: id,
                reason: format!("no such type (BTF has {} types)", self.len()),
            })?;
        Ok(self.types.start + rel as usize)
    }

    /// The kind of type `id` without decoding it.
    pub fn kind_of(&self, id: TypeId) -> Result<Kind, BtfError> {
        if id == 0 {
            return Ok(Kind::Void);
        }
        let off = self.raw_offset(id)?;
        let info = u32_at(&self.data, off + 4).unwrap_or(0);
        // Validated by index_types.
        Ok(Kind::from_u32((info >> 24) & 0x1f).unwrap_or(Kind::Void))
    }

    /// Decodes type `id`.
    pub fn type_by_id(&self, id: TypeId) -> Result<Type, BtfError> {
        if id == 0 {
            return Ok(Type::Void);
        }
        let off = self.raw_offset(id)?;
        decode(&self.data[off..self.types.end], id)
    }

    /// Every type in id order, `void` first.
    pub fn types(&self) -> impl Iterator<Item = Result<(TypeId, Type), BtfError>> + '_ {
        (0..self.len()).map(|id| self.type_by_id(id).map(|t| (id, t)))
    }

    /// Decodes every type (index = type id).
    pub fn to_types(&self) -> Result<Vec<Type>, BtfError> {
        (0..self.len()).map(|id| self.type_by_id(id)).collect()
    }

    /// Follows typedefs, const, volatile, restrict and type tags.
    pub fn skip_modifiers(&self, id: TypeId) -> Result<(TypeId, Type), BtfError> {
        let mut id = id;
        for _ in 0..MAX_RESOLVE_DEPTH {
            let t = self.type_by_id(id)?;
            if !t.is_modifier() {
                return Ok((id, t));
            }
            id = t.target().unwrap_or(0);
        }
        Err(BtfError::Type {
            type_id: id,
            reason: "modifier chain too long (a cycle?)".into(),
        })
    }

    /// The size in bytes of a value of type `id` (libbpf's `btf__resolve_size`).
    pub fn resolve_size(&self, id: TypeId) -> Result<u32, BtfError> {
        let mut id = id;
        let mut mult: u64 = 1;
        for _ in 0..MAX_RESOLVE_DEPTH {
            let t = self.type_by_id(id)?;
            let size = match &t {
                Type::Ptr { .. } => Some(8),
                Type::Array { elem, nelems, .. } => {
                    mult = mult.saturating_mul(u64::from(*nelems));
                    id = *elem;
                    None
                }
                Type::Var { type_id, .. } => {
                    id = *type_id;
                    None
                }
                t if t.is_modifier() => {
                    id = t.target().unwrap_or(0);
                    None
                }
                t => Some(t.own_size().ok_or_else(|| BtfError::Type {
                    type_id: id,
                    reason: format!("{:?} has no size", t.kind()),
                })?),
            };
            if let Some(size) = size {
                return u32::try_from(mult.saturating_mul(u64::from(size))).map_err(|_| {
                    BtfError::Type {
                        type_id: id,
                        reason: "size overflows 32 bits".into(),
                    }
                });
            }
        }
        Err(BtfError::Type {
            type_id: id,
            reason: "type chain too long (a cycle?)".into(),
        })
    }

    /// Ids of the types whose essential name (without a `___flavor` suffix) is `name`.
    pub fn ids_by_essential_name(&self, name: &str) -> Vec<TypeId> {
        let name = essential_name(name);
        let index = self.name_index.get_or_init(|| self.build_name_index());
        let h = hash_name(name.as_bytes());
        let start = index.partition_point(|&(k, _)| k < h);
        index[start..]
            .iter()
            .take_while(|&&(k, _)| k == h)
            .map(|&(_, id)| id)
            .filter(|&id| self.name_of(id).is_ok_and(|n| essential_name(n) == name))
            .collect()
    }

    /// The first type named exactly `name` of kind `kind`.
    pub fn id_by_name(&self, name: &str, kind: Kind) -> Option<TypeId> {
        self.ids_by_essential_name(name)
            .into_iter()
            .find(|&id| self.kind_of(id) == Ok(kind) && self.name_of(id) == Ok(name))
    }

    fn build_name_index(&self) -> Vec<(u64, TypeId)> {
        let strings = self.strings();
        let mut index = Vec::with_capacity(self.offsets.len());
        for (i, &rel) in self.offsets.iter().enumerate() {
            let name_off = u32_at(&self.data, self.types.start + rel as usize).unwrap_or(0);
            if name_off == 0 {
                continue;
            }
            let Some(rest) = strings.get(name_off as usize..) else {
                continue;
            };
            let len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            let name = &rest[..len];
            let name = essential_name_bytes(name);
            index.push((hash_name(name), i as TypeId + 1));
        }
        index.sort_unstable();
        index
    }
}

/// A name without its `___flavor` suffix (CO-RE's "essential name").
pub fn essential_name(name: &str) -> &str {
    match name.find("___") {
        Some(pos) => &name[..pos],
        None => name,
    }
}

fn essential_name_bytes(name: &[u8]) -> &[u8] {
    match name.windows(3).position(|w| w == b"___") {
        Some(pos) => &name[..pos],
        None => name,
    }
}

/// FNV-1a: fast, good enough to bucket names; equality is checked after.
fn hash_name(name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// One pass over the type section recording each type's start.
fn index_types(types: &[u8]) -> Result<Vec<u32>, BtfError> {
    let mut offsets = Vec::with_capacity(types.len() / 16);
    let mut pos = 0usize;
    while pos < types.len() {
        let id = offsets.len() as u32 + 1;
        let info = u32_at(types, pos + 4).ok_or_else(|| BtfError::Type {
            type_id: id,
            reason: "truncated type header".into(),
        })?;
        let kind_raw = (info >> 24) & 0x1f;
        let kind = Kind::from_u32(kind_raw)
            .filter(|k| *k != Kind::Void)
            .ok_or_else(|| BtfError::Type {
                type_id: id,
                reason: format!("unknown kind {kind_raw}"),
            })?;
        let end = pos + 12 + kind.extra_len(info & 0xffff);
        if end > types.len() {
            return Err(BtfError::Type {
                type_id: id,
                reason: "truncated type data".into(),
            });
        }
        offsets.push(pos as u32);
        pos = end;
    }
    Ok(offsets)
}

/// Decodes the type starting at `b[0]` (already bounds-checked by `index_types`).
fn decode(b: &[u8], id: TypeId) -> Result<Type, BtfError> {
    let word = |i: usize| {
        u32_at(b, i * 4).ok_or_else(|| BtfError::Type {
            type_id: id,
            reason: "truncated".into(),
        })
    };
    let name_off = word(0)?;
    let info = word(1)?;
    let size_or_type = word(2)?;
    let vlen = (info & 0xffff) as usize;
    let kind_flag = info >> 31 == 1;
    let kind = Kind::from_u32((info >> 24) & 0x1f).ok_or_else(|| BtfError::Type {
        type_id: id,
        reason: "unknown kind".into(),
    })?;
    // Words of the i-th record of `n` words after the header.
    let rec = |i: usize, n: usize, j: usize| word(3 + i * n + j);
    Ok(match kind {
        Kind::Void => Type::Void,
        Kind::Int => {
            let enc = word(3)?;
            Type::Int {
                name_off,
                size: size_or_type,
                encoding: ((enc >> 24) & 0x0f) as u8,
                bit_offset: ((enc >> 16) & 0xff) as u8,
                bits: (enc & 0xff) as u8,
            }
        }
        Kind::Ptr => Type::Ptr {
            name_off,
            target: size_or_type,
        },
        Kind::Array => Type::Array {
            name_off,
            elem: word(3)?,
            index: word(4)?,
            nelems: word(5)?,
        },
        Kind::Struct | Kind::Union => {
            let members = (0..vlen)
                .map(|i| {
                    Ok(Member {
                        name_off: rec(i, 3, 0)?,
                        type_id: rec(i, 3, 1)?,
                        offset: rec(i, 3, 2)?,
                    })
                })
                .collect::<Result<Vec<_>, BtfError>>()?;
            if kind == Kind::Struct {
                Type::Struct {
                    name_off,
                    size: size_or_type,
                    kind_flag,
                    members,
                }
            } else {
                Type::Union {
                    name_off,
                    size: size_or_type,
                    kind_flag,
                    members,
                }
            }
        }
        Kind::Enum => Type::Enum {
            name_off,
            size: size_or_type,
            signed: kind_flag,
            values: (0..vlen)
                .map(|i| {
                    Ok(EnumValue {
                        name_off: rec(i, 2, 0)?,
                        value: rec(i, 2, 1)? as i32 as i64 as u64,
                    })
                })
                .collect::<Result<_, BtfError>>()?,
        },
        Kind::Enum64 => Type::Enum64 {
            name_off,
            size: size_or_type,
            signed: kind_flag,
            values: (0..vlen)
                .map(|i| {
                    let lo = u64::from(rec(i, 3, 1)?);
                    let hi = u64::from(rec(i, 3, 2)?);
                    Ok(EnumValue {
                        name_off: rec(i, 3, 0)?,
                        value: (hi << 32) | lo,
                    })
                })
                .collect::<Result<_, BtfError>>()?,
        },
        Kind::Fwd => Type::Fwd {
            name_off,
            union: kind_flag,
        },
        Kind::Typedef => Type::Typedef {
            name_off,
            target: size_or_type,
        },
        Kind::Volatile => Type::Volatile {
            name_off,
            target: size_or_type,
        },
        Kind::Const => Type::Const {
            name_off,
            target: size_or_type,
        },
        Kind::Restrict => Type::Restrict {
            name_off,
            target: size_or_type,
        },
        Kind::TypeTag => Type::TypeTag {
            name_off,
            target: size_or_type,
        },
        Kind::Func => Type::Func {
            name_off,
            proto: size_or_type,
            linkage: vlen as u16,
        },
        Kind::FuncProto => Type::FuncProto {
            name_off,
            ret: size_or_type,
            params: (0..vlen)
                .map(|i| {
                    Ok(Param {
                        name_off: rec(i, 2, 0)?,
                        type_id: rec(i, 2, 1)?,
                    })
                })
                .collect::<Result<_, BtfError>>()?,
        },
        Kind::Var => Type::Var {
            name_off,
            type_id: size_or_type,
            linkage: word(3)?,
        },
        Kind::DataSec => Type::DataSec {
            name_off,
            size: size_or_type,
            vars: (0..vlen)
                .map(|i| {
                    Ok(VarSecInfo {
                        type_id: rec(i, 3, 0)?,
                        offset: rec(i, 3, 1)?,
                        size: rec(i, 3, 2)?,
                    })
                })
                .collect::<Result<_, BtfError>>()?,
        },
        Kind::Float => Type::Float {
            name_off,
            size: size_or_type,
        },
        Kind::DeclTag => Type::DeclTag {
            name_off,
            target: size_or_type,
            component_idx: word(3)? as i32,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btf::write::encode;

    fn sample() -> Vec<u8> {
        let types = vec![
            Type::Void,
            Type::Int {
                name_off: 1,
                size: 4,
                encoding: 0,
                bit_offset: 0,
                bits: 32,
            },
            Type::Struct {
                name_off: 5,
                size: 8,
                kind_flag: false,
                members: vec![
                    Member {
                        name_off: 7,
                        type_id: 1,
                        offset: 0,
                    },
                    Member {
                        name_off: 9,
                        type_id: 3,
                        offset: 32,
                    },
                ],
            },
            Type::Typedef {
                name_off: 11,
                target: 2,
            },
        ];
        encode(&types, b"\0int\0s\0a\0b\0s___v2\0")
    }

    #[test]
    fn lookups() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.len(), 4);
        assert_eq!(btf.ids_by_essential_name("s"), vec![2, 3]);
        assert_eq!(btf.id_by_name("s", Kind::Struct), Some(2));
        assert_eq!(btf.skip_modifiers(3).unwrap().0, 2);
        assert!(btf.type_by_id(9).is_err());
    }

    #[test]
    fn truncated_and_corrupted() {
        let good = sample();
        for cut in 0..good.len() {
            let _ = Btf::parse(&good[..cut]);
        }
        let mut seed = 42u32;
        for _ in 0..2000 {
            let mut bad = good.clone();
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let at = (seed as usize >> 8) % bad.len();
            bad[at] = (seed >> 3) as u8;
            if let Ok(btf) = Btf::parse(&bad) {
                // Every accessor stays in bounds; a self-referencing cycle is an error.
                for id in 0..btf.len() + 2 {
                    let _ = btf.type_by_id(id);
                    let _ = btf.resolve_size(id);
                    let _ = btf.name_of(id);
                }
                let _ = btf.ids_by_essential_name("s");
            }
        }
        assert!(matches!(Btf::parse(&good[..30]), Err(BtfError::Header(_))));
    }
}
