//! The `kiln` binary as a script sees it: no panic when stdout is a closed
//! pipe or a full disk, JSON errors with `--json`, one exit code per kind of
//! failure, messages that name the real problem.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use kiln_manifest::apply::ApplyOptions;
use kiln_testkit::TestResult;

mod common;
use common::{Fixture, counter_needs, kiln_bin};

/// Runs `kiln ARGS`: exit code, stdout, stderr.
fn run(args: &[&str], manifest: &Path) -> Result<(i32, String, String), std::io::Error> {
    let out = Command::new(kiln_bin()).args(args).arg(manifest).output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn closed_pipe_and_full_disk_do_not_panic() -> TestResult {
    let f = Fixture::new()?;
    f.deployment(&f.v1, "", "")?;
    let manifest = f.manifest_path();
    // `kiln plan | head -0`: the reader is gone before kiln writes.
    let mut child = Command::new(kiln_bin())
        .arg("plan")
        .arg(&manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .ok_or("no stderr")?
        .read_to_string(&mut stderr)?;
    let status = child.wait()?;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "a closed pipe is not an error: {stderr}");

    // `kiln apply > /dev/full`: the apply happens, the lost report is an error.
    let out = Command::new(kiln_bin())
        .arg("apply")
        .arg(&manifest)
        .stdout(std::fs::File::options().write(true).open("/dev/full")?)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("cannot write the output: No space left on device"),
        "{stderr}"
    );
    let d = f.deployment(&f.v1, "", "")?;
    assert!(d.status()?.all_ok(), "the apply did not happen");
    Ok(())
}

/// `status`, `export` and `destroy` with `--json`: values, not text.
fn status_export_destroy_speak_json() -> TestResult {
    let f = Fixture::new()?;
    let d = f.deployment(&f.v1, "", "")?;
    d.apply(&ApplyOptions::default())?;
    let (code, out, err) = run(&["status", "--json"], &f.manifest_path())?;
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out)?;
    let items = v["items"].as_array().ok_or("no items")?;
    let map = items
        .iter()
        .find(|i| i["kind"] == "map")
        .ok_or("no map item")?;
    assert!(map["desired"]["def"]["max_entries"].is_u64(), "{map}");
    assert!(map["observed"]["id"].is_u64(), "{map}");
    assert_eq!(
        map["desired"]["def"], map["observed"]["def"],
        "a map as declared has the declared definition"
    );
    // The XDP program: its id and tag, and the attach point the kernel reports.
    let xdp = items
        .iter()
        .find(|i| i["name"] == "count_packets")
        .ok_or(format!("no xdp program item in {out}"))?;
    let prog_id = xdp["observed"]["program"]["id"].as_u64().ok_or("no id")?;
    assert_eq!(xdp["observed"]["link"]["prog_id"].as_u64(), Some(prog_id));
    assert_eq!(xdp["observed"]["link"]["link_type"], "xdp", "{xdp}");
    assert!(
        xdp["observed"]["link"]["point"]
            .as_str()
            .is_some_and(|p| p.starts_with("xdp lo (generic)")),
        "{xdp}"
    );
    let tag = xdp["observed"]["program"]["tag"].as_str().ok_or("no tag")?;
    assert!(
        xdp["desired"]["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == tag)),
        "{xdp}"
    );

    let (code, out, err) = run(&["export", "--json", "--name", &f.name], &f.root)?;
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(v["deployment"], f.name.as_str());
    assert!(
        v["manifest"]
            .as_str()
            .is_some_and(|m| m.contains("xdp = { interface = \"lo\"")),
        "{out}"
    );

    let (code, out, err) = run(&["destroy", "--json"], &f.manifest_path())?;
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert!(
        v["removed"].as_array().is_some_and(|r| !r.is_empty()),
        "{out}"
    );
    assert_eq!(v["root_removed"], true, "{out}");
    assert!(!f.root.exists());
    Ok(())
}

fn json_errors_and_exit_codes() -> TestResult {
    let f = Fixture::new()?;
    let missing = f.dir.join("missing.toml");
    let (code, out, err) = run(&["plan", "--json"], &missing)?;
    assert_eq!(code, 66, "a missing manifest: {err}");
    assert!(
        err.contains("no such manifest file") && !err.contains(":1:1"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(v["error"]["exit_code"], 66, "{out}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("missing.toml")),
        "{out}"
    );

    let (code, _, err) = run(&["status"], &f.dir)?;
    assert_eq!(code, 66, "{err}");
    assert!(err.contains("is a directory, not a manifest file"), "{err}");

    // An invalid manifest: exit 3, and each diagnostic in the JSON.
    f.deployment(&f.v1, "", "")?;
    let text = std::fs::read_to_string(f.manifest_path())?;
    std::fs::write(
        f.manifest_path(),
        text.replace("entries = [", "max_entries = 0\nentries = ["),
    )?;
    let (code, out, err) = run(&["status", "--json"], &f.manifest_path())?;
    assert_eq!(code, 3, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out)?;
    let d = &v["error"]["diagnostics"][0];
    assert_eq!(d["line"], 21, "{out}");
    assert!(
        d["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_entries = 0")),
        "{out}"
    );
    assert!(d["help"].is_string(), "{out}");

    // A directory given as an object's path.
    std::fs::create_dir_all(f.dir.join("obj.bpf.o"))?;
    std::fs::write(
        f.manifest_path(),
        format!(
            "[deployment]\nname = \"{}\"\npin_root = \"{}\"\n\n[objects.counter]\npath = \"obj.bpf.o\"\n",
            f.name,
            f.root.display()
        ),
    )?;
    let (code, _, err) = run(&["check"], &f.manifest_path())?;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("is a directory, not an object file"), "{err}");
    Ok(())
}

fn a_map_name_clash_is_reported_once() -> TestResult {
    let f = Fixture::new()?;
    std::fs::write(
        f.manifest_path(),
        format!(
            "[deployment]\nname = \"{}\"\npin_root = \"{}\"\nallow_outside = true\n\n[objects.a]\npath = \"{}\"\n\n[objects.b]\npath = \"{}\"\n\n[programs.count_exec]\nobject = \"a\"\nattach = \"none\"\n\n[programs.count_packets]\nobject = \"b\"\nattach = \"none\"\n",
            f.name,
            f.root.display(),
            f.v1.display(),
            f.v2.display()
        ),
    )?;
    let (code, _, err) = run(&["check"], &f.manifest_path())?;
    assert_eq!(code, 3, "{err}");
    // Each clashing map once (COUNTERS, and the objects' read-only data,
    // pinned under one libbpf name), however many instructions use it.
    assert_eq!(
        err.matches(
            "uses map 'COUNTERS' of object 'b', but that name is already taken by object 'a'"
        )
        .count(),
        1,
        "{err}"
    );
    Ok(())
}

fn waiting_for_the_lock_is_said() -> TestResult {
    let f = Fixture::new()?;
    let d = f.deployment(&f.v1, "", "")?;
    let lock = kiln_manifest::lock::DeploymentLock::acquire(&f.name)?;
    let mut child = Command::new(kiln_bin())
        .arg("apply")
        .arg(f.manifest_path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let mut first = [0u8; 40];
    stderr.read_exact(&mut first)?;
    assert_eq!(
        String::from_utf8_lossy(&first),
        "kiln: waiting for another apply or destr"
    );
    assert!(
        !f.root.exists(),
        "the apply ran while another held the lock"
    );
    drop(lock);
    let status = child.wait()?;
    assert!(status.success());
    assert!(d.status()?.all_ok());
    let _ = d.apply(&ApplyOptions::default())?;
    Ok(())
}

fn main() {
    let needs = &counter_needs();
    kiln_testkit::run(vec![
        kiln_testkit::test(
            "closed_pipe_and_full_disk_do_not_panic",
            needs,
            closed_pipe_and_full_disk_do_not_panic,
        ),
        kiln_testkit::test(
            "status_export_destroy_speak_json",
            needs,
            status_export_destroy_speak_json,
        ),
        kiln_testkit::test(
            "json_errors_and_exit_codes",
            needs,
            json_errors_and_exit_codes,
        ),
        kiln_testkit::test(
            "a_map_name_clash_is_reported_once",
            needs,
            a_map_name_clash_is_reported_once,
        ),
        kiln_testkit::test(
            "waiting_for_the_lock_is_said",
            needs,
            waiting_for_the_lock_is_said,
        ),
    ]);
}
