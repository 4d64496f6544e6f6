//! BY_NAME maps: created and pinned on first load, reused by the next load,
//! refused (naming the difference) when the pinned map does not match.

use std::path::{Path, PathBuf};

use kiln_loader::maps::{HashMap, UpdateFlags};
use kiln_loader::programs::TestRun;
use kiln_loader::{EbpfError, EbpfLoader};
use kiln_obj::ObjectSpec;
use kiln_testkit::{Need, TestResult, test};

struct PinDir(PathBuf);

impl PinDir {
    fn new(tag: &str) -> std::io::Result<Self> {
        let p = Path::new("/sys/fs/bpf").join(format!("kiln-test-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(PinDir(p))
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn spec() -> Result<ObjectSpec, Box<dyn std::error::Error + Send + Sync>> {
    Ok(ObjectSpec::parse(&std::fs::read(
        kiln_testkit::bpf_object("loader_pinned.bpf.o")?,
    )?)?)
}

fn bump(ebpf: &kiln_loader::Ebpf) -> TestResult {
    ebpf.program("bump").ok_or("no bump")?.test_run(TestRun {
        data_in: Some(&[0u8; 64]),
        ..Default::default()
    })?;
    Ok(())
}

fn reuse_keeps_state() -> TestResult {
    let dir = PinDir::new("reuse")?;
    let spec = spec()?;
    let first = EbpfLoader::new().map_pin_path(&dir.0).load(&spec)?;
    assert!(dir.0.join("shared_counts").exists(), "pinned by name");
    assert!(first.reused_maps().is_empty());
    bump(&first)?;
    drop(first);
    let second = EbpfLoader::new().map_pin_path(&dir.0).load(&spec)?;
    assert_eq!(second.reused_maps(), ["shared_counts"]);
    bump(&second)?;
    let counts: HashMap<_, u32, u64> = HashMap::new(second.map("shared_counts").ok_or("no map")?)?;
    assert_eq!(
        counts.get(&1)?,
        Some(2),
        "the second load counted on top of the first"
    );
    Ok(())
}

fn mismatch_is_refused() -> TestResult {
    let dir = PinDir::new("mismatch")?;
    let spec = spec()?;
    let first = EbpfLoader::new().map_pin_path(&dir.0).load(&spec)?;
    first
        .map("shared_counts")
        .ok_or("no map")?
        .insert(&1u32, &5u64, UpdateFlags::ANY)?;
    let e = EbpfLoader::new()
        .map_pin_path(&dir.0)
        .map_max_entries("shared_counts", 4096)
        .load(&spec)
        .err()
        .ok_or("an incompatible pinned map was reused")?;
    assert!(matches!(e, EbpfError::Pin(_)), "{e}");
    let msg = e.to_string();
    let want = format!(
        "map 'shared_counts': pinned map at {} has max_entries 128, object wants 4096",
        dir.0.join("shared_counts").display()
    );
    assert_eq!(msg, want);
    let mut other = spec.clone();
    other.map_mut("shared_counts").ok_or("no map")?.value_size = 4;
    let e = EbpfLoader::new()
        .map_pin_path(&dir.0)
        .load(&other)
        .err()
        .ok_or("value size mismatch accepted")?;
    assert!(
        e.to_string().contains("has value_size 8, object wants 4"),
        "{e}"
    );
    // The refused loads left the pinned map untouched.
    let counts: HashMap<_, u32, u64> = HashMap::new(first.map("shared_counts").ok_or("no map")?)?;
    assert_eq!(counts.get(&1)?, Some(5));
    Ok(())
}

fn failed_load_removes_its_pins() -> TestResult {
    let dir = PinDir::new("rollback")?;
    let mut spec = spec()?;
    // Break the program so the load fails after the map was created and pinned.
    spec.programs[0].insns.truncate(1);
    assert!(EbpfLoader::new().map_pin_path(&dir.0).load(&spec).is_err());
    assert!(
        !dir.0.join("shared_counts").exists(),
        "the failed load unpinned what it pinned"
    );
    Ok(())
}

fn bpffs_mounted() -> Option<String> {
    match kiln_loader::pin::is_on_bpffs(Path::new("/sys/fs/bpf/x")) {
        Ok(true) => None,
        _ => Some("/sys/fs/bpf is not a bpffs mount".into()),
    }
}

fn main() {
    let n = &[Need::Bpf, Need::Probe("bpffs", bpffs_mounted)];
    kiln_testkit::run(vec![
        test("reuse_keeps_state", n, reuse_keeps_state),
        test("mismatch_is_refused", n, mismatch_is_refused),
        test(
            "failed_load_removes_its_pins",
            n,
            failed_load_removes_its_pins,
        ),
    ]);
}
