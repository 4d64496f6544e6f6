//! Objects of either byte order parse alike on any host: every C fixture
//! is built twice from the same source and flags (`cargo xtask build-ebpf`
//! puts the `--target=bpfeb` twin in `target/bpf/bpfeb/`), and the two specs
//! must describe the same programs, instructions, relocations, line info,
//! CO-RE records and maps. Only the bytes of global data keep their order,
//! and the code of sources that test the byte order themselves.

use kiln_obj::{ByteOrder, ObjectSpec};
use kiln_testkit::TestResult;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The C fixtures with a big-endian twin: (little-endian, big-endian) paths.
fn twins() -> Result<Vec<(std::path::PathBuf, std::path::PathBuf)>, Error> {
    let dir = kiln_testkit::bpf_dir();
    let be_dir = dir.join("bpfeb");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&be_dir).map_err(|e| {
        format!(
            "{}: {e}: run `cargo xtask build-ebpf` first",
            be_dir.display()
        )
    })? {
        let be = e?.path();
        let Some(name) = be
            .file_name()
            .filter(|n| n.to_string_lossy().ends_with(".bpf.o"))
        else {
            continue;
        };
        out.push((dir.join(name), be));
    }
    out.sort();
    if out.len() < 10 {
        return Err(format!(
            "only {} big-endian twins in {}",
            out.len(),
            be_dir.display()
        )
        .into());
    }
    Ok(out)
}

/// Twins whose source compiles to other code per byte order, with why: for
/// them only the structure (programs, sections, maps, externs) must match.
const CODE_DIFFERS: &[(&str, &str)] = &[
    ("attach_netkit.bpf.o", "bpf_ntohs"),
    (
        "attach_usdt.bpf.o",
        "usdt.bpf.h reads arguments per byte order",
    ),
    ("core.bpf.o", "clang's local bitfield shift"),
    (
        "dropin.bpf.o",
        "reads a char __kconfig value as a wider load",
    ),
    ("maps_redirect.bpf.o", "bpf_htons"),
    ("module_kfunc.bpf.o", "bpf_htonl and bpf_htons"),
    ("portfilter.bpf.o", "bpf_ntohs"),
    ("sockfilter.bpf.o", "bpf_ntohs"),
    ("tool_tcpconnect.bpf.o", "bpf_ntohs"),
    ("tool_xdp_portfilter.bpf.o", "bpf_ntohs"),
];

fn parse(path: &std::path::Path) -> Result<ObjectSpec, Error> {
    ObjectSpec::parse(&std::fs::read(path)?).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// Reverses every `size`-byte word of `data`: global data of the other byte
/// order, when every variable in it is `size` bytes wide.
fn swapped(data: &[u8], size: usize) -> Vec<u8> {
    data.chunks(size)
        .flat_map(|c| c.iter().rev().copied())
        .collect()
}

fn twins_parse_alike() -> TestResult {
    let mut failures = Vec::new();
    let mut compared = 0;
    for (le_path, be_path) in twins()? {
        let name = le_path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let (le, be) = (parse(&le_path)?, parse(&be_path)?);
        if le.byte_order != ByteOrder::Little || be.byte_order != ByteOrder::Big {
            failures.push(format!(
                "{name}: byte orders {:?} and {:?}",
                le.byte_order, be.byte_order
            ));
            continue;
        }
        let mut diff = |what: &str, a: String, b: String| {
            if a != b {
                failures.push(format!("{name}: {what} differ:\n  bpfel {a}\n  bpfeb {b}"));
            }
        };
        diff("licenses", le.license.clone(), be.license.clone());
        diff(
            "program names",
            format!(
                "{:?}",
                le.programs
                    .iter()
                    .map(|p| (&p.name, &p.section))
                    .collect::<Vec<_>>()
            ),
            format!(
                "{:?}",
                be.programs
                    .iter()
                    .map(|p| (&p.name, &p.section))
                    .collect::<Vec<_>>()
            ),
        );
        let code_differs = CODE_DIFFERS.iter().any(|(n, _)| *n == name);
        for (lp, bp) in le.programs.iter().zip(&be.programs) {
            if code_differs {
                continue;
            }
            let p = &lp.name;
            diff(
                &format!("{p}: instructions"),
                format!("{:?}", lp.insns),
                format!("{:?}", bp.insns),
            );
            diff(
                &format!("{p}: relocations"),
                format!("{:?}", lp.relocations),
                format!("{:?}", bp.relocations),
            );
            diff(
                &format!("{p}: func_info"),
                format!("{:?}", lp.func_info),
                format!("{:?}", bp.func_info),
            );
            diff(
                &format!("{p}: line_info"),
                format!("{:?}", lp.line_info),
                format!("{:?}", bp.line_info),
            );
            diff(
                &format!("{p}: CO-RE relocations"),
                format!("{:?}", lp.core_relocations),
                format!("{:?}", bp.core_relocations),
            );
            diff(
                &format!("{p}: extern relocations"),
                format!("{:?}", lp.extern_relocations),
                format!("{:?}", bp.extern_relocations),
            );
        }
        diff(
            "externs",
            format!("{:?}", le.externs),
            format!("{:?}", be.externs),
        );
        diff(
            "map slots",
            format!("{:?}", le.map_slots),
            format!("{:?}", be.map_slots),
        );
        let shape = |o: &ObjectSpec| {
            o.maps
                .iter()
                .map(|m| {
                    let mut m = m.clone();
                    m.initial_data = m.initial_data.map(|d| vec![0; d.len()]);
                    format!("{m:?}")
                })
                .collect::<Vec<_>>()
        };
        diff(
            "maps",
            format!("{:?}", shape(&le)),
            format!("{:?}", shape(&be)),
        );
        compared += 1;
    }
    if !failures.is_empty() {
        return Err(failures.join("\n").into());
    }
    eprintln!("{compared} big-endian objects parse as their little-endian twins");
    Ok(())
}

/// Global data keeps the object's byte order (it goes to the kernel as is):
/// globals.bpf.o's `.data` holds 64-bit values, so the twin's bytes are the
/// same words reversed.
fn global_data_keeps_its_order() -> TestResult {
    let dir = kiln_testkit::bpf_dir();
    let le = parse(&dir.join("globals.bpf.o"))?;
    let be = parse(&dir.join("bpfeb/globals.bpf.o"))?;
    let data = |o: &ObjectSpec| {
        o.maps
            .iter()
            .find(|m| m.name.ends_with(".data"))
            .and_then(|m| m.initial_data.clone())
            .ok_or("no .data map")
    };
    let (l, b) = (data(&le)?, data(&be)?);
    if l.is_empty() || l.len() % 8 != 0 {
        return Err(format!(".data of {} bytes, expected 64-bit values", l.len()).into());
    }
    if swapped(&l, 8) != b {
        return Err(format!(".data: bpfel {l:02x?}, bpfeb {b:02x?}").into());
    }
    Ok(())
}

/// The programs `cargo xtask build-ebpf --arch s390x` built (C and Rust SDK,
/// `bpfeb`) parse on this host, as big-endian objects with their programs.
fn s390x_objects_parse() -> TestResult {
    let dir = kiln_testkit::bpf_dir().join("s390x");
    let mut parsed = 0;
    for e in std::fs::read_dir(&dir)? {
        let path = e?.path();
        if !path.to_string_lossy().ends_with(".bpf.o") {
            continue;
        }
        let spec = parse(&path)?;
        if spec.byte_order != ByteOrder::Big {
            return Err(format!("{}: {}", path.display(), spec.byte_order).into());
        }
        parsed += 1;
    }
    let sdk = parse(&dir.join("sdk-programs.bpf.o"))?;
    if sdk.programs.len() < 10 {
        return Err(format!("sdk-programs: only {} programs", sdk.programs.len()).into());
    }
    eprintln!("{parsed} s390x objects parse as big-endian");
    Ok(())
}

/// Whether `cargo xtask build-ebpf --arch s390x` has run (it is not part of
/// the default build).
fn no_s390x_objects() -> Option<String> {
    let dir = kiln_testkit::bpf_dir().join("s390x");
    (!dir.join("sdk-programs.bpf.o").is_file()).then(|| {
        format!(
            "no s390x objects in {} (cargo xtask build-ebpf --arch s390x)",
            dir.display()
        )
    })
}

fn main() {
    use kiln_testkit::test;
    kiln_testkit::run(vec![
        test(
            "s390x_objects_parse",
            &[kiln_testkit::Need::Probe("s390x objects", no_s390x_objects)],
            s390x_objects_parse,
        ),
        test("twins_parse_alike", &[], twins_parse_alike),
        test(
            "global_data_keeps_its_order",
            &[],
            global_data_keeps_its_order,
        ),
    ]);
}
