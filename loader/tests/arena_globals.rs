//! `__arena` globals (loader/tests/bpf/arena_globals.bpf.c): their initial
//! values are copied into the object's arena where libbpf puts them (the
//! arena's last pages where the kernel allows any `ld_imm64` offset, else
//! its start), and the program reads and writes them there. Kernel 6.9+:
//! older kernels, and hosts that refuse arena maps, skip on the probe.

use kiln_loader::EbpfLoader;
use kiln_loader::programs::TestRun;
use kiln_obj::{MapType, ObjectSpec};
use kiln_testkit::{Need, TestResult, test};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn spec() -> Result<ObjectSpec, Error> {
    let path = kiln_testkit::bpf_object("arena_globals.bpf.o")?;
    Ok(ObjectSpec::parse(&std::fs::read(&path)?)?)
}

fn program_and_user_space_share_the_globals() -> TestResult {
    let spec = spec()?;
    let ebpf = EbpfLoader::new().load(&spec)?;
    let arena = ebpf.arena("arena").ok_or("the arena is not mapped")?;
    let page = kiln_loader::util::page_size();
    // libbpf's placement: the last page the 32 bytes of globals fill.
    let base = if kiln_loader::probe::ldimm64_full_range_off() {
        arena.len() - page
    } else {
        0
    };
    assert_eq!(arena.read::<u64>(base)?, 40, "counter's initial value");
    assert_eq!(
        arena.read::<u32>(base + 8 + 12)?,
        4,
        "ring[3]'s initial value"
    );
    let r = ebpf
        .program("bump")
        .ok_or("bump not loaded")?
        .test_run(TestRun::default())?;
    assert_eq!(r.retval, 0);
    assert_eq!(ebpf.global::<u64>("seen_counter")?, 42);
    assert_eq!(ebpf.global::<u64>("seen_sum")?, 10);
    assert_eq!(
        arena.read::<u64>(base)?,
        42,
        "the program's write, seen here"
    );
    assert_eq!(arena.read::<u64>(base + 24)?, 84);
    // And the other way: user space writes, the program reads.
    arena.write::<u64>(base, &100)?;
    ebpf.program("bump")
        .ok_or("bump not loaded")?
        .test_run(TestRun::default())?;
    assert_eq!(ebpf.global::<u64>("seen_counter")?, 102);
    Ok(())
}

fn no_arena() -> Option<String> {
    (!kiln_loader::probe::probe_map_type(MapType::ARENA)).then(|| {
        "kernel cannot create arena maps (6.9+; EPERM under some security policies)".into()
    })
}

fn main() {
    kiln_testkit::run(vec![test(
        "program_and_user_space_share_the_globals",
        &[Need::Root, Need::Bpf, Need::Probe("arena", no_arena)],
        program_and_user_space_share_the_globals,
    )]);
}
