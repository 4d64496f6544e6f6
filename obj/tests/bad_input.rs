//! Malformed input, case by case: each one is built here from a valid
//! fixture by patching bytes (or from hand-made BTF), must be refused with
//! an error (never a panic, never success), and the error must name what
//! was wrong and where (section, symbol, type id). Inputs found by the fuzz
//! targets (fuzz/) are kept below as hex, each with the bug it exposed.

use kiln_obj::btf::strings::StringTable;
use kiln_obj::btf::{Btf, Member, Type, write};
use kiln_obj::{ByteOrder, ObjectSpec};
use kiln_testkit::TestResult;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn fixture(name: &str) -> Result<Vec<u8>, Error> {
    Ok(std::fs::read(kiln_testkit::bpf_object(name)?)?)
}

fn u16_at(b: &[u8], off: usize) -> usize {
    u16::from_le_bytes([b[off], b[off + 1]]) as usize
}
fn u32_at(b: &[u8], off: usize) -> usize {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]]) as usize
}
fn u64_at(b: &[u8], off: usize) -> usize {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap_or_default()) as usize
}

/// A section of a little-endian ELF64 file: where its header and data are.
struct Shdr {
    header: usize,
    offset: usize,
    size: usize,
}

/// Finds section `name` by reading the section header table directly (the
/// patches below must not depend on the parser under test).
fn section(elf: &[u8], name: &str) -> Result<Shdr, Error> {
    let (shoff, shentsize, shnum, shstrndx) = (
        u64_at(elf, 0x28),
        u16_at(elf, 0x3a),
        u16_at(elf, 0x3c),
        u16_at(elf, 0x3e),
    );
    let hdr = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(elf, hdr(shstrndx) + 0x18);
    for i in 0..shnum {
        let h = hdr(i);
        let name_off = strtab + u32_at(elf, h);
        let end = elf[name_off..].iter().position(|&b| b == 0).unwrap_or(0);
        if &elf[name_off..name_off + end] == name.as_bytes() {
            return Ok(Shdr {
                header: h,
                offset: u64_at(elf, h + 0x18),
                size: u64_at(elf, h + 0x20),
            });
        }
    }
    Err(format!("fixture has no section {name}").into())
}

/// Index in `.symtab` of the symbol named `name`.
fn symbol_index(elf: &[u8], name: &str) -> Result<usize, Error> {
    let symtab = section(elf, ".symtab")?;
    let strtab = section(elf, ".strtab")?;
    for i in 0..symtab.size / 24 {
        let s = symtab.offset + i * 24;
        let n = strtab.offset + u32_at(elf, s);
        let end = elf[n..].iter().position(|&b| b == 0).unwrap_or(0);
        if &elf[n..n + end] == name.as_bytes() {
            return Ok(i);
        }
    }
    Err(format!("fixture has no symbol {name}").into())
}

/// `ObjectSpec::parse` must fail with an error containing every `needle`.
fn refused(bytes: &[u8], needles: &[&str]) -> TestResult {
    match ObjectSpec::parse(bytes) {
        Ok(_) => Err(format!("accepted; expected an error with {needles:?}").into()),
        Err(e) => {
            // The whole chain, as a CLI prints it: causes are sources.
            let msg = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": ");
            eprintln!("refused as expected: {msg}");
            for n in needles {
                if !msg.contains(n) {
                    return Err(format!("error '{msg}' does not mention '{n}'").into());
                }
            }
            Ok(())
        }
    }
}

/// `Btf::parse` must fail (or, with `walk`, a walk of every type must hit an
/// error) containing every `needle`.
fn btf_refused(bytes: &[u8], needles: &[&str]) -> TestResult {
    let msg = match Btf::parse(bytes) {
        Err(e) => e.to_string(),
        Ok(btf) => {
            let mut first = None;
            for id in 1..btf.len() {
                if let Err(e) = btf
                    .type_by_id(id)
                    .and_then(|_| btf.name_of(id).map(|_| ()))
                    .and_then(|_| btf.resolve_size(id).map(|_| ()))
                {
                    first = Some(e.to_string());
                    break;
                }
            }
            first.ok_or_else(|| format!("accepted; expected an error with {needles:?}"))?
        }
    };
    eprintln!("refused as expected: {msg}");
    for n in needles {
        if !msg.contains(n) {
            return Err(format!("error '{msg}' does not mention '{n}'").into());
        }
    }
    Ok(())
}

// ---- ELF ----

fn truncated_elf() -> TestResult {
    let good = fixture("globals.bpf.o")?;
    refused(&good[..40], &["not a readable ELF file"])?;
    // Cut inside the section header table.
    refused(&good[..good.len() - 100], &["not a readable ELF file"])?;
    // Every cut must be refused or parse; none may panic.
    for cut in (0..good.len()).step_by(97) {
        let _ = ObjectSpec::parse(&good[..cut]);
    }
    Ok(())
}

fn wrong_machine() -> TestResult {
    let mut elf = fixture("globals.bpf.o")?;
    elf[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    refused(&elf, &["ELF machine 62", "EM_BPF"])
}

fn wrong_byte_order_or_class() -> TestResult {
    let mut elf = fixture("globals.bpf.o")?;
    elf[5] = 2; // ELFDATA2MSB: every header field now reads byte-swapped
    refused(&elf, &["not a readable ELF file"])?;
    let mut elf32 = fixture("globals.bpf.o")?;
    elf32[4] = 1; // ELFCLASS32
    refused(&elf32, &["32-bit"])
}

/// The malformed-input cases that patch bytes, on big-endian objects: the
/// bpfeb twins of the fixtures (`target/bpf/bpfeb/`), cut and flipped.
fn big_endian_malformed() -> TestResult {
    let big_endian_btf = |native: &[u8]| write::in_byte_order(native, ByteOrder::Big);
    let good = fixture("bpfeb/globals.bpf.o")?;
    if good[5] != 2 {
        return Err("bpfeb/globals.bpf.o is not big-endian".into());
    }
    refused(&good[..40], &["not a readable ELF file"])?;
    refused(&good[..good.len() - 100], &["not a readable ELF file"])?;
    let mut wrong = good.clone();
    wrong[5] = 1; // read as little-endian
    refused(&wrong, &["not a readable ELF file"])?;
    let mut machine = good.clone();
    machine[18..20].copy_from_slice(&62u16.to_be_bytes());
    refused(&machine, &["ELF machine 62", "EM_BPF"])?;
    // Every cut and every flipped byte of the headers and BTF must be
    // refused or parse; none may panic.
    for name in [
        "bpfeb/globals.bpf.o",
        "bpfeb/core.bpf.o",
        "bpfeb/subprogs.bpf.o",
    ] {
        let good = fixture(name)?;
        for cut in (0..good.len()).step_by(97) {
            let _ = ObjectSpec::parse(&good[..cut]);
        }
        for at in (0..good.len()).step_by(13) {
            let mut bad = good.clone();
            bad[at] ^= 0xa5;
            let _ = ObjectSpec::parse(&bad);
        }
    }
    // Big-endian BTF with a type-section length that is not whole words.
    let mut be = big_endian_btf(&write::encode(&[Type::Void, int(1)], b"\0int\0"));
    be[12..16].copy_from_slice(&13u32.to_be_bytes());
    btf_refused(&be, &["multiple of 4"])?;
    let mut kind = big_endian_btf(&write::encode(&[Type::Void, int(1), int(1)], b"\0int\0"));
    // Type 2's info word, big-endian: its kind is the first byte.
    kind[24 + 16 + 4] = 31;
    btf_refused(&kind, &["type id 2", "unknown kind 31"])
}

fn relocation_symbol_out_of_range() -> TestResult {
    let mut elf = fixture("globals.bpf.o")?;
    let rel = section(&elf, ".relsocket")?;
    // r_info of the first relocation: symbol index in the high 32 bits.
    let info = rel.offset + 8;
    elf[info + 4..info + 8].copy_from_slice(&9999u32.to_le_bytes());
    refused(&elf, &["socket", "9999"])
}

fn relocation_section_out_of_range() -> TestResult {
    let mut elf = fixture("globals.bpf.o")?;
    // The symbol the first relocation of `socket` uses now lives in section
    // 0x7000, which does not exist.
    let sym = symbol_index(&elf, "threshold")?;
    let symtab = section(&elf, ".symtab")?;
    let shndx = symtab.offset + sym * 24 + 6;
    elf[shndx..shndx + 2].copy_from_slice(&0x7000u16.to_le_bytes());
    refused(&elf, &["threshold"])
}

fn relocation_section_target_out_of_range() -> TestResult {
    let mut elf = fixture("globals.bpf.o")?;
    // sh_info of .relsocket names the section it patches: 0x7000 does not exist.
    let rel = section(&elf, ".relsocket")?;
    elf[rel.header + 0x2c..rel.header + 0x30].copy_from_slice(&0x7000u32.to_le_bytes());
    refused(&elf, &[".relsocket", "28672"])
}

fn relocation_offset_out_of_range() -> TestResult {
    let mut elf = fixture("globals.bpf.o")?;
    let rel = section(&elf, ".relsocket")?;
    elf[rel.offset..rel.offset + 8].copy_from_slice(&0x10_0000u64.to_le_bytes());
    refused(&elf, &["socket"])
}

fn section_data_past_end() -> TestResult {
    let mut elf = fixture("globals.bpf.o")?;
    let s = section(&elf, ".data")?;
    elf[s.header + 0x18..s.header + 0x20].copy_from_slice(&0xffff_0000u64.to_le_bytes());
    refused(&elf, &[".data"])
}

fn unknown_btf_kind_in_object() -> TestResult {
    let mut elf = fixture("globals.bpf.o")?;
    let btf = section(&elf, ".BTF")?;
    // First type's info word: kind 25 does not exist.
    let hdr_len = u32_at(&elf, btf.offset + 4);
    let type_off = u32_at(&elf, btf.offset + 8);
    let info = btf.offset + hdr_len + type_off + 4;
    elf[info + 3] = 25;
    refused(&elf, &[".BTF", "type id 1", "unknown kind 25"])
}

fn bad_btf_ext_in_object() -> TestResult {
    let mut elf = fixture("globals.bpf.o")?;
    let ext = section(&elf, ".BTF.ext")?;
    // func_info block: length far past the section's end.
    elf[ext.offset + 12..ext.offset + 16].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
    refused(&elf, &[".BTF.ext", "func_info"])
}

// ---- BTF ----

fn int(name_off: u32) -> Type {
    Type::Int {
        name_off,
        size: 4,
        encoding: 0,
        bit_offset: 0,
        bits: 32,
    }
}

fn btf_type_cycle() -> TestResult {
    let mut s = StringTable::new(vec![0]);
    let types = vec![
        Type::Void,
        Type::Typedef {
            name_off: s.add("a"),
            target: 2,
        },
        Type::Const {
            name_off: 0,
            target: 1,
        },
        Type::Array {
            name_off: 0,
            elem: 3,
            index: 0,
            nelems: 2,
        },
    ];
    let bytes = write::encode(&types, s.as_bytes());
    let btf = Btf::parse(&bytes)?;
    for id in [1, 2, 3] {
        let e = btf
            .resolve_size(id)
            .err()
            .ok_or(format!("type {id}: a cycle resolved to a size"))?;
        if !e.to_string().contains("cycle") || !e.to_string().contains("type id") {
            return Err(format!("type {id}: {e}").into());
        }
    }
    let e = btf
        .skip_modifiers(1)
        .err()
        .ok_or("modifier cycle skipped")?;
    if !e.to_string().contains("cycle") {
        return Err(format!("skip_modifiers: {e}").into());
    }
    Ok(())
}

fn btf_huge_vlen() -> TestResult {
    let mut s = StringTable::new(vec![0]);
    let types = vec![
        Type::Void,
        Type::Struct {
            name_off: s.add("s"),
            size: 4,
            kind_flag: false,
            members: vec![Member {
                name_off: 0,
                type_id: 0,
                offset: 0,
            }],
        },
    ];
    let mut bytes = write::encode(&types, s.as_bytes());
    // vlen (low 16 bits of info) 1 → 65535: 786 KB of members that are not there.
    bytes[24 + 4..24 + 6].copy_from_slice(&0xffffu16.to_le_bytes());
    btf_refused(&bytes, &["type id 1", "truncated"])
}

fn btf_bad_string_offsets() -> TestResult {
    let types = vec![Type::Void, int(0x7fff_0000)];
    btf_refused(
        &write::encode(&types, b"\0int\0"),
        &["string offset 2147418112"],
    )?;
    // Name not NUL-terminated at the end of the section.
    let types = vec![Type::Void, int(1)];
    btf_refused(&write::encode(&types, b"\0int"), &["string offset 1"])?;
    // The header's string section runs past the blob.
    let mut bytes = write::encode(&[Type::Void, int(1)], b"\0int\0");
    bytes[20..24].copy_from_slice(&0x1000u32.to_le_bytes());
    btf_refused(&bytes, &["header", "string section"])
}

fn btf_unknown_kind() -> TestResult {
    let mut bytes = write::encode(&[Type::Void, int(1), int(1)], b"\0int\0");
    // Type 2's info word (after type 1's 16 bytes): kind 31.
    bytes[24 + 16 + 7] = 31;
    btf_refused(&bytes, &["type id 2", "unknown kind 31"])
}

fn btf_bad_header() -> TestResult {
    let good = write::encode(&[Type::Void, int(1)], b"\0int\0");
    btf_refused(&good[..10], &["header"])?;
    let mut magic = good.clone();
    magic[0] = 0;
    btf_refused(&magic, &["bad magic"])?;
    // Big-endian magic on little-endian words: read as big-endian, the
    // header length is absurd.
    let mut be = good.clone();
    be[0..2].copy_from_slice(&0xeb9fu16.to_be_bytes());
    btf_refused(&be, &["bad header length"])?;
    let mut types_len = good.clone();
    types_len[12..16].copy_from_slice(&13u32.to_le_bytes());
    btf_refused(&types_len, &["multiple of 4"])
}

// ---- Found by fuzzing (fuzz/) ----

/// Builds a fuzzer input from its length and its non-zero runs (offset,
/// hex): the artifacts, minimized, are mostly zeros.
fn sparse(len: usize, runs: &[(usize, &str)]) -> Vec<u8> {
    let mut out = vec![0u8; len];
    for &(off, hex) in runs {
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let byte = std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .unwrap_or(0);
            if let Some(b) = out.get_mut(off + i) {
                *b = byte;
            }
        }
    }
    out
}

/// fuzz/core_relocate (found in 100 s, minimized by zeroing bytes): a
/// `.kconfig` extern whose BTF type claims 4 GiB made the parser allocate a
/// 4 GiB `.kconfig` map value (libFuzzer: out-of-memory, malloc(4294966281)
/// before minimizing). Sizes are now bounded before any allocation or
/// arithmetic.
fn fuzz_kconfig_extern_4gib() -> TestResult {
    let input = sparse(
        6008,
        &[
            (0x0000, "7f454c46020101"),
            (0x0012, "f7"),
            (0x0028, "f810"),
            (0x003a, "40001a0001"),
            (0x0460, "9feb010018"),
            (0x046c, "c0010000c00100000001"),
            (0x047f, "02"),
            (0x0488, "0100000d"),
            (0x049f, "01000000ff"),
            (0x04af, "0c"),
            (0x04b8, "0100000d"),
            (0x04cf, "0c"),
            (0x04db, "01"),
            (0x04eb, "0e"),
            (0x04fb, "01"),
            (0x050b, "0e"),
            (0x051b, "0e0300000002"),
            (0x052b, "0f"),
            (0x0537, "01"),
            (0x0547, "0e"),
            (0x0557, "0a"),
            (0x0563, "0e"),
            (0x0573, "01"),
            (0x0583, "03"),
            (0x059b, "01"),
            (0x05ab, "0e"),
            (0x05b8, "0100000f"),
            (0x05cc, "eb0000000300000f"),
            (0x05f0, "0b"),
            (0x0600, "0200000f"),
            (0x0624, "0100000f"),
            (0x0723, "2e6b636f6e666967"),
            (0x10eb, "2e425446"),
            (0x1150, "ac0f"),
            (0x1158, "4c01"),
            (0x14b8, "3f01"),
            (0x14d0, "6004"),
            (0x14d8, "db02"),
        ],
    );
    // An array of 4278190080 bytes that is not a `char[N]`: refused by its type
    // (libbpf's `find_kcfg_type`) before its size is looked at.
    refused(&input, &["unsupported .kconfig extern type"])
}

/// fuzz/parse_object (100 s): the same allocation through a 2 GiB extern
/// (malloc(2181038089) before minimizing).
fn fuzz_kconfig_extern_2gib() -> TestResult {
    let input = sparse(
        6085,
        &[
            (0x0000, "7f454c46020101"),
            (0x0012, "f7"),
            (0x0028, "f810"),
            (0x003a, "40001a0001"),
            (0x0460, "9feb010018"),
            (0x046c, "c0010000c00100000001"),
            (0x047f, "02"),
            (0x0488, "0100000d"),
            (0x049f, "0100000082"),
            (0x04af, "0c"),
            (0x04b8, "0100000d"),
            (0x04cf, "0c"),
            (0x04db, "01"),
            (0x04eb, "0e"),
            (0x04fb, "01"),
            (0x050b, "0e"),
            (0x051b, "0e0300000002"),
            (0x052b, "08"),
            (0x0537, "01"),
            (0x0547, "0e"),
            (0x0557, "0a"),
            (0x0563, "0e"),
            (0x0573, "01"),
            (0x0583, "03"),
            (0x059b, "01"),
            (0x05ab, "0e"),
            (0x05b8, "0100000f"),
            (0x05cc, "eb0000000300000f"),
            (0x05f0, "0b"),
            (0x0600, "0200000f"),
            (0x0624, "0100000f"),
            (0x0723, "2e6b636f6e666967"),
            (0x10eb, "2e425446"),
            (0x1150, "ac0f"),
            (0x1158, "4c01"),
            (0x14b8, "3f01"),
            (0x14d0, "6004"),
            (0x14d8, "db02"),
        ],
    );
    // An array of 2181038080 bytes that is not a `char[N]`: refused by its type
    // (libbpf's `find_kcfg_type`) before its size is looked at.
    refused(&input, &["unsupported .kconfig extern type"])
}

/// A `.bss` whose header claims 4 GiB: NOBITS has no bytes in the file, so
/// only the size check stands between it and a 4 GiB allocation.
fn huge_bss() -> TestResult {
    let mut elf = fixture("globals.bpf.o")?;
    let bss = section(&elf, ".bss")?;
    elf[bss.header + 0x20..bss.header + 0x28].copy_from_slice(&0xffff_fff0u64.to_le_bytes());
    refused(&elf, &[".bss", "4294967280 bytes"])
}

fn main() {
    use kiln_testkit::test;
    kiln_testkit::run(vec![
        test("truncated_elf", &[], truncated_elf),
        test("wrong_machine", &[], wrong_machine),
        test("wrong_byte_order_or_class", &[], wrong_byte_order_or_class),
        test("big_endian_malformed", &[], big_endian_malformed),
        test(
            "relocation_symbol_out_of_range",
            &[],
            relocation_symbol_out_of_range,
        ),
        test(
            "relocation_section_out_of_range",
            &[],
            relocation_section_out_of_range,
        ),
        test(
            "relocation_section_target_out_of_range",
            &[],
            relocation_section_target_out_of_range,
        ),
        test(
            "relocation_offset_out_of_range",
            &[],
            relocation_offset_out_of_range,
        ),
        test("section_data_past_end", &[], section_data_past_end),
        test(
            "unknown_btf_kind_in_object",
            &[],
            unknown_btf_kind_in_object,
        ),
        test("bad_btf_ext_in_object", &[], bad_btf_ext_in_object),
        test("btf_type_cycle", &[], btf_type_cycle),
        test("btf_huge_vlen", &[], btf_huge_vlen),
        test("btf_bad_string_offsets", &[], btf_bad_string_offsets),
        test("btf_unknown_kind", &[], btf_unknown_kind),
        test("btf_bad_header", &[], btf_bad_header),
        test("fuzz_kconfig_extern_4gib", &[], fuzz_kconfig_extern_4gib),
        test("fuzz_kconfig_extern_2gib", &[], fuzz_kconfig_extern_2gib),
        test("huge_bss", &[], huge_bss),
    ]);
}
