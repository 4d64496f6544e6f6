//! `kiln object load` on the tool corpus (`loader/tests/tools/`): objects
//! written the way libbpf-based tools ship theirs, which the CLI never saw
//! before. Every program loads, except where this kernel refuses a whole
//! mechanism (fentry/fexit trampolines on the host), and every map is made.

use std::path::PathBuf;
use std::process::Command;

use kiln_obj::{AttachType, ObjectSpec, ProgramKind};
use kiln_testkit::{Need, TestResult};

fn kiln_bin() -> PathBuf {
    std::env::var_os("KILN_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kiln")), PathBuf::from)
}

/// fentry/fexit need BPF trampolines: a kernel without them (or under
/// lockdown, as the host) answers EPERM before verification.
fn refused_mechanism(kind: &ProgramKind, errno: Option<i64>) -> bool {
    matches!(
        kind,
        ProgramKind::Tracing { attach_type, .. }
            if *attach_type != AttachType::TRACE_RAW_TP && *attach_type != AttachType::TRACE_ITER
    ) && errno == Some(i64::from(libc::EPERM))
}

fn object_load_json(file: String) -> TestResult {
    let path = kiln_testkit::bpf_object(&file)?;
    let spec = ObjectSpec::parse(&std::fs::read(&path)?).map_err(|e| format!("{file}: {e}"))?;
    let out = Command::new(kiln_bin())
        .args(["object", "load", "--json"])
        .arg(&path)
        .output()?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "{file}: kiln object load --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let programs = report["programs"].as_array().ok_or("no programs array")?;
    let mut refused = 0;
    for p in &spec.programs {
        let entry = programs
            .iter()
            .find(|e| e["name"] == p.name.as_str())
            .ok_or_else(|| format!("{file}: program {} missing from the report", p.name))?;
        if entry["loaded"] == true {
            assert!(entry["id"].as_u64().is_some_and(|id| id > 0), "{entry}");
        } else if refused_mechanism(&p.kind, entry["errno"].as_i64()) {
            eprintln!(
                "{file}: {}: refused by this kernel (no trampolines)",
                p.name
            );
            refused += 1;
        } else {
            return Err(format!("{file}: program {} did not load: {entry}", p.name).into());
        }
    }
    let maps = report["maps"].as_array().ok_or("no maps array")?;
    for m in &spec.maps {
        assert!(
            maps.iter()
                .any(|e| e["name"] == m.name.as_str() && e["id"].as_u64().is_some()),
            "{file}: map {} missing from {maps:?}",
            m.name
        );
    }
    // The exit code and "ok" tell a script whether everything loaded.
    assert_eq!(report["ok"] == true, refused == 0, "{report}");
    assert_eq!(out.status.success(), refused == 0, "{}", out.status);
    Ok(())
}

fn main() {
    let mut tests = Vec::new();
    let dir = kiln_testkit::bpf_dir();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("tool_") && n.ends_with(".bpf.o"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    if files.is_empty() {
        // Loud, not silent: the objects are built by `cargo xtask build-ebpf`.
        tests.push(kiln_testkit::test("tool_objects_present", &[], move || {
            Err(format!(
                "no tool_*.bpf.o in {} (run cargo xtask build-ebpf)",
                dir.display()
            )
            .into())
        }));
    }
    for file in files {
        let name = format!("object_load_{}", file.trim_end_matches(".bpf.o"));
        tests.push(kiln_testkit::test(
            name,
            &[Need::Root, Need::Bpf],
            move || object_load_json(file),
        ));
    }
    kiln_testkit::run(tests);
}
