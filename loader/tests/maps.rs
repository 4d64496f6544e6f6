//! Map families through their typed views, filled by the fixture's programs
//! run with BPF_PROG_TEST_RUN (loader/tests/bpf/loader_maps.bpf.c).

use std::os::fd::AsFd;
use std::time::Duration;

use kiln_loader::maps::{
    Array, ArrayOfMaps, BloomFilter, CpuMap, DevMap, FdStorage, HashMap, HashOfMaps, LpmKey,
    LpmTrie, PerCpuArray, PerCpuHashMap, PerCpuValues, PerfEventArray, PerfRecord, ProgramArray,
    Queue, RingBuf, SockHash, SockMap, Stack, StackTraceMap, UpdateFlags,
};
use kiln_loader::programs::TestRun;
use kiln_loader::{Ebpf, EbpfLoader, Map};
use kiln_obj::ObjectSpec;
use kiln_testkit::{Need, TestResult, test};

fn load() -> Result<Ebpf, Box<dyn std::error::Error + Send + Sync>> {
    let path = kiln_testkit::bpf_object("loader_maps.bpf.o")?;
    let spec = ObjectSpec::parse(&std::fs::read(&path)?)?;
    Ok(EbpfLoader::new().load(&spec)?)
}

fn map<'a>(ebpf: &'a Ebpf, name: &str) -> &'a Map {
    ebpf.map(name)
        .unwrap_or_else(|| panic!("fixture has no map {name}"))
}

fn run_count(ebpf: &Ebpf, times: u32) -> TestResult {
    let prog = ebpf.program("count").ok_or("no program count")?;
    for _ in 0..times {
        let r = prog.test_run(TestRun {
            data_in: Some(&[0u8; 64]),
            ..Default::default()
        })?;
        assert_eq!(r.retval, 0);
    }
    Ok(())
}

fn hash_maps() -> TestResult {
    let ebpf = load()?;
    let hash: HashMap<_, u32, u64> = HashMap::new(map(&ebpf, "hash"))?;
    run_count(&ebpf, 3)?;
    assert_eq!(
        hash.get(&0)?,
        Some(3),
        "the program counted three runs at key 0"
    );
    hash.insert(&7, &70, UpdateFlags::ANY)?;
    assert!(
        hash.insert(&7, &71, UpdateFlags::NO_EXIST).is_err(),
        "NO_EXIST refuses an existing key"
    );
    let mut keys: Vec<u32> = hash.keys().collect::<Result<_, _>>()?;
    keys.sort();
    assert_eq!(keys, [0, 7]);
    let mut all = hash.iter().collect::<Result<Vec<_>, _>>()?;
    all.sort();
    assert_eq!(all, [(0, 3), (7, 70)]);
    assert!(hash.remove(&7)?);
    assert!(!hash.remove(&7)?, "second remove finds nothing");
    // Wrong key type is refused up front, naming the map.
    let e = HashMap::<_, u64, u64>::new(map(&ebpf, "hash"))
        .err()
        .ok_or("u64 key accepted")?;
    assert!(
        e.to_string().contains("map 'hash': key size is 4 bytes"),
        "{e}"
    );
    let e = HashMap::<_, u32, u64>::new(map(&ebpf, "counters"))
        .err()
        .ok_or("array accepted as hash")?;
    assert!(e.to_string().contains("is of type array"), "{e}");

    // LRU: inserting past max_entries evicts instead of failing.
    let lru: HashMap<_, u32, u64> = HashMap::new(map(&ebpf, "lru"))?;
    for k in 0..16 {
        lru.insert(&k, &(k as u64), UpdateFlags::ANY)?;
    }
    let n = lru.keys().count();
    assert!((1..=8).contains(&n), "lru holds {n} keys");
    Ok(())
}

fn batch_ops() -> TestResult {
    let ebpf = load()?;
    let hash: HashMap<_, u32, u64> = HashMap::new(map(&ebpf, "hash"))?;
    let entries: Vec<(u32, u64)> = (1..=300).map(|k| (k, k as u64 * 10)).collect();
    hash.insert_batch(&entries, UpdateFlags::ANY)?;
    let mut all = hash.get_all()?;
    all.sort();
    assert_eq!(
        all, entries,
        "lookup batch returns exactly what update batch wrote"
    );
    assert_eq!(
        hash.remove_batch(&[1, 2, 3, 999])?,
        3,
        "three of four keys existed"
    );
    let drained = hash.drain()?;
    assert_eq!(drained.len(), 297);
    assert_eq!(hash.keys().count(), 0, "drain emptied the map");
    Ok(())
}

fn per_cpu() -> TestResult {
    let ebpf = load()?;
    run_count(&ebpf, 2)?;
    let arr: PerCpuArray<_, u64> = PerCpuArray::new(map(&ebpf, "pc_array"))?;
    let v = arr.get(0)?;
    assert_eq!(v.len(), kiln_loader::util::nr_possible_cpus()?);
    assert_eq!(
        v.iter().sum::<u64>(),
        2,
        "two runs counted across CPUs: {v:?}"
    );
    arr.set(1, &PerCpuValues::splat(5)?, UpdateFlags::ANY)?;
    assert!(arr.get(1)?.iter().all(|x| *x == 5));

    let h: PerCpuHashMap<_, u32, u64> = PerCpuHashMap::new(map(&ebpf, "pc_hash"))?;
    let n = kiln_loader::util::nr_possible_cpus()?;
    h.insert(
        &9,
        &PerCpuValues::new((0..n as u64).collect()),
        UpdateFlags::ANY,
    )?;
    assert_eq!(
        h.get(&9)?.ok_or("missing")?.into_vec(),
        (0..n as u64).collect::<Vec<_>>()
    );
    let all = h.get_all()?;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, 9);
    Ok(())
}

fn arrays_and_mmap() -> TestResult {
    let ebpf = load()?;
    let counters: Array<_, u64> = Array::new(map(&ebpf, "counters"))?;
    run_count(&ebpf, 4)?;
    assert_eq!(counters.get(0)?, 4);
    counters.set(3, &33, UpdateFlags::ANY)?;
    let mm = counters.mmap()?;
    assert_eq!(mm.read::<u64>(0)?, 4, "mmap sees the program's writes");
    assert_eq!(mm.read::<u64>(3)?, 33, "mmap sees syscall writes");
    mm.write::<u64>(5, &55)?;
    assert_eq!(counters.get(5)?, 55, "syscalls see mmap writes");
    assert!(counters.get(8).is_err(), "index 8 is out of bounds");
    assert_eq!(counters.iter().collect::<Result<Vec<_>, _>>()?.len(), 8);
    Ok(())
}

fn global_data() -> TestResult {
    let path = kiln_testkit::bpf_object("loader_maps.bpf.o")?;
    let spec = ObjectSpec::parse(&std::fs::read(&path)?)?;
    let ebpf = EbpfLoader::new()
        .set_global("increment", &5u64.to_ne_bytes())
        .load(&spec)?;
    run_count(&ebpf, 2)?;
    let counters: Array<_, u64> = Array::new(map(&ebpf, "counters"))?;
    assert_eq!(
        counters.get(0)?,
        10,
        "the .rodata increment was set to 5 before load"
    );
    // .bss holds `runs` and `seen_len`: read them through the mapped memory.
    let bss = map(&ebpf, ".bss");
    let var = |name: &str| {
        spec.map(".bss")
            .and_then(|m| m.variables.iter().find(|v| v.name == name))
            .map(|v| v.offset as usize)
    };
    let mm = kiln_loader::maps::MmapArray::new(bss)?;
    assert_eq!(
        mm.read_at::<u64>(var("runs").ok_or("no runs")?)?,
        2,
        "runs == 2"
    );
    assert_eq!(
        mm.read_at::<u32>(var("seen_len").ok_or("no seen_len")?)?,
        50
    );
    mm.write_at::<u64>(var("runs").ok_or("no runs")?, &100)?;
    run_count(&ebpf, 1)?;
    assert_eq!(
        mm.read_at::<u64>(var("runs").ok_or("no runs")?)?,
        101,
        "the program saw our write"
    );
    let rodata = map(&ebpf, ".rodata");
    assert!(
        !kiln_loader::maps::MmapArray::new(rodata)?.is_writable(),
        ".rodata maps read-only"
    );
    let e = rodata
        .update_bytes(&0u32.to_ne_bytes(), &[0; 8], UpdateFlags::ANY)
        .err()
        .ok_or(".rodata was written after load: it is not frozen")?;
    // The EPERM of a frozen map says so, with no capability or lockdown hint.
    assert_eq!(
        e.to_string(),
        "map '.rodata': update failed: bpf(MapUpdateElem) failed: Operation not permitted \
         (os error 1) (the map is frozen, or this fd of it was opened read-only: user space \
         cannot write it)"
    );
    let sys = std::error::Error::source(&e).ok_or("no source")?;
    assert!(sys.source().is_none(), "SysError ends the chain: {sys}");
    // Writing a constant after load says why it cannot, not "not permitted".
    let e = ebpf
        .set_global("increment", &7u64)
        .err()
        .ok_or("a frozen .rodata global was written after load")?;
    assert!(
        matches!(&e, kiln_loader::EbpfError::FrozenGlobal { name, .. } if name == "increment"),
        "{e:?}"
    );
    assert!(e.to_string().contains("frozen"), "{e}");
    assert_eq!(
        ebpf.global::<u64>("increment")?,
        5,
        "the value is unchanged"
    );
    let e = EbpfLoader::new()
        .set_global("increment", &[1u8; 4])
        .load(&spec)
        .err()
        .ok_or("wrong size accepted")?;
    assert!(
        e.to_string().contains("global 'increment': is 8 bytes"),
        "{e}"
    );
    Ok(())
}

fn lpm_queue_stack() -> TestResult {
    let ebpf = load()?;
    let routes: LpmTrie<_, [u8; 4], u32> = LpmTrie::new(map(&ebpf, "routes"))?;
    routes.insert(&LpmKey::new(8, [10, 0, 0, 0]), &1, UpdateFlags::ANY)?;
    routes.insert(&LpmKey::new(24, [10, 1, 2, 0]), &2, UpdateFlags::ANY)?;
    assert_eq!(
        routes.get(&LpmKey::new(32, [10, 1, 2, 3]))?,
        Some(2),
        "longest prefix wins"
    );
    assert_eq!(routes.get(&LpmKey::new(32, [10, 9, 9, 9]))?, Some(1));
    assert_eq!(routes.get(&LpmKey::new(32, [11, 0, 0, 1]))?, None);
    assert!(routes.remove(&LpmKey::new(24, [10, 1, 2, 0]))?);
    assert_eq!(routes.keys().count(), 1);

    run_count(&ebpf, 3)?;
    let q: Queue<_, u32> = Queue::new(map(&ebpf, "queue"))?;
    assert_eq!(q.peek()?, Some(1));
    assert_eq!(
        (q.pop()?, q.pop()?, q.pop()?, q.pop()?),
        (Some(1), Some(2), Some(3), None),
        "FIFO order"
    );
    let s: Stack<_, u32> = Stack::new(map(&ebpf, "stack"))?;
    for v in [1, 2, 3] {
        s.push(&v, UpdateFlags::ANY)?;
    }
    assert_eq!((s.pop()?, s.pop()?), (Some(3), Some(2)), "LIFO order");

    Ok(())
}

fn bloom_filter() -> TestResult {
    let path = kiln_testkit::bpf_object("loader_bloom.bpf.o")?;
    let ebpf = EbpfLoader::new().load(&ObjectSpec::parse(&std::fs::read(&path)?)?)?;
    let bloom: BloomFilter<_, u32> = BloomFilter::new(map(&ebpf, "bloom"))?;
    bloom.insert(&42)?;
    assert!(bloom.contains(&42)?);
    assert!(
        !bloom.contains(&43)? || !bloom.contains(&44)?,
        "a 64-entry filter is not all positives"
    );
    // The program's peek sees what user space inserted: skb->len 50 for a 64-byte frame.
    bloom.insert(&50)?;
    let r = ebpf.program("check").ok_or("no check")?.test_run(TestRun {
        data_in: Some(&[0u8; 64]),
        ..Default::default()
    })?;
    assert_eq!(r.retval, 1, "the program found 50 in the filter");
    Ok(())
}

fn has_bloom_filter() -> Option<String> {
    (!kiln_loader::probe::probe_map_type(kiln_obj::MapType::BLOOM_FILTER))
        .then(|| "kernel has no bloom filter maps (5.16+)".into())
}

fn fd_maps() -> TestResult {
    let ebpf = load()?;
    let jumps = ProgramArray::new(map(&ebpf, "jumps"))?;
    let prog = ebpf.program("count").ok_or("no count")?;
    jumps.set(2, prog.fd())?;
    assert_eq!(
        jumps.get_id(2)?,
        Some(prog.id()),
        "lookup answers the program id"
    );
    assert!(jumps.clear(2)?);

    let inner = Map::create(
        &kiln_obj::MapSpec {
            name: "inner".into(),
            map_type: kiln_obj::MapType::ARRAY,
            key_size: 4,
            value_size: 4,
            max_entries: 1,
            map_flags: 0,
            numa_node: None,
            map_extra: 0,
            pinning: kiln_obj::Pinning::None,
            origin: kiln_obj::MapOrigin::BtfMaps,
            initial_data: None,
            btf_key_type_id: None,
            btf_value_type_id: None,
            inner: None,
            variables: vec![],
        },
        None,
        None,
    )?;
    inner.insert(&0u32, &99u32, UpdateFlags::ANY)?;
    let outer = ArrayOfMaps::new(map(&ebpf, "outer"))?;
    outer.set(1, inner.fd())?;
    let got = outer.get(1)?.ok_or("inner missing")?;
    assert_eq!(
        got.info()?.id,
        inner.info()?.id,
        "the same inner map comes back"
    );
    assert_eq!(got.get::<u32, u32>(&0, UpdateFlags::ANY)?, Some(99));
    let oh: HashOfMaps<_, u32> = HashOfMaps::new(map(&ebpf, "outer_hash"))?;
    oh.insert(&5, inner.fd(), UpdateFlags::ANY)?;
    assert!(oh.get(&5)?.is_some());

    // Sockets: a TCP listener pair goes into sockmap/sockhash.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let client = std::net::TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    let socks = SockMap::new(map(&ebpf, "socks"))?;
    socks.set(0, client.as_fd(), UpdateFlags::ANY)?;
    assert!(socks.clear(0)?);
    let sh: SockHash<_, u32> = SockHash::new(map(&ebpf, "sock_hash"))?;
    sh.insert(&1, server.as_fd(), UpdateFlags::ANY)?;
    assert_eq!(sh.keys().collect::<Result<Vec<_>, _>>()?, [1]);

    let devs = DevMap::new(map(&ebpf, "devs"))?;
    devs.set(0, 1, None, UpdateFlags::ANY)?; // loopback
    assert_eq!(devs.get(0)?, Some((1, None)));
    let cpus = CpuMap::new(map(&ebpf, "cpus"))?;
    cpus.set(0, 192, None, UpdateFlags::ANY)?;
    assert_eq!(cpus.get(0)?.map(|v| v.0), Some(192));
    let store: FdStorage<_, u64> = FdStorage::new(map(&ebpf, "sk_store"))?;
    store.insert(client.as_fd(), &0x5eed, UpdateFlags::ANY)?;
    assert_eq!(
        store.get(client.as_fd())?,
        Some(0x5eed),
        "storage follows the socket"
    );
    assert_eq!(store.get(server.as_fd())?, None);
    let st = StackTraceMap::new(map(&ebpf, "stacks"))?;
    assert_eq!(st.ids().count(), 0);
    Ok(())
}

fn ring_buffer() -> TestResult {
    let ebpf = load()?;
    let mut ring = RingBuf::new(map(&ebpf, "events"))?;
    assert!(ring.next().is_none(), "empty before any run");
    run_count(&ebpf, 3)?;
    assert!(
        ring.wait(Some(Duration::from_secs(1)))?,
        "poll says readable"
    );
    let mut seqs = Vec::new();
    while let Some(rec) = ring.next() {
        assert_eq!(rec.len(), 8);
        seqs.push(u32::from_ne_bytes(rec[..4].try_into()?));
        assert_eq!(
            u32::from_ne_bytes(rec[4..8].try_into()?),
            50,
            "skb->len: the 64-byte test frame minus its Ethernet header"
        );
    }
    assert_eq!(seqs, [1, 2, 3]);
    // Many records wrap the 4 KiB ring: consume as we go.
    let mut n = 0;
    for _ in 0..200 {
        run_count(&ebpf, 1)?;
        n += ring.drain(|r| assert_eq!(r.len(), 8));
    }
    assert_eq!(n, 200);
    Ok(())
}

fn perf_buffer() -> TestResult {
    let ebpf = load()?;
    let perf = PerfEventArray::new(map(&ebpf, "perf"))?;
    let mut bufs = perf.open_all(4)?;
    let prog = ebpf.program("perf_out").ok_or("no perf_out")?;
    for _ in 0..5 {
        prog.test_run(TestRun {
            data_in: Some(&[0u8; 64]),
            ..Default::default()
        })?;
    }
    assert!(
        bufs.wait(Some(Duration::from_secs(1)))?,
        "epoll says readable"
    );
    let mut samples = 0;
    bufs.read_events(|_cpu, rec| match rec {
        PerfRecord::Sample(data) => {
            assert!(data.len() >= 8);
            assert_eq!(u32::from_ne_bytes(data[..4].try_into().unwrap()), 7);
            samples += 1;
        }
        PerfRecord::Lost(n) => panic!("lost {n} records"),
    });
    assert_eq!(samples, 5);
    Ok(())
}

fn map_info_and_pin() -> TestResult {
    let ebpf = load()?;
    let m = map(&ebpf, "hash");
    let info = m.info()?;
    assert_eq!(
        (
            info.name.as_str(),
            info.key_size,
            info.value_size,
            info.max_entries
        ),
        ("hash", 4, 8, 1024)
    );
    assert_eq!(info.map_type, kiln_obj::MapType::HASH);
    let again = Map::from_id(info.id)?;
    assert_eq!(again.key_size(), 4);
    let pin = std::path::PathBuf::from(format!("/sys/fs/bpf/kiln-test-map-{}", std::process::id()));
    if kiln_loader::pin::is_on_bpffs(&pin).unwrap_or(false) {
        m.pin(&pin)?;
        let opened = Map::from_pin(&pin, Default::default());
        kiln_loader::pin::unpin(&pin)?;
        let opened = opened?;
        assert_eq!(opened.info()?.id, info.id, "the pin opens the same map");
        assert_eq!(opened.name(), "hash");
    } else {
        eprintln!("map_info_and_pin: /sys/fs/bpf is not a bpffs, pin part not run");
    }
    Ok(())
}

fn replace_map_shares_state() -> TestResult {
    let path = kiln_testkit::bpf_object("loader_maps.bpf.o")?;
    let spec = ObjectSpec::parse(&std::fs::read(&path)?)?;
    let first = EbpfLoader::new().load(&spec)?;
    let shared = first.map("counters").ok_or("no counters")?.try_clone()?;
    let second = EbpfLoader::new()
        .replace_map("counters", shared)
        .load(&spec)?;
    run_count(&second, 2)?;
    let counters: Array<_, u64> = Array::new(map(&first, "counters"))?;
    assert_eq!(
        counters.get(0)?,
        2,
        "the second object's program wrote the first object's map"
    );
    // A replacement that does not match is refused before anything loads.
    let wrong = first.map("hash").ok_or("no hash")?.try_clone()?;
    let e = EbpfLoader::new()
        .replace_map("counters", wrong)
        .load(&spec)
        .err()
        .ok_or("mismatch accepted")?;
    assert!(
        e.to_string()
            .contains("map 'counters': replacement map does not match"),
        "{e}"
    );
    Ok(())
}

fn main() {
    let b = &[Need::Bpf];
    kiln_testkit::run(vec![
        test("hash_maps", b, hash_maps),
        test("batch_ops", b, batch_ops),
        test("per_cpu", b, per_cpu),
        test("arrays_and_mmap", b, arrays_and_mmap),
        test("global_data", b, global_data),
        test("lpm_queue_stack", b, lpm_queue_stack),
        test(
            "bloom_filter",
            &[Need::Bpf, Need::Probe("bloom_filter", has_bloom_filter)],
            bloom_filter,
        ),
        test("fd_maps", b, fd_maps),
        test("ring_buffer", b, ring_buffer),
        test("perf_buffer", b, perf_buffer),
        test("map_info_and_pin", b, map_info_and_pin),
        test("replace_map_shares_state", b, replace_map_shares_state),
    ]);
}
