//! `kiln export` writes everything needed to apply the deployment again as
//! it runs: function names of renamed programs, read-only globals, the XDP
//! mode, the deployment's name; and it refuses what is not a pin root.

use std::collections::BTreeMap;

use kiln_manifest::Deployment;
use kiln_manifest::apply::ApplyOptions;
use kiln_manifest::export::{ExportError, export};
use kiln_testkit::TestResult;

mod common;
use common::{Fixture, counter_manifest, counter_needs, kiln_bin};

fn renamed_program_globals_and_mode_round_trip() -> TestResult {
    let f = Fixture::new()?;
    let text = counter_manifest(&f.name, &f.root, &f.v1, "", "globals = { step = 5 }").replace(
        "[programs.count_exec]\n",
        "[programs.execs_renamed]\nfunction = \"count_exec\"\n",
    );
    f.load(&text)?.apply(&ApplyOptions::default())?;

    let exported = export(&f.name, &f.root)?;
    for want in [
        format!("name = \"{}\"", f.name),
        "[programs.execs_renamed]".to_string(),
        "function = \"count_exec\"".to_string(),
        "globals = { step = 5 }".to_string(),
        "attach = { xdp = { interface = \"lo\", mode = \"generic\" } }".to_string(),
    ] {
        assert!(exported.contains(&want), "no `{want}` in:\n{exported}");
    }
    let path = f.dir.join("exported.toml");
    std::fs::write(&path, &exported)?;
    let objects = BTreeMap::from([("main".to_string(), f.v1.clone())]);
    let d = Deployment::load(&path, &objects).map_err(|e| e.to_string())?;
    let plan = d.plan()?;
    assert!(plan.is_noop(), "{plan}\n{exported}");
    assert!(d.status()?.all_ok(), "{}", d.status()?);
    Ok(())
}

fn export_refuses_what_is_not_a_pin_root() -> TestResult {
    let f = Fixture::new()?;
    // A directory off bpffs.
    let err = export(&f.name, &f.dir).unwrap_err();
    assert!(matches!(err, ExportError::NotBpffs(_)), "{err}");
    let out = std::process::Command::new(kiln_bin())
        .arg("export")
        .arg(&f.dir)
        .args(["--name", "x"])
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not on a bpffs"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A pin root whose name cannot be guessed.
    f.deployment(&f.v1, "", "")?
        .apply(&ApplyOptions::default())?;
    let out = std::process::Command::new(kiln_bin())
        .arg("export")
        .arg(&f.root)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("pass --name NAME"), "{stderr}");
    Ok(())
}

fn main() {
    let needs = &counter_needs();
    kiln_testkit::run(vec![
        kiln_testkit::test(
            "renamed_program_globals_and_mode_round_trip",
            needs,
            renamed_program_globals_and_mode_round_trip,
        ),
        kiln_testkit::test(
            "export_refuses_what_is_not_a_pin_root",
            needs,
            export_refuses_what_is_not_a_pin_root,
        ),
    ]);
}
