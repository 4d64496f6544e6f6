//! CO-RE: rewriting instructions recorded in `.BTF.ext` so field offsets,
//! sizes, type ids and enum values match the target kernel's BTF
//! (libbpf's `relo_core.c` behaviour, written from its documented semantics).
//!
//! For each record: parse the local access spec (`0:1:2`), find target
//! candidates by essential name (`task_struct___v2` → `task_struct`), match
//! the spec against each, require all matches to agree, then patch the
//! instruction after checking it holds the locally computed value.
//! Unresolvable relocations are poisoned (`call 0xbad2310`) so the verifier
//! names them only when the code is reachable.

use std::collections::HashMap;

use super::read::MAX_RESOLVE_DEPTH;
use super::{Btf, BtfError, Kind, Type, TypeId, essential_name};
use crate::model::{CoreRelocation, CoreRelocationKind as K};
use crate::{ByteOrder, Insn, ObjectSpec};

/// libbpf's poison: `call 0xbad2310` ("bad relo"); the verifier reports
/// `invalid func unknown#195896080` at the instruction if it is reachable.
pub const POISON_IMM: i32 = 0x0bad_2310;

/// A CO-RE relocation that could not be applied, naming where and why.
#[derive(Debug, thiserror::Error)]
#[error(
    "program '{program}', instruction {insn_index}, CO-RE {kind:?} on local type id {type_id} access '{access}': {reason}"
)]
pub struct CoreError {
    /// The program holding the relocation.
    pub program: String,
    /// The instruction's index in the program.
    pub insn_index: usize,
    /// What the relocation computes.
    pub kind: K,
    /// The local type the access starts from.
    pub type_id: u32,
    /// The access string (`0:1:2`).
    pub access: String,
    /// Why it could not be applied.
    pub reason: String,
}

/// What [`ObjectSpec::relocate_core`] did.
#[derive(Debug, Default, Clone)]
pub struct CoreReport {
    /// How many relocations were applied.
    pub applied: usize,
    /// (program, instruction index, description) of poisoned relocations:
    /// the verifier rejects them only if reachable.
    pub poisoned: Vec<(String, usize, String)>,
}

/// One step of an access spec.
#[derive(Clone, Debug)]
struct Accessor {
    type_id: TypeId,
    idx: u32,
    /// Member or enumerator name; `None` for array indexing.
    name: Option<String>,
}

#[derive(Clone, Debug)]
struct Spec {
    root: TypeId,
    acc: Vec<Accessor>,
    /// Field spec: total bit offset from the root.
    bit_offset: u64,
}

/// The computed value of a relocation, plus memory sizes for load patching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Value {
    value: u64,
    /// Field byte size (field relocations), for LDX size adjustment.
    size: u32,
    /// Whether the instruction must hold the local value before patching.
    /// Not for bitfields: compilers size their loads by the record's
    /// alignment, not by libbpf's rule, so the local values differ.
    validate: bool,
}

fn is_field(kind: K) -> bool {
    matches!(
        kind,
        K::FieldByteOffset
            | K::FieldByteSize
            | K::FieldExists
            | K::FieldSigned
            | K::FieldLShiftU64
            | K::FieldRShiftU64
    )
}

fn is_enum_kind(kind: K) -> bool {
    matches!(kind, K::EnumValueExists | K::EnumValue)
}

fn err(reason: impl Into<String>) -> BtfError {
    BtfError::Type {
        type_id: 0,
        reason: reason.into(),
    }
}

fn name_at(btf: &Btf, off: u32) -> Result<&str, BtfError> {
    btf.str_at(off)
}

/// Member bit offset and bitfield size.
fn member_bits(t: &Type, idx: usize) -> Option<(u64, u32, TypeId, u32)> {
    let (members, kind_flag) = t.members()?;
    let m = members.get(idx)?;
    Some((
        u64::from(m.bit_offset(kind_flag)),
        m.bitfield_size(kind_flag),
        m.type_id,
        m.name_off,
    ))
}

fn parse_spec(btf: &Btf, type_id: TypeId, access: &str, kind: K) -> Result<Spec, BtfError> {
    let idx: Vec<u32> = access
        .split(':')
        .map(|s| {
            s.parse::<u32>()
                .map_err(|_| err(format!("bad access string '{access}'")))
        })
        .collect::<Result<_, _>>()?;
    let first = *idx.first().ok_or_else(|| err("empty access string"))?;
    let (root, root_t) = btf.skip_modifiers(type_id)?;
    let mut spec = Spec {
        root: type_id,
        acc: Vec::new(),
        bit_offset: 0,
    };
    if matches!(
        kind,
        K::TypeIdLocal | K::TypeIdTarget | K::TypeExists | K::TypeSize | K::TypeMatches
    ) {
        if idx != [0] {
            return Err(err(format!("type relocation with access '{access}'")));
        }
        return Ok(spec);
    }
    if is_enum_kind(kind) {
        let values = root_t
            .enum_values()
            .ok_or_else(|| err(format!("enum relocation on non-enum type {root}")))?;
        let v = values
            .get(first as usize)
            .ok_or_else(|| err(format!("enumerator {first} out of range")))?;
        spec.acc.push(Accessor {
            type_id: root,
            idx: first,
            name: Some(name_at(btf, v.name_off)?.to_owned()),
        });
        return Ok(spec);
    }
    let root_size = btf.resolve_size(root)?;
    spec.acc.push(Accessor {
        type_id: root,
        idx: first,
        name: None,
    });
    spec.bit_offset = u64::from(first) * u64::from(root_size) * 8;
    let mut id = root;
    for &i in &idx[1..] {
        let (cur, t) = btf.skip_modifiers(id)?;
        if t.is_composite() {
            let (bits, _, mtype, name_off) = member_bits(&t, i as usize)
                .ok_or_else(|| err(format!("member {i} of type {cur} out of range")))?;
            spec.bit_offset += bits;
            let name = name_at(btf, name_off)?;
            if !name.is_empty() {
                spec.acc.push(Accessor {
                    type_id: cur,
                    idx: i,
                    name: Some(name.to_owned()),
                });
            }
            id = mtype;
        } else if let Type::Array { elem, .. } = t {
            let esz = btf.resolve_size(elem)?;
            spec.acc.push(Accessor {
                type_id: cur,
                idx: i,
                name: None,
            });
            spec.bit_offset += u64::from(i) * u64::from(esz) * 8;
            id = elem;
        } else {
            return Err(err(format!(
                "access '{access}' steps into non-composite type {cur}"
            )));
        }
    }
    Ok(spec)
}

/// libbpf's `bpf_core_fields_are_compat`.
fn fields_compat(lb: &Btf, lid: TypeId, tb: &Btf, tid: TypeId) -> Result<bool, BtfError> {
    let (mut lid, mut tid) = (lid, tid);
    for _ in 0..MAX_RESOLVE_DEPTH {
        let (_, l) = lb.skip_modifiers(lid)?;
        let (_, t) = tb.skip_modifiers(tid)?;
        if l.is_composite() && t.is_composite() {
            return Ok(true);
        }
        let any_enum = |t: &Type| matches!(t.kind(), Kind::Enum | Kind::Enum64);
        if l.kind() != t.kind() && !(any_enum(&l) && any_enum(&t)) {
            return Ok(false);
        }
        return Ok(match (&l, &t) {
            (Type::Ptr { .. }, _) | (Type::Float { .. }, _) => true,
            (Type::Fwd { .. }, _) | (Type::Enum { .. } | Type::Enum64 { .. }, _) => {
                let ln = lb.str_at(l.name_off())?;
                ln.is_empty() || essential_name(ln) == essential_name(tb.str_at(t.name_off())?)
            }
            (Type::Int { bit_offset: lo, .. }, Type::Int { bit_offset: to, .. }) => {
                *lo == 0 && *to == 0
            }
            (Type::Array { elem: le, .. }, Type::Array { elem: te, .. }) => {
                lid = *le;
                tid = *te;
                continue;
            }
            _ => false,
        });
    }
    Err(err("type chain too long"))
}

/// libbpf's `bpf_core_types_are_compat` (TYPE_ID_TARGET, TYPE_EXISTS, TYPE_SIZE).
fn types_compat(
    lb: &Btf,
    lid: TypeId,
    tb: &Btf,
    tid: TypeId,
    depth: usize,
) -> Result<bool, BtfError> {
    if depth > MAX_RESOLVE_DEPTH {
        return Err(err("type chain too long"));
    }
    let (_, l) = lb.skip_modifiers(lid)?;
    let (_, t) = tb.skip_modifiers(tid)?;
    let any_enum = |t: &Type| matches!(t.kind(), Kind::Enum | Kind::Enum64);
    if l.kind() != t.kind() && !(any_enum(&l) && any_enum(&t)) {
        return Ok(false);
    }
    Ok(match (&l, &t) {
        (Type::Int { bit_offset: lo, .. }, Type::Int { bit_offset: to, .. }) => {
            *lo == 0 && *to == 0
        }
        (Type::Ptr { target: lt, .. }, Type::Ptr { target: tt, .. }) => {
            types_compat(lb, *lt, tb, *tt, depth + 1)?
        }
        (Type::Array { elem: le, .. }, Type::Array { elem: te, .. }) => {
            types_compat(lb, *le, tb, *te, depth + 1)?
        }
        (
            Type::FuncProto {
                ret: lr,
                params: lp,
                ..
            },
            Type::FuncProto {
                ret: tr,
                params: tp,
                ..
            },
        ) => {
            if lp.len() != tp.len() || !types_compat(lb, *lr, tb, *tr, depth + 1)? {
                return Ok(false);
            }
            for (a, b) in lp.iter().zip(tp) {
                if !types_compat(lb, a.type_id, tb, b.type_id, depth + 1)? {
                    return Ok(false);
                }
            }
            true
        }
        _ => true,
    })
}

/// libbpf's name rule for TYPE_MATCHES: an anonymous target matches only an
/// anonymous local; otherwise the essential names (flavor suffix dropped)
/// must be equal.
fn names_match(lb: &Btf, loff: u32, tb: &Btf, toff: u32) -> Result<bool, BtfError> {
    let l = lb.str_at(loff)?;
    let t = tb.str_at(toff)?;
    Ok(if t.is_empty() {
        l.is_empty()
    } else {
        essential_name(l) == essential_name(t)
    })
}

/// TYPE_MATCHES (`bpf_core_type_matches()`), with libbpf's
/// `bpf_core_types_match` semantics. Typedefs and modifiers are skipped on
/// both sides; then the names must match ([`names_match`]) and:
/// - void matches void; ints match on byte size and signedness;
/// - enums (ENUM or ENUM64 on either side) match when the sizes are equal
///   and every local enumerator has a target enumerator of the same name
///   (values are not compared);
/// - a struct/union matches one of the same kind whose members include,
///   for each local member, one of the same name whose type matches
///   (recursively); behind a pointer only the kind is compared, and a
///   forward declaration of the same kind matches too;
/// - a forward declaration matches a forward declaration of the same
///   kind, and behind a pointer also a struct or union of that kind;
/// - pointers and arrays (equal lengths) match when their targets do;
/// - function prototypes match when they have as many parameters and
///   every parameter and the return type match.
///
/// Everything else (floats, functions, variables) never matches.
fn types_match(
    lb: &Btf,
    lid: TypeId,
    tb: &Btf,
    tid: TypeId,
    behind_ptr: bool,
    level: usize,
) -> Result<bool, BtfError> {
    if level > MAX_RESOLVE_DEPTH {
        return Err(err("type nesting too deep for TYPE_MATCHES"));
    }
    let (mut lid, mut tid, mut behind_ptr) = (lid, tid, behind_ptr);
    for _ in 0..MAX_RESOLVE_DEPTH {
        let (_, l) = lb.skip_modifiers(lid)?;
        let (_, t) = tb.skip_modifiers(tid)?;
        if !names_match(lb, l.name_off(), tb, t.name_off())? {
            return Ok(false);
        }
        let same_kind = l.kind() == t.kind();
        match (&l, &t) {
            (Type::Void, _) => return Ok(same_kind),
            (Type::Fwd { union: lu, .. }, _) => {
                return Ok(match t {
                    Type::Fwd { union: tu, .. } => *lu == tu,
                    Type::Struct { .. } => behind_ptr && !*lu,
                    Type::Union { .. } => behind_ptr && *lu,
                    _ => false,
                });
            }
            (Type::Enum { .. } | Type::Enum64 { .. }, _) => return enums_match(lb, &l, tb, &t),
            (Type::Struct { .. } | Type::Union { .. }, _) => {
                let local_union = l.kind() == Kind::Union;
                if behind_ptr {
                    return Ok(
                        same_kind || matches!(t, Type::Fwd { union, .. } if union == local_union)
                    );
                }
                return Ok(same_kind && composites_match(lb, &l, tb, &t, level)?);
            }
            (
                Type::Int {
                    size: ls,
                    encoding: le,
                    ..
                },
                Type::Int {
                    size: ts,
                    encoding: te,
                    ..
                },
            ) => {
                return Ok(ls == ts && (le & super::INT_SIGNED) == (te & super::INT_SIGNED));
            }
            (Type::Ptr { target: lt, .. }, Type::Ptr { target: tt, .. }) => {
                behind_ptr = true;
                (lid, tid) = (*lt, *tt);
            }
            (
                Type::Array {
                    elem: le,
                    nelems: ln,
                    ..
                },
                Type::Array {
                    elem: te,
                    nelems: tn,
                    ..
                },
            ) => {
                if ln != tn {
                    return Ok(false);
                }
                (lid, tid) = (*le, *te);
            }
            (
                Type::FuncProto {
                    ret: lr,
                    params: lp,
                    ..
                },
                Type::FuncProto {
                    ret: tr,
                    params: tp,
                    ..
                },
            ) => {
                if lp.len() != tp.len() {
                    return Ok(false);
                }
                for (a, b) in lp.iter().zip(tp) {
                    if !types_match(lb, a.type_id, tb, b.type_id, behind_ptr, level + 1)? {
                        return Ok(false);
                    }
                }
                (lid, tid) = (*lr, *tr);
            }
            _ => return Ok(false),
        }
    }
    Err(err("type chain too long for TYPE_MATCHES"))
}

/// Whether every item of `local` has a partner in `target` (`pair`), and
/// `local` is not longer than `target`.
fn all_paired<L, T>(
    local: &[L],
    target: &[T],
    mut pair: impl FnMut(&L, &T) -> Result<bool, BtfError>,
) -> Result<bool, BtfError> {
    if local.len() > target.len() {
        return Ok(false);
    }
    'local: for l in local {
        for t in target {
            if pair(l, t)? {
                continue 'local;
            }
        }
        return Ok(false);
    }
    Ok(true)
}

/// Enumerator sets for TYPE_MATCHES: equal sizes, and every local name
/// present in the target (ENUM and ENUM64 match each other).
fn enums_match(lb: &Btf, l: &Type, tb: &Btf, t: &Type) -> Result<bool, BtfError> {
    let (Some(lv), Some(tv)) = (l.enum_values(), t.enum_values()) else {
        return Ok(false);
    };
    Ok(l.own_size() == t.own_size()
        && all_paired(lv, tv, |v, w| names_match(lb, v.name_off, tb, w.name_off))?)
}

/// Member sets for TYPE_MATCHES: each local member needs a target member
/// of the same name whose type matches.
fn composites_match(
    lb: &Btf,
    l: &Type,
    tb: &Btf,
    t: &Type,
    level: usize,
) -> Result<bool, BtfError> {
    let (lm, _) = l.members().unwrap_or((&[], false));
    let (tm, _) = t.members().unwrap_or((&[], false));
    all_paired(lm, tm, |m, n| {
        Ok(names_match(lb, m.name_off, tb, n.name_off)?
            && types_match(lb, m.type_id, tb, n.type_id, false, level + 1)?)
    })
}

/// Finds member `name` in target composite `tid`, looking inside anonymous
/// members; returns the accessor path and the member's bit offset.
fn find_member(
    lb: &Btf,
    local_member_type: TypeId,
    tb: &Btf,
    tid: TypeId,
    name: &str,
    depth: usize,
) -> Result<Option<(Vec<Accessor>, u64, TypeId)>, BtfError> {
    if depth > MAX_RESOLVE_DEPTH {
        return Err(err("member nesting too deep"));
    }
    let (tid, t) = tb.skip_modifiers(tid)?;
    let Some((members, kind_flag)) = t.members() else {
        return Ok(None);
    };
    for (i, m) in members.iter().enumerate() {
        let mname = tb.str_at(m.name_off)?;
        let bits = u64::from(m.bit_offset(kind_flag));
        if mname.is_empty() {
            if let Some((mut path, off, ty)) =
                find_member(lb, local_member_type, tb, m.type_id, name, depth + 1)?
            {
                path.insert(
                    0,
                    Accessor {
                        type_id: tid,
                        idx: i as u32,
                        name: None,
                    },
                );
                return Ok(Some((path, bits + off, ty)));
            }
        } else if essential_name(mname) == essential_name(name) {
            if !fields_compat(lb, local_member_type, tb, m.type_id)? {
                return Ok(None);
            }
            let acc = Accessor {
                type_id: tid,
                idx: i as u32,
                name: Some(mname.to_owned()),
            };
            return Ok(Some((vec![acc], bits, m.type_id)));
        }
    }
    Ok(None)
}

/// Matches a local field or enum spec against target type `cand`.
fn match_spec(
    lb: &Btf,
    local: &Spec,
    kind: K,
    tb: &Btf,
    cand: TypeId,
) -> Result<Option<Spec>, BtfError> {
    let mut out = Spec {
        root: cand,
        acc: Vec::new(),
        bit_offset: 0,
    };
    if is_enum_kind(kind) {
        let name = local.acc[0].name.as_deref().unwrap_or("");
        let (_, t) = tb.skip_modifiers(cand)?;
        let Some(values) = t.enum_values() else {
            return Ok(None);
        };
        for (i, v) in values.iter().enumerate() {
            if essential_name(tb.str_at(v.name_off)?) == essential_name(name) {
                out.acc.push(Accessor {
                    type_id: cand,
                    idx: i as u32,
                    name: Some(name.to_owned()),
                });
                return Ok(Some(out));
            }
        }
        return Ok(None);
    }
    let mut tid = cand;
    for (n, acc) in local.acc.iter().enumerate() {
        if n == 0 {
            let size = tb.resolve_size(cand)?;
            out.bit_offset = u64::from(acc.idx) * u64::from(size) * 8;
            out.acc.push(Accessor {
                type_id: cand,
                idx: acc.idx,
                name: None,
            });
            continue;
        }
        match &acc.name {
            Some(name) => {
                // The local member's type, to check field compatibility.
                let (_, lt) = lb.skip_modifiers(acc.type_id)?;
                let lmt = member_bits(&lt, acc.idx as usize)
                    .map(|(_, _, ty, _)| ty)
                    .ok_or_else(|| err("local member vanished"))?;
                let Some((path, bits, ty)) = find_member(lb, lmt, tb, tid, name, 0)? else {
                    return Ok(None);
                };
                out.bit_offset += bits;
                out.acc.extend(path);
                tid = ty;
            }
            None => {
                let (cur, t) = tb.skip_modifiers(tid)?;
                let Type::Array { elem, nelems, .. } = t else {
                    return Ok(None);
                };
                // A flexible array (0 elements) accepts any index.
                if nelems != 0 && acc.idx >= nelems {
                    return Ok(None);
                }
                let esz = tb.resolve_size(elem)?;
                out.bit_offset += u64::from(acc.idx) * u64::from(esz) * 8;
                out.acc.push(Accessor {
                    type_id: cur,
                    idx: acc.idx,
                    name: None,
                });
                tid = elem;
            }
        }
    }
    Ok(Some(out))
}

/// The value a relocation computes from a (local or target) spec.
/// `order` is the target kernel's byte order: a bitfield's left shift
/// counts from the other end of its load on a big-endian machine.
fn compute(
    btf: &Btf,
    spec: &Spec,
    kind: K,
    local_id: TypeId,
    order: ByteOrder,
) -> Result<Value, BtfError> {
    let plain = |value| {
        Ok(Value {
            value,
            size: 0,
            validate: true,
        })
    };
    // Type ids in an instruction change when objects are linked (`bpftool
    // gen object` renumbers BTF): libbpf never checks them, nor does Kiln.
    let type_id = |id: TypeId| {
        Ok(Value {
            value: u64::from(id),
            size: 0,
            validate: false,
        })
    };
    match kind {
        K::TypeIdLocal => type_id(local_id),
        K::TypeIdTarget => type_id(spec.root),
        K::TypeExists | K::TypeMatches | K::FieldExists | K::EnumValueExists => plain(1),
        K::TypeSize => plain(u64::from(btf.resolve_size(spec.root)?)),
        K::EnumValue => {
            let acc = &spec.acc[0];
            let (_, t) = btf.skip_modifiers(acc.type_id)?;
            let v = t
                .enum_values()
                .and_then(|v| v.get(acc.idx as usize))
                .ok_or_else(|| err("enumerator out of range"))?;
            plain(v.value)
        }
        _ => {
            // The accessed field: the last accessor's member or array element.
            let last = spec.acc.last().ok_or_else(|| err("empty field spec"))?;
            let (_, parent) = btf.skip_modifiers(last.type_id)?;
            let (field_type, bitfield) = if spec.acc.len() == 1 {
                (spec.root, 0)
            } else if let Some((_, bf, ty, _)) = member_bits(&parent, last.idx as usize) {
                (ty, bf)
            } else if let Type::Array { elem, .. } = parent {
                (elem, 0)
            } else {
                return Err(err("field accessor on a non-composite type"));
            };
            let bit_off = spec.bit_offset;
            let (_, ft) = btf.skip_modifiers(field_type)?;
            let mut byte_sz = u64::from(btf.resolve_size(field_type)?);
            let (byte_off, bit_sz) = if bitfield == 0 {
                if bit_off % 8 != 0 {
                    return Err(err("unaligned non-bitfield member"));
                }
                (bit_off / 8, byte_sz * 8)
            } else {
                let bit_sz = u64::from(bitfield);
                let mut off = bit_off / 8 / byte_sz.max(1) * byte_sz.max(1);
                while bit_off + bit_sz - off * 8 > byte_sz * 8 {
                    if byte_sz >= 8 {
                        return Err(err("bitfield does not fit in 8 bytes"));
                    }
                    byte_sz *= 2;
                    off = bit_off / 8 / byte_sz * byte_sz;
                }
                (off, bit_sz)
            };
            let value = match kind {
                K::FieldByteOffset => byte_off,
                K::FieldByteSize => byte_sz,
                K::FieldSigned => match ft {
                    Type::Int { encoding, .. } => u64::from(encoding & super::INT_SIGNED != 0),
                    Type::Enum { signed, .. } | Type::Enum64 { signed, .. } => u64::from(signed),
                    _ => 0,
                },
                // After a load of `byte_sz` bytes at `byte_off` into a u64,
                // shift the field's top bit to bit 63.
                K::FieldLShiftU64 => match order {
                    ByteOrder::Little => 64u64.wrapping_sub(bit_off + bit_sz - byte_off * 8),
                    ByteOrder::Big => {
                        (8u64.wrapping_sub(byte_sz) * 8).wrapping_add(bit_off - byte_off * 8)
                    }
                },
                K::FieldRShiftU64 => 64u64.wrapping_sub(bit_sz),
                _ => unreachable!("field kinds only"),
            };
            Ok(Value {
                value,
                size: byte_sz as u32,
                validate: bitfield == 0,
            })
        }
    }
}

/// Candidate target ids for local root type `lid`: same essential name, compatible kind.
/// A target forward declaration is never a candidate for a local struct or
/// union: it has no members or size to relocate against, and kernels whose
/// BTF keeps one beside the full struct (5.10's `pt_regs`) would fail the
/// relocation instead of matching the struct.
fn candidates(lb: &Btf, lid: TypeId, tb: &Btf) -> Result<Vec<TypeId>, BtfError> {
    let (_, l) = lb.skip_modifiers(lid)?;
    let name = lb.str_at(lb.type_by_id(lid)?.name_off())?;
    let name = if name.is_empty() {
        lb.str_at(l.name_off())?
    } else {
        name
    };
    let name = essential_name(name);
    if name.is_empty() {
        return Err(err(format!("local type {lid} is anonymous")));
    }
    let lk = lb.type_by_id(lid)?.kind();
    let mut out = Vec::new();
    for id in tb.ids_by_essential_name_for(name, lk) {
        let tk = tb.kind_of(id)?;
        let compat = tk == lk
            || matches!(
                (lk, tk),
                (Kind::Enum | Kind::Enum64, Kind::Enum | Kind::Enum64)
            )
            || (lk == Kind::Fwd && matches!(tk, Kind::Struct | Kind::Union));
        if compat {
            out.push(id);
        }
    }
    Ok(out)
}

/// Resolves one relocation: `Ok(None)` means "no match: poison or 0".
/// Where the candidates of local root types are looked for: vmlinux, then
/// (asked for only when vmlinux has none) the kernel modules' split BTF.
struct Targets<'t, M> {
    vmlinux: &'t Btf,
    modules: Option<M>,
    loaded: Vec<&'t Btf>,
    /// Local root type id → its candidates, each with the BTF it is in.
    cache: HashMap<TypeId, Vec<(&'t Btf, TypeId)>>,
}

impl<'t, M: FnOnce() -> Vec<&'t Btf>> Targets<'t, M> {
    /// libbpf's order: vmlinux's candidates when it has any, else the
    /// candidates of every module together (a type that two modules define
    /// alike relocates; one they define differently is ambiguous).
    fn candidates(&mut self, lb: &Btf, lid: TypeId) -> Result<Vec<(&'t Btf, TypeId)>, BtfError> {
        if let Some(c) = self.cache.get(&lid) {
            return Ok(c.clone());
        }
        let vmlinux = self.vmlinux;
        let mut found: Vec<_> = candidates(lb, lid, vmlinux)?
            .into_iter()
            .map(|id| (vmlinux, id))
            .collect();
        if found.is_empty() {
            if let Some(load) = self.modules.take() {
                self.loaded = load();
            }
            for &m in &self.loaded {
                found.extend(candidates(lb, lid, m)?.into_iter().map(|id| (m, id)));
            }
        }
        self.cache.insert(lid, found.clone());
        Ok(found)
    }
}

fn resolve<'t, M: FnOnce() -> Vec<&'t Btf>>(
    lb: &Btf,
    targets: &mut Targets<'t, M>,
    r: &CoreRelocation,
) -> Result<(Value, Option<Value>), BtfError> {
    let local = parse_spec(lb, r.type_id, &r.access, r.kind)?;
    // Both sides use the target's byte order: that is where the program runs.
    let order = targets.vmlinux.byte_order();
    let local_val = compute(lb, &local, r.kind, r.type_id, order)?;
    if r.kind == K::TypeIdLocal {
        return Ok((local_val, Some(local_val)));
    }
    let cands = targets.candidates(lb, r.type_id)?;
    let mut result: Option<Value> = None;
    for (tb, cand) in cands {
        let matched = if is_field(r.kind) || is_enum_kind(r.kind) {
            match_spec(lb, &local, r.kind, tb, cand)?
        } else if r.kind == K::TypeMatches {
            types_match(lb, r.type_id, tb, cand, false, 0)?.then(|| Spec {
                root: cand,
                acc: Vec::new(),
                bit_offset: 0,
            })
        } else {
            types_compat(lb, r.type_id, tb, cand, 0)?.then(|| Spec {
                root: cand,
                acc: Vec::new(),
                bit_offset: 0,
            })
        };
        let Some(spec) = matched else { continue };
        let v = compute(tb, &spec, r.kind, r.type_id, order)?;
        match result {
            None => result = Some(v),
            Some(prev) if prev.value == v.value => {}
            Some(prev) => {
                return Err(err(format!(
                    "ambiguous: target candidates give {} and {}",
                    prev.value, v.value
                )));
            }
        }
    }
    // libbpf's rule when no candidate matches: every type-based relocation
    // (exists, matches, size, target id) and the two existence checks
    // compute 0; field offsets and sizes and enum values are poisoned.
    if result.is_none()
        && matches!(
            r.kind,
            K::FieldExists
                | K::TypeExists
                | K::TypeMatches
                | K::TypeSize
                | K::TypeIdTarget
                | K::EnumValueExists
        )
    {
        result = Some(Value {
            value: 0,
            size: 0,
            validate: true,
        });
    }
    Ok((local_val, result))
}

fn poison(insns: &mut [Insn], at: usize) {
    let wide = insns[at].is_ld_imm64();
    let p = Insn {
        code: crate::insn::CALL,
        regs: 0,
        off: 0,
        imm: POISON_IMM,
    };
    insns[at] = p;
    if wide && at + 1 < insns.len() {
        insns[at + 1] = p;
    }
}

/// Writes `new` into the instruction after checking it holds `orig`.
fn patch(insns: &mut [Insn], at: usize, kind: K, orig: Value, new: Value) -> Result<(), String> {
    let insn = insns[at];
    let class = insn.code & 0x07;
    match class {
        // BPF_ALU, BPF_ALU64 with an immediate operand.
        0x04 | 0x07 => {
            if insn.code & 0x08 != 0 {
                return Err("ALU instruction with a register source".into());
            }
            if orig.validate
                && insn.imm as i64 as u64 != orig.value
                && insn.imm as u32 as u64 != orig.value
            {
                return Err(format!(
                    "instruction imm {} is not the expected {}",
                    insn.imm, orig.value
                ));
            }
            insns[at].imm = i32::try_from(new.value as i64)
                .or_else(|_| u32::try_from(new.value).map(|v| v as i32))
                .map_err(|_| format!("value {} does not fit in imm", new.value))?;
        }
        // BPF_LDX, BPF_ST, BPF_STX: the offset is the field offset.
        0x01..=0x03 => {
            if kind != K::FieldByteOffset {
                return Err(format!("{kind:?} cannot patch a memory instruction"));
            }
            if orig.validate && i64::from(insn.off) as u64 != orig.value {
                return Err(format!(
                    "instruction off {} is not the expected {}",
                    insn.off, orig.value
                ));
            }
            insns[at].off = i16::try_from(new.value)
                .map_err(|_| format!("offset {} does not fit in 16 bits", new.value))?;
            if orig.validate && new.size != orig.size {
                let size_bits = match new.size {
                    1 => 0x10,
                    2 => 0x08,
                    4 => 0x00,
                    8 => 0x18,
                    s => return Err(format!("field size {s} cannot be loaded")),
                };
                insns[at].code = (insn.code & !0x18) | size_bits;
            }
        }
        _ if insn.is_ld_imm64() => {
            let hi = insns
                .get(at + 1)
                .ok_or("ld_imm64 without its second half")?;
            let cur = (u64::from(hi.imm as u32) << 32) | u64::from(insn.imm as u32);
            if orig.validate && cur != orig.value {
                return Err(format!(
                    "ld_imm64 value {cur} is not the expected {}",
                    orig.value
                ));
            }
            insns[at].imm = new.value as u32 as i32;
            insns[at + 1].imm = (new.value >> 32) as u32 as i32;
        }
        _ => {
            return Err(format!(
                "instruction code {:#04x} cannot be relocated",
                insn.code
            ));
        }
    }
    Ok(())
}

impl ObjectSpec {
    /// Applies every program's CO-RE relocations against `target` (the
    /// kernel's BTF, [`Btf::from_bytes`] of `/sys/kernel/btf/vmlinux`) and
    /// empties [`crate::ProgramSpec::core_relocations`].
    ///
    /// Minimum kernel version: any kernel with BTF (5.2+); CO-RE is resolved here.
    pub fn relocate_core(&mut self, target: &Btf) -> Result<CoreReport, CoreError> {
        self.relocate_core_with_modules(target, Vec::new)
    }

    /// Like [`ObjectSpec::relocate_core`], and a relocation whose local type
    /// has no candidate in `vmlinux` is resolved against the candidates of
    /// every kernel module BTF together, as libbpf does.
    /// `modules` gives the modules' split BTF ([`Btf::from_bytes_split`] of
    /// `/sys/kernel/btf/<module>` on vmlinux); it is called at most once, and
    /// only when some type is missing from vmlinux.
    ///
    /// Minimum kernel version: 5.11 for module BTF in /sys/kernel/btf.
    pub fn relocate_core_with_modules<'t>(
        &mut self,
        vmlinux: &'t Btf,
        modules: impl FnOnce() -> Vec<&'t Btf>,
    ) -> Result<CoreReport, CoreError> {
        let mut report = CoreReport::default();
        if self.programs.iter().all(|p| p.core_relocations.is_empty()) {
            return Ok(report);
        }
        let first = self.programs.iter().find_map(|p| {
            p.core_relocations
                .first()
                .map(|r| (p.name.clone(), r.clone()))
        });
        let mk_err = |program: &str, r: &CoreRelocation, reason: String| CoreError {
            program: program.to_owned(),
            insn_index: r.insn_index,
            kind: r.kind,
            type_id: r.type_id,
            access: r.access.clone(),
            reason,
        };
        let local = match self.btf.as_deref().map(Btf::parse) {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                let (p, r) = first.unwrap_or_else(|| unreachable!());
                return Err(mk_err(&p, &r, format!("local BTF: {e}")));
            }
            None => {
                let (p, r) = first.unwrap_or_else(|| unreachable!());
                return Err(mk_err(
                    &p,
                    &r,
                    "object has CO-RE records but no .BTF".into(),
                ));
            }
        };
        let mut targets = Targets {
            vmlinux,
            modules: Some(modules),
            loaded: Vec::new(),
            cache: HashMap::new(),
        };
        for prog in &mut self.programs {
            let relos = std::mem::take(&mut prog.core_relocations);
            for r in &relos {
                if r.insn_index >= prog.insns.len() {
                    return Err(mk_err(
                        &prog.name,
                        r,
                        "instruction index out of range".into(),
                    ));
                }
                let (orig, new) = resolve(&local, &mut targets, r)
                    .map_err(|e| mk_err(&prog.name, r, e.to_string()))?;
                match new {
                    Some(new) => {
                        patch(&mut prog.insns, r.insn_index, r.kind, orig, new)
                            .map_err(|reason| mk_err(&prog.name, r, reason))?;
                        report.applied += 1;
                    }
                    None => {
                        poison(&mut prog.insns, r.insn_index);
                        let name = local.name_of(r.type_id).unwrap_or("?").to_owned();
                        report.poisoned.push((
                            prog.name.clone(),
                            r.insn_index,
                            format!(
                                "{:?} of '{name}' access {}: no match in target BTF",
                                r.kind, r.access
                            ),
                        ));
                    }
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btf::strings::StringTable;
    use crate::btf::{EnumValue, INT_SIGNED, Member, Param, write};

    /// Builds a BTF from `f`'s types (index = id; 0 is void, added here).
    fn btf(f: impl FnOnce(&mut StringTable) -> Vec<Type>) -> Btf {
        let mut s = StringTable::new(vec![0]);
        let mut types = vec![Type::Void];
        types.extend(f(&mut s));
        Btf::from_bytes(write::encode(&types, s.as_bytes())).expect("valid test BTF")
    }

    fn int(s: &mut StringTable, name: &str, size: u32, signed: bool) -> Type {
        Type::Int {
            name_off: s.add(name),
            size,
            encoding: if signed { INT_SIGNED } else { 0 },
            bit_offset: 0,
            bits: (size * 8) as u8,
        }
    }

    fn composite(s: &mut StringTable, union: bool, name: &str, members: &[(&str, u32)]) -> Type {
        let name_off = s.add(name);
        let members = members
            .iter()
            .enumerate()
            .map(|(i, (n, ty))| Member {
                name_off: s.add(n),
                type_id: *ty,
                offset: if union { 0 } else { i as u32 * 64 },
            })
            .collect();
        let size = 64;
        if union {
            Type::Union {
                name_off,
                size,
                kind_flag: false,
                members,
            }
        } else {
            Type::Struct {
                name_off,
                size,
                kind_flag: false,
                members,
            }
        }
    }

    fn strukt(s: &mut StringTable, name: &str, members: &[(&str, u32)]) -> Type {
        composite(s, false, name, members)
    }

    fn enm(s: &mut StringTable, name: &str, size: u32, wide: bool, values: &[(&str, u64)]) -> Type {
        let name_off = s.add(name);
        let values = values
            .iter()
            .map(|(n, v)| EnumValue {
                name_off: s.add(n),
                value: *v,
            })
            .collect();
        if wide {
            Type::Enum64 {
                name_off,
                size,
                signed: false,
                values,
            }
        } else {
            Type::Enum {
                name_off,
                size,
                signed: false,
                values,
            }
        }
    }

    fn ptr(target: TypeId) -> Type {
        Type::Ptr {
            name_off: 0,
            target,
        }
    }

    fn array(elem: TypeId, nelems: u32) -> Type {
        Type::Array {
            name_off: 0,
            elem,
            index: 1,
            nelems,
        }
    }

    fn proto(ret: TypeId, params: &[TypeId]) -> Type {
        Type::FuncProto {
            name_off: 0,
            ret,
            params: params
                .iter()
                .map(|&type_id| Param {
                    name_off: 0,
                    type_id,
                })
                .collect(),
        }
    }

    fn fwd(s: &mut StringTable, name: &str, union: bool) -> Type {
        Type::Fwd {
            name_off: s.add(name),
            union,
        }
    }

    fn matches(l: &Btf, lid: TypeId, t: &Btf, tid: TypeId) -> bool {
        types_match(l, lid, t, tid, false, 0).expect("no BTF error")
    }

    /// The target: ids 1 int, 2 long, 3 unsigned int, 4 struct task
    /// {pid, flags, comm, parent, state, cb, u}, 5 char[16], 6 task *,
    /// 7 enum state {RUNNING=0, SLEEPING=2, DEAD=4}, 8 int (*)(task *, long),
    /// 9 union u {a, b}, 10 fwd struct opaque, 11 opaque *, 12 typedef task
    /// task_t, 13 char, 14 enum64 big.
    fn target() -> Btf {
        btf(|s| {
            vec![
                int(s, "int", 4, true),           // 1
                int(s, "long", 8, true),          // 2
                int(s, "unsigned int", 4, false), // 3
                strukt(
                    s,
                    "task",
                    &[
                        ("flags", 2),
                        ("pid", 1),
                        ("comm", 5),
                        ("parent", 6),
                        ("state", 7),
                        ("cb", 15),
                        ("u", 9),
                        ("", 9),
                    ],
                ), // 4
                array(13, 16),                    // 5
                ptr(4),                           // 6
                enm(
                    s,
                    "state",
                    4,
                    false,
                    &[("RUNNING", 0), ("SLEEPING", 2), ("DEAD", 4)],
                ), // 7
                proto(1, &[6, 2]),                // 8
                composite(s, true, "u", &[("a", 1), ("b", 2)]), // 9
                fwd(s, "opaque", false),          // 10
                ptr(10),                          // 11
                Type::Typedef {
                    name_off: s.add("task_t"),
                    target: 4,
                }, // 12
                int(s, "char", 1, true),          // 13
                enm(s, "big", 8, true, &[("HUGE", 1 << 40)]), // 14
                ptr(8),                           // 15
            ]
        })
    }

    #[test]
    fn struct_with_a_subset_of_members_in_another_order_matches() {
        let l = btf(|s| {
            vec![
                int(s, "int", 4, true),
                array(4, 16),
                strukt(s, "task___mine", &[("comm", 2), ("pid", 1)]),
                int(s, "char", 1, true),
            ]
        });
        assert!(matches(&l, 3, &target(), 4));
    }

    #[test]
    fn struct_mismatches() {
        let t = target();
        // A member the target lacks.
        let l = btf(|s| vec![int(s, "int", 4, true), strukt(s, "task", &[("nope", 1)])]);
        assert!(!matches(&l, 2, &t, 4));
        // pid with another size, then another signedness.
        let l = btf(|s| vec![int(s, "int", 8, true), strukt(s, "task", &[("pid", 1)])]);
        assert!(!matches(&l, 2, &t, 4));
        let l = btf(|s| vec![int(s, "int", 4, false), strukt(s, "task", &[("pid", 1)])]);
        assert!(!matches(&l, 2, &t, 4));
        // Another name; a union of the same name is another kind.
        let l = btf(|s| vec![int(s, "int", 4, true), strukt(s, "job", &[("pid", 1)])]);
        assert!(!matches(&l, 2, &t, 4));
        let l = btf(|s| {
            vec![
                int(s, "int", 4, true),
                composite(s, true, "task", &[("pid", 1)]),
            ]
        });
        assert!(!matches(&l, 2, &t, 4));
        // comm as char[8] instead of char[16].
        let l = btf(|s| {
            vec![
                int(s, "char", 1, true),
                array(1, 8),
                strukt(s, "task", &[("comm", 2)]),
            ]
        });
        assert!(!matches(&l, 3, &t, 4));
        // More members than the target has, even if all names exist.
        let many: Vec<(String, u32)> = (0..9).map(|i| (format!("m{i}"), 1)).collect();
        let l = btf(|s| {
            let refs: Vec<(&str, u32)> = many.iter().map(|(n, t)| (n.as_str(), *t)).collect();
            vec![int(s, "int", 4, true), strukt(s, "task", &refs)]
        });
        assert!(!matches(&l, 2, &t, 4));
    }

    #[test]
    fn member_names_behind_pointers_and_typedefs() {
        let t = target();
        // parent: a pointer to a task with members the target's task lacks
        // still matches (behind a pointer only names and kinds count);
        // pid through const and a typedef is still int.
        let l = btf(|s| {
            vec![
                int(s, "int", 4, true),           // 1
                strukt(s, "task", &[("zzz", 1)]), // 2
                ptr(2),                           // 3
                Type::Typedef {
                    name_off: s.add("pid_t"),
                    target: 1,
                }, // 4
                Type::Const {
                    name_off: 0,
                    target: 4,
                }, // 5
                strukt(s, "task", &[("parent", 3), ("pid", 5)]), // 6
            ]
        });
        assert!(matches(&l, 6, &t, 4));
        assert!(
            !matches(&l, 2, &t, 4),
            "zzz is checked when not behind a pointer"
        );
        // parent as a pointer to a struct of another name, as a plain
        // struct, or as a pointer to a pointer: no match.
        let l = btf(|s| {
            vec![
                int(s, "int", 4, true),
                strukt(s, "other", &[]),
                ptr(2),
                strukt(s, "task", &[("parent", 3)]),
            ]
        });
        assert!(!matches(&l, 4, &t, 4));
        let l = btf(|s| vec![strukt(s, "task", &[]), strukt(s, "task", &[("parent", 1)])]);
        assert!(!matches(&l, 2, &t, 4));
        let l = btf(|s| {
            vec![
                strukt(s, "task", &[]),
                ptr(1),
                ptr(2),
                strukt(s, "task", &[("parent", 3)]),
            ]
        });
        assert!(!matches(&l, 4, &t, 4));
        // A root typedef: the typedef's target is compared.
        let l = btf(|s| {
            vec![
                int(s, "int", 4, true),
                strukt(s, "task", &[("pid", 1)]),
                Type::Typedef {
                    name_off: s.add("task_t"),
                    target: 2,
                },
            ]
        });
        assert!(matches(&l, 3, &t, 12));
    }

    #[test]
    fn anonymous_members_match_anonymous_members() {
        let t = target();
        let l = btf(|s| {
            vec![
                int(s, "int", 4, true),
                composite(s, true, "u", &[("a", 1)]),
                strukt(s, "task", &[("", 2)]),
            ]
        });
        assert!(matches(&l, 3, &t, 4));
        // A named local member never matches an anonymous target one.
        let l = btf(|s| {
            vec![
                int(s, "int", 4, true),
                composite(s, true, "u", &[("a", 1)]),
                strukt(s, "task", &[("x", 2)]),
            ]
        });
        assert!(!matches(&l, 3, &t, 4));
    }

    #[test]
    fn enums_match_by_enumerator_names_not_values() {
        let t = target();
        let l = btf(|s| {
            vec![enm(
                s,
                "state",
                4,
                false,
                &[("SLEEPING", 1), ("RUNNING", 9)],
            )]
        });
        assert!(matches(&l, 1, &t, 7));
        let l = btf(|s| vec![enm(s, "state___v1", 4, false, &[("DEAD", 4)])]);
        assert!(matches(&l, 1, &t, 7));
        let l = btf(|s| vec![enm(s, "state", 4, false, &[("ZOMBIE", 4)])]);
        assert!(!matches(&l, 1, &t, 7));
        let l = btf(|s| vec![enm(s, "state", 8, true, &[("RUNNING", 0)])]);
        assert!(!matches(&l, 1, &t, 7), "sizes differ");
        // ENUM and ENUM64 match each other when the sizes agree.
        let l = btf(|s| vec![enm(s, "big", 8, false, &[("HUGE", 0)])]);
        assert!(matches(&l, 1, &t, 14));
        let l = btf(|s| vec![int(s, "state", 4, false)]);
        assert!(!matches(&l, 1, &t, 7));
    }

    #[test]
    fn function_prototypes_match_parameter_by_parameter() {
        let t = target();
        let l = btf(|s| {
            vec![
                int(s, "int", 4, true),          // 1
                int(s, "long", 8, true),         // 2
                strukt(s, "task", &[]),          // 3
                ptr(3),                          // 4
                proto(1, &[4, 2]),               // 5
                proto(1, &[4]),                  // 6
                proto(2, &[4, 2]),               // 7
                proto(1, &[4, 1]),               // 8
                ptr(5),                          // 9
                strukt(s, "task", &[("cb", 9)]), // 10
            ]
        });
        assert!(matches(&l, 5, &t, 8));
        assert!(!matches(&l, 6, &t, 8), "parameter count");
        assert!(!matches(&l, 7, &t, 8), "return type");
        assert!(!matches(&l, 8, &t, 8), "second parameter");
        assert!(
            matches(&l, 10, &t, 4),
            "a member that is a function pointer"
        );
    }

    #[test]
    fn forward_declarations() {
        let t = target();
        // fwd vs fwd of the same kind, not of the other kind.
        let l = btf(|s| vec![fwd(s, "opaque", false), fwd(s, "opaque", true)]);
        assert!(matches(&l, 1, &t, 10));
        assert!(!matches(&l, 2, &t, 10));
        // Behind a pointer a local struct matches a target forward
        // declaration, and a local fwd matches the target struct.
        let l = btf(|s| vec![strukt(s, "opaque", &[("x", 0)]), ptr(1)]);
        assert!(matches(&l, 2, &t, 11));
        assert!(!matches(&l, 1, &t, 10), "not behind a pointer");
        let l = btf(|s| vec![fwd(s, "task", false), ptr(1), fwd(s, "task", true), ptr(3)]);
        assert!(matches(&l, 2, &t, 6));
        assert!(!matches(&l, 4, &t, 6), "a union fwd never matches a struct");
        assert!(!matches(&l, 1, &t, 4), "fwd vs struct not behind a pointer");
    }

    /// A module's split BTF as the target: the struct is the module's, its
    /// member types the base's (vmlinux's) and the module's.
    #[test]
    fn matches_against_split_btf() {
        let t = crate::btf::read::split_tests::split(false);
        let l = btf(|s| {
            vec![
                int(s, "int", 4, true),
                strukt(s, "base_s", &[]),
                ptr(2),
                strukt(s, "mod_s", &[("b", 3), ("x", 1)]),
                strukt(s, "mod_s", &[("b", 1)]),
            ]
        });
        let cands = candidates(&l, 4, &t).unwrap();
        assert_eq!(cands, [3]);
        assert!(matches(&l, 4, &t, 3));
        assert!(!matches(&l, 5, &t, 3), "b is a pointer in the module");
        assert_eq!(
            candidates(&l, 2, &t).unwrap(),
            [2],
            "base types are candidates too"
        );
    }

    /// vmlinux first; the modules are asked for only when a type is not in
    /// vmlinux, and then every module's candidates count, each with the
    /// module's BTF (not only the first module's).
    #[test]
    fn candidates_in_modules_only_when_vmlinux_has_none() {
        use crate::btf::read::split_tests::{base, split};
        let vmlinux = base();
        let (module_a, module_b) = (split(false), split(true));
        let l = btf(|s| vec![strukt(s, "base_s", &[]), strukt(s, "mod_s", &[])]);
        let asked = std::cell::Cell::new(0);
        let mut t = Targets {
            vmlinux: &vmlinux,
            modules: Some(|| {
                asked.set(asked.get() + 1);
                vec![&module_a, &module_b]
            }),
            loaded: Vec::new(),
            cache: HashMap::new(),
        };
        let c = t.candidates(&l, 1).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(
            (std::ptr::eq(c[0].0, &*vmlinux), c[0].1, asked.get()),
            (true, 2, 0)
        );
        let c = t.candidates(&l, 2).unwrap();
        let in_module = |c: &[(&Btf, TypeId)], m: &Btf| {
            c.iter()
                .filter(|(b, _)| std::ptr::eq(*b, m))
                .map(|(_, id)| *id)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            (
                in_module(&c, &module_a),
                in_module(&c, &module_b),
                c.len(),
                asked.get()
            ),
            (vec![3], vec![3], 2, 1)
        );
        let again = t.candidates(&l, 2).unwrap();
        assert!(again.len() == 2 && asked.get() == 1, "cached");
    }

    #[test]
    fn arrays_and_ints() {
        let t = target();
        let l = btf(|s| vec![int(s, "char", 1, true), array(1, 16), array(1, 15)]);
        assert!(matches(&l, 2, &t, 5));
        assert!(!matches(&l, 3, &t, 5));
        let l = btf(|s| {
            vec![
                int(s, "int", 4, true),
                int(s, "int", 4, false),
                Type::Float {
                    name_off: s.add("int"),
                    size: 4,
                },
            ]
        });
        assert!(matches(&l, 1, &t, 1));
        assert!(!matches(&l, 2, &t, 1));
        assert!(!matches(&l, 3, &t, 1), "a float is not an int");
        assert!(matches(&l, 0, &t, 0), "void matches void");
    }
}
