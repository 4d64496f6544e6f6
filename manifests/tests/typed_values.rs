//! Map entries and globals written in the manifest as the C types say
//! (through the object's BTF): the bytes Kiln would write, and what a user
//! reads back from the kernel after applying.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_manifest::Deployment;
use kiln_manifest::apply::ApplyOptions;
use kiln_testkit::{Need, TestResult};

const MANIFEST: &str = r#"
[deployment]
name = "NAME"
pin_root = "ROOT"
allow_outside = true

[objects.typed]
path = "OBJ"

[programs.typed]
object = "typed"
attach = "none"
globals = { enabled = true, cfg = { limit = 1500, color = "BLUE", name = "edge" } }

[maps.FLOWS]
object = "typed"
entries = [
  { key = { saddr = 0x0a000001, port = 443, proto = 6, urgent = 5, rest = 1, tag = "web", color = "GREEN" }, value = { packets = 7, on = true } },
]

[maps.BLOCKED]
object = "typed"
entries = [ { key = "10.0.0.0/8", value = 1 }, { key = { prefixlen = 16, addr = 0x0000a8c0 }, value = 2 } ]
"#;

fn deployment(
    n: &str,
    body: &str,
) -> Result<(Deployment, PathBuf, PathBuf), Box<dyn std::error::Error + Send + Sync>> {
    let name = format!("kiln-typed-{}-{n}", std::process::id());
    let root = PathBuf::from("/sys/fs/bpf").join(&name);
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir)?;
    let obj = kiln_testkit::bpf_object("manifest_typed.bpf.o")?;
    let text = body
        .replace("NAME", &name)
        .replace("ROOT", &root.display().to_string())
        .replace("OBJ", &obj.display().to_string());
    let path = dir.join("manifest.toml");
    std::fs::write(&path, text)?;
    let d = Deployment::load(&path, &BTreeMap::new()).map_err(|e| e.to_string())?;
    Ok((d, root, dir))
}

/// Runs `case` on a fresh deployment of `body`, then removes whatever it
/// left (pins, directory, lock file), whether it passed or not.
fn with_deployment(
    n: &str,
    body: &str,
    case: impl FnOnce(&Deployment, &Path, &Path) -> TestResult,
) -> TestResult {
    let (d, root, dir) = deployment(n, body)?;
    let result = case(&d, &root, &dir);
    let _ = d.destroy();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(
        kiln_manifest::lock::lock_dir().join(format!("{}.lock", d.manifest.name())),
    );
    result
}

fn flow_key() -> Vec<u8> {
    let mut k = vec![0u8; 20];
    k[0..4].copy_from_slice(&0x0a000001u32.to_le_bytes());
    k[4..6].copy_from_slice(&443u16.to_le_bytes());
    k[6] = 6;
    k[7] = 5 | (1 << 3);
    k[8..11].copy_from_slice(b"web");
    k[16..20].copy_from_slice(&5u32.to_le_bytes());
    k
}

fn encodes_structs_enums_bitfields_strings() -> TestResult {
    let (d, _, dir) = deployment("bytes", MANIFEST)?;
    let flows = &d.resolved.desired.maps["FLOWS"].entries;
    assert_eq!(flows[0].0, flow_key());
    let mut v = vec![0u8; 16];
    v[0] = 7;
    v[8] = 1;
    assert_eq!(flows[0].1, v);
    let blocked = &d.resolved.desired.maps["BLOCKED"].entries;
    assert_eq!(blocked[0].0, [8, 0, 0, 0, 10, 0, 0, 0]);
    assert_eq!(blocked[1].0, [16, 0, 0, 0, 0xc0, 0xa8, 0, 0]);
    let globals: BTreeMap<_, _> = d.resolved.builds["typed"].globals.iter().cloned().collect();
    assert_eq!(globals["enabled"], [1]);
    let mut cfg = vec![0u8; 16];
    cfg[0..4].copy_from_slice(&1500u32.to_le_bytes());
    cfg[4..8].copy_from_slice(&6u32.to_le_bytes());
    cfg[8..12].copy_from_slice(b"edge");
    assert_eq!(globals["cfg"], cfg);
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

fn type_errors_name_the_member() -> TestResult {
    for (bad, want) in [
        ("color = \"GREEN\" }", "color = \"PURPLE\" }"),
        ("port = 443", "port = 70000"),
        ("tag = \"web\"", "tag = \"much-too-long\""),
        ("proto = 6", "protocol = 6"),
        ("urgent = 5", "urgent = 9"),
    ]
    .map(|(from, to)| (MANIFEST.replacen(from, to, 1), to))
    {
        let err = match deployment("err", &bad) {
            Ok(_) => return Err(format!("accepted `{want}`").into()),
            Err(e) => e.to_string(),
        };
        let expect = match want {
            w if w.contains("PURPLE") => {
                "color: 'PURPLE' is not a value of enum color (it has: RED, GREEN, BLUE)"
            }
            w if w.contains("70000") => "port: 70000 does not fit",
            w if w.contains("much") => "tag: \"much-too-long\" has 13 bytes, the array holds 6",
            w if w.contains("protocol") => {
                "flow has no member 'protocol' (it has: saddr, port, proto, urgent, rest, tag, color)"
            }
            _ => "urgent: 9 does not fit a 3-bit field",
        };
        assert!(
            err.contains(expect),
            "`{want}`: expected `{expect}` in:\n{err}"
        );
        assert!(
            err.contains("manifest.toml:18:"),
            "`{want}`: no line:col:\n{err}"
        );
    }
    Ok(())
}

fn applied_values_read_back() -> TestResult {
    with_deployment("apply", MANIFEST, |d, root, _| {
        d.apply(&ApplyOptions::default())?;
        let flows =
            kiln_loader::Map::from_pin(&root.join("maps/FLOWS"), kiln_loader::OpenFlags::ReadOnly)?;
        let v = flows
            .lookup_bytes(&flow_key(), kiln_loader::maps::UpdateFlags::ANY)?
            .ok_or("the FLOWS entry is not in the kernel")?;
        assert_eq!(u64::from_le_bytes(v[..8].try_into()?), 7);
        assert!(d.plan()?.is_noop());
        Ok(())
    })
}

fn migration_converts_by_field_name() -> TestResult {
    migrate_flows(false)
}

/// The same migration when FLOWS' pin was removed behind Kiln's back: the
/// live map is found through the program that uses it, not replaced.
fn migration_from_a_map_found_through_its_program() -> TestResult {
    migrate_flows(true)
}

fn migrate_flows(unpin_first: bool) -> TestResult {
    let n = if unpin_first {
        "migrate-found"
    } else {
        "migrate"
    };
    with_deployment(n, MANIFEST, move |d, root, dir| {
        d.apply(&ApplyOptions::default())?;
        if unpin_first {
            std::fs::remove_file(root.join("maps/FLOWS"))?;
        }
        // Version 2 reorders and grows the FLOWS value: {on, drops, packets, bytes}.
        let v2 = kiln_testkit::bpf_object("manifest_typed_v2.bpf.o")?;
        let v1 = kiln_testkit::bpf_object("manifest_typed.bpf.o")?;
        let text = std::fs::read_to_string(dir.join("manifest.toml"))?
            .replace(&v1.display().to_string(), &v2.display().to_string())
            .replace(
                "entries = [\n  { key = { saddr",
                "on_upgrade = \"migrate\"\nentries = [\n  { key = { saddr",
            )
            .replace(
                "value = { packets = 7, on = true }",
                "value = { packets = 7, on = true, drops = 1 }",
            );
        std::fs::write(dir.join("manifest.toml"), text)?;
        let d2 = Deployment::load(&dir.join("manifest.toml"), &BTreeMap::new())
            .map_err(|e| e.to_string())?;
        let out = d2.apply(&ApplyOptions::default())?;
        assert!(
            out.plan.actions.iter().any(|a| matches!(a, kiln_manifest::plan::Action::MigrateMap { map, .. } if map == "FLOWS")),
            "{}",
            out.plan
        );
        assert_eq!(
            out.plan.actions.iter().any(
                |a| matches!(a, kiln_manifest::plan::Action::RepinMap { map, .. } if map == "FLOWS")
            ),
            unpin_first,
            "{}",
            out.plan
        );
        let flows =
            kiln_loader::Map::from_pin(&root.join("maps/FLOWS"), kiln_loader::OpenFlags::ReadOnly)?;
        assert_eq!(flows.value_size(), 24);
        let v = flows
            .lookup_bytes(&flow_key(), kiln_loader::maps::UpdateFlags::ANY)?
            .ok_or("the FLOWS entry was not migrated")?;
        assert_eq!(v[0], 1, "on: {v:?}");
        assert_eq!(
            u32::from_le_bytes(v[4..8].try_into()?),
            0,
            "drops is new: zero, not the manifest's entry: {v:?}"
        );
        assert_eq!(
            u64::from_le_bytes(v[8..16].try_into()?),
            7,
            "packets: {v:?}"
        );
        assert_eq!(u64::from_le_bytes(v[16..24].try_into()?), 0, "bytes: {v:?}");
        Ok(())
    })
}

/// `entries_mode`: "exact" makes BLOCKED hold exactly the listed prefixes,
/// "enforce" puts FLOWS' listed entry back and leaves run-time keys alone.
/// Changes made behind Kiln's back show in status and plan, a failed apply
/// puts the old values back, and the next apply converges.
fn entries_modes_keep_live_maps() -> TestResult {
    use kiln_loader::maps::UpdateFlags;
    use kiln_manifest::apply::Step;
    use kiln_manifest::plan::Action;
    let body = MANIFEST
        .replace(
            "[maps.BLOCKED]\nobject = \"typed\"\n",
            "[maps.BLOCKED]\nobject = \"typed\"\nentries_mode = \"exact\"\n",
        )
        .replace(
            "[maps.FLOWS]\nobject = \"typed\"\n",
            "[maps.FLOWS]\nobject = \"typed\"\nentries_mode = \"enforce\"\n",
        );
    assert!(body.contains("\"exact\"") && body.contains("\"enforce\""));
    with_deployment("modes", &body, |d, root, dir| {
        d.apply(&ApplyOptions::default())?;
        let open = |m: &str| {
            kiln_loader::Map::from_pin(
                &root.join("maps").join(m),
                kiln_loader::OpenFlags::ReadWrite,
            )
        };
        let (blocked, flows) = (open("BLOCKED")?, open("FLOWS")?);
        let ten_8 = [8, 0, 0, 0, 10, 0, 0, 0];
        let stray = [24, 0, 0, 0, 172, 16, 0, 0];
        let mut other_flow = flow_key();
        other_flow[0] = 2;
        // Behind Kiln's back: a changed and an unlisted prefix, a changed
        // and an unlisted flow.
        blocked.update_bytes(&ten_8, &5u32.to_ne_bytes(), UpdateFlags::ANY)?;
        blocked.update_bytes(&stray, &9u32.to_ne_bytes(), UpdateFlags::ANY)?;
        let mut v = flows
            .lookup_bytes(&flow_key(), UpdateFlags::ANY)?
            .ok_or("no FLOWS entry")?;
        v[..8].copy_from_slice(&99u64.to_le_bytes());
        flows.update_bytes(&flow_key(), &v, UpdateFlags::ANY)?;
        flows.update_bytes(&other_flow, &v, UpdateFlags::ANY)?;
        let read = |m: &kiln_loader::Map, k: &[u8]| m.lookup_bytes(k, UpdateFlags::ANY);
        let runtime_state = || -> Result<_, kiln_loader::MapError> {
            Ok((
                read(&blocked, &ten_8)?,
                read(&blocked, &stray)?,
                read(&flows, &flow_key())?,
                read(&flows, &other_flow)?,
            ))
        };
        let changed = runtime_state()?;

        let status = d.status()?;
        assert!(!status.all_ok(), "{status}");
        let shown = status.to_string();
        assert!(
            shown.contains("1 declared entries differ, 1 unlisted keys (entries_mode = exact)")
                && shown.contains(
                    "1 declared entries differ, 0 unlisted keys (entries_mode = enforce)"
                ),
            "{shown}"
        );
        let plan = d.plan()?;
        let syncs: Vec<(String, usize, usize)> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::SyncEntries {
                    map, set, delete, ..
                } => Some((map.clone(), *set, *delete)),
                _ => None,
            })
            .collect();
        assert_eq!(
            syncs,
            [("BLOCKED".to_string(), 1, 1), ("FLOWS".to_string(), 1, 0)],
            "{plan}"
        );

        // The same drift plus new global values: the sync happens, then a
        // later step fails, and the old values come back.
        std::fs::write(
            dir.join("manifest.toml"),
            std::fs::read_to_string(dir.join("manifest.toml"))?
                .replace("enabled = true", "enabled = false"),
        )?;
        let d2 = Deployment::load(&dir.join("manifest.toml"), &BTreeMap::new())
            .map_err(|e| e.to_string())?;
        let err = d2
            .apply(&ApplyOptions {
                fail_at: Some(Step::PinProgram),
                ..ApplyOptions::default()
            })
            .err()
            .ok_or("apply succeeded despite the injected failure")?;
        assert!(err.to_string().contains("pin_program"), "{err}");
        assert_eq!(
            runtime_state()?,
            changed,
            "the failed apply left entries changed"
        );

        d.apply(&ApplyOptions::default())?;
        assert_eq!(read(&blocked, &ten_8)?, Some(1u32.to_ne_bytes().to_vec()));
        assert_eq!(
            read(&blocked, &stray)?,
            None,
            "exact kept an unlisted prefix"
        );
        let keys: Vec<Vec<u8>> = blocked.keys_bytes().collect::<Result<_, _>>()?;
        assert_eq!(keys.len(), 2, "BLOCKED holds {keys:?}");
        let v = read(&flows, &flow_key())?.ok_or("FLOWS entry gone")?;
        assert_eq!(
            u64::from_le_bytes(v[..8].try_into()?),
            7,
            "enforce did not restore it"
        );
        assert!(
            read(&flows, &other_flow)?.is_some(),
            "enforce deleted a run-time key"
        );
        assert!(d.plan()?.is_noop(), "{}", d.plan()?);
        assert!(d.status()?.all_ok());
        Ok(())
    })
}

/// `entries_mode = "keys"`: the listed prefixes and only those, but the
/// values (counters the programs keep per rule) are never reset.
fn keys_mode_keeps_values() -> TestResult {
    use kiln_loader::maps::UpdateFlags;
    let body = MANIFEST.replace(
        "[maps.BLOCKED]\nobject = \"typed\"\n",
        "[maps.BLOCKED]\nobject = \"typed\"\nentries_mode = \"keys\"\n",
    );
    assert!(body.contains("\"keys\""));
    with_deployment("keys", &body, |d, root, _| {
        d.apply(&ApplyOptions::default())?;
        let blocked = kiln_loader::Map::from_pin(
            &root.join("maps/BLOCKED"),
            kiln_loader::OpenFlags::ReadWrite,
        )?;
        let ten_8 = [8, 0, 0, 0, 10, 0, 0, 0];
        let lan_16 = [16, 0, 0, 0, 192, 168, 0, 0];
        let stray = [24, 0, 0, 0, 172, 16, 0, 0];
        // A program counted on 10/8; someone removed 192.168/16 and added 172.16/24.
        blocked.update_bytes(&ten_8, &41u32.to_ne_bytes(), UpdateFlags::ANY)?;
        assert!(blocked.delete_bytes(&lan_16)?);
        blocked.update_bytes(&stray, &9u32.to_ne_bytes(), UpdateFlags::ANY)?;
        let out = d.apply(&ApplyOptions::default())?;
        assert!(
            out.plan
                .to_string()
                .contains("~ sync entries of map BLOCKED: 1 to set, 1 to delete"),
            "{}",
            out.plan
        );
        let read = |k: &[u8]| blocked.lookup_bytes(k, UpdateFlags::ANY);
        assert_eq!(
            read(&ten_8)?,
            Some(41u32.to_ne_bytes().to_vec()),
            "a counted value was reset"
        );
        assert_eq!(
            read(&lan_16)?,
            Some(2u32.to_ne_bytes().to_vec()),
            "the listed prefix is back"
        );
        assert!(
            !blocked.keys_bytes().any(|k| k.is_ok_and(|k| k == stray)),
            "the unlisted prefix is still there"
        );
        assert!(d.plan()?.is_noop(), "{}", d.plan()?);
        Ok(())
    })
}

fn main() {
    kiln_testkit::run(vec![
        kiln_testkit::test(
            "encodes_structs_enums_bitfields_strings",
            &[],
            encodes_structs_enums_bitfields_strings,
        ),
        kiln_testkit::test(
            "entries_modes_keep_live_maps",
            &[Need::Root, Need::Bpf],
            entries_modes_keep_live_maps,
        ),
        kiln_testkit::test(
            "keys_mode_keeps_values",
            &[Need::Root, Need::Bpf],
            keys_mode_keeps_values,
        ),
        kiln_testkit::test(
            "type_errors_name_the_member",
            &[],
            type_errors_name_the_member,
        ),
        kiln_testkit::test(
            "applied_values_read_back",
            &[Need::Root, Need::Bpf],
            applied_values_read_back,
        ),
        kiln_testkit::test(
            "migration_converts_by_field_name",
            &[Need::Root, Need::Bpf],
            migration_converts_by_field_name,
        ),
        kiln_testkit::test(
            "migration_from_a_map_found_through_its_program",
            &[Need::Root, Need::Bpf],
            migration_from_a_map_found_through_its_program,
        ),
    ]);
}
