//! Every public map function, handed keys and values of the wrong size,
//! answers a typed error naming the map and never lets the kernel write past
//! a Rust buffer (issue #23: a 1-byte value buffer on a map of 8-byte values
//! once let the kernel overwrite the next 7 bytes).

use kiln_loader::maps::{
    Array, BloomFilter, HashMap, LpmKey, LpmTrie, MmapArray, PerCpuArray, PerCpuHashMap,
    PerCpuValues, Queue, Stack, UpdateFlags,
};
use kiln_loader::{Map, MapError, MapType};
use kiln_testkit::{Need, TestResult, test};

mod attach_util;

const NO_PREALLOC: u32 = 1;
const MMAPABLE: u32 = 1 << 10;

fn map(name: &str, t: MapType, key: u32, value: u32, flags: u32) -> Result<Map, MapError> {
    attach_util::create_map(name, t, key, value, 8, flags)
}

/// Asserts `r` is `MapError::BufferSize` for `op`, `what`, with these sizes, and its message.
fn assert_buffer<T: std::fmt::Debug>(
    r: Result<T, MapError>,
    op: &str,
    what: &str,
    actual: usize,
    expected: usize,
) -> TestResult {
    let e = match r {
        Err(e) => e,
        Ok(v) => {
            return Err(format!("{op} with a {actual}-byte {what} was accepted: {v:?}").into());
        }
    };
    let MapError::BufferSize {
        name,
        op: o,
        what: w,
        actual: a,
        expected: x,
    } = &e
    else {
        return Err(
            format!("{op} with a {actual}-byte {what}: expected BufferSize, got {e}").into(),
        );
    };
    assert_eq!((*o, *w, *a, *x), (op, what, actual, expected), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "map '{name}': {op}: the {what} buffer has {actual} bytes, the map's definition needs {expected}"
        )
    );
    Ok(())
}

/// Asserts `r` is `MapError::WrongSize` for `what`, with these sizes.
fn assert_wrong_size<T>(
    r: Result<T, MapError>,
    what: &str,
    actual: u32,
    expected: usize,
) -> TestResult {
    match r {
        Err(MapError::WrongSize {
            what: w,
            actual: a,
            expected: e,
            ..
        }) if w == what && a == actual && e == expected => Ok(()),
        Err(other) => Err(format!("expected WrongSize of the {what}, got {other}").into()),
        Ok(_) => Err(format!("a Rust {what} of {expected} bytes was accepted").into()),
    }
}

/// The unsoundness the issue found: the kernel wrote a whole 8-byte value
/// into a 1-byte buffer. Now the call fails and the neighbour is untouched.
fn short_value_buffer_is_refused_and_nothing_is_overwritten() -> TestResult {
    let m = map("ws_canary", MapType::HASH, 4, 8, 0)?;
    m.insert(&1u32, &u64::MAX, UpdateFlags::ANY)?;
    #[repr(C)]
    struct Frame {
        value: [u8; 1],
        neighbour: [u8; 7],
    }
    let mut frame = Frame {
        value: [0],
        neighbour: [0x5a; 7],
    };
    let r = m.lookup_into(&1u32.to_ne_bytes(), &mut frame.value, UpdateFlags::ANY);
    assert_buffer(r, "lookup", "value", 1, 8)?;
    assert_eq!(
        frame.neighbour, [0x5a; 7],
        "the kernel wrote past the buffer"
    );
    assert_eq!(frame.value, [0]);
    Ok(())
}

fn byte_functions_check_keys_and_values() -> TestResult {
    let m = map("ws_hash", MapType::HASH, 4, 8, 0)?;
    let (key, short_key, long_key) = ([1u8; 4], [1u8; 2], [1u8; 6]);
    let value = [7u8; 8];
    m.update_bytes(&key, &value, UpdateFlags::ANY)?;

    assert_buffer(
        m.lookup_bytes(&short_key, UpdateFlags::ANY),
        "lookup",
        "key",
        2,
        4,
    )?;
    assert_buffer(
        m.lookup_bytes(&long_key, UpdateFlags::ANY),
        "lookup",
        "key",
        6,
        4,
    )?;
    let mut big = [0u8; 16];
    assert_buffer(
        m.lookup_into(&key, &mut big, UpdateFlags::ANY),
        "lookup",
        "value",
        16,
        8,
    )?;
    assert_buffer(
        m.update_bytes(&short_key, &value, UpdateFlags::ANY),
        "update",
        "key",
        2,
        4,
    )?;
    assert_buffer(
        m.update_bytes(&key, &value[..3], UpdateFlags::ANY),
        "update",
        "value",
        3,
        8,
    )?;
    assert_buffer(m.delete_bytes(&long_key), "delete", "key", 6, 4)?;
    assert_buffer(
        m.next_key_bytes(Some(&short_key)),
        "get next key",
        "key",
        2,
        4,
    )?;

    // Batches: buffers of `count` elements, tokens of max(key size, 4) bytes.
    let (mut keys, mut values, mut token) = ([0u8; 8], [0u8; 16], [0u8; 4]);
    assert_buffer(
        m.lookup_batch_bytes(false, None, &mut token, &mut keys[..7], &mut values, 2),
        "lookup batch",
        "keys",
        7,
        8,
    )?;
    assert_buffer(
        m.lookup_batch_bytes(true, None, &mut token, &mut keys, &mut values[..9], 2),
        "lookup and delete batch",
        "values",
        9,
        16,
    )?;
    assert_buffer(
        m.lookup_batch_bytes(false, None, &mut token[..2], &mut keys, &mut values, 2),
        "lookup batch",
        "out_batch",
        2,
        4,
    )?;
    assert_buffer(
        m.lookup_batch_bytes(
            false,
            Some(&[0u8; 3]),
            &mut token,
            &mut keys,
            &mut values,
            2,
        ),
        "lookup batch",
        "in_batch",
        3,
        4,
    )?;
    assert_buffer(
        m.update_batch_bytes(&[1u8; 6], &[0u8; 8], UpdateFlags::ANY),
        "update batch",
        "keys",
        6,
        4,
    )?;
    assert_buffer(
        m.update_batch_bytes(&[1u8; 8], &[0u8; 8], UpdateFlags::ANY),
        "update batch",
        "values",
        8,
        16,
    )?;
    assert_buffer(
        m.delete_batch_bytes(&[1u8; 5]),
        "delete batch",
        "keys",
        5,
        4,
    )?;

    // Nothing above reached the map: the one element is still there, unchanged.
    assert_eq!(
        m.lookup_bytes(&key, UpdateFlags::ANY)?,
        Some(value.to_vec())
    );
    assert_eq!(m.keys_bytes().count(), 1);
    Ok(())
}

fn typed_functions_check_rust_types() -> TestResult {
    let m = map("ws_typed", MapType::HASH, 4, 8, 0)?;
    m.insert(&1u32, &5u64, UpdateFlags::ANY)?;
    assert_wrong_size(m.get::<u32, u32>(&1, UpdateFlags::ANY), "value size", 8, 4)?;
    assert_wrong_size(m.get::<u64, u64>(&1, UpdateFlags::ANY), "key size", 4, 8)?;
    assert_wrong_size(m.insert(&1u16, &5u64, UpdateFlags::ANY), "key size", 4, 2)?;
    assert_wrong_size(
        m.insert(&1u32, &5u128, UpdateFlags::ANY),
        "value size",
        8,
        16,
    )?;
    assert_wrong_size(m.remove(&1u8), "key size", 4, 1)?;
    let first = m
        .keys::<u64>()
        .next()
        .ok_or("keys::<u64> yielded nothing")?;
    assert_wrong_size(first, "key size", 4, 8)?;
    let first = m
        .entries::<u32, u32>()
        .next()
        .ok_or("entries yielded nothing")?;
    assert_wrong_size(first, "value size", 8, 4)?;
    assert_eq!(m.get::<u32, u64>(&1, UpdateFlags::ANY)?, Some(5));

    // The typed views check once, at construction.
    assert_wrong_size(HashMap::<_, u32, u32>::new(&m), "value size", 8, 4)?;
    assert_wrong_size(HashMap::<_, u16, u64>::new(&m), "key size", 4, 2)?;
    let arr = map("ws_array", MapType::ARRAY, 4, 8, 0)?;
    assert_wrong_size(Array::<_, u32>::new(&arr), "value size", 8, 4)?;
    let lpm = map("ws_lpm", MapType::LPM_TRIE, 8, 8, NO_PREALLOC)?;
    assert_wrong_size(LpmTrie::<_, [u8; 2], u64>::new(&lpm), "key size", 8, 6)?;
    let trie = LpmTrie::<_, [u8; 4], u64>::new(&lpm)?;
    trie.insert(&LpmKey::new(8, [10, 0, 0, 0]), &1, UpdateFlags::ANY)?;
    assert_eq!(trie.get(&LpmKey::new(32, [10, 1, 2, 3]))?, Some(1));
    Ok(())
}

fn per_cpu_functions_check_values_per_cpu() -> TestResult {
    let cpus = kiln_loader::util::nr_possible_cpus()?;
    let m = map("ws_pcpu", MapType::PERCPU_HASH, 4, 4, 0)?;
    // One slot per possible CPU, each rounded up to 8 bytes.
    let slots = 8 * cpus;
    assert_eq!(m.value_buf_len()?, slots);
    assert_buffer(
        m.update_bytes(&1u32.to_ne_bytes(), &[0u8; 4], UpdateFlags::ANY),
        "update",
        "value",
        4,
        slots,
    )?;
    // One slot more than there are possible CPUs: wrong on a machine of any
    // size (with one CPU, a single slot would be exactly right).
    let mut one_too_many = vec![0u8; slots + 8];
    assert_buffer(
        m.lookup_into(&1u32.to_ne_bytes(), &mut one_too_many, UpdateFlags::ANY),
        "lookup",
        "value",
        slots + 8,
        slots,
    )?;
    assert_wrong_size(m.get_per_cpu::<u32, u64>(&1), "value size", 4, 8)?;
    let too_few = PerCpuValues::new(vec![1u32; cpus + 1]);
    match m.insert_per_cpu(&1u32, &too_few, UpdateFlags::ANY) {
        Err(MapError::PerCpuCount {
            given, possible, ..
        }) if given == cpus + 1 && possible == cpus => {}
        other => return Err(format!("expected PerCpuCount, got {other:?}").into()),
    }
    m.insert_per_cpu(&1u32, &PerCpuValues::splat(9u32)?, UpdateFlags::ANY)?;
    let back = m.get_per_cpu::<u32, u32>(&1)?.ok_or("key 1 missing")?;
    assert!(back.iter().all(|v| *v == 9), "{back:?}");

    assert_wrong_size(PerCpuHashMap::<_, u32, u64>::new(&m), "value size", 4, 8)?;
    let arr = map("ws_pcpu_arr", MapType::PERCPU_ARRAY, 4, 4, 0)?;
    assert_wrong_size(PerCpuArray::<_, u16>::new(&arr), "value size", 4, 2)?;
    Ok(())
}

fn keyless_maps_check_their_value_type() -> TestResult {
    let q = map("ws_queue", MapType::QUEUE, 0, 8, 0)?;
    assert_wrong_size(Queue::<_, u32>::new(&q), "value size", 8, 4)?;
    let s = map("ws_stack", MapType::STACK, 0, 8, 0)?;
    assert_wrong_size(Stack::<_, u16>::new(&s), "value size", 8, 2)?;
    let queue = Queue::<_, u64>::new(&q)?;
    queue.push(&3, UpdateFlags::ANY)?;
    assert_eq!(queue.pop()?, Some(3));
    // A keyless map has no key to hand over: a 4-byte key is the wrong size.
    assert_buffer(
        q.update_bytes(&[0u8; 4], &[0u8; 8], UpdateFlags::ANY),
        "update",
        "key",
        4,
        0,
    )?;
    Ok(())
}

fn bloom_filter_checks_its_value_type() -> TestResult {
    let b = map("ws_bloom", MapType::BLOOM_FILTER, 0, 8, 0)?;
    assert_wrong_size(BloomFilter::<_, u32>::new(&b), "value size", 8, 4)?;
    let bloom = BloomFilter::<_, u64>::new(&b)?;
    bloom.insert(&42)?;
    assert!(bloom.contains(&42)?);
    Ok(())
}

/// Memory-mapped elements sit at strides of the value size rounded to 8: a
/// type aligned to 16 lands misaligned at odd strides of 24 bytes, which a
/// volatile read must not touch.
fn mmap_array_checks_bounds_and_alignment() -> TestResult {
    let m = map("ws_mmap", MapType::ARRAY, 4, 24, MMAPABLE)?;
    let mm = MmapArray::new(&m)?;
    mm.write(0, &7u128)?;
    assert_eq!(mm.read::<u128>(0)?, 7);
    match mm.read::<u128>(1) {
        Err(e @ MapError::Misaligned { offset: 24, .. }) => assert_eq!(
            e.to_string(),
            format!(
                "map 'ws_mmap': offset 24 is not aligned for a {}-byte-aligned type",
                std::mem::align_of::<u128>()
            )
        ),
        Ok(_) if std::mem::align_of::<u128>() <= 8 => {}
        other => return Err(format!("misaligned read: {other:?}").into()),
    }
    match mm.read::<[u64; 4]>(0) {
        Err(MapError::OutOfBounds { index: 0, .. }) => {}
        other => return Err(format!("a 32-byte read of a 24-byte element: {other:?}").into()),
    }
    match mm.read::<u64>(8) {
        Err(MapError::OutOfBounds {
            index: 8,
            max_entries: 8,
            ..
        }) => {}
        other => return Err(format!("index past max_entries: {other:?}").into()),
    }
    Ok(())
}

fn probe(name: &'static str, t: MapType, key: u32, value: u32, flags: u32) -> Option<String> {
    kiln_testkit::map_type_unavailable(name, t.0, key, value, flags)
}

fn no_percpu_hash() -> Option<String> {
    probe("per-CPU hash", MapType::PERCPU_HASH, 4, 4, 0)
        .or_else(|| probe("per-CPU array", MapType::PERCPU_ARRAY, 4, 4, 0))
}
fn no_lpm_trie() -> Option<String> {
    probe("LPM trie", MapType::LPM_TRIE, 8, 8, NO_PREALLOC)
}
fn no_queue() -> Option<String> {
    probe("queue", MapType::QUEUE, 0, 8, 0).or_else(|| probe("stack", MapType::STACK, 0, 8, 0))
}
fn no_bloom_filter() -> Option<String> {
    probe("bloom filter", MapType::BLOOM_FILTER, 0, 8, 0)
}

fn no_mmapable_array() -> Option<String> {
    probe("memory-mappable array", MapType::ARRAY, 4, 24, MMAPABLE)
}

fn main() {
    let base = [Need::Root, Need::Bpf];
    let with = |p: Need| vec![Need::Root, Need::Bpf, p];
    kiln_testkit::run(vec![
        test(
            "short_value_buffer_is_refused_and_nothing_is_overwritten",
            &base,
            short_value_buffer_is_refused_and_nothing_is_overwritten,
        ),
        test(
            "byte_functions_check_keys_and_values",
            &base,
            byte_functions_check_keys_and_values,
        ),
        test(
            "typed_functions_check_rust_types",
            &with(Need::Probe("lpm_trie", no_lpm_trie)),
            typed_functions_check_rust_types,
        ),
        test(
            "per_cpu_functions_check_values_per_cpu",
            &with(Need::Probe("percpu", no_percpu_hash)),
            per_cpu_functions_check_values_per_cpu,
        ),
        test(
            "keyless_maps_check_their_value_type",
            &with(Need::Probe("queue", no_queue)),
            keyless_maps_check_their_value_type,
        ),
        test(
            "mmap_array_checks_bounds_and_alignment",
            &with(Need::Probe("mmapable_array", no_mmapable_array)),
            mmap_array_checks_bounds_and_alignment,
        ),
        test(
            "bloom_filter_checks_its_value_type",
            &with(Need::Probe("bloom_filter", no_bloom_filter)),
            bloom_filter_checks_its_value_type,
        ),
    ]);
}
