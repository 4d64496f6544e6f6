//! Kiln changes only what it owns: other tools' pins under a pin root
//! survive apply, re-apply, an upgrade and destroy with their data; pin
//! roots that are a bpffs mount point or nested with another deployment's
//! are refused, naming it; a pin root off bpffs is never removed; `--adopt`
//! records exactly what it took over; a layout of an earlier Kiln (no
//! record) is recognised only with its lock file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use kiln_manifest::Deployment;
use kiln_manifest::apply::{ApplyError, ApplyOptions, Step};
use kiln_manifest::ownership::{Ledger, Origin, OwnershipError, STATE_DIR};
use kiln_testkit::{Need, TestResult};

mod common;
use common::{counter, counter_manifest, pin_foreign_map, pinned_value, private_netns, send_udp};

struct Fixture {
    name: String,
    dir: PathBuf,
    /// A directory of the test's own on the bpffs; pin roots go under it.
    base: PathBuf,
    root: PathBuf,
    v1: PathBuf,
    v2: PathBuf,
}

impl Fixture {
    fn new() -> Result<Self, String> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "kiln-own-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        private_netns()?;
        let base = PathBuf::from("/sys/fs/bpf").join(&name);
        Ok(Fixture {
            root: base.join("app"),
            base,
            name,
            dir,
            v1: kiln_testkit::bpf_object("manifest_counter.bpf.o")?,
            v2: kiln_testkit::bpf_object("manifest_counter_v2.bpf.o")?,
        })
    }

    /// The counter deployment `name` at `root` over `object`.
    fn deployment_at(
        &self,
        name: &str,
        root: &Path,
        object: &Path,
        map_extra: &str,
    ) -> Result<Deployment, String> {
        let text = counter_manifest(name, root, object, map_extra, "");
        let path = self.dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        Deployment::load(&path, &BTreeMap::new()).map_err(|d| d.to_string())
    }

    fn deployment(&self, object: &Path, map_extra: &str) -> Result<Deployment, String> {
        self.deployment_at(&self.name, &self.root, object, map_extra)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        common::remove_deployment(&self.name, &self.root, &self.dir);
        // Whatever the test pinned as "another tool" goes too.
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn adopt() -> ApplyOptions {
    ApplyOptions {
        adopt: true,
        ..ApplyOptions::default()
    }
}

/// Foreign maps at the top of the pin root, inside Kiln's own `maps/` and
/// in a directory of their own, each holding key 1.
fn foreign_paths(root: &Path) -> [(PathBuf, u64); 3] {
    [
        (root.join("bpftool_map"), 101),
        (root.join("maps/other_tool"), 102),
        (root.join("vendor/deep/state"), 103),
    ]
}

fn pin_foreign(root: &Path) -> Result<(), String> {
    for (p, v) in foreign_paths(root) {
        pin_foreign_map(&p, 1, v)?;
    }
    Ok(())
}

fn assert_foreign_intact(root: &Path, when: &str) -> TestResult {
    for (p, v) in foreign_paths(root) {
        let got = pinned_value(&p, 1).map_err(|e| format!("{when}: {e}"))?;
        assert_eq!(got, Some(v), "{when}: {} lost its data", p.display());
    }
    Ok(())
}

fn foreign_pins_survive_apply_upgrade_and_destroy() -> TestResult {
    let f = Fixture::new()?;
    pin_foreign(&f.root)?;
    let d = f.deployment(&f.v1, "")?;
    // No record and pins present: refused, naming them, nothing changed.
    match d.plan() {
        Err(ApplyError::Ownership(OwnershipError::Unclaimed { listing, .. })) => {
            for want in ["bpftool_map", "maps/other_tool", "vendor"] {
                assert!(listing.contains(want), "{want} not named: {listing}");
            }
        }
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    assert!(matches!(
        d.apply(&ApplyOptions::default()),
        Err(ApplyError::Ownership(OwnershipError::Unclaimed { .. }))
    ));
    assert!(
        !f.root.join(STATE_DIR).exists(),
        "a refused apply wrote a record"
    );
    // --adopt: none of them is at a path of the manifest, so none is taken.
    let out = d.apply(&adopt())?;
    assert!(
        out.notes.iter().any(|n| n.contains("adopted nothing")),
        "{:?}",
        out.notes
    );
    assert_eq!(out.plan.foreign.len(), 3, "{}", out.plan);
    let ledger = Ledger::read(&f.root)?.ok_or("no record after apply")?;
    assert!(
        ledger.owned().values().all(|o| *o == Origin::Created),
        "{:?}",
        ledger.owned()
    );
    assert_foreign_intact(&f.root, "after the first apply")?;
    send_udp()?;
    assert!(counter(&f.root, 1)? > 0, "the deployment does not run");

    // Re-apply: a no-op that shows the foreign pins and leaves them.
    let again = f.deployment(&f.v1, "")?.apply(&ApplyOptions::default())?;
    assert!(again.plan.is_noop(), "{}", again.plan);
    assert!(
        again.plan.to_string().contains("= foreign"),
        "{}",
        again.plan
    );
    let status = d.status()?;
    assert!(status.all_ok(), "foreign pins are not drift:\n{status}");
    assert_eq!(status.foreign.len(), 3, "{status}");
    // More foreign pins after the record exists.
    pin_foreign_map(&f.root.join("progs/someone_elses"), 1, 104)?;
    // Upgrade: new code, migrated map.
    let up = f
        .deployment(&f.v2, "max_entries = 32\non_upgrade = \"migrate\"")?
        .apply(&ApplyOptions::default())?;
    assert!(!up.plan.is_noop());
    assert_foreign_intact(&f.root, "after the upgrade")?;
    assert_eq!(
        pinned_value(&f.root.join("progs/someone_elses"), 1)?,
        Some(104)
    );

    let done = kiln_manifest::apply::destroy_owned(&f.name, &f.root)?;
    // Two links, two programs, COUNTERS and the object's read-only data.
    assert_eq!(done.removed.len(), 6, "{:?}", done.removed);
    assert_foreign_intact(&f.root, "after destroy")?;
    assert_eq!(
        pinned_value(&f.root.join("progs/someone_elses"), 1)?,
        Some(104)
    );
    for p in [
        "maps/COUNTERS",
        "progs/count_exec",
        "links/count_exec",
        "links",
    ] {
        assert!(!f.root.join(p).exists(), "destroy left {p}");
    }
    assert!(
        done.left.contains(&f.root.join("bpftool_map")),
        "{:?}",
        done.left
    );
    // Once the other tool's pins are gone, destroy removes the rest.
    for (p, _) in foreign_paths(&f.root) {
        std::fs::remove_file(&p)?;
    }
    std::fs::remove_file(f.root.join("progs/someone_elses"))?;
    std::fs::remove_dir_all(f.root.join("vendor"))?;
    // The other tool made the pin root and maps/ before Kiln came: they
    // are its directories, and stay (empty) with Kiln's record.
    let done = kiln_manifest::apply::destroy_owned(&f.name, &f.root)?;
    assert_eq!(done.left, vec![f.root.join("maps")]);
    for entry in std::fs::read_dir(&f.root)? {
        let name = entry?.file_name();
        assert!(name == "maps" || name == STATE_DIR, "left {name:?}");
    }
    Ok(())
}

fn foreign_pin_at_a_manifest_path_is_refused() -> TestResult {
    let f = Fixture::new()?;
    let d = f.deployment(&f.v1, "")?;
    d.apply(&ApplyOptions::default())?;
    // Someone replaces Kiln's link pin with a map of their own.
    let path = f.root.join("links/count_exec");
    std::fs::remove_file(&path)?;
    // The record still names it: pruned on the next apply, before which a
    // pin there would count as ours. Only what Kiln never recorded is foreign.
    let mut ledger = Ledger::read(&f.root)?.ok_or("no record")?;
    ledger.forget("links/count_exec")?;
    pin_foreign_map(&path, 1, 7)?;
    match d.apply(&ApplyOptions::default()) {
        Err(ApplyError::Ownership(OwnershipError::Occupied { path: p, .. })) => {
            assert_eq!(p, path)
        }
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    assert_eq!(
        pinned_value(&path, 1)?,
        Some(7),
        "the foreign map was touched"
    );
    Ok(())
}

fn failed_first_apply_leaves_nothing_behind() -> TestResult {
    let f = Fixture::new()?;
    let d = f.deployment(&f.v1, "")?;
    let fail = |step| ApplyOptions {
        fail_at: Some(step),
        ..adopt()
    };
    // Into a fresh pin root: no pin root, no record afterwards.
    d.apply(&fail(Step::PinLink))
        .err()
        .ok_or("the failure was not injected")?;
    assert!(
        !f.base.exists() || !f.root.exists(),
        "the failed apply left {}",
        f.root.display()
    );
    // Beside another tool's pins: they stay, and no record is left either.
    pin_foreign(&f.root)?;
    // Every step a first apply goes through (it never migrates, syncs,
    // replaces or unpins).
    for step in [
        Step::CreateMap,
        Step::LoadProgram,
        Step::Attach,
        Step::PinMap,
        Step::PinProgram,
        Step::PinLink,
    ] {
        if d.apply(&fail(step)).is_ok() {
            return Err(format!("no failure injected at {}", step.name()).into());
        }
        assert_foreign_intact(&f.root, &format!("after a failure at {}", step.name()))?;
        assert!(
            !f.root.join(STATE_DIR).exists(),
            "a failure at {} left a record",
            step.name()
        );
    }
    Ok(())
}

/// Mode and group of `path`.
fn mode_of(path: &Path) -> Result<(u32, u32), String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((m.mode() & 0o7777, m.gid()))
}

fn readers_group_may_read_the_maps() -> TestResult {
    let f = Fixture::new()?;
    let gid = 4242;
    let migrate = "max_entries = 32\non_upgrade = \"migrate\"";
    let with_readers = |object: &Path, readers: &str| -> Result<Deployment, String> {
        let map_extra = if object == f.v2 { migrate } else { "" };
        let text = counter_manifest(&f.name, &f.root, object, map_extra, "").replacen(
            "allow_outside = true\n",
            &format!("allow_outside = true\n{readers}"),
            1,
        );
        let path = f.dir.join("readers.toml");
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        Deployment::load(&path, &BTreeMap::new()).map_err(|d| d.to_string())
    };
    let readers = format!("readers = \"{gid}\"\n");
    let out = with_readers(&f.v1, &readers)?.apply(&ApplyOptions::default())?;
    assert!(
        out.notes.iter().any(|n| n.contains("readable by group")),
        "{:?}",
        out.notes
    );
    // The group reads the maps and passes through the directories to them;
    // programs, links and the record stay root's alone.
    for (p, want) in [
        (".", (0o750, gid)),
        ("maps", (0o750, gid)),
        ("maps/COUNTERS", (0o640, gid)),
    ] {
        assert_eq!(mode_of(&f.root.join(p))?, want, "{p}");
    }
    for (p, want) in [
        ("progs", 0o700),
        ("links", 0o700),
        (STATE_DIR, 0o700),
        ("progs/count_exec", 0o600),
        ("links/count_packets", 0o600),
    ] {
        assert_eq!(mode_of(&f.root.join(p))?.0, want, "{p}");
    }
    // An upgrade re-pins the map: the new pin gets the same access.
    let before = kiln_manifest::live::map_at(&f.root.join("maps/COUNTERS")).map(|m| m.id);
    with_readers(&f.v2, &readers)?.apply(&ApplyOptions::default())?;
    let after = kiln_manifest::live::map_at(&f.root.join("maps/COUNTERS")).map(|m| m.id);
    assert_ne!(before, after, "the upgrade did not re-pin the map");
    assert_eq!(mode_of(&f.root.join("maps/COUNTERS"))?, (0o640, gid));
    // Without readers, the next apply (a no-op otherwise) takes it back.
    let out = with_readers(&f.v2, "")?.apply(&ApplyOptions::default())?;
    assert!(out.plan.is_noop(), "{}", out.plan);
    assert_eq!(mode_of(&f.root.join("maps/COUNTERS"))?.0, 0o600);
    assert_eq!(mode_of(&f.root)?.0, 0o700);
    assert_eq!(mode_of(&f.root.join("maps"))?.0, 0o700);
    // An unknown group is a manifest error, with its line.
    let err = with_readers(&f.v2, "readers = \"no-such-group-kiln\"\n")
        .err()
        .ok_or("an unknown group was accepted")?;
    assert!(err.contains("no group 'no-such-group-kiln'"), "{err}");
    Ok(())
}

fn nested_pin_roots_and_the_mount_point_are_refused() -> TestResult {
    let f = Fixture::new()?;
    let outer = f.deployment(&f.v1, "")?;
    outer.apply(&ApplyOptions::default())?;

    let inner_name = format!("{}-inner", f.name);
    let inner = f.deployment_at(&inner_name, &f.root.join("sub"), &f.v1, "")?;
    match inner.apply(&adopt()) {
        Err(ApplyError::Ownership(e @ OwnershipError::InsideOther { .. })) => {
            assert!(e.to_string().contains(&format!("'{}'", f.name)), "{e}");
        }
        other => return Err(format!("expected InsideOther, got {other:?}").into()),
    }
    assert!(
        !f.root.join("sub").exists(),
        "the refused apply created its root"
    );

    let wrap_name = format!("{}-wrap", f.name);
    let wrap = f.deployment_at(&wrap_name, &f.base, &f.v1, "")?;
    match wrap.plan() {
        Err(ApplyError::Ownership(e @ OwnershipError::ContainsOther { .. })) => {
            assert!(e.to_string().contains(&format!("'{}'", f.name)), "{e}");
        }
        other => return Err(format!("expected ContainsOther, got {other:?}").into()),
    }
    assert!(matches!(
        wrap.apply(&adopt()),
        Err(ApplyError::Ownership(OwnershipError::ContainsOther { .. }))
    ));

    let mount = f.deployment_at(
        &format!("{}-mnt", f.name),
        Path::new("/sys/fs/bpf"),
        &f.v1,
        "",
    )?;
    assert!(
        matches!(
            mount.apply(&adopt()),
            Err(ApplyError::Ownership(OwnershipError::MountPoint { .. }))
        ),
        "the bpffs mount point was accepted as a pin root"
    );
    assert!(outer.plan()?.is_noop(), "{}", outer.plan()?);
    Ok(())
}

fn pin_root_off_bpffs_is_never_removed() -> TestResult {
    let f = Fixture::new()?;
    let root = f.dir.join("not-bpffs");
    std::fs::create_dir_all(root.join("maps"))?;
    std::fs::write(root.join("maps/COUNTERS"), "precious")?;
    let d = f.deployment_at(&f.name, &root, &f.v1, "")?;
    match d.destroy() {
        Err(ApplyError::NotBpffs(p)) => assert_eq!(p, root),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    assert_eq!(
        std::fs::read_to_string(root.join("maps/COUNTERS"))?,
        "precious"
    );
    Ok(())
}

fn adopt_records_exactly_what_it_adopted() -> TestResult {
    let f = Fixture::new()?;
    // A map another tool pinned where the manifest keeps COUNTERS, with the
    // same definition (hash u32 -> u64, 16 entries), and one elsewhere.
    pin_foreign_map(&f.root.join("maps/COUNTERS"), 5, 555)?;
    pin_foreign_map(&f.root.join("bpftool_map"), 1, 11)?;
    let adopted_id = kiln_manifest::live::map_at(&f.root.join("maps/COUNTERS"))
        .ok_or("no map")?
        .id;
    let kiln = common::kiln_bin();
    let manifest = f.dir.join("cli.toml");
    std::fs::write(&manifest, counter_manifest(&f.name, &f.root, &f.v1, "", ""))?;
    let out = std::process::Command::new(&kiln)
        .arg("apply")
        .arg(&manifest)
        .output()?;
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "apply without --adopt went through");
    assert!(
        text.contains("maps/COUNTERS") && text.contains("--adopt"),
        "{text}"
    );
    let out = std::process::Command::new(&kiln)
        .args(["apply", "--adopt"])
        .arg(&manifest)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("recorded as owned: maps/COUNTERS"), "{text}");
    let ledger = Ledger::read(&f.root)?.ok_or("no record")?;
    let adopted: Vec<&String> = ledger
        .owned()
        .iter()
        .filter(|(_, o)| **o == Origin::Adopted)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(adopted, vec!["maps/COUNTERS"], "{:?}", ledger.owned());
    // The adopted map is the one the programs now use, data included.
    assert_eq!(
        kiln_manifest::live::map_at(&f.root.join("maps/COUNTERS")).map(|m| m.id),
        Some(adopted_id)
    );
    assert_eq!(counter(&f.root, 5)?, 555);
    send_udp()?;
    assert!(
        counter(&f.root, 1)? > 0,
        "the programs do not use the adopted map"
    );

    let done = kiln_manifest::apply::destroy_owned(&f.name, &f.root)?;
    assert!(
        done.removed.contains(&"maps/COUNTERS".to_string()),
        "{:?}",
        done.removed
    );
    assert!(!f.root.join("maps/COUNTERS").exists());
    assert_eq!(pinned_value(&f.root.join("bpftool_map"), 1)?, Some(11));
    Ok(())
}

fn legacy_layout_is_recognised_only_with_its_lock() -> TestResult {
    let f = Fixture::new()?;
    let d = f.deployment(&f.v1, "")?;
    d.apply(&ApplyOptions::default())?;
    // What an apply of the code before ownership records left behind: the
    // same layout without a record, and an empty lock file (this Kiln marks
    // every lock file it takes).
    std::fs::remove_dir_all(f.root.join(STATE_DIR))?;
    let lock = kiln_manifest::lock::lock_dir().join(format!("{}.lock", f.name));
    std::fs::write(&lock, "")?;
    let out = d.apply(&ApplyOptions::default())?;
    assert!(out.plan.is_noop(), "{}", out.plan);
    assert!(
        out.notes.iter().any(|n| n.contains("earlier Kiln")),
        "{:?}",
        out.notes
    );
    let ledger = Ledger::read(&f.root)?.ok_or("legacy layout not recorded")?;
    for p in [
        ".",
        "maps",
        "maps/COUNTERS",
        "progs/count_exec",
        "links/count_packets",
    ] {
        assert!(ledger.owned().contains_key(p), "{p}: {:?}", ledger.owned());
    }
    // Without the lock file of this boot, the same layout proves nothing.
    std::fs::remove_dir_all(f.root.join(STATE_DIR))?;
    std::fs::remove_file(&lock)?;
    assert!(matches!(
        d.plan(),
        Err(ApplyError::Ownership(OwnershipError::Unclaimed { .. }))
    ));
    assert!(matches!(
        d.destroy(),
        Err(ApplyError::Ownership(OwnershipError::Unclaimed { .. }))
    ));
    assert!(
        f.root.join("maps/COUNTERS").exists(),
        "destroy removed an unrecorded pin"
    );
    // --adopt takes it over; destroy then removes it all.
    // (The refused destroy took the lock, so the lock file exists again,
    // marked by this Kiln: it proves nothing.)
    let out = d.apply(&adopt())?;
    assert!(
        out.notes.iter().any(|n| n.contains("--adopt: recorded")),
        "{:?}",
        out.notes
    );
    d.destroy()?;
    // Adoption took the pins, not the directories holding them: those stay.
    assert!(
        f.root.exists(),
        "a pin root Kiln did not record as created is removed"
    );
    let again = kiln_manifest::apply::destroy_owned(&f.name, &f.root)?;
    assert!(!again.root_removed && again.removed.is_empty(), "{again:?}");
    for p in ["maps/COUNTERS", "progs/count_exec", "links/count_exec"] {
        assert!(!f.root.join(p).exists(), "destroy left {p}");
    }
    Ok(())
}

/// After a destroy, the lock file of the name stays: it must not make a
/// layout another tool pins later in the same place pass for Kiln's.
fn lock_of_a_destroyed_deployment_proves_nothing() -> TestResult {
    let f = Fixture::new()?;
    let d = f.deployment(&f.v1, "")?;
    d.apply(&ApplyOptions::default())?;
    d.destroy()?;
    assert!(!f.root.exists());
    pin_foreign_map(&f.root.join("maps/COUNTERS"), 1, 9)?;
    assert!(matches!(
        d.apply(&ApplyOptions::default()),
        Err(ApplyError::Ownership(OwnershipError::Unclaimed { .. }))
    ));
    assert_eq!(pinned_value(&f.root.join("maps/COUNTERS"), 1)?, Some(9));
    Ok(())
}

fn main() {
    let needs = &common::counter_needs();
    kiln_testkit::run(vec![
        kiln_testkit::test(
            "foreign_pins_survive_apply_upgrade_and_destroy",
            needs,
            foreign_pins_survive_apply_upgrade_and_destroy,
        ),
        kiln_testkit::test(
            "foreign_pin_at_a_manifest_path_is_refused",
            needs,
            foreign_pin_at_a_manifest_path_is_refused,
        ),
        kiln_testkit::test(
            "failed_first_apply_leaves_nothing_behind",
            needs,
            failed_first_apply_leaves_nothing_behind,
        ),
        kiln_testkit::test(
            "readers_group_may_read_the_maps",
            needs,
            readers_group_may_read_the_maps,
        ),
        kiln_testkit::test(
            "nested_pin_roots_and_the_mount_point_are_refused",
            needs,
            nested_pin_roots_and_the_mount_point_are_refused,
        ),
        kiln_testkit::test(
            "pin_root_off_bpffs_is_never_removed",
            &[Need::Root, Need::Bpf, common::perf_links()],
            pin_root_off_bpffs_is_never_removed,
        ),
        kiln_testkit::test(
            "adopt_records_exactly_what_it_adopted",
            needs,
            adopt_records_exactly_what_it_adopted,
        ),
        kiln_testkit::test(
            "lock_of_a_destroyed_deployment_proves_nothing",
            needs,
            lock_of_a_destroyed_deployment_proves_nothing,
        ),
        kiln_testkit::test(
            "legacy_layout_is_recognised_only_with_its_lock",
            needs,
            legacy_layout_is_recognised_only_with_its_lock,
        ),
    ]);
}
