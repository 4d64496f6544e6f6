//! CO-RE against a hand-built target BTF that differs from the object's
//! local types: fields moved, a bitfield moved and grew, an enum value
//! changed, a type and a flavor's field are missing, a forward declaration
//! shares the struct's name. Exact instruction values are checked after
//! relocation.

use kiln_obj::ObjectSpec;
use kiln_obj::btf::core::POISON_IMM;
use kiln_obj::btf::strings::StringTable;
use kiln_obj::btf::{Btf, EnumValue, INT_CHAR, INT_SIGNED, Kind, Member, Type, write};
use kiln_testkit::TestResult;

macro_rules! check_eq {
    ($a:expr, $b:expr) => {{
        let (a, b) = (&$a, &$b);
        if a != b {
            return Err(format!(
                "{} = {:?}, expected {:?} (line {})",
                stringify!($a),
                a,
                b,
                line!()
            )
            .into());
        }
    }};
}

fn target_btf() -> Btf {
    let mut s = StringTable::new(vec![0]);
    let int = |name_off, size, encoding| Type::Int {
        name_off,
        size,
        encoding,
        bit_offset: 0,
        bits: (size * 8) as u8,
    };
    let m = |s: &mut StringTable, name: &str, type_id, offset| Member {
        name_off: s.add(name),
        type_id,
        offset,
    };
    let types = vec![
        Type::Void,
        int(s.add("int"), 4, INT_SIGNED),             // 1
        int(s.add("long"), 8, INT_SIGNED),            // 2
        int(s.add("char"), 1, INT_SIGNED | INT_CHAR), // 3
        int(s.add("unsigned int"), 4, 0),             // 4
        Type::Array {
            name_off: 0,
            elem: 3,
            index: 1,
            nelems: 16,
        }, // 5
        Type::Struct {
            // 6: the "kernel's" struct task, reordered and grown.
            name_off: s.add("task"),
            size: 64,
            kind_flag: true,
            members: vec![
                m(&mut s, "flags", 2, 0),
                m(&mut s, "pid", 1, 64),
                m(&mut s, "tgid", 1, 128),
                m(&mut s, "comm", 5, 192),
                m(&mut s, "bits", 4, (3 << 24) | 320),
                m(&mut s, "more", 4, (7 << 24) | 330),
            ],
        },
        Type::Enum {
            // 7
            name_off: s.add("state"),
            size: 4,
            signed: false,
            values: vec![
                EnumValue {
                    name_off: s.add("RUNNING"),
                    value: 0,
                },
                EnumValue {
                    name_off: s.add("SLEEPING"),
                    value: 2,
                },
            ],
        },
        // 8: a forward declaration of the same name, as some kernels' BTF
        // (5.10's) keeps beside the full struct: never a candidate for a
        // struct's relocations.
        Type::Fwd {
            name_off: s.add("task"),
            union: false,
        },
    ];
    Btf::from_bytes(write::encode(&types, s.as_bytes())).expect("valid target BTF")
}

fn relocates_against_changed_target() -> TestResult {
    let path = kiln_testkit::bpf_object("core.bpf.o")?;
    let mut obj = ObjectSpec::parse(&std::fs::read(&path)?)?;
    check_eq!(obj.programs[0].core_relocations.len(), 18);
    let report = obj.relocate_core(&target_btf())?;
    check_eq!(report.applied, 17);
    check_eq!(
        report.poisoned.iter().map(|p| p.1).collect::<Vec<_>>(),
        vec![54usize]
    );
    let p = obj.program("core_prog").ok_or("no core_prog")?;
    check_eq!(p.core_relocations.len(), 0);
    let i = &p.insns;
    check_eq!(i[0].off, 16); // t->tgid moved from 4 to 16
    check_eq!(i[3].off, 26); // t->comm[2]: 24 + 2
    check_eq!(i[7].imm, 8); // field size of flags
    check_eq!(i[9].imm, 1); // comm exists
    // Bitfield `more`: bit 330, 7 bits, unsigned int → 4-byte load at 40.
    check_eq!(i[10].imm, 40);
    check_eq!(i[13].imm, 4);
    check_eq!(i[29].imm, 64 - (330 + 7 - 320));
    check_eq!(i[30].imm, 0);
    check_eq!((i[32].imm, i[34].imm), (57, 57));
    check_eq!(i[36].imm, 0); // struct gone does not exist
    check_eq!(i[38].imm, 64); // sizeof(struct task) in the target
    check_eq!((i[40].imm, i[41].imm), (2, 0)); // SLEEPING is 2 in the target
    check_eq!(i[43].imm, 1);
    check_eq!(i[46].imm, 0); // task___old's old_field is not in struct task
    check_eq!(i[48].imm, 6); // target type id of struct task
    check_eq!(i[51].imm, 0); // struct gone does not match anything
    check_eq!((i[54].code, i[54].imm), (0x85, POISON_IMM)); // g->x poisoned
    Ok(())
}

fn vmlinux_parses_fast() -> TestResult {
    let data = std::fs::read("/sys/kernel/btf/vmlinux")?;
    let start = std::time::Instant::now();
    let btf = Btf::from_bytes(data)?;
    let parsed = start.elapsed();
    let ids = btf.ids_by_essential_name("task_struct");
    let indexed = start.elapsed();
    if ids.is_empty() {
        return Err("no task_struct in vmlinux BTF".into());
    }
    let (_, t) = btf.skip_modifiers(ids[0])?;
    if t.members().is_none_or(|(m, _)| m.is_empty()) {
        return Err("task_struct has no members".into());
    }
    eprintln!(
        "vmlinux: {} types, parse {parsed:?}, parse + name index {indexed:?}",
        btf.len()
    );
    Ok(())
}

/// The name index answers exactly what a linear scan over every type
/// answers, for a sample of kernel names of every kind (FUNCs included).
fn vmlinux_name_index_matches_scan() -> TestResult {
    let btf = Btf::from_bytes(std::fs::read("/sys/kernel/btf/vmlinux")?)?;
    let mut by_name: std::collections::HashMap<String, Vec<u32>> = Default::default();
    for id in 1..btf.len() {
        let name = btf.name_of(id)?;
        if !name.is_empty() {
            by_name.entry(name.to_owned()).or_default().push(id);
        }
    }
    let mut checked = 0;
    for (i, (name, ids)) in by_name.iter().enumerate() {
        if i % 53 != 0
            && !ids
                .iter()
                .any(|&id| btf.kind_of(id).is_ok_and(|k| k != Kind::Func))
        {
            continue;
        }
        check_eq!(btf.ids_by_name(name), *ids);
        for &id in ids {
            let kind = btf.kind_of(id)?;
            let first = ids.iter().copied().find(|&i| btf.kind_of(i) == Ok(kind));
            check_eq!(btf.find_by_name(kind, name), first);
        }
        checked += 1;
    }
    if checked < 1000 {
        return Err(format!("only {checked} names checked").into());
    }
    check_eq!(btf.find_by_name(Kind::Struct, "no_such_struct_kiln"), None);
    Ok(())
}

fn has_vmlinux() -> Option<String> {
    (!std::path::Path::new("/sys/kernel/btf/vmlinux").exists())
        .then(|| "kernel has no /sys/kernel/btf/vmlinux".into())
}

fn main() {
    kiln_testkit::run(vec![
        kiln_testkit::test(
            "relocates_against_changed_target",
            &[],
            relocates_against_changed_target,
        ),
        kiln_testkit::test(
            "vmlinux_parses_fast",
            &[kiln_testkit::Need::Probe("vmlinux BTF", has_vmlinux)],
            vmlinux_parses_fast,
        ),
        kiln_testkit::test(
            "vmlinux_name_index_matches_scan",
            &[kiln_testkit::Need::Probe("vmlinux BTF", has_vmlinux)],
            vmlinux_name_index_matches_scan,
        ),
    ]);
}
