//! `.BTF.ext`: per-section func_info, line_info and CO-RE relocation records.
//!
//! Layout: a header (magic, version, flags, hdr_len, then offset/length pairs
//! for each info kind, relative to the end of the header). Each info block
//! starts with a record size, followed by per-section groups
//! `{ sec_name_off, num_info, records[num_info] }`. Instruction offsets in
//! the file are in bytes from the start of the ELF section.

use std::collections::BTreeMap;

use super::Btf;
use super::read::{MAGIC, swap_words};
use crate::ParseError;
use crate::model::{CoreRelocationKind, LineInfo};

/// A CO-RE record as stored (byte offset in its section).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreRecord {
    /// The instruction's byte offset in its section.
    pub insn_off: u32,
    /// The local type the access starts from.
    pub type_id: u32,
    /// The access string (`0:1:2`).
    pub access: String,
    /// What the relocation computes.
    pub kind: CoreRelocationKind,
}

/// `.BTF.ext` grouped by ELF section name. Offsets are in bytes.
#[derive(Clone, Debug, Default)]
pub struct BtfExt {
    /// (insn byte offset, FUNC type id).
    pub func_info: BTreeMap<String, Vec<(u32, u32)>>,
    /// `insn_off` is a byte offset here.
    pub line_info: BTreeMap<String, Vec<LineInfo>>,
    /// CO-RE relocation records.
    pub core_relos: BTreeMap<String, Vec<CoreRecord>>,
}

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::BtfExt(reason.into())
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

/// One section's records of an info block: (section name, raw records).
type Group<'a> = (String, Vec<&'a [u8]>);

/// Iterates the `{ sec_name_off, num_info, records }` groups of one info block.
fn groups<'a>(
    block: &'a [u8],
    what: &str,
    min_rec: usize,
    btf: &'a Btf,
) -> Result<Vec<Group<'a>>, ParseError> {
    if block.is_empty() {
        return Ok(Vec::new());
    }
    let rec_size = u32_at(block, 0).ok_or_else(|| err(format!("{what}: truncated")))? as usize;
    if rec_size < min_rec || rec_size % 4 != 0 {
        return Err(err(format!("{what}: bad record size {rec_size}")));
    }
    let mut out = Vec::new();
    let mut pos = 4;
    while pos < block.len() {
        let (Some(name_off), Some(n)) = (u32_at(block, pos), u32_at(block, pos + 4)) else {
            return Err(err(format!("{what}: truncated section header at {pos}")));
        };
        let name = btf
            .str_at(name_off)
            .map_err(|e| err(format!("{what}: section name: {e}")))?
            .to_owned();
        pos += 8;
        let len = (n as usize)
            .checked_mul(rec_size)
            .filter(|&l| pos + l <= block.len())
            .ok_or_else(|| {
                err(format!(
                    "{what}: section '{name}': {n} records overflow the block"
                ))
            })?;
        let recs = block[pos..pos + len].chunks_exact(rec_size).collect();
        pos += len;
        out.push((name, recs));
    }
    Ok(out)
}

impl BtfExt {
    /// Parses a `.BTF.ext` section of either byte order (its magic tells);
    /// `btf` is the object's `.BTF`, for the section names and access strings.
    pub fn parse(data: &[u8], btf: &Btf) -> Result<Self, ParseError> {
        if data.len() < 24 {
            return Err(err("shorter than its header"));
        }
        let magic = u16::from_ne_bytes([data[0], data[1]]);
        if magic != MAGIC {
            if magic.swap_bytes() != MAGIC {
                return Err(err("bad magic"));
            }
            // The other byte order: after the magic, version and flags,
            // everything in .BTF.ext is a 32-bit word. Swap a copy once.
            let mut native = data.to_vec();
            native[..2].reverse();
            swap_words(&mut native[4..]);
            return Self::parse_native(&native, btf);
        }
        Self::parse_native(data, btf)
    }

    fn parse_native(data: &[u8], btf: &Btf) -> Result<Self, ParseError> {
        let hdr_len = u32_at(data, 4).unwrap_or(0) as usize;
        if hdr_len < 24 || hdr_len > data.len() {
            return Err(err(format!("bad header length {hdr_len}")));
        }
        let block = |i: usize, what: &str| -> Result<&[u8], ParseError> {
            if 8 + i * 8 + 8 > hdr_len {
                return Ok(&[]);
            }
            let off = u32_at(data, 8 + i * 8).unwrap_or(0) as usize;
            let len = u32_at(data, 12 + i * 8).unwrap_or(0) as usize;
            let start = hdr_len.saturating_add(off);
            data.get(start..start.saturating_add(len))
                .ok_or_else(|| err(format!("{what} block {start}+{len} is past the end")))
        };
        let mut ext = BtfExt::default();
        for (sec, recs) in groups(block(0, "func_info")?, "func_info", 8, btf)? {
            let list = recs
                .iter()
                .map(|r| (u32_at(r, 0).unwrap_or(0), u32_at(r, 4).unwrap_or(0)))
                .collect();
            ext.func_info.insert(sec, list);
        }
        for (sec, recs) in groups(block(1, "line_info")?, "line_info", 16, btf)? {
            let list = recs
                .iter()
                .map(|r| LineInfo {
                    insn_off: u32_at(r, 0).unwrap_or(0),
                    file_name_off: u32_at(r, 4).unwrap_or(0),
                    line_off: u32_at(r, 8).unwrap_or(0),
                    line_col: u32_at(r, 12).unwrap_or(0),
                })
                .collect();
            ext.line_info.insert(sec, list);
        }
        for (sec, recs) in groups(block(2, "core_relo")?, "core_relo", 16, btf)? {
            let mut list = Vec::with_capacity(recs.len());
            for r in recs {
                let insn_off = u32_at(r, 0).unwrap_or(0);
                let kind_raw = u32_at(r, 12).unwrap_or(0);
                let kind = CoreRelocationKind::from_u32(kind_raw).ok_or_else(|| {
                    err(format!(
                        "core_relo: section '{sec}' insn byte offset {insn_off}: unknown kind {kind_raw}"
                    ))
                })?;
                let access = btf
                    .str_at(u32_at(r, 8).unwrap_or(0))
                    .map_err(|e| err(format!("core_relo access string: {e}")))?
                    .to_owned();
                list.push(CoreRecord {
                    insn_off,
                    type_id: u32_at(r, 4).unwrap_or(0),
                    access,
                    kind,
                });
            }
            ext.core_relos.insert(sec, list);
        }
        Ok(ext)
    }
}
