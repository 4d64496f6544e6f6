//! Typed values from TOML to the bytes a map key, map value or global
//! variable holds.
//!
//! Without type information a value is encoded by size: integers little
//! endian (checked to fit), booleans as 0/1, strings as NUL-padded bytes or,
//! for LPM trie keys, as an IP prefix (`"10.0.0.0/8"` → prefix length then
//! address), arrays of integers as bytes.

use std::net::IpAddr;

/// Encodes `value` into exactly `size` bytes.
pub fn encode(value: &toml::Value, size: usize, lpm_key: bool) -> Result<Vec<u8>, String> {
    match value {
        toml::Value::Integer(i) => encode_int(*i, size),
        toml::Value::Boolean(b) => {
            if size == 0 {
                return Err("a boolean needs at least 1 byte, this slot has 0".into());
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
                ));
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
                        return Err(format!(
                            "array items must be bytes (0..=255), found {other}"
                        ));
                    }
                }
            }
            if v.len() != size {
                return Err(format!(
                    "{} bytes given, the slot holds exactly {size}",
                    v.len()
                ));
            }
            Ok(v)
        }
        other => Err(format!(
            "a {} cannot be encoded without BTF type information",
            other.type_str()
        )),
    }
}

fn encode_int(i: i64, size: usize) -> Result<Vec<u8>, String> {
    let fits = match size {
        1 => (i8::MIN as i64..=u8::MAX as i64).contains(&i),
        2 => (i16::MIN as i64..=u16::MAX as i64).contains(&i),
        4 => (i32::MIN as i64..=u32::MAX as i64).contains(&i),
        8 => true,
        _ => {
            return Err(format!(
                "an integer needs a 1, 2, 4 or 8 byte slot, this one has {size}"
            ));
        }
    };
    if !fits {
        return Err(format!("{i} does not fit in {size} byte(s)"));
    }
    Ok(i.to_le_bytes()[..size].to_vec())
}

/// `"10.0.0.0/8"` as `struct { u32 prefixlen; u8 addr[]; }`.
fn encode_prefix(s: &str, size: usize) -> Result<Vec<u8>, String> {
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
        ));
    }
    if 4 + bytes.len() != size {
        return Err(format!(
            "\"{s}\" makes a {}-byte LPM key, the map's key is {size} bytes",
            4 + bytes.len()
        ));
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
