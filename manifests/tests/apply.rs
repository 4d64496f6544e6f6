//! The manifest engine against the running kernel: apply, re-apply, upgrade,
//! migrate, failure injection, concurrency, drift, destroy.
//!
//! Every test gets its own deployment name and pin root
//! (`/sys/fs/bpf/kiln-test-<pid>-<n>`) and its own network namespace (so the
//! XDP program on `lo` never meets another test's), and cleans up.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kiln_loader::OpenFlags;
use kiln_loader::links::{FdLink, Link};
use kiln_loader::maps::UpdateFlags;
use kiln_loader::{Map, Program};
use kiln_manifest::apply::{ApplyError, ApplyOptions, Step};
use kiln_manifest::plan::{Action, ReplaceHow};
use kiln_manifest::status::State;
use kiln_manifest::{Deployment, live};
use kiln_testkit::{Need, TestResult};

mod common;
use common::{Fixture, counter, exec_true, send_udp};

/// Tests that load the v2 object and count its programs must not overlap.
static V2_USERS: Mutex<()> = Mutex::new(());

fn map_id(root: &Path) -> u32 {
    live::map_at(&root.join("maps/COUNTERS")).map_or(0, |m| m.id)
}

/// Ids of everything pinned: what a rollback must restore exactly.
fn snapshot(root: &Path) -> Result<String, String> {
    let o = live::observe(root).map_err(|e| e.to_string())?;
    let mut s = String::new();
    for (k, m) in &o.maps {
        s += &format!("map {k} {} {:?}\n", m.id, m.def);
    }
    for (k, p) in &o.programs {
        s += &format!("prog {k} {}\n", p.id);
    }
    for (k, l) in &o.links {
        s += &format!("link {k} {} -> prog {}\n", l.id, l.prog_id);
    }
    for p in &o.strays {
        s += &format!("stray {}\n", p.display());
    }
    Ok(s)
}

fn apply_from_nothing_then_noop_then_destroy() -> TestResult {
    let f = Fixture::new()?;
    let d = f.deployment(&f.v1, "", "")?;
    let out = d.apply(&ApplyOptions::default())?;
    assert!(
        matches!(out.plan.actions[0], Action::CreateMap { .. }),
        "{}",
        out.plan
    );
    for p in [
        "maps/COUNTERS",
        "progs/count_exec",
        "progs/count_packets",
        "links/count_exec",
        "links/count_packets",
    ] {
        assert!(f.root.join(p).exists(), "{p} is not pinned");
    }
    // The kernel says each link runs the pinned program.
    for name in ["count_exec", "count_packets"] {
        let prog = Program::from_pin(&f.root.join("progs").join(name), None)?;
        let link = FdLink::from_pin(f.root.join("links").join(name))?;
        assert_eq!(
            link.info()?.prog_id,
            prog.id(),
            "{name}: link runs another program"
        );
    }
    assert_eq!(counter(&f.root, 7)?, 70, "initial entry written");
    let (e0, p0) = (counter(&f.root, 0)?, counter(&f.root, 1)?);
    exec_true()?;
    send_udp()?;
    assert!(
        counter(&f.root, 0)? > e0,
        "count_exec did not count /bin/true"
    );
    assert!(
        counter(&f.root, 1)? > p0,
        "count_packets did not see the UDP packet on lo"
    );

    let again = f
        .deployment(&f.v1, "", "")?
        .apply(&ApplyOptions::default())?;
    assert!(
        again.plan.is_noop(),
        "re-apply is not a no-op:\n{}",
        again.plan
    );
    let status = d.status()?;
    assert!(status.all_ok(), "{status}");

    let removed = d.destroy()?;
    // Two links, two programs, COUNTERS and the object's `.rodata` (the
    // `step` global), pinned under libbpf's name for it.
    assert_eq!(removed.len(), 6, "{removed:?}");
    assert!(
        removed.iter().any(|r| r == "maps/manifest_rodata"),
        "{removed:?}"
    );
    assert!(!f.root.exists(), "pin root left behind");
    Ok(())
}

fn upgrade_replaces_in_place_and_keeps_data() -> TestResult {
    let _g = V2_USERS.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::new()?;
    f.deployment(&f.v1, "", "")?
        .apply(&ApplyOptions::default())?;
    send_udp()?;
    let packets = counter(&f.root, 1)?;
    assert!(packets > 0);
    let map_before = map_id(&f.root);
    let xdp_link_before =
        live::link_at(&f.root.join("links/count_packets")).ok_or("no xdp link")?;

    let d2 = f.deployment(&f.v2, "", "")?;
    let out = d2.apply(&ApplyOptions::default())?;
    let text = out.plan.to_string();
    assert!(out.plan.actions.iter().any(|a| matches!(a, Action::Replace { program, how: ReplaceHow::LinkUpdate, .. } if program == "count_packets")), "{text}");
    assert!(
        !out.plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::CreateMap { .. })),
        "{text}"
    );
    assert_eq!(map_id(&f.root), map_before, "the map was replaced");
    assert!(counter(&f.root, 1)? >= packets, "counts lost");
    let xdp_link_after = live::link_at(&f.root.join("links/count_packets")).ok_or("no xdp link")?;
    assert_eq!(
        xdp_link_after.id, xdp_link_before.id,
        "XDP link recreated instead of updated"
    );
    assert_ne!(xdp_link_after.prog_id, xdp_link_before.prog_id);
    send_udp()?;
    assert!(counter(&f.root, 2)? > 0, "v2 code (key 2) is not running");
    assert!(d2.plan()?.is_noop(), "{}", d2.plan()?);
    // A global is a change too: same code, other data.
    let d3 = f.deployment(&f.v2, "", "globals = { step = 5 }")?;
    let st = d3.status()?;
    assert!(!st.all_ok(), "status misses a globals change:\n{st}");
    let p3 = d3.plan()?;
    assert!(
        p3.actions
            .iter()
            .any(|a| matches!(a, Action::LoadProgram { program, .. } if program == "count_exec")),
        "{p3}"
    );
    d3.apply(&ApplyOptions::default())?;
    let e = counter(&f.root, 0)?;
    exec_true()?;
    assert!(counter(&f.root, 0)? >= e + 5, "step = 5 not in effect");
    Ok(())
}

fn incompatible_map_refused_then_migrated() -> TestResult {
    let f = Fixture::new()?;
    f.deployment(&f.v1, "", "")?
        .apply(&ApplyOptions::default())?;
    exec_true()?;
    let execs = counter(&f.root, 0)?;
    let before = snapshot(&f.root)?;

    let err = f
        .deployment(&f.v1, "max_entries = 32", "")?
        .apply(&ApplyOptions::default())
        .unwrap_err();
    assert!(matches!(err, ApplyError::Plan(_)), "{err}");
    assert!(
        err.to_string().contains("on_upgrade = \"migrate\""),
        "{err}"
    );
    assert_eq!(
        snapshot(&f.root)?,
        before,
        "a refused apply changed something"
    );

    let d = f.deployment(&f.v1, "max_entries = 32\non_upgrade = \"migrate\"", "")?;
    let out = d.apply(&ApplyOptions::default())?;
    assert!(
        matches!(out.plan.actions[0], Action::MigrateMap { .. }),
        "{}",
        out.plan
    );
    let m = live::map_at(&f.root.join("maps/COUNTERS")).ok_or("map gone")?;
    assert_eq!(m.def.max_entries, 32);
    assert!(counter(&f.root, 0)? >= execs, "entries not migrated");
    assert_eq!(counter(&f.root, 7)?, 70, "entries not migrated");
    // The programs were reloaded against the new map and use it.
    exec_true()?;
    assert!(counter(&f.root, 0)? > execs);
    assert!(d.plan()?.is_noop(), "{}", d.plan()?);

    let d = f.deployment(&f.v1, "max_entries = 8\non_upgrade = \"recreate\"", "")?;
    d.apply(&ApplyOptions::default())?;
    assert_eq!(
        counter(&f.root, 7)?,
        70,
        "recreated map lacks its initial entry"
    );
    Ok(())
}

fn failure_at_each_step_leaves_previous_generation() -> TestResult {
    let _g = V2_USERS.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::new()?;
    let v1 = f.deployment(&f.v1, "", "")?;
    v1.apply(&ApplyOptions::default())?;
    let before = snapshot(&f.root)?;
    // An upgrade that exercises every step: new code, migrated map, removed program.
    let upgrade = f.deployment(&f.v2, "max_entries = 32\non_upgrade = \"migrate\"", "")?;
    let removal = f.deployment(&f.v1, "", "enabled = false")?;
    // Entries are synced into a live map only when it is kept, not migrated:
    // COUNTERS[7] changed behind Kiln's back, and the manifest enforces 70.
    let enforce = f.deployment(&f.v1, "entries_mode = \"enforce\"", "")?;
    let counters = Map::from_pin(&f.root.join("maps/COUNTERS"), OpenFlags::ReadWrite)?;
    counters.update_bytes(&7u32.to_ne_bytes(), &1u64.to_ne_bytes(), UpdateFlags::ANY)?;
    for step in Step::ALL {
        let d = match step {
            Step::Unpin => &removal,
            Step::SyncEntries => &enforce,
            _ => &upgrade,
        };
        let err = d
            .apply(&ApplyOptions {
                fail_at: Some(step),
                ..ApplyOptions::default()
            })
            .err()
            .ok_or_else(|| {
                format!(
                    "{}: apply succeeded despite the injected failure",
                    step.name()
                )
            })?;
        assert!(
            matches!(err, ApplyError::Injected(s) if s == step),
            "{}: {err}",
            step.name()
        );
        assert_eq!(
            snapshot(&f.root)?,
            before,
            "after a failure at {}",
            step.name()
        );
        assert_eq!(
            counter(&f.root, 7)?,
            1,
            "after a failure at {}: COUNTERS[7] was changed",
            step.name()
        );
        // The old generation still runs.
        let p = counter(&f.root, 1)?;
        send_udp()?;
        assert!(
            counter(&f.root, 1)? > p,
            "after a failure at {}: XDP no longer counts",
            step.name()
        );
        assert_eq!(
            counter(&f.root, 2)?,
            0,
            "after a failure at {}: v2 code ran",
            step.name()
        );
    }
    // Nothing of the failed attempts is left in the kernel.
    let v2_tags = &upgrade.resolved.desired.programs["count_packets"].tags;
    let mut id = 0;
    while let Some(next) = kiln_loader::ids::next_id(kiln_loader::ids::IdKind::Prog, id)? {
        id = next;
        if let Ok(p) = Program::from_id(id) {
            assert!(
                !v2_tags.contains(&p.tag()),
                "program id {id} of a failed apply is still loaded"
            );
        }
    }
    upgrade.apply(&ApplyOptions::default())?;
    assert!(upgrade.plan()?.is_noop());
    Ok(())
}

fn concurrent_applies_are_serialized() -> TestResult {
    let f = Fixture::new()?;
    let d1 = f.deployment(&f.v1, "", "")?;
    let d2 = f.deployment(&f.v1, "", "")?;
    // The second thread joins this thread's network namespace for `lo`.
    let ns = std::fs::File::open("/proc/thread-self/ns/net")?;
    let results = std::thread::scope(|s| {
        let a = s.spawn(|| {
            d1.apply(&ApplyOptions::default())
                .map(|o| o.plan.is_noop())
                .map_err(|e| e.to_string())
        });
        let b = s.spawn(|| {
            // SAFETY: setns with a namespace fd we opened.
            if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) } != 0
            {
                return Err("setns".to_string());
            }
            d2.apply(&ApplyOptions::default())
                .map(|o| o.plan.is_noop())
                .map_err(|e| e.to_string())
        });
        [a.join().unwrap(), b.join().unwrap()]
    });
    let noops: Vec<bool> = results.into_iter().collect::<Result<_, _>>()?;
    assert_eq!(
        noops.iter().filter(|n| !**n).count(),
        1,
        "exactly one apply should make changes: {noops:?}"
    );
    assert!(d1.status()?.all_ok());
    Ok(())
}

fn drift_is_reported_and_repaired() -> TestResult {
    let f = Fixture::new()?;
    let d = f.deployment(&f.v1, "", "")?;
    d.apply(&ApplyOptions::default())?;
    // Behind Kiln's back: remove the XDP link.
    std::fs::remove_file(f.root.join("links/count_packets"))?;
    let status = d.status()?;
    let item = status
        .items
        .iter()
        .find(|i| i.name == "count_packets")
        .ok_or("no status item")?;
    assert_eq!(item.state, State::Drifted, "{status}");
    assert!(item.detail.contains("link removed"), "{status}");
    let plan = d.plan()?;
    assert_eq!(plan.actions.len(), 1, "{plan}");
    assert!(
        matches!(&plan.actions[0], Action::Attach { program, .. } if program == "count_packets")
    );
    d.apply(&ApplyOptions::default())?;
    assert!(d.status()?.all_ok());
    // Behind Kiln's back: swap the program of the tracepoint's pin.
    let other = Program::from_pin(&f.root.join("progs/count_packets"), None)?;
    std::fs::remove_file(f.root.join("progs/count_exec"))?;
    other.pin(&f.root.join("progs/count_exec"))?;
    let status = d.status()?;
    assert!(!status.all_ok(), "{status}");
    d.apply(&ApplyOptions::default())?;
    assert!(d.status()?.all_ok(), "{}", d.status()?);
    let _ = other.as_fd();
    Ok(())
}

fn kiln_binary_round_trip() -> TestResult {
    let f = Fixture::new()?;
    let kiln = std::env::var_os("KILN_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kiln")), PathBuf::from);
    // Tracepoint only: a separate process sees the host's network namespace.
    let path = f.dir.join("tp.toml");
    std::fs::write(
        &path,
        format!(
            "[deployment]\nname = \"{}\"\npin_root = \"{}\"\nallow_outside = true\n\n[objects.counter]\npath = \"{}\"\n\n[programs.count_exec]\nobject = \"counter\"\nattach = \"auto\"\n",
            f.name,
            f.root.display(),
            f.v1.display()
        ),
    )?;
    let run = |args: &[&str]| -> Result<(i32, String), String> {
        let out = std::process::Command::new(&kiln)
            .args(args)
            .arg(&path)
            .output()
            .map_err(|e| e.to_string())?;
        Ok((
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    };
    let (code, out) = run(&["plan"])?;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("+ load program count_exec (new)"), "{out}");
    let (code, out) = run(&["apply"])?;
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&["apply"])?;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no changes"), "{out}");
    let (code, out) = run(&["status", "--json"])?;
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(v["items"][1]["state"], "ok", "{out}");
    std::fs::remove_file(f.root.join("links/count_exec"))?;
    let (code, out) = run(&["status"])?;
    assert_eq!(code, 2, "drift must exit 2: {out}");
    let (code, out) = run(&["destroy"])?;
    assert_eq!(code, 0, "{out}");
    assert!(!f.root.exists());
    Ok(())
}

fn export_round_trips_to_a_noop() -> TestResult {
    let f = Fixture::new()?;
    f.deployment(&f.v1, "", "")?
        .apply(&ApplyOptions::default())?;
    let text = kiln_manifest::export::export(&f.name, &f.root)?;
    assert!(
        text.contains("attach = { xdp = { interface = \"lo\", mode = \"generic\" } }"),
        "{text}"
    );
    let path = f.dir.join("exported.toml");
    std::fs::write(&path, &text)?;
    // The object is given the way an operator would: `--object main=PATH`.
    let objects = BTreeMap::from([("main".to_string(), f.v1.clone())]);
    let d = Deployment::load(&path, &objects).map_err(|e| e.to_string())?;
    let plan = d.plan()?;
    assert!(
        plan.is_noop(),
        "the exported manifest does not describe what runs:\n{plan}\n{}",
        std::fs::read_to_string(&path)?
    );
    Ok(())
}

fn main() {
    let perf_links = common::perf_links();
    let needs = &[Need::Root, Need::Bpf, Need::NetNs, perf_links];
    kiln_testkit::run(vec![
        kiln_testkit::test(
            "apply_from_nothing_then_noop_then_destroy",
            needs,
            apply_from_nothing_then_noop_then_destroy,
        ),
        kiln_testkit::test(
            "upgrade_replaces_in_place_and_keeps_data",
            needs,
            upgrade_replaces_in_place_and_keeps_data,
        ),
        kiln_testkit::test(
            "incompatible_map_refused_then_migrated",
            needs,
            incompatible_map_refused_then_migrated,
        ),
        kiln_testkit::test(
            "failure_at_each_step_leaves_previous_generation",
            needs,
            failure_at_each_step_leaves_previous_generation,
        ),
        kiln_testkit::test(
            "concurrent_applies_are_serialized",
            needs,
            concurrent_applies_are_serialized,
        ),
        kiln_testkit::test(
            "drift_is_reported_and_repaired",
            needs,
            drift_is_reported_and_repaired,
        ),
        kiln_testkit::test("kiln_binary_round_trip", needs, kiln_binary_round_trip),
        kiln_testkit::test(
            "export_round_trips_to_a_noop",
            needs,
            export_round_trips_to_a_noop,
        ),
    ]);
}
