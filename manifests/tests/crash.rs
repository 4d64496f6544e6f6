//! Crash safety: a `kiln apply` killed with SIGKILL at any step leaves a
//! state that the next `kiln apply` completes and `kiln destroy` removes,
//! with no stray programs, links or pins and no map data lost.
//!
//! Each case applies v1 with the `kiln` binary, counts some events, starts
//! an upgrade paused at one step (`KILN_PAUSE_AT`, debug builds), kills it
//! there, re-runs the apply and compares what the kernel holds with what is
//! pinned. Kernel objects are attributed to the deployment through the
//! COUNTERS map ids it ever had, so other processes' programs never count.
//! Another tool's maps sit under the pin root throughout (at the top and in
//! Kiln's own `maps/`): after every kill and recovery they are still there
//! with their data, and destroy leaves them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kiln_loader::Program;
use kiln_loader::ids::{IdKind, next_id};
use kiln_loader::links::FdLink;
use kiln_manifest::apply::{STAGED_PIN, Step};
use kiln_manifest::{Deployment, live};
use kiln_testkit::TestResult;

mod common;
use common::{
    counter, counter_manifest, exec_true, kiln_bin, pin_foreign_map, pinned_value, private_netns,
    send_udp,
};

/// Another tool's maps under the pin root, and the value each holds at key 1.
fn foreign(root: &Path) -> [(PathBuf, u64); 2] {
    [
        (root.join("other_tool"), 41),
        (root.join("maps/other_tool"), 42),
    ]
}

fn foreign_intact(root: &Path, when: &str) -> Result<(), String> {
    for (p, v) in foreign(root) {
        let got = pinned_value(&p, 1).map_err(|e| format!("{when}: {e}"))?;
        if got != Some(v) {
            return Err(format!("{when}: {} holds {got:?}, not {v}", p.display()));
        }
    }
    Ok(())
}

/// After destroy only the foreign pins are left; once they go too, a
/// second destroy removes the pin root.
fn destroyed_but_foreign(f: &Fixture, target: &Path) -> Result<(), String> {
    foreign_intact(&f.root, "after destroy")?;
    for p in ["maps/COUNTERS", "progs", "links"] {
        if f.root.join(p).exists() {
            return Err(format!("destroy left {p}"));
        }
    }
    for (p, _) in foreign(&f.root) {
        std::fs::remove_file(&p).map_err(|e| e.to_string())?;
    }
    f.kiln("destroy", target)?;
    if f.root.exists() {
        return Err(format!("destroy left {}", f.root.display()));
    }
    Ok(())
}

struct Fixture {
    name: String,
    dir: PathBuf,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Result<Self, String> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "kiln-crash-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        private_netns()?;
        Ok(Fixture {
            root: PathBuf::from("/sys/fs/bpf").join(&name),
            name,
            dir,
        })
    }

    /// Writes a manifest for `object` and returns its path.
    fn manifest(
        &self,
        file: &str,
        object: &str,
        map_extra: &str,
        exec_extra: &str,
    ) -> Result<PathBuf, String> {
        let obj = kiln_testkit::bpf_object(object)?;
        let text = counter_manifest(&self.name, &self.root, &obj, map_extra, exec_extra);
        let path = self.dir.join(file);
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        Ok(path)
    }

    /// Runs `kiln <cmd> <manifest>`; the output, or an error with it.
    fn kiln(&self, cmd: &str, manifest: &Path) -> Result<String, String> {
        let out = Command::new(kiln_bin())
            .arg(cmd)
            .arg(manifest)
            .output()
            .map_err(|e| e.to_string())?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            return Err(format!("kiln {cmd} failed ({}):\n{text}", out.status));
        }
        Ok(text)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        common::remove_deployment(&self.name, &self.root, &self.dir);
        // The other tool's pins, which destroy leaves.
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Starts `kiln apply` paused at `point`, waits for it to say so, kills it.
fn apply_and_kill_at(manifest: &Path, point: &str) -> Result<(), String> {
    let mut child = Command::new(kiln_bin())
        .arg("apply")
        .arg(manifest)
        .env("KILN_PAUSE_AT", point)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut seen = String::new();
    let mut paused = false;
    for line in BufReader::new(stderr).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line == format!("kiln: paused at {point}") {
            paused = true;
            break;
        }
        seen += &line;
        seen.push('\n');
    }
    // Killed whether or not it paused, so no apply outlives the test.
    let _ = child.kill();
    let status = child.wait().map_err(|e| e.to_string())?;
    if !paused {
        return Err(format!(
            "apply never reached {point} (exit {status}); its stderr:\n{seen}"
        ));
    }
    Ok(())
}

/// Programs and links in the kernel that use one of `maps` (by id), and the
/// links of those programs: everything any generation of the deployment made.
fn owned(maps: &BTreeSet<u32>) -> Result<(BTreeSet<u32>, BTreeSet<u32>), String> {
    let mut progs = BTreeSet::new();
    let mut id = 0;
    while let Some(next) = next_id(IdKind::Prog, id).map_err(|e| e.to_string())? {
        id = next;
        let Ok(info) = Program::from_id(id).and_then(|p| p.info()) else {
            continue; // freed meanwhile
        };
        if info.map_ids.iter().any(|m| maps.contains(m)) {
            progs.insert(id);
        }
    }
    let mut links = BTreeSet::new();
    let mut id = 0;
    while let Some(next) = next_id(IdKind::Link, id).map_err(|e| e.to_string())? {
        id = next;
        let Ok(info) = FdLink::from_id(id).and_then(|l| {
            use kiln_loader::links::Link;
            l.info()
        }) else {
            continue;
        };
        if progs.contains(&info.prog_id) {
            links.insert(id);
        }
    }
    Ok((progs, links))
}

/// Waits until the kernel holds exactly what is pinned: objects of a killed
/// process are freed after an RCU grace period, not at once.
fn settle(root: &Path, maps: &BTreeSet<u32>) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let o = live::observe(root).map_err(|e| e.to_string())?;
        let pinned_progs: BTreeSet<u32> = o.programs.values().map(|p| p.id).collect();
        let pinned_links: BTreeSet<u32> = o.links.values().map(|l| l.id).collect();
        let (progs, links) = owned(maps)?;
        if progs == pinned_progs && links == pinned_links {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "kernel holds programs {progs:?} and links {links:?}, but only programs {pinned_progs:?} and links {pinned_links:?} are pinned"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn map_id(root: &Path) -> Option<u32> {
    live::map_at(&root.join("maps/COUNTERS")).map(|m| m.id)
}

/// Waits until nothing of the deployment is left in the kernel.
fn all_gone(maps: &BTreeSet<u32>) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (progs, links) = owned(maps)?;
        if progs.is_empty() && links.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the kernel still holds programs {progs:?}, links {links:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How the test recovers from the killed apply.
#[derive(Clone, Copy)]
enum Recover {
    Apply,
    Destroy,
}

fn crash_at(point: &'static str, recover: Recover) -> TestResult {
    let f = Fixture::new()?;
    let v1 = f.manifest("v1.toml", "manifest_counter.bpf.o", "", "")?;
    // Removing a program is the only plan with an unpin; every other step is
    // on the way of an upgrade to new code with a migrated map.
    let removal = point == Step::Unpin.name();
    // Entries are synced into a map that is kept (not migrated): the same
    // upgrade to new code, keeping COUNTERS and enforcing its entries.
    let sync = point == Step::SyncEntries.name();
    let target = if removal {
        f.manifest("v2.toml", "manifest_counter.bpf.o", "", "enabled = false")?
    } else if sync {
        f.manifest(
            "v2.toml",
            "manifest_counter_v2.bpf.o",
            "entries_mode = \"enforce\"",
            "",
        )?
    } else {
        f.manifest(
            "v2.toml",
            "manifest_counter_v2.bpf.o",
            "max_entries = 32\non_upgrade = \"migrate\"",
            "",
        )?
    };
    f.kiln("apply", &v1)?;
    let mut maps = BTreeSet::new();
    maps.insert(map_id(&f.root).ok_or("v1 pinned no COUNTERS")?);
    exec_true()?;
    send_udp()?;
    let before: BTreeMap<u32, u64> = [0, 1, 7]
        .into_iter()
        .map(|k| counter(&f.root, k).map(|v| (k, v)))
        .collect::<Result<_, _>>()?;
    assert!(
        before[&0] > 0 && before[&1] > 0,
        "v1 counts nothing: {before:?}"
    );
    settle(&f.root, &maps)?;
    for (p, v) in foreign(&f.root) {
        pin_foreign_map(&p, 1, v)?;
    }
    if sync {
        // Behind Kiln's back, so that the apply has an entry to put back.
        let m = kiln_loader::Map::from_pin(
            &f.root.join("maps/COUNTERS"),
            kiln_loader::OpenFlags::ReadWrite,
        )?;
        m.update_bytes(
            &7u32.to_ne_bytes(),
            &1u64.to_ne_bytes(),
            kiln_loader::maps::UpdateFlags::ANY,
        )?;
    }

    apply_and_kill_at(&target, point)?;
    if point == STAGED_PIN {
        // The test must really leave a staged pin behind.
        let staged = std::fs::read_dir(f.root.join("maps"))
            .map_err(|e| e.to_string())?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with("__kiln_new"));
        assert!(staged, "no staged pin after a kill at {point}");
    }
    if let Some(id) = map_id(&f.root) {
        maps.insert(id);
    }

    foreign_intact(&f.root, &format!("after the kill at {point}"))?;
    if let Recover::Destroy = recover {
        f.kiln("destroy", &target)?;
        destroyed_but_foreign(&f, &target)?;
        return all_gone(&maps).map_err(|e| format!("after destroy: {e}").into());
    }

    let out = f.kiln("apply", &target)?;
    if let Some(id) = map_id(&f.root) {
        maps.insert(id);
    }
    let d = Deployment::load(&target, &BTreeMap::new()).map_err(|e| e.to_string())?;
    let plan = d.plan()?;
    assert!(
        plan.is_noop(),
        "after the recovering apply:\n{out}\nstill to do:\n{plan}"
    );
    let o = live::observe(&f.root)?;
    assert!(o.strays.is_empty(), "strays left: {:?}", o.strays);
    assert_eq!(o.foreign.len(), 2, "{:?}", o.foreign);
    foreign_intact(&f.root, "after the recovering apply")?;
    settle(&f.root, &maps)?;

    // No data lost: the migrated map kept what v1 counted.
    for (k, v) in &before {
        let now = counter(&f.root, *k)?;
        assert!(
            now >= *v,
            "COUNTERS[{k}] was {v}, is {now} after the recovery"
        );
    }
    let p1 = counter(&f.root, 1)?;
    let p2 = counter(&f.root, 2)?;
    send_udp()?;
    assert!(counter(&f.root, 1)? > p1, "XDP no longer counts");
    if removal {
        assert!(!f.root.join("progs/count_exec").exists());
        assert!(!f.root.join("links/count_exec").exists());
    } else {
        assert!(counter(&f.root, 2)? > p2, "v2 code does not run");
        let e = counter(&f.root, 0)?;
        exec_true()?;
        assert!(counter(&f.root, 0)? > e, "the tracepoint no longer counts");
    }

    f.kiln("destroy", &target)?;
    destroyed_but_foreign(&f, &target)?;
    all_gone(&maps).map_err(|e| format!("after destroy: {e}").into())
}

fn main() {
    let needs = &common::counter_needs();
    let mut points: Vec<&'static str> = Step::ALL.iter().map(|s| s.name()).collect();
    points.push(STAGED_PIN);
    let mut tests = Vec::new();
    for p in points {
        tests.push(kiln_testkit::test(
            format!("killed_at_{p}_then_reapplied"),
            needs,
            move || crash_at(p, Recover::Apply),
        ));
        tests.push(kiln_testkit::test(
            format!("killed_at_{p}_then_destroyed"),
            needs,
            move || crash_at(p, Recover::Destroy),
        ));
    }
    kiln_testkit::run(tests);
}
