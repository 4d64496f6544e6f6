//! Every file in tests/bad/ is a manifest with one mistake. Its first line
//! says where and what the error must be (`# expect: LINE:COL: text`); a
//! `# needs: tracefs` line marks files whose check needs a mounted tracefs.
//! Files named `obj_*` are checked against tests/bpf/manifest_counter.bpf.c
//! (built to target/bpf by `cargo xtask build-ebpf`), or against the object
//! a `# object: NAME.bpf.o` line names, given as `[objects.counter]`. Each file also goes
//! through `Deployment::check_offline` (no bpf(2)), which must report the
//! same first error; `# offline: accepted` marks the files whose mistake
//! only the kernel feature probes can see. No privileges needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_manifest::Deployment;
use kiln_testkit::{Need, TestResult};

fn tracefs() -> Option<String> {
    let mounted = [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .iter()
    .any(|p| Path::new(p).is_dir());
    (!mounted).then(|| "tracefs is not mounted, so tracepoint names cannot be checked".into())
}

fn case(path: PathBuf) -> TestResult {
    let text = std::fs::read_to_string(&path)?;
    let expect = text
        .lines()
        .find_map(|l| l.strip_prefix("# expect: "))
        .ok_or("no `# expect: LINE:COL: text` line")?;
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut overrides = BTreeMap::new();
    if file.starts_with("obj_") {
        let object = text
            .lines()
            .find_map(|l| l.strip_prefix("# object: "))
            .unwrap_or("manifest_counter.bpf.o");
        overrides.insert("counter".to_string(), kiln_testkit::bpf_object(object)?);
    }
    let err = match Deployment::load(&path, &overrides) {
        Ok(_) => return Err(format!("{file}: accepted, expected `{expect}`").into()),
        Err(d) => d.to_string(),
    };
    let want = format!("{file}:{expect}");
    let first = err.lines().next().unwrap_or_default();
    if !first.starts_with("error: ") || !first.contains(&want) {
        return Err(format!("{file}: expected an error containing `{want}`, got:\n{err}").into());
    }
    if !err.contains("\n  help: ") {
        return Err(
            format!("{file}: the error says what is wrong but not how to fix it:\n{err}").into(),
        );
    }
    // The kernel-free check (what the manifest_check fuzz target drives)
    // finds the same first error, except for what only the feature probes
    // can tell (files marked `# offline: accepted`).
    let counter = match overrides.get("counter") {
        Some(p) => Some(kiln_obj::ObjectSpec::parse(&std::fs::read(p)?)?),
        None => None,
    };
    let offline = Deployment::check_offline(&path, &text, |_| counter.clone());
    if text.lines().any(|l| l == "# offline: accepted") {
        if let Err(d) = offline {
            return Err(format!("{file}: the offline check refused it:\n{d}").into());
        }
    } else {
        let offline = match offline {
            Ok(_) => return Err(format!("{file}: the offline check accepted it").into()),
            Err(d) => d.to_string(),
        };
        if offline.lines().next() != Some(first) {
            return Err(format!(
                "{file}: the offline check's first error differs:\n{offline}\nvs\n{first}"
            )
            .into());
        }
    }
    // The binary: exit code 3 (invalid manifest) and the same message.
    let kiln = std::env::var_os("KILN_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kiln")), PathBuf::from);
    let mut cmd = std::process::Command::new(kiln);
    cmd.arg("check").arg(&path);
    for (name, obj) in &overrides {
        cmd.arg("--object").arg(format!("{name}={}", obj.display()));
    }
    let out = cmd.output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(3) || !stderr.contains(&want) {
        return Err(format!(
            "{file}: `kiln check` exited with {} (want 3, invalid manifest), stderr:\n{stderr}",
            out.status
        )
        .into());
    }
    Ok(())
}

/// The other exit codes of the binary: usage errors are 64, a missing
/// manifest file is a missing input (66).
fn exit_codes() -> TestResult {
    let kiln = std::env::var_os("KILN_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kiln")), PathBuf::from);
    let code = |args: &[&str]| -> Result<Option<i32>, std::io::Error> {
        Ok(std::process::Command::new(&kiln)
            .args(args)
            .output()?
            .status
            .code())
    };
    assert_eq!(code(&["frobnicate"])?, Some(64), "unknown subcommand");
    assert_eq!(code(&["apply"])?, Some(64), "missing argument");
    assert_eq!(code(&["--help"])?, Some(0), "--help");
    assert_eq!(
        code(&["check", "/nonexistent/kiln.toml"])?,
        Some(66),
        "missing manifest"
    );
    Ok(())
}

fn main() {
    let dir = kiln_testkit::repo_dir().join("manifests/tests/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("manifests/tests/bad")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let tests = files
        .into_iter()
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let needs: &[Need] = if text.lines().any(|l| l == "# needs: tracefs") {
                &[Need::Probe("tracefs", tracefs)]
            } else {
                &[]
            };
            kiln_testkit::test(format!("bad::{name}"), needs, move || case(path))
        })
        .collect::<Vec<_>>();
    let mut tests = tests;
    tests.push(kiln_testkit::test("exit_codes", &[], exit_codes));
    kiln_testkit::run(tests);
}
