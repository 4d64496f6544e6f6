//! Initial `.values` of prog arrays and maps of maps, filled by the loader at
//! load (loader/tests/bpf/loader_slots.bpf.c), observed by running the
//! object's programs with BPF_PROG_TEST_RUN.

use kiln_loader::maps::{Array, ArrayOfMaps, ProgramArray};
use kiln_loader::programs::TestRun;
use kiln_loader::{Ebpf, EbpfLoader};
use kiln_obj::{MapSlot, MapSlotTarget, ObjectSpec};
use kiln_testkit::{Need, TestResult, test};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn spec() -> Result<ObjectSpec, Error> {
    let path = kiln_testkit::bpf_object("loader_slots.bpf.o")?;
    Ok(ObjectSpec::parse(&std::fs::read(&path)?)?)
}

/// Runs `prog` on a 64-byte packet whose first byte is `first`; its return value.
fn run(ebpf: &Ebpf, prog: &str, first: u8) -> Result<u32, Error> {
    let mut packet = [0u8; 64];
    packet[0] = first;
    let p = ebpf.program(prog).ok_or(format!("no program {prog}"))?;
    Ok(p.test_run(TestRun {
        data_in: Some(&packet),
        ..Default::default()
    })?
    .retval)
}

fn prog_array_values_are_tail_call_targets() -> TestResult {
    let ebpf = EbpfLoader::new().load(&spec()?)?;
    assert_eq!(run(&ebpf, "dispatch", 0)?, 10, "jumps[0] = tail_a");
    assert_eq!(run(&ebpf, "dispatch", 1)?, 20, "jumps[1] = tail_b");
    assert_eq!(run(&ebpf, "dispatch", 2)?, 99, "jumps[2] is empty");
    let jumps = ProgramArray::new(ebpf.map("jumps").ok_or("no jumps")?)?;
    let tail_a = ebpf.program("tail_a").ok_or("no tail_a")?;
    assert_eq!(
        jumps.get_id(0)?,
        Some(tail_a.id()),
        "lookup answers tail_a's id"
    );
    Ok(())
}

fn map_of_maps_values_hold_the_inner_map() -> TestResult {
    let ebpf = EbpfLoader::new().load(&spec()?)?;
    assert_eq!(
        run(&ebpf, "via_outer", 0)?,
        1,
        "outer[1] reached an inner map"
    );
    assert_eq!(run(&ebpf, "via_outer", 0)?, 2);
    // The program counted in counter_b itself, not in a copy or in counter_a.
    let b: Array<_, u32> = Array::new(ebpf.map("counter_b").ok_or("no counter_b")?)?;
    let a: Array<_, u32> = Array::new(ebpf.map("counter_a").ok_or("no counter_a")?)?;
    assert_eq!((a.get(0)?, b.get(0)?), (0, 2));
    let outer = ArrayOfMaps::new(ebpf.map("outer").ok_or("no outer")?)?;
    let inner = outer.get(1)?.ok_or("outer[1] is empty")?;
    assert_eq!(inner.info()?.id, ebpf.map("counter_b").unwrap().info()?.id);
    assert!(outer.get(0)?.is_none(), "outer[0] was not initialised");
    Ok(())
}

fn skipped_program_leaves_its_slot_empty() -> TestResult {
    let ebpf = EbpfLoader::new().skip_program("tail_b").load(&spec()?)?;
    assert_eq!(run(&ebpf, "dispatch", 0)?, 10);
    assert_eq!(run(&ebpf, "dispatch", 1)?, 99, "tail_b was not loaded");
    Ok(())
}

fn bad_slot_names_map_and_index() -> TestResult {
    let mut spec = spec()?;
    let jumps = spec.map_index("jumps").ok_or("no jumps")?;
    spec.map_slots.push(MapSlot {
        map: jumps,
        index: 3,
        target: MapSlotTarget::Program("nowhere".into()),
    });
    let e = EbpfLoader::new().load(&spec).err().ok_or("loaded")?;
    let msg = kiln_loader::error_chain(&e);
    assert!(
        msg.contains("map 'jumps': values[3]: program 'nowhere'"),
        "{msg}"
    );
    // Out of bounds: the kernel's refusal is reported with the slot.
    let mut spec = self::spec()?;
    let outer = spec.map_index("outer").ok_or("no outer")?;
    let a = spec.map_index("counter_a").ok_or("no counter_a")?;
    spec.map_slots.push(MapSlot {
        map: outer,
        index: 7,
        target: MapSlotTarget::Map(a),
    });
    let e = EbpfLoader::new().load(&spec).err().ok_or("loaded")?;
    let msg = kiln_loader::error_chain(&e);
    assert!(
        msg.contains("map 'outer': values[7]: cannot store map 'counter_a'"),
        "{msg}"
    );
    Ok(())
}

fn main() {
    let b = &[Need::Bpf];
    kiln_testkit::run(vec![
        test(
            "prog_array_values_are_tail_call_targets",
            b,
            prog_array_values_are_tail_call_targets,
        ),
        test(
            "map_of_maps_values_hold_the_inner_map",
            b,
            map_of_maps_values_hold_the_inner_map,
        ),
        test(
            "skipped_program_leaves_its_slot_empty",
            b,
            skipped_program_leaves_its_slot_empty,
        ),
        test(
            "bad_slot_names_map_and_index",
            b,
            bad_slot_names_map_and_index,
        ),
    ]);
}
