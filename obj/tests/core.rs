//! CO-RE against a hand-built target BTF that differs from the object's
//! local types: fields moved, a bitfield moved and grew, an enum value
//! changed, a type and a flavor's field are missing, a forward declaration
//! shares the struct's name. Exact instruction values are checked after
//! relocation.

use kiln_obj::btf::core::POISON_IMM;
use kiln_obj::btf::write;
use kiln_obj::btf::{Btf, Kind};
use kiln_obj::{ByteOrder, ObjectSpec};
use kiln_testkit::TestResult;

#[path = "support/core_target.rs"]
mod core_target;

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

fn relocates_against_changed_target() -> TestResult {
    let path = kiln_testkit::bpf_object("core.bpf.o")?;
    let mut obj = ObjectSpec::parse(&std::fs::read(&path)?)?;
    check_eq!(obj.programs[0].core_relocations.len(), 18);
    let report = obj.relocate_core(&core_target::core_target())?;
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

/// The bpfeb twin of core.bpf.o against the same target written
/// big-endian (a big-endian kernel's BTF): the same offsets and sizes, and
/// the bitfield's left shift counted from the other end of its 4-byte load,
/// as libbpf computes it on a big-endian machine.
fn relocates_big_endian_against_big_endian_target() -> TestResult {
    let path = kiln_testkit::bpf_object("bpfeb/core.bpf.o")?;
    let mut obj = ObjectSpec::parse(&std::fs::read(&path)?)?;
    check_eq!(obj.byte_order, ByteOrder::Big);
    let target = write::in_byte_order(&core_target::core_target_bytes(), ByteOrder::Big);
    let target = Btf::from_bytes(target)?;
    check_eq!(target.byte_order(), ByteOrder::Big);
    let report = obj.relocate_core(&target)?;
    check_eq!(report.applied, 17);
    let i = &obj.program("core_prog").ok_or("no core_prog")?.insns;
    check_eq!(i[0].off, 16);
    check_eq!(i[3].off, 26);
    // Bitfield `more`: bit 330, 7 bits → 4-byte load at 40, whose first
    // bit is bit 32 of the u64 on a big-endian machine: 32 + (330 - 320).
    check_eq!(i[10].imm, 40);
    check_eq!(i[13].imm, 4);
    check_eq!(i[29].imm, 32 + (330 - 320));
    check_eq!(i[30].imm, 0);
    check_eq!((i[32].imm, i[34].imm), (57, 57));
    check_eq!(i[38].imm, 64);
    check_eq!((i[40].imm, i[41].imm), (2, 0));
    check_eq!(i[48].imm, 6);
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

/// `bpf_core_type_matches()` in type_matches.bpf.c against the running
/// kernel's BTF: each TYPE_MATCHES instruction holds exactly the expected
/// 0 or 1 after relocation (the types are ones the kernel has had in the
/// same shape since long before 5.10).
fn type_matches_against_vmlinux() -> TestResult {
    use kiln_obj::CoreRelocationKind;
    let path = kiln_testkit::bpf_object("type_matches.bpf.o")?;
    let mut obj = ObjectSpec::parse(&std::fs::read(&path)?)?;
    let local = Btf::parse(obj.btf.as_deref().ok_or("object has no .BTF")?)?;
    let p = obj
        .program("type_matches")
        .ok_or("no program type_matches")?;
    let mut relos = Vec::new();
    for r in &p.core_relocations {
        check_eq!(r.kind, CoreRelocationKind::TypeMatches);
        relos.push((r.insn_index, local.name_of(r.type_id)?.to_owned()));
    }
    let expected = [
        ("list_head", 1),
        ("hlist_node___subset", 1),
        ("list_head___wrong", 0),
        ("list_head___extra", 0),
        ("bpf_map_type___few", 1),
        ("bpf_map_type___bogus", 0),
        ("__u32", 1),
        ("__u32___signed", 0),
        ("__u32___wide", 0),
        ("callback_head___same", 1),
        ("callback_head___args", 0),
        ("ethhdr___six", 1),
        ("ethhdr___eight", 0),
        ("kiln_no_such_type", 0),
    ];
    let mut names: Vec<&str> = relos.iter().map(|(_, n)| n.as_str()).collect();
    names.sort_unstable();
    let mut want: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
    want.sort_unstable();
    check_eq!(names, want);
    let kernel = Btf::from_bytes(std::fs::read("/sys/kernel/btf/vmlinux")?)?;
    let report = obj.relocate_core(&kernel)?;
    check_eq!(report.applied, expected.len());
    check_eq!(report.poisoned.len(), 0);
    let insns = &obj.program("type_matches").ok_or("no program")?.insns;
    for (idx, name) in &relos {
        let want = expected.iter().find(|(n, _)| n == name).map(|e| e.1);
        check_eq!(
            (name.as_str(), Some(insns[*idx].imm)),
            (name.as_str(), want)
        );
    }
    Ok(())
}

/// CO-RE relocations whose type only a kernel module has (`struct
/// veth_priv`, module veth) resolve against the module's split BTF, through
/// the loader's kernel BTF lookup, to exactly what that BTF says.
fn core_against_module_btf() -> TestResult {
    use kiln_loader::externs;
    use kiln_obj::CoreRelocationKind;
    let path = kiln_testkit::bpf_object("core_module.bpf.o")?;
    let pristine = ObjectSpec::parse(&std::fs::read(&path)?)?;
    let vmlinux = externs::kernel_btf(None)?;
    if vmlinux.find_by_name(Kind::Struct, "veth_priv").is_some() {
        return Err("vmlinux has struct veth_priv (veth built in): nothing to test".into());
    }
    // vmlinux alone: the type does not exist, so its existence and its size
    // are 0 (type-based relocations without a candidate, as libbpf computes
    // them) and the field offset is poisoned.
    let mut obj = pristine.clone();
    let report = obj.relocate_core(vmlinux)?;
    check_eq!((report.applied, report.poisoned.len()), (2, 1));
    // With the modules: the values of /sys/kernel/btf/veth.
    let veth = externs::kernel_module_btfs()
        .iter()
        .find(|m| m.find_by_name(Kind::Struct, "veth_priv").is_some())
        .ok_or("no module BTF has struct veth_priv")?;
    let id = veth
        .find_by_name(Kind::Struct, "veth_priv")
        .ok_or("no veth_priv")?;
    let t = veth.type_by_id(id)?;
    let (members, kind_flag) = t.members().ok_or("veth_priv has no members")?;
    let headroom = members
        .iter()
        .find(|m| veth.str_at(m.name_off).ok() == Some("requested_headroom"))
        .ok_or("veth_priv has no requested_headroom")?;
    let size = i64::from(veth.resolve_size(id)?);
    let offset = i64::from(headroom.bit_offset(kind_flag) / 8);
    let mut obj = pristine.clone();
    let relos: Vec<(usize, CoreRelocationKind)> = obj.programs[0]
        .core_relocations
        .iter()
        .map(|r| (r.insn_index, r.kind))
        .collect();
    let report = externs::relocate_core(&mut obj, None)?;
    check_eq!((report.applied, report.poisoned.len()), (3, 0));
    for (i, kind) in relos {
        let want = match kind {
            CoreRelocationKind::TypeExists => 1,
            CoreRelocationKind::TypeSize => size,
            CoreRelocationKind::FieldByteOffset => offset,
            k => return Err(format!("unexpected relocation {k:?}").into()),
        };
        check_eq!(
            (kind, i64::from(obj.programs[0].insns[i].imm)),
            (kind, want)
        );
    }
    eprintln!("core_against_module_btf: veth_priv size {size}, requested_headroom at {offset}");
    Ok(())
}

fn has_module_btf() -> Option<String> {
    (!std::path::Path::new("/sys/kernel/btf/veth").exists()).then(|| {
        "no /sys/kernel/btf/veth: the veth module is not loaded or the kernel has no module BTF (CONFIG_DEBUG_INFO_BTF_MODULES, 5.11+); the test VMs load veth".into()
    })
}

/// Type-based relocations against the running kernel's BTF, as libbpf
/// computes them (core_types.bpf.c; the differential test compares the
/// verified code with libbpf's): a type that has no candidate gives 0 for
/// exists, matches, size and target id alike, never a poisoned call.
fn type_relocations_against_vmlinux() -> TestResult {
    use kiln_obj::CoreRelocationKind as K;
    let path = kiln_testkit::bpf_object("core_types.bpf.o")?;
    let mut obj = ObjectSpec::parse(&std::fs::read(&path)?)?;
    let local = Btf::parse(obj.btf.as_deref().ok_or("object has no .BTF")?)?;
    let p = obj.program("core_types").ok_or("no program core_types")?;
    let mut relos = Vec::new();
    for r in &p.core_relocations {
        relos.push((r.insn_index, r.kind, local.name_of(r.type_id)?.to_owned()));
    }
    let vmlinux = Btf::from_bytes(std::fs::read("/sys/kernel/btf/vmlinux")?)?;
    let report = obj.relocate_core(&vmlinux)?;
    // Only the guarded arena enum value may be poisoned (kernels before 6.9
    // have none), as libbpf poisons it; the guard makes it dead code.
    for (_, _, what) in &report.poisoned {
        if !what.starts_with("EnumValue of 'bpf_map_type___mine'") {
            return Err(format!("poisoned: {what}").into());
        }
    }
    let p = obj.program("core_types").ok_or("no program core_types")?;
    let value = |kind: K, name: &str| -> Result<i64, String> {
        let (at, ..) = relos
            .iter()
            .find(|(_, k, n)| *k == kind && n == name)
            .ok_or(format!("no {kind:?} relocation of {name}"))?;
        let insn = p.insns[*at];
        Ok(if insn.is_ld_imm64() {
            i64::from(insn.imm as u32) | (i64::from(p.insns[at + 1].imm) << 32)
        } else {
            i64::from(insn.imm)
        })
    };
    let task = vmlinux
        .id_by_name("task_struct", Kind::Struct)
        .ok_or("vmlinux has no task_struct")?;
    check_eq!(value(K::TypeExists, "task_struct")?, 1);
    check_eq!(
        value(K::TypeSize, "task_struct")?,
        i64::from(vmlinux.resolve_size(task)?)
    );
    check_eq!(value(K::TypeIdTarget, "task_struct")?, i64::from(task));
    // A flavor finds the kernel's type too.
    check_eq!(value(K::TypeExists, "task_struct___mine")?, 1);
    check_eq!(
        value(K::TypeIdTarget, "task_struct___mine")?,
        i64::from(task)
    );
    // No candidate: 0, as libbpf's bpf_core_calc_type_relo gives.
    check_eq!(value(K::TypeExists, "kiln_no_such_type")?, 0);
    check_eq!(value(K::TypeSize, "kiln_task_t")?, 0);
    check_eq!(value(K::TypeMatches, "kiln_u64_alias")?, 0);
    if let Some(ring) = vmlinux.id_by_name("bpf_map_type", Kind::Enum) {
        check_eq!(value(K::EnumValue, "bpf_map_type")?, 27); // BPF_MAP_TYPE_RINGBUF
        // The flavor names BPF_MAP_TYPE_ARENA (6.9+).
        let arena = match vmlinux.type_by_id(ring)? {
            kiln_obj::btf::Type::Enum { values, .. } => values.iter().any(|v| {
                vmlinux
                    .str_at(v.name_off)
                    .is_ok_and(|n| n == "BPF_MAP_TYPE_ARENA")
            }),
            _ => false,
        };
        check_eq!(
            value(K::EnumValueExists, "bpf_map_type___mine")?,
            i64::from(arena)
        );
    }
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
            "relocates_big_endian_against_big_endian_target",
            &[],
            relocates_big_endian_against_big_endian_target,
        ),
        kiln_testkit::test(
            "type_matches_against_vmlinux",
            &[kiln_testkit::Need::Probe("vmlinux BTF", has_vmlinux)],
            type_matches_against_vmlinux,
        ),
        kiln_testkit::test(
            "type_relocations_against_vmlinux",
            &[kiln_testkit::Need::Probe("vmlinux BTF", has_vmlinux)],
            type_relocations_against_vmlinux,
        ),
        kiln_testkit::test(
            "core_against_module_btf",
            &[
                kiln_testkit::Need::Probe("vmlinux BTF", has_vmlinux),
                kiln_testkit::Need::Probe("module BTF", has_module_btf),
            ],
            core_against_module_btf,
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
