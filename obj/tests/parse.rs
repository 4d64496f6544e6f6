//! Parses the C fixtures in tests/fixtures (built by `cargo xtask build-ebpf`
//! to target/bpf) and checks exact values: map shapes, relocation indices,
//! call offsets after subprogram appending, BTF.ext coordinates.

use kiln_obj::externs::POISON_CALL_KFUNC_BASE;
use kiln_obj::insn::{CALL, PSEUDO_CALL, PSEUDO_FUNC};
use kiln_obj::{
    AttachType, Direction, ExternKind, KconfigValueKind, KsymTarget, MapOrigin, MapSlot,
    MapSlotTarget, MapType, ObjectSpec, Pinning, ProgramKind, ProgramType, RelocationTarget,
};
use kiln_testkit::TestResult;

fn load(name: &str) -> Result<ObjectSpec, Box<dyn std::error::Error + Send + Sync>> {
    let path = kiln_testkit::bpf_object(name)?;
    let data = std::fs::read(&path)?;
    Ok(ObjectSpec::parse(&data).map_err(|e| format!("{}: {e}", path.display()))?)
}

fn ensure(cond: bool, what: impl Into<String>) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(what.into().into())
    }
}

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

fn btf_maps() -> TestResult {
    let obj = load("maps.bpf.o")?;
    check_eq!(obj.license, "Dual MIT/GPL");
    let names: Vec<&str> = obj.maps.iter().map(|m| m.name.as_str()).collect();
    check_eq!(names, ["counters", "pinned_array", "outer", "events"]);
    let counters = obj.map("counters").ok_or("no counters")?;
    check_eq!(counters.map_type, MapType::HASH);
    check_eq!(
        (counters.key_size, counters.value_size, counters.max_entries),
        (4, 16, 1024)
    );
    check_eq!(counters.map_flags, 1); // BPF_F_NO_PREALLOC
    check_eq!(counters.origin, MapOrigin::BtfMaps);
    ensure(
        counters.btf_key_type_id.is_some() && counters.btf_value_type_id.is_some(),
        "counters has BTF key/value ids",
    )?;
    let pinned = obj.map("pinned_array").ok_or("no pinned_array")?;
    check_eq!(
        (
            pinned.map_type,
            pinned.key_size,
            pinned.value_size,
            pinned.max_entries
        ),
        (MapType::ARRAY, 4, 8, 16)
    );
    check_eq!(pinned.pinning, Pinning::ByName);
    let events = obj.map("events").ok_or("no events")?;
    check_eq!(
        (events.map_type, events.max_entries, events.key_size),
        (MapType::RINGBUF, 4096, 0)
    );
    let outer = obj.map("outer").ok_or("no outer")?;
    check_eq!(
        (outer.map_type, outer.value_size, outer.max_entries),
        (MapType::ARRAY_OF_MAPS, 4, 2)
    );
    let inner = outer
        .inner
        .as_deref()
        .ok_or("outer has no inner definition")?;
    check_eq!(
        (
            inner.map_type,
            inner.key_size,
            inner.value_size,
            inner.max_entries
        ),
        (MapType::ARRAY, 4, 2, 4)
    );

    let prog = obj.program("count_packets").ok_or("no count_packets")?;
    check_eq!(
        prog.kind,
        ProgramKind::Xdp {
            frags: false,
            attach_type: Some(AttachType::XDP)
        }
    );
    let relocs: Vec<(usize, RelocationTarget)> = prog
        .relocations
        .iter()
        .map(|r| (r.insn_index, r.target))
        .collect();
    check_eq!(
        relocs,
        [
            (4, RelocationTarget::Map { map: 0 }),
            (12, RelocationTarget::Map { map: 1 }),
            (20, RelocationTarget::Map { map: 2 }),
            (26, RelocationTarget::Map { map: 3 }),
        ]
    );
    // The loader's view: fds patched in with BPF_PSEUDO_MAP_FD.
    let resolved = prog.resolved_insns(|m| 100 + m as i32);
    check_eq!((resolved[12].src_reg(), resolved[12].imm), (1, 101));
    Ok(())
}

fn global_data() -> TestResult {
    let obj = load("globals.bpf.o")?;
    let names: Vec<&str> = obj.maps.iter().map(|m| m.name.as_str()).collect();
    check_eq!(
        names,
        [".rodata", ".data", ".data.custom", ".rodata.custom", ".bss"]
    );
    let rodata = obj.map(".rodata").ok_or("no .rodata")?;
    check_eq!(
        (
            rodata.map_type,
            rodata.key_size,
            rodata.value_size,
            rodata.max_entries
        ),
        (MapType::ARRAY, 4, 24, 1)
    );
    ensure(rodata.is_read_only_data(), ".rodata is read-only")?;
    let mut init = vec![7u8, 0, 0, 0, 0, 0, 0, 0];
    init.extend_from_slice(&100u64.to_le_bytes());
    init.extend_from_slice(&200u64.to_le_bytes());
    check_eq!(rodata.initial_data.as_deref(), Some(&init[..]));
    let vars: Vec<(&str, u32, u32)> = rodata
        .variables
        .iter()
        .map(|v| (v.name.as_str(), v.offset, v.size))
        .collect();
    check_eq!(vars, [("threshold", 0, 4), ("limits", 8, 16)]);
    let bss = obj.map(".bss").ok_or("no .bss")?;
    check_eq!(bss.value_size, 20);
    check_eq!(bss.initial_data.as_deref(), Some(&[0u8; 20][..]));
    let vars: Vec<(&str, u32)> = bss
        .variables
        .iter()
        .map(|v| (v.name.as_str(), v.offset))
        .collect();
    check_eq!(vars, [("seen", 0), ("misses", 8), ("static_counter", 16)]);
    let custom = obj.map(".data.custom").ok_or("no .data.custom")?;
    check_eq!(
        custom.initial_data.as_deref(),
        Some(&0x11223344u32.to_le_bytes()[..])
    );
    ensure(!custom.is_read_only_data(), ".data.custom is writable")?;
    check_eq!(
        obj.map(".rodata.custom")
            .ok_or("no .rodata.custom")?
            .initial_data
            .as_deref(),
        Some(&b"kiln\0\0\0\0"[..])
    );

    let prog = obj.program("count").ok_or("no count")?;
    check_eq!(prog.kind, ProgramKind::SocketFilter);
    let relocs: Vec<(usize, RelocationTarget)> = prog
        .relocations
        .iter()
        .map(|r| (r.insn_index, r.target))
        .collect();
    let (ro, data, dcustom, rcustom, bss) = (0, 1, 2, 3, 4);
    check_eq!(
        relocs,
        [
            (1, RelocationTarget::MapValue { map: ro, offset: 0 }),
            (4, RelocationTarget::MapValue { map: ro, offset: 8 }),
            (
                9,
                RelocationTarget::MapValue {
                    map: data,
                    offset: 0
                }
            ),
            (
                14,
                RelocationTarget::MapValue {
                    map: bss,
                    offset: 0
                }
            ),
            (
                17,
                RelocationTarget::MapValue {
                    map: bss,
                    offset: 8
                }
            ),
            (
                22,
                RelocationTarget::MapValue {
                    map: bss,
                    offset: 16
                }
            ),
            (
                27,
                RelocationTarget::MapValue {
                    map: rcustom,
                    offset: 0
                }
            ),
            (
                32,
                RelocationTarget::MapValue {
                    map: dcustom,
                    offset: 0
                }
            ),
        ]
    );
    let resolved = prog.resolved_insns(|m| 10 + m as i32);
    check_eq!(
        (resolved[17].src_reg(), resolved[17].imm, resolved[18].imm),
        (2, 14, 8)
    );
    Ok(())
}

fn subprograms() -> TestResult {
    let obj = load("subprogs.bpf.o")?;
    let names: Vec<&str> = obj.programs.iter().map(|p| p.name.as_str()).collect();
    check_eq!(names, ["classify", "xdp_prog"]);
    let p = obj.program("classify").ok_or("no classify")?;
    // classify (41) + loop_cb (6, reached first through bpf_loop's callback)
    // + square (3) + local_helper (3, same section) + global_add (18).
    check_eq!(p.insns.len(), 71);
    let calls: Vec<(usize, u8, i32)> = p
        .insns
        .iter()
        .enumerate()
        .filter(|(_, i)| {
            (i.code == CALL && i.src_reg() == PSEUDO_CALL)
                || (i.is_ld_imm64() && i.src_reg() == PSEUDO_FUNC)
        })
        .map(|(n, i)| (n, i.src_reg(), i.imm))
        .collect();
    check_eq!(
        calls,
        [
            (6, PSEUDO_FUNC, 34),   // &loop_cb → 41
            (23, PSEUDO_CALL, 23),  // square → 47
            (28, PSEUDO_CALL, 21),  // local_helper → 50
            (36, PSEUDO_CALL, 16),  // global_add → 53
            (67, PSEUDO_CALL, -21), // global_add's square → 47, appended once
        ]
    );
    let relocs: Vec<(usize, RelocationTarget)> = p
        .relocations
        .iter()
        .map(|r| (r.insn_index, r.target))
        .collect();
    check_eq!(
        relocs,
        [
            (14, RelocationTarget::Map { map: 0 }),
            (57, RelocationTarget::MapValue { map: 1, offset: 0 })
        ]
    );
    let fi: Vec<u32> = p.func_info.iter().map(|f| f.insn_off).collect();
    check_eq!(fi, [0, 41, 47, 50, 53]);
    ensure(
        p.line_info
            .windows(2)
            .all(|w| w[0].insn_off <= w[1].insn_off),
        "line_info sorted",
    )?;
    ensure(
        p.line_info
            .iter()
            .all(|l| (l.insn_off as usize) < p.insns.len()),
        "line_info in range",
    )?;

    let x = obj.program("xdp_prog").ok_or("no xdp_prog")?;
    check_eq!(x.insns.len(), 8 + 18 + 3);
    check_eq!((x.insns[2].imm, x.insns[22].imm), (5, 3));
    let fi: Vec<u32> = x.func_info.iter().map(|f| f.insn_off).collect();
    check_eq!(fi, [0, 8, 26]);
    Ok(())
}

fn section_names() -> TestResult {
    let obj = load("sections.bpf.o")?;
    check_eq!(obj.kernel_version, Some(0x050a00));
    let kind = |name: &str| {
        obj.program(name)
            .map(|p| p.kind.clone())
            .ok_or(format!("no program {name}"))
    };
    check_eq!(
        kind("tp_switch")?,
        ProgramKind::Tracepoint {
            category: Some("sched".into()),
            name: Some("sched_switch".into())
        }
    );
    check_eq!(kind("xdp_a")?, kind("xdp_b")?);
    check_eq!(obj.program("xdp_b").ok_or("xdp_b")?.section, "xdp");
    check_eq!(
        kind("xdp_frags")?,
        ProgramKind::Xdp {
            frags: true,
            attach_type: Some(AttachType::XDP)
        }
    );
    check_eq!(
        kind("xdp_devmap")?.expected_attach_type(),
        Some(AttachType::XDP_DEVMAP)
    );
    check_eq!(kind("tc_cls")?, ProgramKind::SchedCls);
    check_eq!(kind("classifier_cls")?, ProgramKind::SchedCls);
    check_eq!(
        kind("tcx_in")?,
        ProgramKind::Tcx {
            direction: Direction::Ingress
        }
    );
    check_eq!(
        kind("cg_out")?,
        ProgramKind::CgroupSkb {
            direction: Some(Direction::Egress)
        }
    );
    check_eq!(
        kind("cg_connect4")?,
        ProgramKind::Cgroup {
            program_type: ProgramType::CGROUP_SOCK_ADDR,
            attach_type: AttachType::CGROUP_INET4_CONNECT
        }
    );
    check_eq!(
        kind("kp_off")?,
        ProgramKind::Kprobe {
            function: Some("tcp_v4_connect".into()),
            offset: 16,
            retprobe: false
        }
    );
    check_eq!(
        kind("krp")?,
        ProgramKind::Kprobe {
            function: Some("do_unlinkat".into()),
            offset: 0,
            retprobe: true
        }
    );
    check_eq!(
        kind("up")?,
        ProgramKind::Uprobe {
            target: Some("/usr/lib/libc.so.6:malloc".into()),
            retprobe: false
        }
    );
    check_eq!(
        kind("rawtp_w")?,
        ProgramKind::RawTracepoint {
            name: Some("bpf_test_finish".into()),
            writable: true
        }
    );
    check_eq!(
        kind("tpbtf")?,
        ProgramKind::Tracing {
            attach_type: AttachType::TRACE_RAW_TP,
            target: Some("sched_switch".into())
        }
    );
    check_eq!(
        kind("fext")?.expected_attach_type(),
        Some(AttachType::TRACE_FEXIT)
    );
    ensure(
        obj.program("fent_s").ok_or("fent_s")?.sleepable,
        "fentry.s is sleepable",
    )?;
    check_eq!(
        kind("lsm_open")?,
        ProgramKind::Lsm {
            hook: Some("file_open".into()),
            cgroup: false
        }
    );
    check_eq!(
        kind("it")?.expected_attach_type(),
        Some(AttachType::TRACE_ITER)
    );
    check_eq!(
        kind("skskb")?.expected_attach_type(),
        Some(AttachType::SK_SKB_STREAM_VERDICT)
    );
    for (name, t) in [
        ("sock", ProgramType::SOCKET_FILTER),
        ("sock_ops_prog", ProgramType::SOCK_OPS),
        ("sklookup", ProgramType::SK_LOOKUP),
        ("perf", ProgramType::PERF_EVENT),
        ("nf", ProgramType::NETFILTER),
        ("sysc", ProgramType::SYSCALL),
        ("skmsg", ProgramType::SK_MSG),
    ] {
        check_eq!((name, kind(name)?.program_type()), (name, t));
    }
    check_eq!(obj.programs.len(), 34);
    Ok(())
}

fn externs() -> TestResult {
    let mut obj = load("externs.bpf.o")?;
    let names: Vec<(&str, bool)> = obj
        .externs
        .iter()
        .map(|e| (e.name.as_str(), e.weak))
        .collect();
    check_eq!(
        names,
        [
            // libbpf's .kconfig layout: alignment down, size up, then name.
            ("CONFIG_HZ", true),
            ("LINUX_KERNEL_VERSION", false),
            ("CONFIG_BPF_SYSCALL", false),
            ("bpf_fake_kfunc", true),
            ("bpf_prog_active", false)
        ]
    );
    check_eq!(
        obj.externs[0].kind,
        ExternKind::Kconfig {
            offset: 0,
            size: 4,
            value_kind: KconfigValueKind::Int { signed: true }
        }
    );
    ensure(
        matches!(
            obj.externs[4].kind,
            ExternKind::KsymVar { typeless: true, .. }
        ),
        "bpf_prog_active is typeless",
    )?;
    let kconfig = obj.map_index(".kconfig").ok_or("no .kconfig map")?;
    let p = obj.program("read_externs").ok_or("no read_externs")?;
    let relocs: Vec<(usize, RelocationTarget)> = p
        .relocations
        .iter()
        .map(|r| (r.insn_index, r.target))
        .collect();
    check_eq!(
        relocs[..3],
        [
            (
                0,
                RelocationTarget::MapValue {
                    map: kconfig,
                    offset: 8
                }
            ),
            (
                3,
                RelocationTarget::MapValue {
                    map: kconfig,
                    offset: 4
                }
            ),
            (
                7,
                RelocationTarget::MapValue {
                    map: kconfig,
                    offset: 0
                }
            ),
        ]
    );
    let ext: Vec<(usize, usize)> = p
        .extern_relocations
        .iter()
        .map(|r| (r.insn_index, r.extern_index))
        .collect();
    check_eq!(ext, [(11, 4), (17, 3), (21, 3)]);

    obj.resolve_kconfig(|name| match name {
        "LINUX_KERNEL_VERSION" => Some("0x060c00".into()),
        "CONFIG_BPF_SYSCALL" => Some("y".into()),
        _ => None,
    })?;
    let data = obj.maps[kconfig].initial_data.clone().ok_or("no data")?;
    // Like libbpf's, the map ends with the last value: 9 bytes.
    check_eq!(data, [0, 0, 0, 0, 0x00, 0x0c, 0x06, 0, 1]);

    let externs = obj.externs.clone();
    let p = obj.program_mut("read_externs").ok_or("no read_externs")?;
    p.resolve_ksyms(&externs, |i| match i {
        4 => Some(KsymTarget::Address(0xffff_ffff_8100_0010)),
        _ => None,
    })?;
    check_eq!(
        (
            p.insns[11].src_reg(),
            p.insns[11].imm as u32,
            p.insns[12].imm as u32
        ),
        (0, 0x8100_0010, 0xffff_ffff)
    );
    // Unresolved weak kfunc: address 0, call poisoned so only dead code may keep it.
    check_eq!(
        (p.insns[17].imm, p.insns[21].imm),
        (0, POISON_CALL_KFUNC_BASE + 3)
    );
    Ok(())
}

/// Truncated, corrupted and random inputs give errors, never panics.
fn malformed_inputs() -> TestResult {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for name in [
        "maps.bpf.o",
        "globals.bpf.o",
        "subprogs.bpf.o",
        "externs.bpf.o",
    ] {
        let path = kiln_testkit::bpf_object(name)?;
        let data = std::fs::read(&path)?;
        for cut in (0..data.len()).step_by(97) {
            let _ = ObjectSpec::parse(&data[..cut]);
        }
        for _ in 0..400 {
            let mut bad = data.clone();
            for _ in 0..8 {
                let at = (rand() as usize) % bad.len();
                bad[at] = rand() as u8;
            }
            let _ = ObjectSpec::parse(&bad);
        }
    }
    for len in [0usize, 1, 16, 64, 200, 4096] {
        for _ in 0..50 {
            let mut bytes: Vec<u8> = (0..len).map(|_| rand() as u8).collect();
            // A valid ELF64 LE BPF header prefix makes the parser go deeper.
            if len >= 64 {
                bytes[..20].copy_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x01\0\xf7\0");
            }
            ensure(ObjectSpec::parse(&bytes).is_err(), "random bytes rejected")?;
        }
    }
    match ObjectSpec::parse(b"\x7fELF") {
        Err(e) => ensure(!e.to_string().is_empty(), "error has a message")?,
        Ok(_) => return Err("4 bytes parsed".into()),
    }
    Ok(())
}

/// The Rust SDK's `memset`/`memcpy` are hidden globals: their BTF FUNCs
/// become static (libbpf does the same), or the verifier rejects them as
/// global functions returning a pointer.
fn hidden_globals_become_static() -> TestResult {
    let obj = load("sdk-programs.bpf.o")?;
    let btf = kiln_obj::btf::Btf::parse(obj.btf.as_deref().ok_or("no BTF")?)?;
    let memset = btf
        .find_by_name(kiln_obj::btf::Kind::Func, "memset")
        .ok_or("no FUNC memset")?;
    match btf.type_by_id(memset)? {
        kiln_obj::btf::Type::Func { linkage, .. } => {
            check_eq!(linkage, kiln_obj::btf::FUNC_STATIC)
        }
        t => return Err(format!("memset is {t:?}").into()),
    }
    let entry = btf
        .find_by_name(kiln_obj::btf::Kind::Func, "prog_helpers")
        .ok_or("no FUNC prog_helpers")?;
    match btf.type_by_id(entry)? {
        kiln_obj::btf::Type::Func { linkage, .. } => {
            check_eq!(linkage, kiln_obj::btf::FUNC_GLOBAL)
        }
        t => return Err(format!("prog_helpers is {t:?}").into()),
    }
    Ok(())
}

/// `.values = { [i] = &prog }` and `{ [i] = &map }` in `.maps`.
fn map_values() -> TestResult {
    let obj = load("map_values.bpf.o")?;
    let idx = |n: &str| obj.map_index(n).ok_or(format!("no map {n}"));
    let (jumps, outer, inner_b) = (idx("jumps")?, idx("outer")?, idx("inner_b")?);
    check_eq!(
        obj.map_slots,
        vec![
            MapSlot {
                map: jumps,
                index: 0,
                target: MapSlotTarget::Program("tail_a".into())
            },
            MapSlot {
                map: jumps,
                index: 2,
                target: MapSlotTarget::Program("tail_b".into())
            },
            MapSlot {
                map: outer,
                index: 1,
                target: MapSlotTarget::Map(inner_b)
            },
        ]
    );
    check_eq!(obj.maps[jumps].map_type, MapType::PROG_ARRAY);
    let inner = obj.maps[outer].inner.as_ref().ok_or("outer has no inner")?;
    check_eq!((inner.key_size, inner.value_size), (4, 4));
    // Objects without initializers have none.
    check_eq!(load("maps.bpf.o")?.map_slots, vec![]);
    Ok(())
}

/// A Rust object linked by bpf-linker (manifests/examples/quickstart/counter):
/// a BTF map pinned by name, a merged `.rodata.cst4` constant section, two
/// programs with func and line info from Rust debug info.
fn rust_counter_object() -> TestResult {
    let obj = load("counter.bpf.o")?;
    let counters = obj.map("COUNTERS").ok_or("no COUNTERS map")?;
    check_eq!(
        (
            counters.map_type,
            counters.key_size,
            counters.value_size,
            counters.pinning,
            counters.origin.clone()
        ),
        (MapType::HASH, 4, 8, Pinning::ByName, MapOrigin::BtfMaps)
    );
    ensure(
        counters.btf_key_type_id.is_some() && counters.btf_value_type_id.is_some(),
        "COUNTERS has BTF key/value ids",
    )?;
    let names: Vec<&str> = obj.programs.iter().map(|p| p.name.as_str()).collect();
    check_eq!(names, ["count_exec", "count_packets"]);
    for p in &obj.programs {
        ensure(
            !p.func_info.is_empty() && !p.line_info.is_empty(),
            format!("{}: func and line info from Rust debug info", p.name),
        )?;
        ensure(
            p.relocations
                .iter()
                .any(|r| r.target == RelocationTarget::Map { map: 0 }),
            format!("{}: references COUNTERS", p.name),
        )?;
    }
    Ok(())
}

fn has_sdk_programs() -> Option<String> {
    kiln_testkit::bpf_object("sdk-programs.bpf.o").err()
}

/// `map_extra` written with libbpf's `__ulong()` (an enum member, ENUM64
/// for an arena's 64-bit address) and with `__uint()`.
fn map_extra_64_bit() -> TestResult {
    let obj = load("map_extra.bpf.o")?;
    let extra = |name: &str| -> Result<u64, String> {
        Ok(obj
            .map(name)
            .ok_or_else(|| format!("no map {name}"))?
            .map_extra)
    };
    check_eq!(extra("arena")?, 1u64 << 44);
    check_eq!(extra("bloom")?, 5);
    check_eq!(extra("bloom_uint")?, 3);
    check_eq!(obj.map("arena").ok_or("no arena")?.map_type, MapType::ARENA);
    Ok(())
}

/// `__arena` globals (.addr_space.1): their bytes become the arena map's
/// initial data and every reference to them a value reference into it.
fn arena_globals() -> TestResult {
    let obj = load("arena_globals.bpf.o")?;
    let arena = obj.map_index("arena").ok_or("no arena map")?;
    let data = obj.maps[arena]
        .initial_data
        .as_deref()
        .ok_or("arena has no initial data")?;
    let word = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().unwrap_or_default());
    check_eq!(data.len(), 32);
    check_eq!(word(0), 40); // counter
    check_eq!(
        &data[8..24],
        &[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0]
    );
    check_eq!(word(24), 0); // zeroed
    let p = obj.program("bump").ok_or("no bump")?;
    let mut offsets: Vec<u32> = p
        .relocations
        .iter()
        .filter_map(|r| match r.target {
            RelocationTarget::MapValue { map, offset } if map == arena => Some(offset),
            _ => None,
        })
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    check_eq!(offsets, [0, 8, 24]);
    Ok(())
}

/// `.kconfig` and `.ksyms` come out of parsing as the kernel's BTF loader
/// takes them: no extern linkage, no FUNC inside a DATASEC, sections sized,
/// and the `.kconfig` map typed by its DATASEC (libbpf's rewrite).
fn extern_datasecs_are_loadable() -> TestResult {
    use kiln_obj::btf::{Btf, FUNC_EXTERN, Kind, Type, VAR_EXTERN};
    let obj = load("externs.bpf.o")?;
    let btf = Btf::parse(obj.btf.as_deref().ok_or("no BTF")?)?;
    for t in btf.types() {
        let (id, t) = t?;
        match t {
            Type::Var { linkage, .. } => ensure(linkage != VAR_EXTERN, format!("VAR {id} extern"))?,
            Type::Func { linkage, .. } => {
                ensure(linkage != FUNC_EXTERN, format!("FUNC {id} extern"))?
            }
            Type::DataSec { vars, size, .. } => {
                for v in &vars {
                    ensure(
                        btf.kind_of(v.type_id)? == Kind::Var,
                        format!("DATASEC {id} holds type {}", v.type_id),
                    )?;
                    ensure(v.offset + v.size <= size, format!("DATASEC {id}: {v:?}"))?;
                }
            }
            _ => {}
        }
    }
    let kconfig = obj.map(".kconfig").ok_or("no .kconfig map")?;
    let id = btf
        .id_by_name(".kconfig", Kind::DataSec)
        .ok_or("no .kconfig DATASEC")?;
    check_eq!(kconfig.btf_value_type_id, Some(id));
    check_eq!(btf.resolve_size(id)?, kconfig.value_size);
    Ok(())
}

fn main() {
    kiln_testkit::run(vec![
        kiln_testkit::test(
            "hidden_globals_become_static",
            &[kiln_testkit::Need::Probe(
                "Rust SDK object",
                has_sdk_programs,
            )],
            hidden_globals_become_static,
        ),
        kiln_testkit::test("btf_maps", &[], btf_maps),
        kiln_testkit::test("map_extra_64_bit", &[], map_extra_64_bit),
        kiln_testkit::test("map_values", &[], map_values),
        kiln_testkit::test(
            "rust_counter_object",
            &[kiln_testkit::Need::Probe("Rust counter object", || {
                kiln_testkit::bpf_object("counter.bpf.o").err()
            })],
            rust_counter_object,
        ),
        kiln_testkit::test("global_data", &[], global_data),
        kiln_testkit::test("subprograms", &[], subprograms),
        kiln_testkit::test("section_names", &[], section_names),
        kiln_testkit::test("externs", &[], externs),
        kiln_testkit::test(
            "extern_datasecs_are_loadable",
            &[],
            extern_datasecs_are_loadable,
        ),
        kiln_testkit::test("arena_globals", &[], arena_globals),
        kiln_testkit::test("malformed_inputs", &[], malformed_inputs),
    ]);
}
