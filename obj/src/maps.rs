//! Maps declared by an object: BTF-defined maps in `.maps`, records of a
//! legacy `maps` section, global data sections (`.data`, `.rodata`, `.bss`
//! and their `.name` variants) and the `.kconfig` extern section.
//! Also collects `.kconfig` / `.ksyms` externs.

use std::collections::BTreeMap;

use object::elf;

use crate::btf::{Btf, INT_BOOL, INT_SIGNED, Type, TypeId, VAR_EXTERN};
use crate::parse::Elf;
use crate::{
    ExternKind, ExternSpec, GlobalVariable, KconfigValueKind, MapOrigin, MapSlot, MapSlotTarget,
    MapSpec, MapType, ParseError, Pinning,
};

/// `BPF_F_RDONLY_PROG`: programs may only read the map (read-only globals).
const BPF_F_RDONLY_PROG: u32 = 1 << 7;

/// The largest global data map value accepted: array map values must fit
/// `KMALLOC_MAX_SIZE` (4 MiB on x86_64, 512 MiB at most with 64 KiB pages).
/// Also bounds what a corrupted `.bss` size or `.kconfig` layout can make
/// the parser allocate.
const MAX_MAP_VALUE: u32 = 512 << 20;

/// Maps and externs plus the indexes relocation needs.
pub(crate) struct Collected {
    pub specs: Vec<MapSpec>,
    /// (section index, offset of the definition) → map index, for `.maps` and `maps`.
    pub by_definition: BTreeMap<(usize, u64), usize>,
    /// Section index → global data map index.
    pub data_by_section: BTreeMap<usize, usize>,
    pub externs: Vec<ExternSpec>,
    /// Index of the `.kconfig` map in `specs`, when the object has kconfig externs.
    pub kconfig_map: Option<usize>,
    /// Initial prog array / map-of-maps entries from `.rel.maps`.
    pub slots: Vec<MapSlot>,
    /// `.addr_space.1` (`__arena` globals): its section index, the arena
    /// map's index and the section's size.
    pub arena: Option<(usize, usize, u64)>,
}

/// The section clang puts `__arena` (address space 1) globals in.
const ARENA_SECTION: &str = ".addr_space.1";

/// Where a `.maps` definition sits and where its `values` array starts.
struct BtfMapDef {
    map: usize,
    offset: u64,
    size: u64,
    /// Byte offset of the `values` member in the definition, if it has one.
    values: Option<u64>,
}

impl Collected {
    pub fn extern_index(&self, name: &str) -> Option<usize> {
        self.externs.iter().position(|e| e.name == name)
    }
}

pub(crate) fn new_map(name: &str, origin: MapOrigin) -> MapSpec {
    MapSpec {
        name: name.to_owned(),
        map_type: MapType::UNSPEC,
        key_size: 0,
        value_size: 0,
        max_entries: 0,
        map_flags: 0,
        numa_node: None,
        map_extra: 0,
        pinning: Pinning::None,
        origin,
        initial_data: None,
        btf_key_type_id: None,
        btf_value_type_id: None,
        inner: None,
        variables: Vec::new(),
    }
}

fn is_data_section(name: &str) -> bool {
    [".data", ".rodata", ".bss"]
        .iter()
        .any(|p| name == *p || name.strip_prefix(p).is_some_and(|r| r.starts_with('.')))
}

/// The DATASEC named `name`, as (type id, type).
fn datasec<'b>(btf: &'b Btf, name: &str) -> Option<(TypeId, Type)> {
    let id = btf.id_by_name(name, crate::btf::Kind::DataSec)?;
    let _: &'b Btf = btf;
    btf.type_by_id(id).ok().map(|t| (id, t))
}

pub(crate) fn collect(elf: &Elf<'_>, btf: Option<&Btf>) -> Result<Collected, ParseError> {
    let mut out = Collected {
        specs: Vec::new(),
        by_definition: BTreeMap::new(),
        data_by_section: BTreeMap::new(),
        externs: Vec::new(),
        kconfig_map: None,
        slots: Vec::new(),
        arena: None,
    };
    if let Some(sec) = elf.section_by_name("maps") {
        legacy_maps(elf, sec.index, sec.data, &mut out)?;
    }
    if let Some(sec) = elf.section_by_name(".maps") {
        let btf = btf.ok_or_else(|| {
            ParseError::section(".maps", "BTF-defined maps need .BTF (compile with -g)")
        })?;
        let defs = btf_maps(btf, sec.index, &mut out)?;
        map_slots(elf, sec.index, &defs, &mut out)?;
    }
    for sec in &elf.sections {
        if !is_data_section(sec.name)
            || sec.size == 0
            || !(sec.sh_type == elf::SHT_PROGBITS || sec.sh_type == elf::SHT_NOBITS)
            || sec.is_exec()
        {
            continue;
        }
        // `.bss` has no bytes in the file: its size is only a header field,
        // and the zeroed initial value is allocated here.
        let size = u32::try_from(sec.size)
            .ok()
            .filter(|&n| n <= MAX_MAP_VALUE)
            .ok_or_else(|| {
                ParseError::section(
                    sec.name,
                    format!("{} bytes: larger than any kernel's map value", sec.size),
                )
            })?;
        let mut map = new_map(
            sec.name,
            MapOrigin::GlobalData {
                section: sec.name.to_owned(),
            },
        );
        map.map_type = MapType::ARRAY;
        map.key_size = 4;
        map.value_size = size;
        map.max_entries = 1;
        if sec.name.starts_with(".rodata") {
            map.map_flags = BPF_F_RDONLY_PROG;
        }
        map.initial_data = Some(if sec.sh_type == elf::SHT_NOBITS {
            vec![0; size as usize]
        } else {
            sec.data.to_vec()
        });
        if let Some((id, Type::DataSec { vars, .. })) = btf.and_then(|b| datasec(b, sec.name)) {
            let btf = btf.unwrap_or_else(|| unreachable!());
            map.btf_value_type_id = Some(id);
            for v in vars {
                map.variables.push(GlobalVariable {
                    name: btf.name_of(v.type_id)?.to_owned(),
                    offset: v.offset,
                    size: v.size,
                    btf_type_id: v.type_id,
                });
            }
        }
        out.data_by_section.insert(sec.index, out.specs.len());
        out.specs.push(map);
    }
    if let Some(btf) = btf {
        externs(elf, btf, &mut out)?;
    }
    arena_globals(elf, &mut out)?;
    Ok(out)
}

/// `__arena` globals (libbpf 1.4+): their section's bytes become the
/// initial data of the object's one arena map, which the loader copies into
/// the arena; references to them are relocated into that map.
fn arena_globals(elf: &Elf<'_>, out: &mut Collected) -> Result<(), ParseError> {
    let Some(sec) = elf.section_by_name(ARENA_SECTION).filter(|s| s.size > 0) else {
        return Ok(());
    };
    let mut arenas = out
        .specs
        .iter()
        .enumerate()
        .filter(|(_, m)| m.map_type == MapType::ARENA);
    let (index, map) = arenas.next().ok_or_else(|| {
        ParseError::section(
            ARENA_SECTION,
            "__arena globals need an arena map declared in SEC(\".maps\")",
        )
    })?;
    if let Some((_, other)) = arenas.next() {
        return Err(ParseError::section(
            ARENA_SECTION,
            format!(
                "__arena globals need one arena map, the object has '{}' and '{}'",
                map.name, other.name
            ),
        ));
    }
    if sec.size > u64::from(MAX_MAP_VALUE) {
        return Err(ParseError::section(
            ARENA_SECTION,
            format!("{} bytes of __arena globals: too large", sec.size),
        ));
    }
    let data = if sec.sh_type == elf::SHT_NOBITS {
        vec![0; sec.size as usize]
    } else {
        sec.data.to_vec()
    };
    out.specs[index].initial_data = Some(data);
    out.arena = Some((sec.index, index, sec.size));
    Ok(())
}

fn legacy_maps(
    elf: &Elf<'_>,
    index: usize,
    data: &[u8],
    out: &mut Collected,
) -> Result<(), ParseError> {
    let mut syms: Vec<_> = elf
        .symbols_in(index)
        .filter(|s| s.st_type != elf::STT_SECTION && !s.name.is_empty())
        .collect();
    if syms.is_empty() {
        return Ok(());
    }
    syms.sort_by_key(|s| s.value);
    // Like libbpf: every record has the same size, section size / number of maps.
    if data.len() % syms.len() != 0 {
        return Err(ParseError::section(
            "maps",
            format!(
                "{} bytes do not split into {} equal map records",
                data.len(),
                syms.len()
            ),
        ));
    }
    let rec = data.len() / syms.len();
    if rec < 16 {
        return Err(ParseError::section(
            "maps",
            format!("map records of {rec} bytes are shorter than the 16-byte minimum"),
        ));
    }
    for sym in syms {
        let start = sym.value as usize;
        let bytes = data.get(start..start.saturating_add(rec)).ok_or_else(|| {
            ParseError::symbol(sym.name, "map definition is past the end of section 'maps'")
        })?;
        let word = |i: usize| {
            bytes
                .get(i * 4..i * 4 + 4)
                .map(|b| elf.order.u32([b[0], b[1], b[2], b[3]]))
        };
        let mut map = new_map(sym.name, MapOrigin::Legacy);
        map.map_type = MapType(word(0).unwrap_or(0));
        map.key_size = word(1).unwrap_or(0);
        map.value_size = word(2).unwrap_or(0);
        map.max_entries = word(3).unwrap_or(0);
        map.map_flags = word(4).unwrap_or(0);
        // aya's and iproute2's layouts put `pinning` in word 6 (after `id`).
        if word(6).is_some_and(|p| p != 0) {
            map.pinning = Pinning::ByName;
        }
        out.by_definition
            .insert((index, sym.value), out.specs.len());
        out.specs.push(map);
    }
    Ok(())
}

fn btf_maps(btf: &Btf, index: usize, out: &mut Collected) -> Result<Vec<BtfMapDef>, ParseError> {
    let Some((_, Type::DataSec { vars, .. })) = datasec(btf, ".maps") else {
        return Err(ParseError::section(
            ".maps",
            "no DATASEC '.maps' in .BTF: the object was built without its maps' debug info \
             (clang needs -g; a Rust crate -C debuginfo=2 and -C link-arg=--btf, which \
             kiln-build and cargo xtask build-ebpf pass)",
        ));
    };
    let mut defs = Vec::with_capacity(vars.len());
    for v in vars {
        let Type::Var {
            name_off, type_id, ..
        } = btf.type_by_id(v.type_id)?
        else {
            return Err(ParseError::section(
                ".maps",
                format!("DATASEC entry type id {} is not a VAR", v.type_id),
            ));
        };
        let name = btf.str_at(name_off)?;
        let map = btf_map_def(btf, name, type_id, MapOrigin::BtfMaps)?;
        let values = match btf.skip_modifiers(type_id)?.1 {
            Type::Struct {
                members, kind_flag, ..
            } => members
                .iter()
                .find(|m| btf.str_at(m.name_off) == Ok("values"))
                .map(|m| u64::from(m.bit_offset(kind_flag) / 8)),
            _ => None,
        };
        defs.push(BtfMapDef {
            map: out.specs.len(),
            offset: u64::from(v.offset),
            size: u64::from(v.size),
            values,
        });
        out.by_definition
            .insert((index, u64::from(v.offset)), out.specs.len());
        out.specs.push(map);
    }
    Ok(defs)
}

/// `.rel.maps`: each relocation fills one slot of a definition's `values`
/// array with a program (prog arrays) or a map (maps of maps).
fn map_slots(
    elf: &Elf<'_>,
    maps_section: usize,
    defs: &[BtfMapDef],
    out: &mut Collected,
) -> Result<(), ParseError> {
    for r in elf.relocs.get(&maps_section).into_iter().flatten() {
        let Some(def) = defs
            .iter()
            .find(|d| d.offset <= r.offset && r.offset < d.offset + d.size)
        else {
            return Err(ParseError::section(
                ".maps",
                format!(
                    "relocation at offset {} is outside every map definition",
                    r.offset
                ),
            ));
        };
        let name = &out.specs[def.map].name;
        let within = r.offset - def.offset;
        let slot = def
            .values
            .filter(|&v| within >= v && (within - v) % 8 == 0)
            .map(|v| (within - v) / 8)
            .ok_or_else(|| {
                ParseError::map(
                    name,
                    format!(
                        "relocation at byte {within} of the definition is not a 'values' entry"
                    ),
                )
            })?;
        let index =
            u32::try_from(slot).map_err(|_| ParseError::map(name, "values index overflows"))?;
        let sym = elf.symbols.get(r.symbol).ok_or_else(|| {
            ParseError::map(
                name,
                format!("values[{index}]: symbol #{} does not exist", r.symbol),
            )
        })?;
        let target = if sym.section == Some(maps_section) {
            let inner = out
                .by_definition
                .get(&(maps_section, sym.value))
                .copied()
                .ok_or_else(|| {
                    ParseError::map(
                        name,
                        format!("values[{index}]: '{}' is not a map", sym.name),
                    )
                })?;
            MapSlotTarget::Map(inner)
        } else if sym.is_func()
            && sym
                .section
                .and_then(|s| elf.section(s))
                .is_some_and(|s| s.is_exec())
        {
            MapSlotTarget::Program(sym.name.to_owned())
        } else {
            return Err(ParseError::map(
                name,
                format!(
                    "values[{index}]: '{}' is neither a map nor a program",
                    sym.name
                ),
            ));
        };
        out.slots.push(MapSlot {
            map: def.map,
            index,
            target,
        });
    }
    Ok(())
}

/// `__uint(name, N)`: a pointer to an array of N elements.
fn btf_uint(btf: &Btf, map: &str, member: &str, id: TypeId) -> Result<u32, ParseError> {
    let bad = || {
        ParseError::map(
            map,
            format!(
                "member '{member}' (type id {id}) is not __uint(): expected a pointer to an array"
            ),
        )
    };
    let Type::Ptr { target, .. } = btf.type_by_id(id)? else {
        return Err(bad());
    };
    match btf.skip_modifiers(target)?.1 {
        Type::Array { nelems, .. } => Ok(nelems),
        _ => Err(bad()),
    }
}

/// `__ulong(name, N)` (libbpf 1.3+, for 64-bit attributes such as an
/// arena's `map_extra` address): a member whose type is an enum with the
/// single enumerator N (an ENUM64 when N needs it). `__uint(name, N)` is
/// accepted too.
fn btf_ulong(btf: &Btf, map: &str, member: &str, id: TypeId) -> Result<u64, ParseError> {
    match btf.skip_modifiers(id)?.1 {
        Type::Enum { values, .. } | Type::Enum64 { values, .. } => match values.as_slice() {
            [only] => Ok(only.value),
            _ => Err(ParseError::map(
                map,
                format!(
                    "member '{member}' (type id {id}) is not __ulong(): its enum has {} values, expected one",
                    values.len()
                ),
            )),
        },
        _ => btf_uint(btf, map, member, id).map(u64::from),
    }
}

/// `__type(name, T)`: a pointer to T.
fn btf_type(btf: &Btf, map: &str, member: &str, id: TypeId) -> Result<TypeId, ParseError> {
    match btf.type_by_id(id)? {
        Type::Ptr { target, .. } => Ok(target),
        _ => Err(ParseError::map(
            map,
            format!("member '{member}' (type id {id}) is not __type(): expected a pointer"),
        )),
    }
}

/// Parses a BTF map definition struct (libbpf's `parse_btf_map_def`).
pub(crate) fn btf_map_def(
    btf: &Btf,
    name: &str,
    type_id: TypeId,
    origin: MapOrigin,
) -> Result<MapSpec, ParseError> {
    let (_, def) = btf.skip_modifiers(type_id)?;
    let Type::Struct { members, .. } = def else {
        return Err(ParseError::map(
            name,
            format!("definition (type id {type_id}) is not a struct"),
        ));
    };
    let mut map = new_map(name, origin);
    let mut key_size = None;
    let mut value_size = None;
    for m in &members {
        let member = btf.str_at(m.name_off)?;
        let uint = || btf_uint(btf, name, member, m.type_id);
        match member {
            "type" => map.map_type = MapType(uint()?),
            "max_entries" => map.max_entries = uint()?,
            "map_flags" => map.map_flags = uint()?,
            "numa_node" => map.numa_node = Some(uint()?),
            "map_extra" => map.map_extra = btf_ulong(btf, name, member, m.type_id)?,
            "key_size" => key_size = Some(uint()?),
            "value_size" => value_size = Some(uint()?),
            "pinning" => {
                map.pinning = match uint()? {
                    0 => Pinning::None,
                    1 => Pinning::ByName,
                    other => {
                        return Err(ParseError::map(
                            name,
                            format!("unknown pinning {other} (0: none, 1: by name)"),
                        ));
                    }
                }
            }
            "key" | "value" => {
                let t = btf_type(btf, name, member, m.type_id)?;
                let size = btf
                    .resolve_size(t)
                    .map_err(|e| ParseError::map(name, format!("size of '{member}' type: {e}")))?;
                if member == "key" {
                    map.btf_key_type_id = Some(t);
                    map.key_size = size;
                } else {
                    map.btf_value_type_id = Some(t);
                    map.value_size = size;
                }
            }
            "values" => {
                // `__array(values, struct inner)`: array of pointers to the inner definition
                // (map-in-map), or of pointers to function prototypes (prog arrays).
                let Type::Array { elem, .. } = btf.skip_modifiers(m.type_id)?.1 else {
                    return Err(ParseError::map(name, "'values' is not an array"));
                };
                let Type::Ptr { target, .. } = btf.skip_modifiers(elem)?.1 else {
                    return Err(ParseError::map(name, "'values' elements are not pointers"));
                };
                if matches!(btf.skip_modifiers(target)?.1, Type::Struct { .. }) {
                    let inner =
                        btf_map_def(btf, &format!("{name}.inner"), target, MapOrigin::BtfMaps)?;
                    map.inner = Some(Box::new(inner));
                }
                value_size = Some(4);
            }
            // libbpf ignores unknown members outside strict mode; so do we.
            _ => {}
        }
    }
    for (given, field, what) in [
        (key_size, &mut map.key_size, "key"),
        (value_size, &mut map.value_size, "value"),
    ] {
        if let Some(given) = given {
            if *field != 0 && *field != given {
                return Err(ParseError::map(
                    name,
                    format!("{what}_size {given} contradicts the {what} type's size {field}"),
                ));
            }
            *field = given;
        }
    }
    Ok(map)
}

/// `.kconfig` and `.ksyms` externs, from their BTF DATASECs.
fn externs(elf: &Elf<'_>, btf: &Btf, out: &mut Collected) -> Result<(), ParseError> {
    let weak = |name: &str| {
        elf.symbols
            .iter()
            .any(|s| s.name == name && s.section.is_none() && s.st_bind == elf::STB_WEAK)
    };
    if let Some((id, Type::DataSec { vars, .. })) = datasec(btf, ".kconfig") {
        // libbpf's layout, so both loaders put each value at the same offset
        // of a map of the same size: largest alignment first, then smallest
        // size, then name; each value at the next multiple of its alignment.
        let mut decls = Vec::new();
        for v in &vars {
            let Type::Var {
                name_off,
                type_id,
                linkage,
            } = btf.type_by_id(v.type_id)?
            else {
                continue;
            };
            if linkage != VAR_EXTERN {
                continue;
            }
            let name = btf.str_at(name_off)?;
            let size = btf
                .resolve_size(type_id)
                .map_err(|e| ParseError::symbol(name, format!("kconfig extern size: {e}")))?;
            let value_kind = kconfig_kind(btf, type_id)
                .ok_or_else(|| ParseError::symbol(name, "unsupported .kconfig extern type"))?;
            let align = align_of(btf, type_id)
                .map_err(|e| ParseError::symbol(name, format!("kconfig extern alignment: {e}")))?;
            decls.push((align, size, name, v.type_id, value_kind));
        }
        decls.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(b.2)));
        let mut offset = 0u32;
        let mut variables = Vec::new();
        for (align, size, name, var_id, value_kind) in decls {
            // Bounded before any arithmetic: sizes come from untrusted BTF.
            if size > MAX_MAP_VALUE || offset > MAX_MAP_VALUE {
                return Err(ParseError::symbol(
                    name,
                    format!("kconfig extern of {size} bytes at offset {offset}: too large"),
                ));
            }
            offset = offset.next_multiple_of(align);
            out.externs.push(ExternSpec {
                name: name.to_owned(),
                weak: weak(name),
                kind: ExternKind::Kconfig {
                    offset,
                    size,
                    value_kind,
                },
            });
            variables.push(GlobalVariable {
                name: name.to_owned(),
                offset,
                size,
                btf_type_id: var_id,
            });
            offset += size;
        }
        if !variables.is_empty() {
            // Like libbpf: the map ends with the last value, unpadded.
            let size = offset;
            if size > MAX_MAP_VALUE {
                return Err(ParseError::section(
                    ".kconfig",
                    format!("{size} bytes of externs: larger than any kernel's map value"),
                ));
            }
            let mut map = new_map(
                ".kconfig",
                MapOrigin::GlobalData {
                    section: ".kconfig".into(),
                },
            );
            map.map_type = MapType::ARRAY;
            map.key_size = 4;
            map.value_size = size;
            map.max_entries = 1;
            map.map_flags = BPF_F_RDONLY_PROG;
            map.initial_data = Some(vec![0; size as usize]);
            map.variables = variables;
            // Its DATASEC becomes the value type once `parse` has laid it
            // out like this map (`fixup_extern_datasecs`).
            let _ = id;
            out.kconfig_map = Some(out.specs.len());
            out.specs.push(map);
        }
    }
    if let Some((_, Type::DataSec { vars, .. })) = datasec(btf, ".ksyms") {
        for v in &vars {
            let (name_off, kind) = match btf.type_by_id(v.type_id)? {
                Type::Var {
                    name_off, type_id, ..
                } => (
                    name_off,
                    ExternKind::KsymVar {
                        btf_type_id: v.type_id,
                        typeless: btf.skip_modifiers(type_id)?.1 == Type::Void,
                    },
                ),
                Type::Func { name_off, .. } => (
                    name_off,
                    ExternKind::KsymFunc {
                        btf_type_id: v.type_id,
                    },
                ),
                _ => continue,
            };
            let name = btf.str_at(name_off)?;
            out.externs.push(ExternSpec {
                name: name.to_owned(),
                weak: weak(name),
                kind,
            });
        }
    }
    Ok(())
}

/// The alignment of a value of type `id` (libbpf's `btf__align_of` for the
/// types a `.kconfig` extern can have): scalars align to their size (at
/// most 8), arrays to their element.
fn align_of(btf: &Btf, id: TypeId) -> Result<u32, crate::btf::BtfError> {
    let mut id = id;
    for _ in 0..crate::btf::read::MAX_RESOLVE_DEPTH {
        let (_, t) = btf.skip_modifiers(id)?;
        match t {
            Type::Array { elem, .. } => id = elem,
            Type::Ptr { .. } => return Ok(8),
            t => return Ok(t.own_size().unwrap_or(1).clamp(1, 8)),
        }
    }
    Err(crate::btf::BtfError::Type {
        type_id: id,
        reason: "array chain too long (a cycle?)".into(),
    })
}

/// libbpf's `find_kcfg_type`: the declarations a `.kconfig` extern may have.
fn kconfig_kind(btf: &Btf, type_id: TypeId) -> Option<KconfigValueKind> {
    let (_, t) = btf.skip_modifiers(type_id).ok()?;
    Some(match t {
        Type::Int { encoding, size, .. } if encoding & INT_BOOL != 0 => {
            (size == 1).then_some(KconfigValueKind::Bool)?
        }
        Type::Int { size: 1, .. } => KconfigValueKind::Char,
        Type::Int {
            encoding,
            size: 2 | 4 | 8,
            ..
        } => KconfigValueKind::Int {
            signed: encoding & INT_SIGNED != 0,
        },
        Type::Enum {
            name_off, size: 4, ..
        }
        | Type::Enum64 { name_off, .. }
            if btf.str_at(name_off).ok() == Some("libbpf_tristate") =>
        {
            KconfigValueKind::Tristate
        }
        // Not recursive: a malformed BTF could make an array its own element.
        Type::Array { elem, nelems, .. } if nelems > 0 => match btf.skip_modifiers(elem).ok()?.1 {
            Type::Int {
                size: 1, encoding, ..
            } if encoding & INT_BOOL == 0 => KconfigValueKind::CharArray,
            _ => return None,
        },
        _ => return None,
    })
}
