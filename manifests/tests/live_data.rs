//! Live data is never lost without a word: a map whose pin was removed while
//! its programs run is found through them and re-pinned with its data, and
//! a migration to a smaller map that cannot hold the live entries is
//! refused unless the manifest says `on_shrink = "drop"`.

use kiln_loader::Map;
use kiln_loader::OpenFlags;
use kiln_loader::maps::UpdateFlags;
use kiln_manifest::apply::{ApplyError, ApplyOptions};
use kiln_manifest::live;
use kiln_manifest::plan::{Action, PlanError};
use kiln_manifest::status::State;
use kiln_testkit::TestResult;

mod common;
use common::{Fixture, counter, counter_needs, exec_true, send_udp};

fn counters(f: &Fixture) -> Result<Map, String> {
    Map::from_pin(&f.root.join("maps/COUNTERS"), OpenFlags::ReadWrite).map_err(|e| e.to_string())
}

fn live_keys(f: &Fixture) -> Result<usize, String> {
    Ok(counters(f)?.keys_bytes().filter(Result::is_ok).count())
}

fn unpinned_map_is_found_through_its_programs_and_repinned() -> TestResult {
    let f = Fixture::new()?;
    let d = f.deployment(&f.v1, "", "")?;
    d.apply(&ApplyOptions::default())?;
    send_udp()?;
    exec_true()?;
    let packets = counter(&f.root, 1)?;
    assert!(packets > 0, "XDP did not count");
    let id = live::map_at(&f.root.join("maps/COUNTERS"))
        .ok_or("map not pinned")?
        .id;

    // Behind Kiln's back: the pin goes, the programs keep running on the map.
    std::fs::remove_file(f.root.join("maps/COUNTERS"))?;

    let status = d.status()?;
    let item = status
        .item("COUNTERS")
        .ok_or("no status item for COUNTERS")?;
    assert_eq!(item.state, State::Drifted, "{status}");
    assert!(item.detail.contains(&format!("id {id}")), "{status}");

    let plan = d.plan()?;
    let text = plan.to_string();
    assert!(
        text.contains("~ re-pin map COUNTERS found through program count_"),
        "{text}"
    );
    assert!(
        plan.actions
            .iter()
            .all(|a| matches!(a, Action::RepinMap { .. })),
        "only the re-pin is needed, nothing is created or reloaded:\n{text}"
    );

    d.apply(&ApplyOptions::default())?;
    let after = live::map_at(&f.root.join("maps/COUNTERS")).ok_or("map not re-pinned")?;
    assert_eq!(after.id, id, "another map was pinned");
    assert!(counter(&f.root, 1)? >= packets, "counts lost");
    assert_eq!(counter(&f.root, 7)?, 70, "initial entry lost");
    send_udp()?;
    assert!(
        counter(&f.root, 1)? > packets,
        "XDP no longer counts into the pin"
    );
    assert!(d.status()?.all_ok(), "{}", d.status()?);
    assert!(d.plan()?.is_noop(), "{}", d.plan()?);
    Ok(())
}

fn unpinned_map_is_migrated_from_where_it_was_found() -> TestResult {
    let f = Fixture::new()?;
    f.deployment(&f.v1, "", "")?
        .apply(&ApplyOptions::default())?;
    counters(&f)?.update_bytes(&9u32.to_ne_bytes(), &900u64.to_ne_bytes(), UpdateFlags::ANY)?;
    std::fs::remove_file(f.root.join("maps/COUNTERS"))?;

    let d = f.deployment(&f.v1, "max_entries = 32\non_upgrade = \"migrate\"", "")?;
    let out = d.apply(&ApplyOptions::default())?;
    let text = out.plan.to_string();
    assert!(
        matches!(&out.plan.actions[0], Action::RepinMap { map, .. } if map == "COUNTERS"),
        "{text}"
    );
    assert!(
        matches!(&out.plan.actions[1], Action::MigrateMap { .. }),
        "{text}"
    );
    let m = live::map_at(&f.root.join("maps/COUNTERS")).ok_or("map not pinned")?;
    assert_eq!(m.def.max_entries, 32);
    assert_eq!(
        counter(&f.root, 9)?,
        900,
        "the found map's data was not migrated"
    );
    assert!(d.status()?.all_ok(), "{}", d.status()?);
    Ok(())
}

fn shrinking_a_map_with_data_is_refused_unless_allowed() -> TestResult {
    let f = Fixture::new()?;
    f.deployment(&f.v1, "", "")?
        .apply(&ApplyOptions::default())?;
    // Keys 0 and 1 are the programs' own; 12 keys in all.
    let map = counters(&f)?;
    for k in 0u32..12 {
        if map
            .lookup_bytes(&k.to_ne_bytes(), UpdateFlags::ANY)?
            .is_none()
        {
            map.update_bytes(
                &k.to_ne_bytes(),
                &u64::from(k).to_ne_bytes(),
                UpdateFlags::ANY,
            )?;
        }
    }
    assert_eq!(live_keys(&f)?, 12);
    let before = live::map_at(&f.root.join("maps/COUNTERS")).ok_or("map not pinned")?;

    // 12 live entries do not fit in 4 slots: refused, naming how many.
    let shrink = f.deployment(&f.v1, "max_entries = 4\non_upgrade = \"migrate\"", "")?;
    let err = shrink.apply(&ApplyOptions::default()).unwrap_err();
    assert!(
        matches!(
            &err,
            ApplyError::Plan(PlanError::ShrinkDropsData {
                over: 8,
                from: 16,
                to: 4,
                ..
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("on_shrink = \"drop\""), "{err}");
    let still = live::map_at(&f.root.join("maps/COUNTERS")).ok_or("map gone")?;
    assert_eq!(still.id, before.id, "a refused shrink replaced the map");
    assert_eq!(live_keys(&f)?, 12, "a refused shrink lost entries");

    // A smaller map that holds them all needs no permission.
    let fits = f.deployment(&f.v1, "max_entries = 12\non_upgrade = \"migrate\"", "")?;
    let out = fits.apply(&ApplyOptions::default())?;
    assert!(
        matches!(&out.plan.actions[0], Action::MigrateMap { dropped: 0, .. }),
        "{}",
        out.plan
    );
    assert_eq!(live_keys(&f)?, 12);

    // Allowed: the plan says how many entries go.
    let drop = f.deployment(
        &f.v1,
        "max_entries = 4\non_upgrade = \"migrate\"\non_shrink = \"drop\"",
        "",
    )?;
    let plan = drop.plan()?;
    assert!(
        plan.to_string()
            .contains("8 live entries do not fit and are dropped"),
        "{plan}"
    );
    drop.apply(&ApplyOptions::default())?;
    assert_eq!(live_keys(&f)?, 4);
    assert!(drop.status()?.all_ok(), "{}", drop.status()?);
    Ok(())
}

fn main() {
    let needs = &counter_needs();
    kiln_testkit::run(vec![
        kiln_testkit::test(
            "unpinned_map_is_found_through_its_programs_and_repinned",
            needs,
            unpinned_map_is_found_through_its_programs_and_repinned,
        ),
        kiln_testkit::test(
            "unpinned_map_is_migrated_from_where_it_was_found",
            needs,
            unpinned_map_is_migrated_from_where_it_was_found,
        ),
        kiln_testkit::test(
            "shrinking_a_map_with_data_is_refused_unless_allowed",
            needs,
            shrinking_a_map_with_data_is_refused_unless_allowed,
        ),
    ]);
}
