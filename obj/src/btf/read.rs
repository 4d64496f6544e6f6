//! Reading BTF: [`Btf`] indexes a raw blob (object `.BTF` or the kernel's
//! `/sys/kernel/btf/vmlinux`) and decodes types on demand.
//!
//! Parsing only walks the type section once to record where each type
//! starts; nothing is decoded or allocated per type. The name index used by
//! CO-RE candidate search is built on the first lookup by name.

use std::sync::{Arc, OnceLock};

use super::BtfError;
use super::strings::str_at;
use super::types::*;
use crate::ByteOrder;

pub(crate) const MAGIC: u16 = 0xeb9f;
pub(crate) const HEADER_LEN: usize = 24;
/// libbpf's `MAX_RESOLVE_DEPTH`: guards against type cycles in malformed BTF.
pub(crate) const MAX_RESOLVE_DEPTH: usize = 32;

/// Where a [`Btf`]'s bytes live. Every variant is zero-copy: the blob is
/// never duplicated, whichever way the caller holds it.
enum Bytes {
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
    Static(&'static [u8]),
}

impl Bytes {
    #[inline]
    fn get(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Shared(a) => a,
            Bytes::Static(s) => s,
        }
    }
}

/// Parsed BTF: the raw bytes plus an offset index.
///
/// Parsing walks the type section once and records where each type starts;
/// types are decoded on demand and nothing is allocated per type. The name
/// index is built on the first lookup by name.
pub struct Btf {
    data: Bytes,
    types: std::ops::Range<usize>,
    strings: std::ops::Range<usize>,
    /// `offsets[id - 1]`: where type `id` starts, relative to `types.start`.
    offsets: Vec<u32>,
    /// `(id, name_off)` of the named types other than FUNC, collected while
    /// indexing (the header is in cache then; re-reading it later is a miss).
    named_types: Vec<(TypeId, u32)>,
    /// How many FUNC types have a name.
    named_funcs: usize,
    /// Name index over `named_types`, built on the first lookup by name.
    type_index: OnceLock<NameIndex>,
    /// Name index over FUNCs, built on the first lookup of a function.
    func_index: OnceLock<NameIndex>,
    /// Split BTF (a kernel module's, on vmlinux): the base whose types and
    /// strings come first. Ids below `first_id` and string offsets below
    /// `str_base` are the base's.
    base: Option<Arc<Btf>>,
    /// Id of this blob's first type: 1, or the base's [`Btf::len`].
    first_id: TypeId,
    /// Offset of this blob's string section in the combined string space.
    str_base: u32,
    /// The byte order of the parsed blob, before it was made native.
    byte_order: ByteOrder,
}

impl std::fmt::Debug for Btf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Btf")
            .field("types", &self.offsets.len())
            .field("string_bytes", &self.strings.len())
            .finish()
    }
}

/// Reads a word of a blob in this machine's byte order: [`Btf`] swaps a
/// foreign blob once when it is parsed, so no read decides again.
#[inline]
fn u32_at(data: &[u8], off: usize) -> Option<u32> {
    let b = data.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// Byte-swaps every whole 4-byte word of `words` in place.
pub(crate) fn swap_words(words: &mut [u8]) {
    for w in words.chunks_exact_mut(4) {
        w.reverse();
    }
}

/// A BTF blob of the other byte order, rewritten in this machine's: the
/// magic, the header's words and the type section's words (every field of
/// every BTF type is a 32-bit word). Strings are bytes and stay. Bounds that
/// do not hold are left for the parser to report.
fn to_native(mut data: Vec<u8>) -> Vec<u8> {
    let word = |at: usize| u32::from_ne_bytes([data[at + 3], data[at + 2], data[at + 1], data[at]]);
    let (hdr_len, type_off, type_len) = (word(4), word(8), word(12));
    swap_blob(&mut data, hdr_len, type_off, type_len);
    data
}

/// Swaps the magic, the header's words and the type section's words of a
/// BTF blob whose header says `hdr_len`, `type_off` and `type_len`.
pub(crate) fn swap_blob(data: &mut [u8], hdr_len: u32, type_off: u32, type_len: u32) {
    let len = data.len();
    data[..2.min(len)].reverse();
    let hdr_end = (hdr_len as usize).min(len);
    if let Some(header) = data.get_mut(4..hdr_end) {
        swap_words(header);
    }
    let start = (hdr_len as usize)
        .saturating_add(type_off as usize)
        .min(len);
    let end = start.saturating_add(type_len as usize).min(len);
    swap_words(&mut data[start..end]);
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
        Self::new(Bytes::Owned(data))
    }

    /// Parses a shared BTF blob without copying it (several parsers, or a
    /// parser and a cache, can hold the same kernel BTF).
    pub fn from_shared(data: Arc<[u8]>) -> Result<Self, BtfError> {
        Self::new(Bytes::Shared(data))
    }

    /// Parses a BTF blob that lives for the whole program (`include_bytes!`,
    /// a leaked or mapped buffer) without copying it.
    pub fn from_static(data: &'static [u8]) -> Result<Self, BtfError> {
        Self::new(Bytes::Static(data))
    }

    /// Parses split BTF (`/sys/kernel/btf/<module>`): its type ids continue
    /// after `base`'s ([`Btf::len`]) and its string offsets after the end of
    /// `base`'s strings. Every lookup (by id, by name, string offsets) then
    /// covers the base and this blob together, base first, so CO-RE against
    /// the result sees vmlinux and the module's types.
    pub fn from_bytes_split(data: Vec<u8>, base: Arc<Btf>) -> Result<Self, BtfError> {
        Self::new_on(Bytes::Owned(data), Some(base))
    }

    /// The base of split BTF, if this is one.
    pub fn base(&self) -> Option<&Arc<Btf>> {
        self.base.as_ref()
    }

    fn new(bytes: Bytes) -> Result<Self, BtfError> {
        Self::new_on(bytes, None)
    }

    fn new_on(bytes: Bytes, base: Option<Arc<Btf>>) -> Result<Self, BtfError> {
        let (first_id, str_base) = match &base {
            Some(b) => (b.len(), b.str_end()?),
            None => (1, 0),
        };
        let data = bytes.get();
        if data.len() < HEADER_LEN {
            return Err(header_err(format!(
                "{} bytes, shorter than the 24-byte header",
                data.len()
            )));
        }
        let magic = u16::from_ne_bytes([data[0], data[1]]);
        if magic != MAGIC {
            if magic.swap_bytes() == MAGIC {
                // The other byte order (a bpfeb object on a little-endian
                // host, or the reverse): one swap now, native reads after.
                let mut this = Self::new_on(Bytes::Owned(to_native(data.to_vec())), base)?;
                this.byte_order = this.byte_order.other();
                return Ok(this);
            }
            return Err(header_err(format!("bad magic {magic:#06x}")));
        }
        if data[2] != 1 {
            return Err(header_err(format!("unsupported version {}", data[2])));
        }
        let hdr_len = u32_at(data, 4).unwrap_or(0) as usize;
        if hdr_len < HEADER_LEN || hdr_len > data.len() {
            return Err(header_err(format!("bad header length {hdr_len}")));
        }
        let field = |i: usize| u32_at(data, 8 + 4 * i).unwrap_or(0) as usize;
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
        // Only a base's strings must start with the empty string; split
        // BTF's offset 0 is the base's.
        if base.is_none() && !strings.is_empty() && data[strings.start] != 0 {
            return Err(header_err("string section does not start with NUL"));
        }
        if types.len() % 4 != 0 {
            return Err(header_err("type section length is not a multiple of 4"));
        }
        let TypeIndex {
            offsets,
            named_types,
            named_funcs,
        } = index_types(&data[types.clone()], first_id)?;
        Ok(Self {
            data: bytes,
            types,
            strings,
            offsets,
            named_types,
            named_funcs,
            type_index: OnceLock::new(),
            func_index: OnceLock::new(),
            base,
            first_id,
            str_base,
            byte_order: ByteOrder::native(),
        })
    }

    /// The byte order of the blob this was parsed from. The bytes are kept
    /// in this machine's order either way (see [`Btf::into_bytes`]).
    pub fn byte_order(&self) -> ByteOrder {
        self.byte_order
    }

    #[inline]
    fn data(&self) -> &[u8] {
        self.data.get()
    }

    /// Number of type ids, including `void` (id 0).
    pub fn len(&self) -> u32 {
        self.first_id + self.offsets.len() as u32
    }

    /// End of the combined string space (where a split blob's strings start).
    fn str_end(&self) -> Result<u32, BtfError> {
        u32::try_from(self.strings.len())
            .ok()
            .and_then(|n| n.checked_add(self.str_base))
            .ok_or_else(|| header_err("string sections larger than 4 GiB"))
    }

    /// The base holding type `id`, when it is not this blob's.
    #[inline]
    fn base_of(&self, id: TypeId) -> Option<&Btf> {
        if id < self.first_id {
            self.base.as_deref()
        } else {
            None
        }
    }

    /// The bytes from string offset `off` (combined space) to the end of the
    /// section that holds it; empty when out of range.
    fn tail(&self, off: u32) -> &[u8] {
        match (&self.base, off.checked_sub(self.str_base)) {
            (_, Some(own)) => tail_at(self.strings(), own),
            (Some(b), None) => b.tail(off),
            (None, None) => &[],
        }
    }

    /// Always false: `void` exists in every BTF.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The raw string section (of this blob only, for split BTF).
    pub fn strings(&self) -> &[u8] {
        &self.data()[self.strings.clone()]
    }

    /// The whole blob as parsed.
    pub fn as_bytes(&self) -> &[u8] {
        self.data()
    }

    /// The whole blob, without a copy when this parse owns it.
    pub fn into_bytes(self) -> Vec<u8> {
        match self.data {
            Bytes::Owned(v) => v,
            other => other.get().to_vec(),
        }
    }

    /// Ids of this blob's named types other than FUNCs, in id order (no
    /// decoding: recorded while parsing).
    pub(crate) fn named_type_ids(&self) -> impl Iterator<Item = TypeId> + '_ {
        self.named_types.iter().map(|&(id, _)| id)
    }

    /// The string at `offset` of the string section.
    pub fn str_at(&self, offset: u32) -> Result<&str, BtfError> {
        match (&self.base, offset.checked_sub(self.str_base)) {
            (_, Some(own)) => str_at(self.strings(), own),
            (Some(b), None) => b.str_at(offset),
            (None, None) => unreachable!("str_base is 0 without a base"),
        }
    }

    /// The raw `name_off` of type `id` (0 for `void` and anonymous types).
    pub fn name_off_of(&self, id: TypeId) -> Result<u32, BtfError> {
        if id == 0 {
            return Ok(0);
        }
        if let Some(b) = self.base_of(id) {
            return b.name_off_of(id);
        }
        let off = self.raw_offset(id)?;
        Ok(u32_at(self.data(), off).unwrap_or(0))
    }

    /// The name of type `id` (empty for anonymous types).
    pub fn name_of(&self, id: TypeId) -> Result<&str, BtfError> {
        self.str_at(self.name_off_of(id)?)
    }

    fn raw_offset(&self, id: TypeId) -> Result<usize, BtfError> {
        let rel = *self
            .offsets
            .get(id.wrapping_sub(self.first_id) as usize)
            .ok_or_else(|| BtfError::Type {
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
        if let Some(b) = self.base_of(id) {
            return b.kind_of(id);
        }
        let off = self.raw_offset(id)?;
        let info = u32_at(self.data(), off + 4).unwrap_or(0);
        // Validated by index_types.
        Ok(Kind::from_u32((info >> 24) & 0x1f).unwrap_or(Kind::Void))
    }

    /// Decodes type `id`.
    pub fn type_by_id(&self, id: TypeId) -> Result<Type, BtfError> {
        if id == 0 {
            return Ok(Type::Void);
        }
        if let Some(b) = self.base_of(id) {
            return b.type_by_id(id);
        }
        let off = self.raw_offset(id)?;
        decode(&self.data()[off..self.types.end], id)
    }

    /// Whether the blob is laid out as [`super::write::encode`] writes it:
    /// a 24-byte header with no flags, the types right after it, the strings
    /// right after them, nothing else.
    pub fn is_plain_layout(&self) -> bool {
        self.types.start == HEADER_LEN
            && self.strings.start == self.types.end
            && self.strings.end == self.data().len()
            && self.data()[3] == 0
    }

    /// Rewrites type `id` in place with `t`: a fix-up of values (sizes,
    /// offsets, linkage) that keeps the kind, the name and the encoded length,
    /// so the offset and name indexes stay valid and nothing is re-parsed.
    pub fn replace_type(&mut self, id: TypeId, t: &Type) -> Result<(), BtfError> {
        let bad = |reason: &str| BtfError::Type {
            type_id: id,
            reason: format!("cannot replace in place: {reason}"),
        };
        if id < self.first_id {
            return Err(bad("void or a type of the base"));
        }
        if t.kind() != self.kind_of(id)? || t.name_off() != self.name_off_of(id)? {
            return Err(bad("another kind or name"));
        }
        let start = self.raw_offset(id)?;
        let end = match self.offsets.get((id - self.first_id) as usize + 1) {
            Some(&next) => self.types.start + next as usize,
            None => self.types.end,
        };
        let mut enc = Vec::with_capacity(end - start);
        super::write::encode_type(t, &mut enc);
        if enc.len() != end - start {
            return Err(bad("another encoded length"));
        }
        if !matches!(self.data, Bytes::Owned(_)) {
            self.data = Bytes::Owned(self.data().to_vec());
        }
        let Bytes::Owned(data) = &mut self.data else {
            unreachable!("made owned above")
        };
        data[start..end].copy_from_slice(&enc);
        Ok(())
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

    /// Ids of the types whose essential name (without a `___flavor` suffix)
    /// is the essential name of `name`, in id order.
    pub fn ids_by_essential_name(&self, name: &str) -> Vec<TypeId> {
        let name = essential_name(name).as_bytes();
        let mut ids = self.ids_named(name, true, Tier::Types);
        ids.extend(self.ids_named(name, true, Tier::Funcs));
        ids.sort_unstable();
        ids
    }

    /// Like [`Btf::ids_by_essential_name`], only among the types a CO-RE
    /// candidate of kind `local` can be (FUNCs only for a FUNC), so a
    /// relocation never pays for indexing the kernel's 56k functions.
    pub(crate) fn ids_by_essential_name_for(&self, name: &str, local: Kind) -> Vec<TypeId> {
        self.ids_named(essential_name(name).as_bytes(), true, Tier::of(local))
    }

    /// Ids of the types named exactly `name`, in id order.
    pub fn ids_by_name(&self, name: &str) -> Vec<TypeId> {
        let mut ids = self.ids_named(name.as_bytes(), false, Tier::Types);
        ids.extend(self.ids_named(name.as_bytes(), false, Tier::Funcs));
        ids.sort_unstable();
        ids
    }

    /// The first type named exactly `name` of kind `kind` (libbpf's
    /// `btf__find_by_name_kind`).
    pub fn id_by_name(&self, name: &str, kind: Kind) -> Option<TypeId> {
        self.ids_named(name.as_bytes(), false, Tier::of(kind))
            .into_iter()
            .find(|&id| self.kind_of(id) == Ok(kind))
    }

    /// Same as [`Btf::id_by_name`], arguments in libbpf's order.
    pub fn find_by_name(&self, kind: Kind, name: &str) -> Option<TypeId> {
        self.id_by_name(name, kind)
    }

    /// The types of `tier` named `name` (or, with `flavors`, whose essential
    /// name is `name`).
    ///
    /// The index is built on the first lookup of each tier, from the
    /// `(id, name_off)` pairs recorded while parsing: one hash per named
    /// type, word at a time, into a table sized once. Afterwards a lookup is
    /// one hash and a probe or two. Measured on a 127k-type vmlinux, building
    /// the index for the 15k named non-FUNC types costs about what parsing
    /// does, and is paid back after a handful of lookups compared with
    /// scanning the string section each time.
    fn ids_named(&self, name: &[u8], flavors: bool, tier: Tier) -> Vec<TypeId> {
        if name.is_empty() {
            return Vec::new();
        }
        // The base's types come first (smaller ids), then this blob's.
        let mut ids = match &self.base {
            Some(b) => b.ids_named(name, flavors, tier),
            None => Vec::new(),
        };
        let name_at = |id: TypeId| until_nul(self.tail(self.name_off_of(id).unwrap_or(0)));
        let index = match tier {
            Tier::Types => self.type_index.get_or_init(|| {
                NameIndex::build(
                    self.named_types.len(),
                    self.named_types
                        .iter()
                        .map(|&(id, name_off)| (id, self.tail(name_off))),
                )
            }),
            Tier::Funcs => self.func_index.get_or_init(|| {
                let types = &self.data()[self.types.clone()];
                NameIndex::build(
                    self.named_funcs,
                    self.offsets
                        .iter()
                        .zip(self.first_id..)
                        .filter_map(|(&rel, id)| {
                            // In bounds: index_types checked every 12-byte header.
                            let name_off = u32_at(types, rel as usize)?;
                            let info = u32_at(types, rel as usize + 4)?;
                            (name_off != 0 && (info >> 24) & 0x1f == Kind::Func as u32)
                                .then(|| (id, self.tail(name_off)))
                        }),
                )
            }),
        };
        index.for_each(essential_name_bytes(name), |id| {
            let n = name_at(id);
            let hit = if flavors {
                essential_name_bytes(n) == name
            } else {
                n == name
            };
            if hit {
                ids.push(id);
            }
        });
        ids.sort_unstable();
        ids
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bit set in exactly the bytes of `x` that are zero.
#[inline]
fn zero_bytes(x: u64) -> u64 {
    !(((x & !HIGHS) + !HIGHS) | x) & HIGHS
}

/// Length of the essential name at the start of `s`: up to the first NUL or
/// `___`. Eight bytes at a time, since this runs once per named type when
/// the index is built.
#[inline]
fn essential_len(s: &[u8]) -> usize {
    let mut i = 0;
    while let Some(chunk) = s.get(i..i + 8) {
        let w = u64::from_le_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]);
        let m = zero_bytes(w) | zero_bytes(w ^ (ONES * u64::from(b'_')));
        if m == 0 {
            i += 8;
            continue;
        }
        let j = i + (m.trailing_zeros() / 8) as usize;
        if s[j] == 0 || s[j..].starts_with(b"___") {
            return j;
        }
        i = j + 1;
    }
    while i < s.len() {
        if s[i] == 0 || s[i..].starts_with(b"___") {
            return i;
        }
        i += 1;
    }
    s.len()
}

/// Hash of the essential name at the start of `s` (which may run on past
/// the name's NUL). Word at a time, FxHash-style; the slot is taken from the
/// top bits after a final multiply.
#[inline]
fn essential_hash(s: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let name = &s[..essential_len(s)];
    let mut h = name.len() as u64;
    let mut words = name.chunks_exact(8);
    for c in &mut words {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(last)).wrapping_mul(K);
    }
    h
}

/// The string section from `off` on (empty when out of range): hashing
/// stops at the NUL, so the name's end need not be found first.
fn tail_at(strings: &[u8], off: u32) -> &[u8] {
    strings.get(off as usize..).unwrap_or_default()
}

/// `rest` up to its first NUL.
fn until_nul(rest: &[u8]) -> &[u8] {
    let len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    &rest[..len]
}

fn essential_name_bytes(name: &[u8]) -> &[u8] {
    &name[..essential_len(name)]
}

/// Which name index a lookup uses.
#[derive(Clone, Copy)]
enum Tier {
    /// Every named type except FUNCs (what CO-RE and map BTF look up).
    Types,
    /// FUNCs (kfuncs, attach targets): the bulk of vmlinux's names.
    Funcs,
}

impl Tier {
    fn of(kind: Kind) -> Self {
        if kind == Kind::Func {
            Tier::Funcs
        } else {
            Tier::Types
        }
    }
}

/// An open-addressing hash set of type ids keyed by their essential name.
///
/// Slots hold type ids (0 = empty); names are re-read from the string
/// section when probing, which keeps the table at 4 bytes per slot so
/// building it stays in cache. Sized once, never rehashed.
struct NameIndex {
    slots: Box<[u32]>,
    shift: u32,
}

impl NameIndex {
    /// `entries`: each type id with the string section from its name on.
    fn build<'a>(named: usize, entries: impl Iterator<Item = (TypeId, &'a [u8])>) -> Self {
        // Load factor at most 2/3 (usually near 1/2): short probe sequences, no resize.
        let cap = (named + named / 2).next_power_of_two().max(16);
        let shift = 64 - cap.trailing_zeros();
        let mut slots = vec![0u32; cap].into_boxed_slice();
        let mask = cap - 1;
        let mut filled = 0;
        for (id, name) in entries {
            // A corrupted count must not make the probe loop spin forever.
            if filled == mask {
                continue;
            }
            let mut slot = Self::slot(essential_hash(name), shift);
            while slots[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            slots[slot] = id;
            filled += 1;
        }
        Self { slots, shift }
    }

    /// Fibonacci hashing: the top bits pick the slot.
    #[inline]
    fn slot(hash: u64, shift: u32) -> usize {
        (hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> shift) as usize
    }

    /// Calls `probe` for every id in the probe sequence of `essential`;
    /// the caller compares names (different names share sequences).
    fn for_each(&self, essential: &[u8], mut probe: impl FnMut(u32)) {
        let mask = self.slots.len() - 1;
        let mut slot = Self::slot(essential_hash(essential), self.shift);
        loop {
            let id = self.slots[slot];
            if id == 0 {
                return;
            }
            probe(id);
            slot = (slot + 1) & mask;
        }
    }
}

/// A name without its `___flavor` suffix (CO-RE's "essential name").
pub fn essential_name(name: &str) -> &str {
    match name.find("___") {
        Some(pos) => &name[..pos],
        None => name,
    }
}

/// [`Kind::record_layout`] by raw kind number, for the indexing loop: a
/// fixed part and a part per `vlen` entry. Kind 0 (void) and kinds past
/// ENUM64 are invalid in a type section (`LAYOUT[k].0 == INVALID`).
const INVALID: u8 = u8::MAX;
const LAYOUT: [(u8, u8); 32] = {
    let mut t = [(INVALID, 0); 32];
    let mut k = 1;
    while let Some(kind) = Kind::from_u32(k as u32) {
        let (fixed, per) = kind.record_layout();
        t[k] = (fixed as u8, per as u8);
        k += 1;
    }
    t
};

/// What the single pass over the type section records.
struct TypeIndex {
    offsets: Vec<u32>,
    named_types: Vec<(TypeId, u32)>,
    named_funcs: usize,
}

/// One pass over the type section recording each type's start, and which
/// types have names (for the name indexes, built later if ever).
fn index_types(types: &[u8], first_id: TypeId) -> Result<TypeIndex, BtfError> {
    // Every type is at least 12 bytes: one allocation, never regrown.
    // Untouched capacity costs address space, not memory.
    let mut offsets = Vec::with_capacity(types.len() / 12);
    let mut named_types = Vec::new();
    let mut named_funcs = 0usize;
    let mut pos = 0usize;
    while let Some(hdr) = types.get(pos..pos + 12) {
        let name_off = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let info = u32::from_ne_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        let kind_raw = ((info >> 24) & 0x1f) as usize;
        let (fixed, per_vlen) = LAYOUT[kind_raw];
        if fixed == INVALID {
            return Err(BtfError::Type {
                type_id: first_id + offsets.len() as u32,
                reason: format!("unknown kind {kind_raw}"),
            });
        }
        let end = pos + 12 + fixed as usize + per_vlen as usize * (info & 0xffff) as usize;
        if end > types.len() {
            return Err(BtfError::Type {
                type_id: first_id + offsets.len() as u32,
                reason: format!(
                    "truncated type data: needs {} bytes, {} left in the type section",
                    end - pos,
                    types.len() - pos
                ),
            });
        }
        offsets.push(pos as u32);
        if name_off != 0 {
            if kind_raw == Kind::Func as usize {
                named_funcs += 1;
            } else {
                named_types.push((first_id + offsets.len() as TypeId - 1, name_off));
            }
        }
        pos = end;
    }
    if pos != types.len() {
        return Err(BtfError::Type {
            type_id: first_id + offsets.len() as u32,
            reason: format!(
                "truncated type header: {} bytes left in the type section",
                types.len() - pos
            ),
        });
    }
    Ok(TypeIndex {
        offsets,
        named_types,
        named_funcs,
    })
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
    // The `vlen` records of `N` words after the header, each one
    // turned into a value by `f`.
    fn records<const N: usize, T>(
        vlen: usize,
        word: impl Fn(usize) -> Result<u32, BtfError>,
        f: impl Fn([u32; N]) -> T,
    ) -> Result<Vec<T>, BtfError> {
        (0..vlen)
            .map(|i| {
                let mut r = [0u32; N];
                for (j, v) in r.iter_mut().enumerate() {
                    *v = word(3 + i * N + j)?;
                }
                Ok(f(r))
            })
            .collect()
    }
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
            let members = records(vlen, word, |[name_off, type_id, offset]| Member {
                name_off,
                type_id,
                offset,
            })?;
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
            values: records(vlen, word, |[name_off, v]| EnumValue {
                name_off,
                value: v as i32 as i64 as u64,
            })?,
        },
        Kind::Enum64 => Type::Enum64 {
            name_off,
            size: size_or_type,
            signed: kind_flag,
            values: records(vlen, word, |[name_off, lo, hi]| EnumValue {
                name_off,
                value: (u64::from(hi) << 32) | u64::from(lo),
            })?,
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
            params: records(vlen, word, |[name_off, type_id]| Param {
                name_off,
                type_id,
            })?,
        },
        Kind::Var => Type::Var {
            name_off,
            type_id: size_or_type,
            linkage: word(3)?,
        },
        Kind::DataSec => Type::DataSec {
            name_off,
            size: size_or_type,
            vars: records(vlen, word, |[type_id, offset, size]| VarSecInfo {
                type_id,
                offset,
                size,
            })?,
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
    fn lookups_by_kind_flavor_and_shared_tails() {
        // "task" is both a whole string and the tail of "my_task"; name
        // offset 4 points into "my_task". FUNCs go to their own index.
        let strings = b"\0my_task\0task___v1\0f\0x_y\0";
        let int = |name_off| Type::Int {
            name_off,
            size: 4,
            encoding: 0,
            bit_offset: 0,
            bits: 32,
        };
        let types = vec![
            Type::Void,
            int(1), // 1 "my_task"
            int(4), // 2 "task" (shared tail)
            int(9), // 3 "task___v1"
            Type::FuncProto {
                name_off: 0,
                ret: 1,
                params: vec![],
            }, // 4
            Type::Func {
                name_off: 19,
                proto: 4,
                linkage: 1,
            }, // 5 "f"
            Type::Typedef {
                name_off: 19,
                target: 1,
            }, // 6 "f"
            int(21), // 7 "x_y"
        ];
        let btf = Btf::from_static(Box::leak(encode(&types, strings).into_boxed_slice())).unwrap();
        assert_eq!(btf.ids_by_name("task"), vec![2]);
        assert_eq!(btf.ids_by_essential_name("task"), vec![2, 3]);
        assert_eq!(btf.ids_by_essential_name("task___v2"), vec![2, 3]);
        assert_eq!(btf.ids_by_name("task___v1"), vec![3]);
        assert_eq!(btf.ids_by_name("my_task"), vec![1]);
        assert_eq!(btf.ids_by_name("f"), vec![5, 6]);
        assert_eq!(btf.find_by_name(Kind::Func, "f"), Some(5));
        assert_eq!(btf.find_by_name(Kind::Typedef, "f"), Some(6));
        assert_eq!(btf.find_by_name(Kind::Int, "x_y"), Some(7));
        assert_eq!(btf.find_by_name(Kind::Int, "x"), None);
        assert_eq!(btf.ids_by_name(""), Vec::<TypeId>::new());
        let shared = Btf::from_shared(encode(&types, strings).into()).unwrap();
        assert_eq!(shared.ids_by_essential_name("task"), vec![2, 3]);
    }

    #[test]
    fn essential_hash_matches_for_flavors() {
        assert_eq!(essential_len(b"task___v1\0"), 4);
        assert_eq!(essential_len(b"a_b__c\0zz"), 6);
        assert_eq!(essential_len(b"a_very_long_name_without_flavor"), 31);
        assert_eq!(essential_len(b"a_very_long_name___flavor"), 16);
        assert_eq!(essential_hash(b"task___x\0"), essential_hash(b"task\0junk"));
        assert_ne!(essential_hash(b"task\0"), essential_hash(b"tasks\0"));
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

#[cfg(test)]
mod size_table_tests {
    use super::*;

    #[test]
    fn layout_covers_exactly_the_kinds() {
        for (k, &layout) in LAYOUT.iter().enumerate().take(20).skip(1) {
            let kind = Kind::from_u32(k as u32).unwrap();
            let (fixed, per) = kind.record_layout();
            assert_eq!(layout, (fixed as u8, per as u8), "{kind:?}");
        }
        assert_eq!(LAYOUT[0].0, INVALID);
        assert!(LAYOUT[20..].iter().all(|&(f, _)| f == INVALID));
    }
}

#[cfg(test)]
pub(crate) mod split_tests {
    use super::*;
    use crate::btf::write;
    use crate::btf::{INT_SIGNED, Member};

    /// Base: 1 int, 2 struct base_s { int x; }. Strings "\0int\0base_s\0x\0".
    pub(crate) fn base() -> Arc<Btf> {
        let strings = b"\0int\0base_s\0x\0";
        let types = [
            Type::Void,
            Type::Int {
                name_off: 1,
                size: 4,
                encoding: INT_SIGNED,
                bit_offset: 0,
                bits: 32,
            },
            Type::Struct {
                name_off: 5,
                size: 4,
                kind_flag: false,
                members: vec![Member {
                    name_off: 12,
                    type_id: 1,
                    offset: 0,
                }],
            },
        ];
        Arc::new(Btf::from_bytes(write::encode(&types, strings)).unwrap())
    }

    /// Split on `base()` (14 bytes of strings): 3 struct mod_s { int x;
    /// struct base_s *b; int y; }, 4 base_s *, 5 typedef mod_t. Its own
    /// strings start at 14; `lead_nul` puts an empty string first.
    pub(crate) fn split(lead_nul: bool) -> Btf {
        let mut strings = Vec::new();
        if lead_nul {
            strings.push(0);
        }
        let at = |s: &mut Vec<u8>, name: &[u8]| {
            let off = 14 + s.len() as u32;
            s.extend_from_slice(name);
            s.push(0);
            off
        };
        let (mod_s, b, y, mod_t) = (
            at(&mut strings, b"mod_s"),
            at(&mut strings, b"b"),
            at(&mut strings, b"y"),
            at(&mut strings, b"mod_t"),
        );
        let m = |name_off, type_id, offset| Member {
            name_off,
            type_id,
            offset,
        };
        let types = [
            Type::Void, // not written: ids start at base.len()
            Type::Struct {
                name_off: mod_s,
                size: 16,
                kind_flag: false,
                // `x` is the base's string at offset 12.
                members: vec![m(12, 1, 0), m(b, 4, 64), m(y, 1, 32)],
            },
            Type::Ptr {
                name_off: 0,
                target: 2,
            },
            Type::Typedef {
                name_off: mod_t,
                target: 3,
            },
        ];
        Btf::from_bytes_split(write::encode(&types, &strings), base()).unwrap()
    }

    #[test]
    fn ids_and_strings_continue_after_the_base() {
        for lead_nul in [false, true] {
            let s = split(lead_nul);
            assert_eq!(s.len(), 6);
            assert_eq!(s.base().map(|b| b.len()), Some(3));
            assert_eq!(s.name_of(1).unwrap(), "int");
            assert_eq!(s.name_of(2).unwrap(), "base_s");
            assert_eq!(s.name_of(3).unwrap(), "mod_s");
            assert_eq!(s.name_of(5).unwrap(), "mod_t");
            assert_eq!(s.kind_of(4).unwrap(), Kind::Ptr);
            assert_eq!(s.kind_of(2).unwrap(), Kind::Struct);
            let (members, _) = match s.type_by_id(3).unwrap() {
                Type::Struct { members, .. } => (members, ()),
                t => panic!("{t:?}"),
            };
            let names: Vec<&str> = members
                .iter()
                .map(|m| s.str_at(m.name_off).unwrap())
                .collect();
            assert_eq!(names, ["x", "b", "y"]);
            assert_eq!(s.resolve_size(5).unwrap(), 16);
            assert_eq!(s.resolve_size(4).unwrap(), 8);
            assert_eq!(s.skip_modifiers(5).unwrap().0, 3);
            assert!(s.type_by_id(6).is_err());
            assert!(s.str_at(14 + 100).is_err());
        }
    }

    #[test]
    fn names_are_found_in_the_base_and_the_module() {
        let s = split(false);
        assert_eq!(s.ids_by_name("int"), [1]);
        assert_eq!(s.ids_by_name("mod_s"), [3]);
        assert_eq!(s.find_by_name(Kind::Struct, "base_s"), Some(2));
        assert_eq!(s.find_by_name(Kind::Typedef, "mod_t"), Some(5));
        assert_eq!(s.find_by_name(Kind::Struct, "mod_t"), None);
        assert_eq!(s.ids_by_essential_name("mod_s___v2"), [3]);
        assert_eq!(s.ids_by_essential_name_for("base_s", Kind::Struct), [2]);
    }

    #[test]
    fn split_types_can_be_fixed_up_but_base_types_cannot() {
        let mut s = split(true);
        let t = Type::Struct {
            name_off: s.name_off_of(3).unwrap(),
            size: 24,
            kind_flag: false,
            members: match s.type_by_id(3).unwrap() {
                Type::Struct { members, .. } => members,
                _ => unreachable!(),
            },
        };
        s.replace_type(3, &t).unwrap();
        assert_eq!(s.resolve_size(3).unwrap(), 24);
        assert!(s.replace_type(2, &s.type_by_id(2).unwrap()).is_err());
    }

    #[test]
    fn bad_split_headers_name_the_type() {
        // A module type claiming an unknown kind: its id is after the base's.
        let mut bad = split(false).as_bytes().to_vec();
        bad[HEADER_LEN + 7] = 0x1f;
        match Btf::from_bytes_split(bad, base()) {
            Err(BtfError::Type { type_id, .. }) => assert_eq!(type_id, 3),
            other => panic!("{other:?}"),
        }
    }
}
