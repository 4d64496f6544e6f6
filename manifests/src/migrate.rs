//! Copying a map's entries into a map of a new definition.
//!
//! With BTF on both sides (the live map's, read back from the kernel, and the
//! new object's), keys and values are converted field by field: struct
//! members matched by name, integers widened or narrowed (sign kept),
//! arrays element by element, members that are new start at zero. Without
//! BTF, entries are copied as bytes, which needs equal key and value sizes.

use kiln_loader::Map;
use kiln_loader::maps::UpdateFlags;
use kiln_obj::btf::Btf;
use kiln_obj::btf::types::{Member, Type, TypeId};

/// BTF types of one side: the BTF and the key and value type ids.
pub struct Side<'a> {
    pub btf: &'a Btf,
    pub key: TypeId,
    pub value: TypeId,
}

/// Reads a BTF object back from the kernel by id.
pub fn kernel_btf(id: u32) -> Result<Btf, String> {
    let btf = kiln_loader::Btf::from_kernel_id(id).map_err(|e| e.to_string())?;
    let buf = btf.bytes().map_err(|e| format!("read BTF id {id}: {e}"))?;
    Btf::parse(&buf).map_err(|e| format!("BTF id {id}: {e}"))
}

/// Elements read and written per batch: what a migration holds in memory,
/// whatever the size of the map.
const CHUNK: usize = 4096;

/// Copies every entry of `old` into `new`, converting through BTF when both
/// sides have it. Entries that do not fit (a smaller new map) are skipped.
/// Returns the number of entries copied.
///
/// Streams in chunks of `CHUNK` elements with batch lookups and updates
/// (5.6+); per entry, still streaming, where the kernel or the map type has
/// no batch operations.
pub fn copy_entries(
    old: &Map,
    new: &Map,
    types: Option<(Side<'_>, Side<'_>)>,
) -> Result<usize, String> {
    let sizes = Sizes {
        key: new.key_size() as usize,
        value: new.value_buf_len().map_err(|e| e.to_string())?,
    };
    let convert = |k: &[u8], v: &[u8]| -> Result<(Vec<u8>, Vec<u8>), String> {
        match &types {
            Some((from, to)) => Ok((
                one(from.btf, from.key, to.btf, to.key, k, sizes.key)
                    .map_err(|e| format!("key: {e}"))?,
                one(from.btf, from.value, to.btf, to.value, v, sizes.value)
                    .map_err(|e| format!("value: {e}"))?,
            )),
            None if k.len() == sizes.key && v.len() == sizes.value => Ok((k.to_vec(), v.to_vec())),
            None => {
                Err("key or value size changed and the maps carry no BTF to convert entries".into())
            }
        }
    };
    match copy_by_batches(old, new, sizes, &convert)? {
        Some(copied) => Ok(copied),
        None => copy_one_by_one(old, new, &convert),
    }
}

#[derive(Clone, Copy)]
struct Sizes {
    key: usize,
    value: usize,
}

type Convert<'a> = dyn Fn(&[u8], &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> + 'a;

/// The batch copy; `None` when the first batch lookup is refused as
/// unsupported (nothing copied yet).
fn copy_by_batches(
    old: &Map,
    new: &Map,
    to: Sizes,
    convert: &Convert<'_>,
) -> Result<Option<usize>, String> {
    const ENOTSUPP: i32 = 524;
    let ks = old.key_size() as usize;
    let vs = old.value_buf_len().map_err(|e| e.to_string())?;
    let mut chunk = CHUNK.min(old.max_entries().max(1) as usize);
    let (mut keys, mut values) = (vec![0u8; chunk * ks], vec![0u8; chunk * vs]);
    let mut tokens = [vec![0u8; ks.max(4)], vec![0u8; ks.max(4)]];
    let (mut out_keys, mut out_values) = (Vec::new(), Vec::new());
    let mut first = true;
    let mut copied = 0;
    loop {
        let [in_tok, out_tok] = &mut tokens;
        let r = old.lookup_batch_bytes(
            false,
            (!first).then_some(&in_tok[..]),
            out_tok,
            &mut keys,
            &mut values,
            chunk as u32,
        );
        let got = match r {
            Ok(r) => r,
            Err(e) => match e.errno() {
                Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP) if first => return Ok(None),
                // A hash bucket holds more elements than a chunk: read it whole.
                Some(libc::ENOSPC) if chunk < old.max_entries() as usize => {
                    chunk = chunk.saturating_mul(2).min(old.max_entries() as usize);
                    keys.resize(chunk * ks, 0);
                    values.resize(chunk * vs, 0);
                    continue;
                }
                _ => return Err(e.to_string()),
            },
        };
        first = false;
        out_keys.clear();
        out_values.clear();
        for i in 0..got.count as usize {
            let (k, v) = convert(&keys[i * ks..(i + 1) * ks], &values[i * vs..(i + 1) * vs])?;
            out_keys.extend_from_slice(&k);
            out_values.extend_from_slice(&v);
        }
        copied += write_chunk(new, to, &out_keys, &out_values);
        if got.done {
            return Ok(Some(copied));
        }
        tokens.swap(0, 1);
    }
}

/// Writes converted entries, all at once where they fit; when the batch is
/// refused (a smaller new map filling up), one by one, skipping the misfits.
fn write_chunk(new: &Map, to: Sizes, keys: &[u8], values: &[u8]) -> usize {
    let n = keys.len() / to.key.max(1);
    if new
        .update_batch_bytes(keys, values, UpdateFlags::ANY)
        .is_ok()
    {
        return n;
    }
    keys.chunks_exact(to.key.max(1))
        .zip(values.chunks_exact(to.value.max(1)))
        .filter(|(k, v)| new.update_bytes(k, v, UpdateFlags::ANY).is_ok())
        .count()
}

/// The copy for maps without batch operations: key by key as the walk
/// finds them (never every key first).
fn copy_one_by_one(old: &Map, new: &Map, convert: &Convert<'_>) -> Result<usize, String> {
    let mut copied = 0;
    for k in old.keys_bytes() {
        let k = k.map_err(|e| e.to_string())?;
        let Some(v) = old
            .lookup_bytes(&k, UpdateFlags::ANY)
            .map_err(|e| e.to_string())?
        else {
            continue;
        };
        let (k2, v2) = convert(&k, &v)?;
        if new.update_bytes(&k2, &v2, UpdateFlags::ANY).is_ok() {
            copied += 1;
        }
    }
    Ok(copied)
}

/// Converts through BTF, or copies as is when a side has no type id.
fn one(
    fb: &Btf,
    from: TypeId,
    tb: &Btf,
    to: TypeId,
    bytes: &[u8],
    size: usize,
) -> Result<Vec<u8>, String> {
    if from == 0 || to == 0 {
        if bytes.len() != size {
            return Err(format!(
                "{} bytes cannot become {size} without BTF types",
                bytes.len()
            ));
        }
        return Ok(bytes.to_vec());
    }
    convert(fb, from, tb, to, bytes, size)
}

/// `bytes` of type `from` re-encoded as type `to` (`size` bytes).
pub fn convert(
    from_btf: &Btf,
    from: TypeId,
    to_btf: &Btf,
    to: TypeId,
    bytes: &[u8],
    size: usize,
) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; size];
    conv(from_btf, from, to_btf, to, bytes, &mut out)?;
    Ok(out)
}

fn members_named<'a>(btf: &Btf, members: &'a [Member], name: &str) -> Option<&'a Member> {
    members
        .iter()
        .find(|m| btf.str_at(m.name_off).is_ok_and(|n| n == name))
}

fn int_of(ty: &Type) -> Option<(usize, bool)> {
    match ty {
        Type::Int { size, encoding, .. } => Some((*size as usize, encoding & 1 != 0)),
        Type::Enum { size, signed, .. } | Type::Enum64 { size, signed, .. } => {
            Some((*size as usize, *signed))
        }
        _ => None,
    }
}

fn read_int(src: &[u8], size: usize, signed: bool) -> Result<i128, String> {
    let b = src.get(..size).ok_or("source too short")?;
    let mut raw = [0u8; 16];
    raw[..size].copy_from_slice(b);
    let mut v = i128::from_le_bytes(raw);
    if signed && size < 16 && b[size - 1] & 0x80 != 0 {
        v -= 1i128 << (size * 8);
    }
    Ok(v)
}

fn conv(
    fb: &Btf,
    from: TypeId,
    tb: &Btf,
    to: TypeId,
    src: &[u8],
    dst: &mut [u8],
) -> Result<(), String> {
    let (_, ft) = fb.skip_modifiers(from).map_err(|e| e.to_string())?;
    let (_, tt) = tb.skip_modifiers(to).map_err(|e| e.to_string())?;
    if let (Some((fs, fsigned)), Some((ts, _))) = (int_of(&ft), int_of(&tt)) {
        let v = read_int(src, fs, fsigned)?;
        let bytes = v.to_le_bytes();
        dst.get_mut(..ts)
            .ok_or("destination too short")?
            .copy_from_slice(&bytes[..ts]);
        return Ok(());
    }
    match (&ft, &tt) {
        (
            Type::Struct {
                kind_flag: fk,
                members: fm,
                ..
            }
            | Type::Union {
                kind_flag: fk,
                members: fm,
                ..
            },
            Type::Struct {
                kind_flag: tk,
                members: tm,
                ..
            }
            | Type::Union {
                kind_flag: tk,
                members: tm,
                ..
            },
        ) => {
            for m in tm {
                let Ok(name) = tb.str_at(m.name_off) else {
                    continue;
                };
                if name.is_empty() {
                    continue;
                }
                let Some(old) = members_named(fb, fm, name) else {
                    continue;
                };
                let (fo, to_) = (old.bit_offset(*fk), m.bit_offset(*tk));
                let (fbits, tbits) = (old.bitfield_size(*fk), m.bitfield_size(*tk));
                if fbits > 0 || tbits > 0 {
                    // Bitfields: copy the value's low bits.
                    let fw = if fbits > 0 {
                        fbits
                    } else {
                        fb.resolve_size(old.type_id).map_err(|e| e.to_string())? * 8
                    };
                    let tw = if tbits > 0 {
                        tbits
                    } else {
                        tb.resolve_size(m.type_id).map_err(|e| e.to_string())? * 8
                    };
                    let v = get_bits(src, fo, fw);
                    put_bits(dst, to_, tw.min(128), v);
                    continue;
                }
                let s = src
                    .get((fo / 8) as usize..)
                    .ok_or("member outside the old value")?;
                let d = dst
                    .get_mut((to_ / 8) as usize..)
                    .ok_or("member outside the new value")?;
                conv(fb, old.type_id, tb, m.type_id, s, d).map_err(|e| format!("{name}: {e}"))?;
            }
            Ok(())
        }
        (
            Type::Array {
                elem: fe,
                nelems: fnum,
                ..
            },
            Type::Array {
                elem: te,
                nelems: tnum,
                ..
            },
        ) => {
            let fsz = fb.resolve_size(*fe).map_err(|e| e.to_string())? as usize;
            let tsz = tb.resolve_size(*te).map_err(|e| e.to_string())? as usize;
            for i in 0..(*fnum).min(*tnum) as usize {
                let s = src.get(i * fsz..).ok_or("array outside the old value")?;
                let d = dst
                    .get_mut(i * tsz..)
                    .ok_or("array outside the new value")?;
                conv(fb, *fe, tb, *te, s, d).map_err(|e| format!("[{i}]: {e}"))?;
            }
            Ok(())
        }
        _ => {
            let fs = fb.resolve_size(from).map_err(|e| e.to_string())? as usize;
            let ts = tb.resolve_size(to).map_err(|e| e.to_string())? as usize;
            if fs != ts {
                return Err(format!(
                    "{:?} of {fs} bytes cannot become {:?} of {ts} bytes",
                    ft.kind(),
                    tt.kind()
                ));
            }
            let s = src.get(..fs).ok_or("source too short")?;
            dst.get_mut(..ts)
                .ok_or("destination too short")?
                .copy_from_slice(s);
            Ok(())
        }
    }
}

fn get_bits(src: &[u8], off: u32, width: u32) -> u128 {
    let mut v = 0u128;
    for bit in 0..width.min(128) {
        let pos = off + bit;
        if src
            .get((pos / 8) as usize)
            .is_some_and(|b| b >> (pos % 8) & 1 == 1)
        {
            v |= 1 << bit;
        }
    }
    v
}

fn put_bits(dst: &mut [u8], off: u32, width: u32, v: u128) {
    for bit in 0..width {
        let pos = off + bit;
        if let Some(b) = dst.get_mut((pos / 8) as usize) {
            let mask = 1u8 << (pos % 8);
            if (v >> bit) & 1 == 1 {
                *b |= mask;
            } else {
                *b &= !mask;
            }
        }
    }
}
