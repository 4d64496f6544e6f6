//! Map migration streams: batch reads and writes in bounded chunks, entries
//! that do not fit skipped, on maps far larger than one chunk.

use kiln_loader::maps::UpdateFlags;
use kiln_loader::{EbpfLoader, Map};
use kiln_manifest::migrate::copy_entries;
use kiln_testkit::{Need, TestResult};

/// A fresh u32 -> u64 hash map of `max_entries`: the test object's COUNTERS, resized.
fn hash(max_entries: u32) -> Result<Map, Box<dyn std::error::Error + Send + Sync>> {
    let object = kiln_testkit::bpf_object("manifest_counter.bpf.o")?;
    let spec = kiln_obj::ObjectSpec::parse(&std::fs::read(object)?)?;
    let mut loader = EbpfLoader::new();
    for p in &spec.programs {
        loader.skip_program(&p.name);
    }
    let mut ebpf = loader
        .map_max_entries("COUNTERS", max_entries)
        .load(&spec)?;
    Ok(ebpf.take_map("COUNTERS").ok_or("no COUNTERS")?)
}

fn migration_streams_every_entry_and_skips_what_does_not_fit() -> TestResult {
    const N: u32 = 20_000;
    let old = hash(N)?;
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    for k in 0..N {
        keys.extend_from_slice(&k.to_ne_bytes());
        values.extend_from_slice(&(u64::from(k) * 3).to_ne_bytes());
    }
    old.update_batch_bytes(&keys, &values, UpdateFlags::ANY)?;

    let bigger = hash(2 * N)?;
    assert_eq!(copy_entries(&old, &bigger, None)?, N as usize);
    for k in [0u32, 4095, 4096, 12_345, N - 1] {
        let v = bigger
            .lookup_bytes(&k.to_ne_bytes(), UpdateFlags::ANY)?
            .ok_or_else(|| format!("key {k} not copied"))?;
        assert_eq!(u64::from_ne_bytes(v[..8].try_into()?), u64::from(k) * 3);
    }

    // A smaller map takes what fits: exactly its size, every value right.
    let smaller = hash(N / 4)?;
    assert_eq!(copy_entries(&old, &smaller, None)?, (N / 4) as usize);
    let mut seen = 0;
    for k in smaller.keys_bytes() {
        let k = k?;
        let v = smaller
            .lookup_bytes(&k, UpdateFlags::ANY)?
            .ok_or("vanished")?;
        let key = u32::from_ne_bytes(k[..4].try_into()?);
        assert_eq!(u64::from_ne_bytes(v[..8].try_into()?), u64::from(key) * 3);
        seen += 1;
    }
    assert_eq!(seen, N / 4);
    Ok(())
}

fn main() {
    kiln_testkit::run(vec![kiln_testkit::test(
        "migration_streams_every_entry_and_skips_what_does_not_fit",
        &[Need::Root, Need::Bpf],
        migration_streams_every_entry_and_skips_what_does_not_fit,
    )]);
}
