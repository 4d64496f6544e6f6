//! ELF → [`ObjectSpec`]: the orchestration. Reads sections and symbols once
//! (zero-copy through `object`), then hands them to [`crate::maps`] and
//! [`crate::link`].

use std::collections::BTreeMap;

use object::elf;
use object::read::elf::{ElfFile64, FileHeader, SectionHeader};
use object::{Endianness, Object, ObjectSection, ObjectSymbol};

use crate::btf::fixup::{ElfLayout, fixup_datasecs};
use crate::btf::{Btf, write};
use crate::{ByteOrder, ObjectSpec, ParseError};

/// A section as the rest of the parser sees it.
pub(crate) struct Section<'data> {
    pub index: usize,
    pub name: &'data str,
    /// Empty for NOBITS (`.bss`); see `size`.
    pub data: &'data [u8],
    pub size: u64,
    pub sh_type: u32,
    pub flags: u64,
}

impl Section<'_> {
    pub fn is_exec(&self) -> bool {
        self.sh_type == elf::SHT_PROGBITS && self.flags & u64::from(elf::SHF_EXECINSTR) != 0
    }
}

/// A symbol as the rest of the parser sees it.
pub(crate) struct Symbol<'data> {
    pub name: &'data str,
    /// `None` for undefined (extern), absolute and common symbols.
    pub section: Option<usize>,
    pub value: u64,
    pub size: u64,
    pub st_type: u8,
    pub st_bind: u8,
    /// `STV_*` (the low bits of `st_other`).
    pub visibility: u8,
}

impl Symbol<'_> {
    pub fn is_func(&self) -> bool {
        self.st_type == elf::STT_FUNC
    }
    pub fn is_global(&self) -> bool {
        self.st_bind == elf::STB_GLOBAL || self.st_bind == elf::STB_WEAK
    }
    /// A global the linker keeps inside the object (`STV_HIDDEN`, `STV_INTERNAL`).
    pub fn is_hidden(&self) -> bool {
        self.visibility == elf::STV_HIDDEN || self.visibility == elf::STV_INTERNAL
    }
}

/// A relocation: instruction byte offset in its section and the symbol index.
#[derive(Clone, Copy)]
pub(crate) struct RawReloc {
    pub offset: u64,
    pub symbol: usize,
}

/// Everything read from the ELF file.
pub(crate) struct Elf<'data> {
    pub sections: Vec<Section<'data>>,
    pub symbols: Vec<Symbol<'data>>,
    /// Relocations by the index of the section they apply to.
    pub relocs: BTreeMap<usize, Vec<RawReloc>>,
    /// The byte order of the file (`bpfel` or `bpfeb`).
    pub order: ByteOrder,
}

impl<'data> Elf<'data> {
    pub fn read(data: &'data [u8]) -> Result<Self, ParseError> {
        // Class first: a 32-bit header parsed as ours only yields a
        // confusing "bad section header" error.
        if let [0x7f, b'E', b'L', b'F', class, ..] = *data
            && class != elf::ELFCLASS64
        {
            return Err(ParseError::UnsupportedFormat);
        }
        let file = ElfFile64::<Endianness>::parse(data)
            .map_err(|e| bad_relocation_section(data).unwrap_or(ParseError::Elf(e)))?;
        // Decided once: every reader below decodes with it.
        let order = if file.is_little_endian() {
            ByteOrder::Little
        } else {
            ByteOrder::Big
        };
        let endian = file.endian();
        let machine = file.elf_header().e_machine(endian);
        if machine != elf::EM_BPF {
            return Err(ParseError::NotBpf { machine });
        }
        let mut sections = Vec::new();
        let mut relocs: BTreeMap<usize, Vec<RawReloc>> = BTreeMap::new();
        for sec in file.sections() {
            let index = sec.index().0;
            let name = sec
                .name()
                .map_err(|e| ParseError::section(format!("#{index}"), e.to_string()))?;
            let hdr = sec.elf_section_header();
            let sh_type = hdr.sh_type(endian);
            let data = if sh_type == elf::SHT_NOBITS {
                &[][..]
            } else {
                sec.data()
                    .map_err(|e| ParseError::section(name, format!("unreadable data: {e}")))?
            };
            // Code, and `.maps` whose relocations are `.values` initializers.
            if sh_type == elf::SHT_PROGBITS
                && (hdr.sh_flags(endian) & u64::from(elf::SHF_EXECINSTR) != 0 || name == ".maps")
            {
                let mut list = Vec::new();
                for (offset, r) in sec.relocations() {
                    match r.target() {
                        object::RelocationTarget::Symbol(s) => list.push(RawReloc {
                            offset,
                            symbol: s.0,
                        }),
                        _ => {
                            return Err(ParseError::section(
                                name,
                                format!("relocation at offset {offset} has no symbol"),
                            ));
                        }
                    }
                }
                if !list.is_empty() {
                    relocs.insert(index, list);
                }
            }
            sections.push(Section {
                index,
                name,
                data,
                size: sec.size(),
                sh_type,
                flags: hdr.sh_flags(endian),
            });
        }
        let mut symbols = Vec::new();
        // Symbol index 0 is the null symbol; keep indices aligned with the table.
        symbols.push(Symbol {
            name: "",
            section: None,
            value: 0,
            size: 0,
            st_type: 0,
            st_bind: 0,
            visibility: 0,
        });
        for sym in file.symbols() {
            let raw = sym.elf_symbol();
            while symbols.len() < sym.index().0 {
                symbols.push(Symbol {
                    name: "",
                    section: None,
                    value: 0,
                    size: 0,
                    st_type: 0,
                    st_bind: 0,
                    visibility: 0,
                });
            }
            let name = match sym.name() {
                Ok(n) => n,
                Err(e) => {
                    return Err(ParseError::symbol(
                        format!("#{}", sym.index().0),
                        format!("unreadable name: {e}"),
                    ));
                }
            };
            symbols.push(Symbol {
                name,
                section: sym.section_index().map(|s| s.0),
                value: sym.address(),
                size: sym.size(),
                st_type: raw.st_type(),
                st_bind: raw.st_bind(),
                visibility: raw.st_other & 0x3,
            });
        }
        Ok(Self {
            sections,
            symbols,
            relocs,
            order,
        })
    }

    pub fn section(&self, index: usize) -> Option<&Section<'data>> {
        self.sections.iter().find(|s| s.index == index)
    }

    pub fn section_by_name(&self, name: &str) -> Option<&Section<'data>> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// Symbols defined in section `index`.
    pub fn symbols_in(&self, index: usize) -> impl Iterator<Item = &Symbol<'data>> {
        self.symbols
            .iter()
            .filter(move |s| s.section == Some(index))
    }
}

impl ElfLayout for Elf<'_> {
    fn section_size(&self, name: &str) -> Option<u32> {
        self.section_by_name(name).map(|s| s.size as u32)
    }
    fn symbol_offset(&self, section: &str, var: &str) -> Option<u32> {
        let sec = self.section_by_name(section)?;
        self.symbols_in(sec.index)
            .find(|s| s.name == var && s.st_type != elf::STT_SECTION)
            .map(|s| s.value as u32)
    }
}

/// `object` refuses a file whose relocation section patches a section that
/// does not exist, without saying which: find it and name it.
fn bad_relocation_section(data: &[u8]) -> Option<ParseError> {
    let header = elf::FileHeader64::<Endianness>::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, data).ok()?;
    for sec in sections.iter() {
        let sh_type = sec.sh_type(endian);
        let target = sec.sh_info(endian) as usize;
        if (sh_type == elf::SHT_REL || sh_type == elf::SHT_RELA) && target >= sections.len() {
            let name = sections.section_name(endian, sec).unwrap_or(b"?");
            return Some(ParseError::section(
                String::from_utf8_lossy(name),
                format!(
                    "relocates section {target}, but the file has {} sections",
                    sections.len()
                ),
            ));
        }
    }
    None
}

/// Reads `.BTF` and fixes it up against the ELF tables, patching the few
/// types that change (DATASECs, hidden FUNCs) where they lie.
fn read_btf(elf: &Elf<'_>) -> Result<Option<Btf>, ParseError> {
    let Some(sec) = elf.section_by_name(".BTF") else {
        return Ok(None);
    };
    let mut btf = Btf::from_bytes(sec.data.to_vec())?;
    if !btf.is_plain_layout() {
        // A longer header, gaps or another section order: written plainly.
        btf = Btf::from_bytes(write::encode(&btf.to_types()?, btf.strings()))?;
    }
    fixup_datasecs(&mut btf, elf)?;
    mark_hidden_funcs_static(&mut btf, elf)?;
    Ok(Some(btf))
}

/// A global function with hidden visibility (the Rust SDK's `memset`,
/// `memcpy`, a C `__hidden` helper) cannot be called from outside the object,
/// so its BTF FUNC becomes static, as libbpf does. The verifier then checks it
/// in its caller's context instead of as a global function with unknown
/// arguments, which it rejects when it returns a pointer ("Global function
/// memset() doesn't return scalar").
fn mark_hidden_funcs_static(btf: &mut Btf, elf: &Elf<'_>) -> Result<(), ParseError> {
    use crate::btf::{FUNC_GLOBAL, FUNC_STATIC, Kind, Type};
    for s in elf
        .symbols
        .iter()
        .filter(|s| s.is_func() && s.is_global() && s.is_hidden() && s.section.is_some())
    {
        for id in btf.ids_by_name(s.name) {
            if btf.kind_of(id)? != Kind::Func {
                continue;
            }
            if let Type::Func {
                name_off,
                proto,
                linkage: FUNC_GLOBAL,
            } = btf.type_by_id(id)?
            {
                let t = Type::Func {
                    name_off,
                    proto,
                    linkage: FUNC_STATIC,
                };
                btf.replace_type(id, &t)?;
            }
        }
    }
    Ok(())
}

/// The `.kconfig` and `.ksyms` DATASECs made loadable, with the `.kconfig`
/// map's value typed by its DATASEC as libbpf does.
fn fixup_extern_datasecs(maps: &mut crate::maps::Collected, btf: Btf) -> Result<Btf, ParseError> {
    use crate::{ExternKind, MapType};
    let kconfig_size = maps.kconfig_map.map_or(0, |i| maps.specs[i].value_size);
    let externs = &maps.externs;
    let offset = |name: &str| {
        externs.iter().find_map(|e| match e.kind {
            ExternKind::Kconfig { offset, .. } if e.name == name => Some(offset),
            _ => None,
        })
    };
    let btf = crate::btf::fixup::fixup_extern_datasecs(btf, offset, kconfig_size)?;
    if let Some(i) = maps.kconfig_map {
        let map = &mut maps.specs[i];
        debug_assert_eq!(map.map_type, MapType::ARRAY);
        map.btf_value_type_id = btf.id_by_name(".kconfig", crate::btf::Kind::DataSec);
    }
    Ok(btf)
}

impl ObjectSpec {
    /// Parses an eBPF ELF object (clang `-target bpf` or bpf-linker output).
    ///
    /// Never panics on malformed input: every offset read from the file is
    /// bounds-checked and reported with the section, symbol, instruction or
    /// BTF type it came from.
    ///
    /// ```
    /// use kiln_obj::{ObjectSpec, ParseError};
    ///
    /// // Not an ELF file: the error says so, and parsing never panics.
    /// let err = ObjectSpec::parse(b"definitely not ELF").unwrap_err();
    /// assert!(matches!(err, ParseError::Elf(_)), "{err}");
    /// assert!(err.to_string().starts_with("not a readable ELF file"));
    /// ```
    pub fn parse(data: &[u8]) -> Result<ObjectSpec, ParseError> {
        // The ELF reader needs its headers 8-byte aligned, and `include_bytes!`
        // gives no such promise: copy misaligned input rather than reporting
        // a sound object as an unreadable one.
        if data.as_ptr().align_offset(8) != 0 {
            let mut buf = vec![0u8; data.len() + 7];
            let start = buf.as_ptr().align_offset(8);
            if let Some(aligned) = buf.get_mut(start..start + data.len()) {
                aligned.copy_from_slice(data);
                return Self::parse_aligned(aligned);
            }
        }
        Self::parse_aligned(data)
    }

    fn parse_aligned(data: &[u8]) -> Result<ObjectSpec, ParseError> {
        let elf = Elf::read(data)?;
        let license = match elf.section_by_name("license") {
            Some(s) => {
                let end = s.data.iter().position(|&b| b == 0).unwrap_or(s.data.len());
                std::str::from_utf8(&s.data[..end])
                    .map_err(|_| ParseError::section("license", "not UTF-8"))?
                    .to_owned()
            }
            None => String::new(),
        };
        let kernel_version = match elf.section_by_name("version") {
            Some(s) => Some(
                s.data
                    .get(..4)
                    .map(|b| elf.order.u32([b[0], b[1], b[2], b[3]]))
                    .ok_or_else(|| ParseError::section("version", "shorter than 4 bytes"))?,
            ),
            None => None,
        };
        let btf = read_btf(&elf)?;
        let mut maps = crate::maps::collect(&elf, btf.as_ref())?;
        let btf = match btf {
            Some(btf) => Some(fixup_extern_datasecs(&mut maps, btf)?),
            None => None,
        };
        let ext = match (elf.section_by_name(".BTF.ext"), &btf) {
            (Some(sec), Some(btf)) => Some(crate::btf::ext::BtfExt::parse(sec.data, btf)?),
            _ => None,
        };
        let programs = crate::link::link_programs(&elf, &maps, ext.as_ref())?;
        Ok(ObjectSpec {
            byte_order: elf.order,
            license,
            kernel_version,
            programs,
            maps: maps.specs,
            btf: btf.map(Btf::into_bytes),
            externs: maps.externs,
            map_slots: maps.slots,
        })
    }
}
