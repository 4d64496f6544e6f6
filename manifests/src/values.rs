//! Typed values from TOML to the bytes a map key, map value or global
//! variable holds.
//!
//! With the object's BTF ([`encode_typed`]) values follow the C type:
//! integers checked against the type's width and sign, booleans, enums by
//! name, structs as tables (by member name, bitfields included), unions as a
//! one-key table, arrays as TOML arrays, `char[]` as strings, floats.
//!
//! Without type information a value is encoded by size: integers little
//! endian (checked to fit), booleans as 0/1, strings as NUL-padded bytes or,
//! for LPM trie keys, as an IP prefix (`"10.0.0.0/8"` → prefix length then
//! address), arrays of integers as bytes.

use std::net::IpAddr;

use kiln_obj::btf::Btf;
use kiln_obj::btf::types::{Member, Type, TypeId};

/// Why a TOML value cannot be the bytes of its key, value or variable.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    /// The object's BTF type could not be resolved.
    #[error("BTF")]
    Btf(#[from] kiln_obj::btf::BtfError),
    /// The value of a struct member (named by the first field) or of an
    /// array element (`[index]`) is wrong; the second says how.
    #[error("{0}")]
    Field(String, #[source] Box<ValueError>),
    /// The value does not fit its type or size (the message says how).
    #[error("{0}")]
    Mismatch(String),
}

impl ValueError {
    fn field(field: impl Into<String>) -> impl FnOnce(ValueError) -> ValueError {
        move |source| ValueError::Field(field.into(), Box::new(source))
    }
}

impl From<String> for ValueError {
    fn from(message: String) -> Self {
        ValueError::Mismatch(message)
    }
}

/// Encodes `value` as BTF type `id` of `btf` when both are known (an LPM key
/// given as an IP prefix string is encoded as a prefix either way), else by size.
pub fn encode_typed(
    btf: Option<&Btf>,
    id: Option<u32>,
    value: &toml::Value,
    size: usize,
    lpm_key: bool,
) -> Result<Vec<u8>, ValueError> {
    let (Some(btf), Some(id)) = (btf, id.filter(|i| *i != 0)) else {
        return encode(value, size, lpm_key);
    };
    if lpm_key && value.is_str() {
        return encode(value, size, true);
    }
    let mut out = vec![0u8; size];
    write_typed(btf, id, value, &mut out, 0, 0)?;
    Ok(out)
}

const INT_SIGNED: u8 = 1;
const INT_CHAR: u8 = 2;
const INT_BOOL: u8 = 4;

fn type_name(btf: &Btf, id: TypeId) -> String {
    match btf.name_of(id) {
        Ok(n) if !n.is_empty() => n.to_string(),
        _ => format!("type #{id}"),
    }
}

/// Writes `value` at byte `off` of `out` (plus `bit_off` bits, for bitfields).
fn write_typed(
    btf: &Btf,
    id: TypeId,
    value: &toml::Value,
    out: &mut [u8],
    off: usize,
    bit_off: u32,
) -> Result<(), ValueError> {
    let (id, ty) = btf.skip_modifiers(id)?;
    let ty = match ty {
        Type::Var { type_id, .. } => return write_typed(btf, type_id, value, out, off, bit_off),
        t => t,
    };
    match ty {
        Type::Int {
            size,
            encoding,
            bits,
            ..
        } => {
            let v: i128 = match value {
                toml::Value::Integer(i) => i128::from(*i),
                toml::Value::Boolean(b) => i128::from(*b),
                toml::Value::String(s) if encoding & INT_CHAR != 0 && s.len() == 1 => {
                    i128::from(s.as_bytes()[0])
                }
                other => {
                    return Err(format!(
                        "{} wants {}, found {}",
                        type_name(btf, id),
                        if encoding & INT_BOOL != 0 {
                            "a boolean"
                        } else {
                            "an integer"
                        },
                        other.type_str()
                    )
                    .into());
                }
            };
            let width = u32::from(bits).min(size * 8);
            let signed = encoding & INT_SIGNED != 0;
            let (lo, hi) = if signed {
                (-(1i128 << (width - 1)), (1i128 << (width - 1)) - 1)
            } else {
                (0, (1i128 << width) - 1)
            };
            if v < lo || v > hi {
                return Err(
                    format!("{v} does not fit {} ({lo}..={hi})", type_name(btf, id)).into(),
                );
            }
            put_bits(out, off, bit_off, width, v as u128)
        }
        Type::Enum { size, values, .. } | Type::Enum64 { size, values, .. } => {
            let v = match value {
                toml::Value::Integer(i) => *i as u64,
                toml::Value::String(name) => {
                    let found = values
                        .iter()
                        .find(|e| btf.str_at(e.name_off).is_ok_and(|n| n == name));
                    match found {
                        Some(e) => e.value,
                        None => {
                            let names: Vec<&str> = values
                                .iter()
                                .filter_map(|e| btf.str_at(e.name_off).ok())
                                .collect();
                            return Err(format!(
                                "'{name}' is not a value of enum {} (it has: {})",
                                type_name(btf, id),
                                names.join(", ")
                            )
                            .into());
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "enum {} wants a name or an integer, found {}",
                        type_name(btf, id),
                        other.type_str()
                    )
                    .into());
                }
            };
            put_bits(out, off, bit_off, size * 8, u128::from(v))
        }
        Type::Float { size, .. } => {
            let f = match value {
                toml::Value::Float(f) => *f,
                toml::Value::Integer(i) => *i as f64,
                other => {
                    return Err(
                        format!("a float wants a number, found {}", other.type_str()).into(),
                    );
                }
            };
            let bytes = match size {
                4 => (f as f32).to_le_bytes().to_vec(),
                8 => f.to_le_bytes().to_vec(),
                _ => {
                    return Err(format!("{size}-byte floats are not supported").into());
                }
            };
            slot(out, off, bytes.len())?.copy_from_slice(&bytes);
            Ok(())
        }
        Type::Ptr { .. } => match value {
            toml::Value::Integer(i) => {
                slot(out, off, 8)?.copy_from_slice(&i.to_le_bytes());
                Ok(())
            }
            other => Err(format!("a pointer wants an integer, found {}", other.type_str()).into()),
        },
        Type::Array { elem, nelems, .. } => {
            let esize = btf.resolve_size(elem)? as usize;
            let (_, ety) = btf.skip_modifiers(elem)?;
            match value {
                toml::Value::String(s) if esize == 1 && matches!(ety, Type::Int { .. }) => {
                    if s.len() > nelems as usize {
                        return Err(format!(
                            "\"{s}\" has {} bytes, the array holds {nelems}",
                            s.len()
                        )
                        .into());
                    }
                    slot(out, off, s.len())?.copy_from_slice(s.as_bytes());
                    Ok(())
                }
                toml::Value::Array(items) => {
                    if items.len() > nelems as usize {
                        return Err(format!(
                            "{} items given, the array holds {nelems}",
                            items.len()
                        )
                        .into());
                    }
                    for (i, item) in items.iter().enumerate() {
                        write_typed(btf, elem, item, out, off + i * esize, 0)
                            .map_err(ValueError::field(format!("[{i}]")))?;
                    }
                    Ok(())
                }
                other => Err(format!(
                    "an array of {nelems} wants a TOML array, found {}",
                    other.type_str()
                )
                .into()),
            }
        }
        Type::Struct {
            kind_flag, members, ..
        }
        | Type::Union {
            kind_flag, members, ..
        } => {
            let is_union = matches!(btf.type_by_id(id), Ok(Type::Union { .. }));
            let toml::Value::Table(table) = value else {
                return Err(format!(
                    "{} wants a table {{ member = value, ... }}, found {}",
                    type_name(btf, id),
                    value.type_str()
                )
                .into());
            };
            if is_union && table.len() != 1 {
                return Err(
                    format!("union {} takes exactly one member", type_name(btf, id)).into(),
                );
            }
            for (key, v) in table {
                let m: &Member = members
                    .iter()
                    .find(|m| btf.str_at(m.name_off).is_ok_and(|n| n == key))
                    .ok_or_else(|| {
                        let names: Vec<&str> = members
                            .iter()
                            .filter_map(|m| btf.str_at(m.name_off).ok())
                            .collect();
                        format!(
                            "{} has no member '{key}' (it has: {})",
                            type_name(btf, id),
                            names.join(", ")
                        )
                    })?;
                let bits = m.bit_offset(kind_flag);
                let bf = m.bitfield_size(kind_flag);
                if bf > 0 {
                    let raw = match v {
                        toml::Value::Integer(i) => *i as u128,
                        toml::Value::Boolean(b) => u128::from(*b),
                        other => {
                            return Err(format!(
                                "{key}: a bitfield wants an integer, found {}",
                                other.type_str()
                            )
                            .into());
                        }
                    };
                    if bf < 128 && raw >> bf != 0 {
                        return Err(format!("{key}: {raw} does not fit a {bf}-bit field").into());
                    }
                    put_bits(out, off + (bits / 8) as usize, bits % 8, bf, raw)
                        .map_err(ValueError::field(key))?;
                } else {
                    write_typed(btf, m.type_id, v, out, off + (bits / 8) as usize, 0)
                        .map_err(ValueError::field(key))?;
                }
            }
            Ok(())
        }
        other => Err(format!(
            "values of BTF kind {:?} cannot be written from a manifest",
            other.kind()
        )
        .into()),
    }
}

fn slot(out: &mut [u8], off: usize, len: usize) -> Result<&mut [u8], ValueError> {
    let n = out.len();
    out.get_mut(off..off + len).ok_or_else(|| {
        ValueError::Mismatch(format!(
            "{len} bytes at offset {off} do not fit the {n}-byte slot"
        ))
    })
}

/// Writes the low `width` bits of `v`, little endian, starting `bit_off` bits into byte `off`.
fn put_bits(
    out: &mut [u8],
    off: usize,
    bit_off: u32,
    width: u32,
    v: u128,
) -> Result<(), ValueError> {
    let nbytes = (bit_off + width).div_ceil(8) as usize;
    let s = slot(out, off, nbytes)?;
    for bit in 0..width {
        let pos = bit_off + bit;
        let byte = &mut s[(pos / 8) as usize];
        let mask = 1u8 << (pos % 8);
        if (v >> bit) & 1 == 1 {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
    }
    Ok(())
}

/// Encodes `value` into exactly `size` bytes.
pub fn encode(value: &toml::Value, size: usize, lpm_key: bool) -> Result<Vec<u8>, ValueError> {
    match value {
        toml::Value::Integer(i) => encode_int(*i, size),
        toml::Value::Boolean(b) => {
            if size == 0 {
                return Err(ValueError::Mismatch(
                    "a boolean needs at least 1 byte, this slot has 0".into(),
                ));
            }
            let mut v = vec![0; size];
            v[0] = u8::from(*b);
            Ok(v)
        }
        toml::Value::String(s) if lpm_key => encode_prefix(s, size),
        toml::Value::String(s) => {
            let b = s.as_bytes();
            if b.len() > size {
                return Err(format!(
                    "string \"{s}\" has {} bytes, the slot holds {size}",
                    b.len()
                )
                .into());
            }
            let mut v = b.to_vec();
            v.resize(size, 0);
            Ok(v)
        }
        toml::Value::Array(items) => {
            let mut v = Vec::with_capacity(size);
            for item in items {
                match item {
                    toml::Value::Integer(i) if (0..=255).contains(i) => v.push(*i as u8),
                    other => {
                        return Err(
                            format!("array items must be bytes (0..=255), found {other}").into(),
                        );
                    }
                }
            }
            if v.len() != size {
                return Err(
                    format!("{} bytes given, the slot holds exactly {size}", v.len()).into(),
                );
            }
            Ok(v)
        }
        other => Err(format!(
            "a {} cannot be encoded without BTF type information",
            other.type_str()
        )
        .into()),
    }
}

fn encode_int(i: i64, size: usize) -> Result<Vec<u8>, ValueError> {
    let fits = match size {
        1 => (i8::MIN as i64..=u8::MAX as i64).contains(&i),
        2 => (i16::MIN as i64..=u16::MAX as i64).contains(&i),
        4 => (i32::MIN as i64..=u32::MAX as i64).contains(&i),
        8 => true,
        _ => {
            return Err(
                format!("an integer needs a 1, 2, 4 or 8 byte slot, this one has {size}").into(),
            );
        }
    };
    if !fits {
        return Err(format!("{i} does not fit in {size} byte(s)").into());
    }
    Ok(i.to_le_bytes()[..size].to_vec())
}

/// `"10.0.0.0/8"` as `struct { u32 prefixlen; u8 addr[]; }`.
fn encode_prefix(s: &str, size: usize) -> Result<Vec<u8>, ValueError> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("\"{s}\" is not an IP prefix such as \"10.0.0.0/8\""))?;
    let bytes: Vec<u8> = match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let max = bytes.len() as u32 * 8;
    let len: u32 = match len {
        Some(l) => l
            .parse()
            .map_err(|_| format!("\"{s}\": prefix length is not a number"))?,
        None => max,
    };
    if len > max {
        return Err(format!(
            "\"{s}\": prefix length {len} is longer than the address ({max} bits)"
        )
        .into());
    }
    if 4 + bytes.len() != size {
        return Err(format!(
            "\"{s}\" makes a {}-byte LPM key, the map's key is {size} bytes",
            4 + bytes.len()
        )
        .into());
    }
    let mut v = len.to_le_bytes().to_vec();
    v.extend_from_slice(&bytes);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use toml::Value;

    #[test]
    fn integers_by_size() {
        assert_eq!(encode(&Value::Integer(1), 4, false).unwrap(), [1, 0, 0, 0]);
        assert_eq!(encode(&Value::Integer(-1), 2, false).unwrap(), [0xff, 0xff]);
        assert!(
            encode(&Value::Integer(256), 1, false)
                .unwrap_err()
                .to_string()
                .contains("does not fit")
        );
        assert_eq!(encode(&Value::Boolean(true), 1, false).unwrap(), [1]);
    }

    #[test]
    fn lpm_prefix() {
        assert_eq!(
            encode(&Value::String("10.0.0.0/8".into()), 8, true).unwrap(),
            [8, 0, 0, 0, 10, 0, 0, 0]
        );
        assert!(encode(&Value::String("10.0.0.0/40".into()), 8, true).is_err());
    }
}
