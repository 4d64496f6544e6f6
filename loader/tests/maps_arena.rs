//! Arena maps (loader/tests/bpf/maps_arena.bpf.c): created with the object's
//! flags and a `map_extra` address, mapped by user space, written by a
//! program through an `__arena` pointer, read back here. Kernel 6.9+: older
//! kernels skip on the probe.

use kiln_loader::maps::{Arena, MapFlags};
use kiln_loader::programs::TestRun;
use kiln_loader::{Ebpf, EbpfLoader};
use kiln_obj::{MapType, ObjectSpec};
use kiln_testkit::{Need, TestResult, test};

type Error = Box<dyn std::error::Error + Send + Sync>;

const PAGES: usize = 4;

fn spec() -> Result<ObjectSpec, Error> {
    let path = kiln_testkit::bpf_object("maps_arena.bpf.o")?;
    Ok(ObjectSpec::parse(&std::fs::read(&path)?)?)
}

fn run_fill(ebpf: &Ebpf) -> Result<(), Error> {
    let r = ebpf
        .program("fill")
        .ok_or("no program fill")?
        .test_run(TestRun::default())?;
    if r.retval != 0 {
        return Err(format!("fill returned {} (page allocation failed)", r.retval).into());
    }
    Ok(())
}

/// The program allocates a page, user space sees its marker at the
/// program's pointer, writes a word, and the program's next run reads it.
fn program_and_user_space_share_the_page(
    ebpf: &Ebpf,
    arena: &Arena<kiln_loader::Map>,
) -> TestResult {
    run_fill(ebpf)?;
    let page: u64 = ebpf.global("page_addr")?;
    let off = arena.offset_of(page).ok_or(format!(
        "program's page {page:#x} is not in the arena at {:#x}",
        arena.addr()
    ))?;
    assert_eq!(off, 0, "the first allocation is the arena's first page");
    assert_eq!(arena.read::<u64>(off)?, 0x6b69_6c6e, "the program's marker");
    arena.write(off + 8, &21u64)?;
    run_fill(ebpf)?;
    assert_eq!(
        arena.read::<u64>(off + 16)?,
        42,
        "the program read what user space wrote"
    );
    Ok(())
}

fn arena_at_map_extra_address() -> TestResult {
    // An address free in this process, inside one 4 GiB window (the kernel's
    // rule), where nothing else lands before the loader maps the arena: the
    // bottom of a large hole (mmap fills holes from the top, and loading maps
    // the kernel's BTF, a few MiB). The kernel wants twice the arena free.
    let len = PAGES * kiln_loader::util::page_size();
    let hole = 256 << 20;
    // SAFETY: a fresh anonymous reservation, unmapped right away: only its address is kept.
    let addr = unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            hole,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        libc::munmap(p, hole);
        p as u64
    };
    if addr >> 32 != (addr + 2 * len as u64 - 1) >> 32 {
        return Err(format!("free range at {addr:#x} crosses a 4 GiB boundary; rerun").into());
    }
    let mut spec = spec()?;
    spec.map_mut("arena").ok_or("no arena")?.map_extra = addr;
    let ebpf = EbpfLoader::new().load(&spec)?;
    let map = ebpf.map("arena").ok_or("no arena")?;
    let info = map.info()?;
    assert_eq!(info.map_type, MapType::ARENA);
    assert_eq!(info.map_extra, addr, "map_extra reached the kernel");
    assert!(info.flags.contains(MapFlags::MMAPABLE), "{:?}", info.flags);
    assert_eq!(info.max_entries as usize, PAGES);
    let arena = ebpf
        .arena("arena")
        .ok_or("the loader did not map the arena")?;
    assert_eq!(arena.addr(), addr, "mapped at map_extra");
    assert_eq!(arena.len(), len);
    // One mapping per arena: a second is refused, naming the map.
    let e = Arena::new(map.try_clone()?)
        .err()
        .ok_or("second mapping accepted")?;
    assert!(e.to_string().contains("map 'arena'"), "{e}");
    program_and_user_space_share_the_page(&ebpf, arena)
}

fn arena_where_the_kernel_chooses() -> TestResult {
    let ebpf = EbpfLoader::new().load(&spec()?)?;
    let map = ebpf.map("arena").ok_or("no arena")?;
    assert_eq!(map.info()?.map_extra, 0);
    // Programs load only once the arena's address is set: the loader mapped it.
    let arena = ebpf
        .arena("arena")
        .ok_or("the loader did not map the arena")?;
    program_and_user_space_share_the_page(&ebpf, arena)?;
    // Bounds are checked, naming the map.
    let e = arena
        .read::<u64>(arena.len())
        .err()
        .ok_or("read past the end")?;
    assert!(e.to_string().contains("map 'arena'"), "{e}");
    Ok(())
}

/// Skips where the kernel cannot create an arena, with its answer (EINVAL
/// before 6.9; EPERM where a security policy forbids arenas, as on some hosts).
fn no_arena() -> Option<String> {
    if kiln_loader::probe::probe_map_type(MapType::ARENA) {
        return None;
    }
    let mut spec = spec().ok()?.map("arena")?.clone();
    spec.map_extra = 0;
    let why = match kiln_loader::Map::create(&spec, None, None) {
        Ok(_) => "the probe failed but creating the object's arena worked".into(),
        Err(e) => e.to_string(),
    };
    Some(format!(
        "kernel cannot create BPF_MAP_TYPE_ARENA maps (6.9+): {why}"
    ))
}

fn main() {
    let needs = &[Need::Bpf, Need::Probe("arena", no_arena)];
    kiln_testkit::run(vec![
        test(
            "arena_at_map_extra_address",
            needs,
            arena_at_map_extra_address,
        ),
        test(
            "arena_where_the_kernel_chooses",
            needs,
            arena_where_the_kernel_chooses,
        ),
    ]);
}
