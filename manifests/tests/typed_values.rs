//! Map entries and globals written in the manifest as the C types say
//! (through the object's BTF): the bytes Kiln would write, and what a user
//! reads back from the kernel after applying.

use std::collections::BTreeMap;
use std::path::PathBuf;

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
    let (d, root, dir) = deployment("apply", MANIFEST)?;
    let result = (|| -> TestResult {
        d.apply(&ApplyOptions::default())?;
        let flows = kiln_loader::Map::from_pin(
            &root.join("maps/FLOWS"),
            kiln_loader::sys::object::OpenFlags::ReadOnly,
        )?;
        let v = flows
            .lookup_bytes(&flow_key(), kiln_loader::maps::UpdateFlags::ANY)?
            .ok_or("the FLOWS entry is not in the kernel")?;
        assert_eq!(u64::from_le_bytes(v[..8].try_into()?), 7);
        assert!(d.plan()?.is_noop());
        Ok(())
    })();
    let _ = d.destroy();
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(
        kiln_manifest::lock::lock_dir().join(format!("{}.lock", d.manifest.name())),
    );
    result
}

fn migration_converts_by_field_name() -> TestResult {
    let (d, root, dir) = deployment("migrate", MANIFEST)?;
    let result = (|| -> TestResult {
        d.apply(&ApplyOptions::default())?;
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
        let flows = kiln_loader::Map::from_pin(
            &root.join("maps/FLOWS"),
            kiln_loader::sys::object::OpenFlags::ReadOnly,
        )?;
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
    })();
    let _ = d.destroy();
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(
        kiln_manifest::lock::lock_dir().join(format!("{}.lock", d.manifest.name())),
    );
    result
}

fn main() {
    kiln_testkit::run(vec![
        kiln_testkit::test(
            "encodes_structs_enums_bitfields_strings",
            &[],
            encodes_structs_enums_bitfields_strings,
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
    ]);
}
