//! Random sequences of manifest edits and changes made behind Kiln's back
//! (pins removed, links detached, a map pin replaced, the XDP mode changed,
//! an entry overwritten), each followed by an apply. After every apply:
//! the plan printed before it is what apply did, `status` is clean, a
//! second plan is empty, and the entry the test keeps in the map is still
//! there whenever its map was still alive in the kernel.
//!
//! Seeded and deterministic: `KILN_DRIFT_SEED` (default 22) and
//! `KILN_DRIFT_STEPS` (default 500) reproduce a run; every step is printed
//! on stderr, so a failure names the sequence that led to it.

use kiln_loader::OpenFlags;
use kiln_loader::links::xdp::{XdpFlags, attach_xdp_link};
use kiln_loader::maps::UpdateFlags;
use kiln_loader::{Map, Program};
use kiln_manifest::apply::ApplyOptions;
use kiln_manifest::live;
use kiln_testkit::TestResult;

mod common;
use common::{Fixture, counter_manifest, counter_needs, ifindex};

/// xorshift64*: small, fixed, the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What the manifest says this step.
#[derive(Clone, Debug)]
struct Edit {
    v2: bool,
    step: u64,
    exec_enabled: bool,
    native: bool,
    max_entries: u32,
    enforce: bool,
}

impl Edit {
    fn text(&self, f: &Fixture) -> String {
        let mut map_extra = format!(
            "max_entries = {}\non_upgrade = \"migrate\"\n",
            self.max_entries
        );
        if self.enforce {
            map_extra += "entries_mode = \"enforce\"\n";
        }
        let mut exec_extra = format!("globals = {{ step = {} }}\n", self.step);
        if !self.exec_enabled {
            exec_extra += "enabled = false\n";
        }
        let object = if self.v2 { &f.v2 } else { &f.v1 };
        counter_manifest(&f.name, &f.root, object, &map_extra, &exec_extra).replace(
            "interface = \"lo\", mode = \"generic\"",
            &format!(
                "interface = \"{IFACE}\", mode = \"{}\"",
                if self.native { "native" } else { "generic" }
            ),
        )
    }
}

const IFACE: &str = "kdr0";
/// The entry the test owns in COUNTERS (the programs use keys 0 to 2, the
/// manifest key 7).
const KEPT_KEY: u32 = 9;

fn kept(map: &Map) -> Result<Option<u64>, String> {
    Ok(map
        .lookup_bytes(&KEPT_KEY.to_ne_bytes(), UpdateFlags::ANY)
        .map_err(|e| e.to_string())?
        .map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap_or_default())))
}

/// One change behind Kiln's back; returns what it did, for the log.
fn behind_the_back(
    f: &Fixture,
    rng: &mut Rng,
    edit: &Edit,
    value: u64,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let map_pin = f.root.join("maps/COUNTERS");
    let pick = |rng: &mut Rng| {
        if rng.chance(50) {
            "count_exec"
        } else {
            "count_packets"
        }
    };
    Ok(match rng.below(6) {
        0 if map_pin.exists() => {
            std::fs::remove_file(&map_pin)?;
            "unpin the map".into()
        }
        1 => {
            let p = pick(rng);
            let pin = f.root.join("links").join(p);
            if !pin.exists() {
                return Ok(String::new());
            }
            std::fs::remove_file(pin)?;
            format!("unpin (detach) the link of {p}")
        }
        2 => {
            let p = pick(rng);
            let pin = f.root.join("progs").join(p);
            if !pin.exists() {
                return Ok(String::new());
            }
            std::fs::remove_file(pin)?;
            format!("unpin the program {p}")
        }
        3 if map_pin.exists() => {
            // A new map of the same shape takes the pin; its owner copies
            // the kept entry over by hand.
            let spec = kiln_obj::ObjectSpec::parse(&std::fs::read(&f.v1)?)?;
            let mut def = spec.map("COUNTERS").ok_or("no COUNTERS")?.clone();
            def.max_entries = edit.max_entries;
            let new = Map::create(&def, None, None)?;
            new.update_bytes(
                &KEPT_KEY.to_ne_bytes(),
                &value.to_ne_bytes(),
                UpdateFlags::ANY,
            )?;
            std::fs::remove_file(&map_pin)?;
            new.pin(&map_pin)?;
            "replace the map pin with a new map".into()
        }
        4 => {
            // Attach count_packets in the other XDP mode and pin that link.
            let link_pin = f.root.join("links/count_packets");
            let Ok(prog) = Program::from_pin(&f.root.join("progs/count_packets"), None) else {
                return Ok(String::new());
            };
            if !link_pin.exists() {
                return Ok(String::new());
            }
            std::fs::remove_file(&link_pin)?;
            let other = if edit.native {
                XdpFlags::SKB_MODE
            } else {
                XdpFlags::DRV_MODE
            };
            // The old link goes from a workqueue, a moment after its pin.
            let mut tries = 0;
            let mut link = loop {
                match attach_xdp_link(prog.fd(), ifindex(IFACE)?, other) {
                    Ok(l) => break l,
                    Err(_) if tries < 80 => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(25));
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            kiln_loader::links::Link::pin(&mut link, &link_pin)?;
            format!("re-attach count_packets in {other:?}")
        }
        5 if map_pin.exists() => {
            let map = Map::from_pin(&map_pin, OpenFlags::ReadWrite)?;
            map.update_bytes(&7u32.to_ne_bytes(), &1u64.to_ne_bytes(), UpdateFlags::ANY)?;
            "overwrite COUNTERS[7]".into()
        }
        _ => String::new(),
    })
}

fn random_edits_and_drift_converge() -> TestResult {
    let seed: u64 = std::env::var("KILN_DRIFT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(22);
    let steps: usize = std::env::var("KILN_DRIFT_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let f = Fixture::new()?;
    let ok = std::process::Command::new("ip")
        .args(["link", "add", IFACE, "type", "veth", "peer", "name", "kdr1"])
        .status()?;
    assert!(ok.success(), "ip link add veth");
    let mut rng = Rng(seed.max(1));
    let mut edit = Edit {
        v2: false,
        step: 1,
        exec_enabled: true,
        native: false,
        max_entries: 16,
        enforce: false,
    };
    let d = f.load(&edit.text(&f))?;
    d.apply(&ApplyOptions::default())?;
    let mut value = 1000u64;
    Map::from_pin(&f.root.join("maps/COUNTERS"), OpenFlags::ReadWrite)?.update_bytes(
        &KEPT_KEY.to_ne_bytes(),
        &value.to_ne_bytes(),
        UpdateFlags::ANY,
    )?;

    for step in 0..steps {
        let mut log = Vec::new();
        // The map holding the kept entry, as the kernel has it now.
        let map_id = live::map_at(&f.root.join("maps/COUNTERS")).map(|m| m.id);
        for _ in 0..rng.below(3) {
            let what = behind_the_back(&f, &mut rng, &edit, value)?;
            if !what.is_empty() {
                log.push(what);
            }
        }
        if rng.chance(60) {
            match rng.below(6) {
                0 => edit.v2 = !edit.v2,
                1 => edit.step = 1 + rng.below(3),
                2 => edit.exec_enabled = !edit.exec_enabled,
                3 => edit.native = !edit.native,
                4 => edit.max_entries = if edit.max_entries == 16 { 32 } else { 16 },
                _ => edit.enforce = !edit.enforce,
            }
            log.push(format!("edit: {edit:?}"));
        }
        eprintln!("drift step {step} (seed {seed}): {}", log.join("; "));
        // Still alive in the kernel (pinned, or held by a running program)?
        let alive = map_id.and_then(|id| Map::from_id(id).ok());

        let d = f.load(&edit.text(&f))?;
        let planned = d.plan()?;
        let out = d.apply(&ApplyOptions::default())?;
        assert_eq!(
            planned.to_string(),
            out.plan.to_string(),
            "step {step}: apply did other than the plan said"
        );
        let status = d.status()?;
        assert!(
            status.all_ok(),
            "step {step}: after\n{}\n{status}",
            out.plan
        );
        let again = d.plan()?;
        assert!(again.is_noop(), "step {step}: after\n{}\n{again}", out.plan);

        let map = Map::from_pin(&f.root.join("maps/COUNTERS"), OpenFlags::ReadWrite)?;
        let now = kept(&map)?;
        match &alive {
            Some(old) if kept(old)? == Some(value) => assert_eq!(
                now,
                Some(value),
                "step {step}: the kept entry was lost while its map lived:\n{}",
                out.plan
            ),
            // The map died with its last holder (all its pins and programs
            // went behind Kiln's back): its owner writes the entry again.
            _ => {}
        }
        if now != Some(value) {
            value += 1;
            map.update_bytes(
                &KEPT_KEY.to_ne_bytes(),
                &value.to_ne_bytes(),
                UpdateFlags::ANY,
            )?;
        }
        if edit.enforce {
            let seven = map.lookup_bytes(&7u32.to_ne_bytes(), UpdateFlags::ANY)?;
            assert_eq!(
                seven.as_deref(),
                Some(&70u64.to_ne_bytes()[..]),
                "step {step}: entries_mode = \"enforce\" left COUNTERS[7]"
            );
        }
    }
    Ok(())
}

fn main() {
    let needs = &counter_needs();
    kiln_testkit::run(vec![kiln_testkit::test(
        "random_edits_and_drift_converge",
        needs,
        random_edits_and_drift_converge,
    )]);
}
