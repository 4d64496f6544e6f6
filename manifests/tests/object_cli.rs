//! `kiln object load` on the tool corpus (`loader/tests/tools/`): objects
//! written the way libbpf-based tools ship theirs, which the CLI never saw
//! before. Every program loads, except where this kernel refuses a whole
//! mechanism (fentry/fexit trampolines on the host), and every map is made.
//! And the report is honest (issue 13): loaded, deferred (with what the
//! program needs) and failed are counted apart, deferred programs load when
//! the command line gives their target, and maps pin under libbpf's names.

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

fn kiln(args: &[&std::ffi::OsStr]) -> Result<(std::process::Output, serde_json::Value), String> {
    let out = Command::new(kiln_bin())
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    let v = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((out, v))
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// freplace programs without a target are deferred, not "loaded when
/// attached": counted apart, with what they need, and the exit code says
/// the object did not fully load.
fn deferred_programs_are_reported_as_such() -> TestResult {
    let path = kiln_testkit::bpf_object("attach_freplace.bpf.o")?;
    let (out, v) = kiln(&[os("object"), os("load"), os("--json"), path.as_os_str()])?;
    assert!(!out.status.success(), "{}", out.status);
    assert_eq!(v["ok"], false);
    assert_eq!(
        v["summary"],
        serde_json::json!({"loaded": 0, "deferred": 2, "failed": 0})
    );
    for p in v["programs"].as_array().ok_or("no programs")? {
        assert_eq!(p["status"], "deferred", "{p}");
        let reason = p["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("--attach-target"), "{reason}");
    }
    let text = Command::new(kiln_bin())
        .args([os("object"), os("load"), path.as_os_str()])
        .output()?;
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("0 loaded, 2 deferred, 0 failed"),
        "{stdout}"
    );
    assert!(!stdout.contains("loads when attached"), "{stdout}");
    Ok(())
}

/// A SEC("?socket") program is deferred (autoload off), which is not a
/// failure: libbpf does not load it either, so the exit code is 0.
fn autoload_off_is_deferred_not_failed() -> TestResult {
    let path = kiln_testkit::bpf_object("autoload.bpf.o")?;
    let (out, v) = kiln(&[os("object"), os("load"), os("--json"), path.as_os_str()])?;
    assert_eq!(
        v["summary"],
        serde_json::json!({"loaded": 1, "deferred": 1, "failed": 0})
    );
    assert!(out.status.success(), "{v}");
    let optional = v["programs"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "optional"))
        .ok_or("optional missing from the report")?;
    assert_eq!(optional["status"], "deferred");
    assert!(
        optional["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("autoload"),
        "{optional}"
    );
    Ok(())
}

/// Removes a bpffs directory tree on drop.
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pins(tag: &str) -> Pins {
    Pins(PathBuf::from(format!(
        "/sys/fs/bpf/kiln-test-object-{tag}-{}",
        std::process::id()
    )))
}

/// With `--attach-target`, freplace programs load against the program given.
fn freplace_loads_with_its_target() -> TestResult {
    let dir = pins("freplace");
    let target = kiln_testkit::bpf_object("attach_freplace_target.bpf.o")?;
    let (out, _) = kiln(&[
        os("object"),
        os("load"),
        os("--json"),
        os("--pin-dir"),
        dir.0.as_os_str(),
        target.as_os_str(),
    ])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = kiln_testkit::bpf_object("attach_freplace.bpf.o")?;
    let entry = dir.0.join("xdp_entry");
    let first = format!("drop_all={}", entry.display());
    let second = format!("drop_all_v2={}:kiln_decide", entry.display());
    let (out, v) = kiln(&[
        os("object"),
        os("load"),
        os("--json"),
        os("--attach-target"),
        os(&first),
        os("--attach-target"),
        os(&second),
        path.as_os_str(),
    ])?;
    assert_eq!(
        v["summary"],
        serde_json::json!({"loaded": 2, "deferred": 0, "failed": 0}),
        "{v}"
    );
    assert!(out.status.success());
    for p in v["programs"].as_array().ok_or("no programs")? {
        assert_eq!(p["btf"], true, "an extension needs its BTF: {p}");
    }
    Ok(())
}

/// The programs of a struct_ops variable load against the kernel's struct
/// (as `bpftool prog loadall` loads them), without registering the table.
fn struct_ops_programs_load() -> TestResult {
    let path = kiln_testkit::bpf_object("attach_struct_ops.bpf.o")?;
    let spec = ObjectSpec::parse(&std::fs::read(&path)?)?;
    let (out, v) = kiln(&[os("object"), os("load"), os("--json"), path.as_os_str()])?;
    let n = spec.programs.len();
    assert_eq!(
        v["summary"],
        serde_json::json!({"loaded": n, "deferred": 0, "failed": 0}),
        "{v}"
    );
    assert!(out.status.success());
    Ok(())
}

/// Global data maps pin under libbpf's sanitised names (bpffs refuses a
/// dot), the same names `bpftool prog loadall ... pinmaps` gives them; and
/// every program reports its BTF.
fn maps_pin_under_libbpf_names() -> TestResult {
    let dir = pins("dropin");
    let path = kiln_testkit::bpf_object("dropin.bpf.o")?;
    let (out, v) = kiln(&[
        os("object"),
        os("load"),
        os("--json"),
        os("--pin-dir"),
        dir.0.as_os_str(),
        path.as_os_str(),
    ])?;
    assert!(out.status.success(), "{v}");
    assert_eq!(v["btf"]["loaded"], true);
    for p in v["programs"].as_array().ok_or("no programs")? {
        assert_eq!(p["btf"], true, "{p}");
        assert!(p["line_info"].as_u64() > Some(0), "{p}");
    }
    let mut names: Vec<String> = std::fs::read_dir(&dir.0)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, std::io::Error>>()?;
    names.sort();
    for want in [
        "_data_mask",
        "_data_seen",
        "_rodata_factor",
        "_rodata_str1_1",
        "dropin_bss",
        "dropin_kconfig",
        "dropin_rodata",
        "rings",
        "task_seen",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    // libbpf's side needs bpftool and the kernel's config (for the
    // object's __kconfig externs); Kiln's side above runs regardless.
    let libbpf_unusable =
        kiln_testkit::bpftool_missing().or_else(kiln_testkit::kernel_config_missing);
    if let Some(why) = &libbpf_unusable {
        eprintln!("maps_pin_under_libbpf_names: libbpf's pins not compared: {why}");
    }
    if libbpf_unusable.is_none() {
        let theirs = pins("dropin-libbpf");
        let maps = theirs.0.join("maps");
        let st = Command::new("bpftool")
            .args(["prog", "loadall"])
            .arg(&path)
            .arg(&theirs.0)
            .arg("pinmaps")
            .arg(&maps)
            .status()?;
        assert!(st.success(), "bpftool prog loadall failed");
        for e in std::fs::read_dir(&maps)? {
            let name = e?.file_name().to_string_lossy().into_owned();
            assert!(
                names.contains(&name),
                "libbpf pins {name}, Kiln does not: {names:?}"
            );
        }
    } else {
        eprintln!("bpftool missing: pin names not compared with libbpf's");
    }
    Ok(())
}

/// The host refuses extension programs (EPERM); the VMs load them. Probed
/// with the loader's own API on the same objects, not through the CLI.
fn no_freplace() -> Option<String> {
    let load = |f: &str| -> Result<(ObjectSpec, kiln_loader::Ebpf), String> {
        let path = kiln_testkit::bpf_object(f)?;
        let spec = ObjectSpec::parse(&std::fs::read(&path).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let ebpf = kiln_loader::EbpfLoader::new()
            .load(&spec)
            .map_err(|e| e.to_string())?;
        Ok((spec, ebpf))
    };
    let (_, target) = match load("attach_freplace_target.bpf.o") {
        Ok(x) => x,
        Err(e) => return Some(e),
    };
    let (spec, ext) = match load("attach_freplace.bpf.o") {
        Ok(x) => x,
        Err(e) => return Some(e),
    };
    let t = target.program("xdp_entry")?;
    kiln_loader::links::freplace::load_extension(&spec, &ext, "drop_all", t.fd(), None)
        .err()
        .map(|e| format!("kernel refuses freplace programs: {e}"))
}

/// struct_ops programs need the kernel's `tcp_congestion_ops` (5.6+).
fn no_tcp_struct_ops() -> Option<String> {
    let btf = std::fs::read("/sys/kernel/btf/vmlinux").ok()?;
    let btf = kiln_obj::btf::Btf::from_bytes(btf).ok()?;
    btf.id_by_name(
        "bpf_struct_ops_tcp_congestion_ops",
        kiln_obj::btf::Kind::Struct,
    )
    .is_none()
    .then(|| "kernel has no tcp_congestion_ops struct_ops".into())
}

/// dropin.bpf.o needs cgroup local storage (6.2+).
fn no_cgrp_storage() -> Option<String> {
    (!kiln_loader::probe::probe_map_type(kiln_obj::MapType::CGRP_STORAGE))
        .then(|| "no cgroup local storage maps (kernel 6.2+)".into())
}

/// `kiln object inspect --json FILE`, without the fields that name the file
/// and its byte order.
fn inspect_json(
    path: &std::path::Path,
) -> Result<serde_json::Value, Box<dyn std::error::Error + Send + Sync>> {
    let out = Command::new(kiln_bin())
        .args(["object", "inspect", "--json"])
        .arg(path)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "kiln object inspect {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let obj = v
        .as_object_mut()
        .ok_or("inspect --json printed no object")?;
    obj.remove("path");
    obj.remove("byte_order");
    Ok(v)
}

/// Objects built from our C source with `--target=bpfeb` (the build's
/// `bpfeb/` twins) inspect on this host exactly as their `bpfel` builds:
/// programs, instruction counts, line info, relocations, maps, externs.
fn big_endian_twins_inspect_alike() -> TestResult {
    for file in [
        "globals.bpf.o",
        "maps.bpf.o",
        "subprogs.bpf.o",
        "core.bpf.o",
        "sections.bpf.o",
        "map_values.bpf.o",
        "externs.bpf.o",
        "tool_runqlat.bpf.o",
    ] {
        let le = kiln_testkit::bpf_object(file)?;
        let be = kiln_testkit::bpf_object(&format!("bpfeb/{file}"))?;
        let (l, b) = (inspect_json(&le)?, inspect_json(&be)?);
        if l != b {
            return Err(format!("{file}: bpfel {l:#}\nbpfeb {b:#}").into());
        }
        let text = Command::new(kiln_bin())
            .args(["object", "inspect"])
            .arg(&be)
            .output()?;
        let text = String::from_utf8_lossy(&text.stdout);
        if !text.contains("big-endian (bpfeb)") {
            return Err(format!("{file}: inspect does not name the byte order: {text}").into());
        }
    }
    Ok(())
}

/// `kiln object load` of an object of the other byte order stops before
/// anything reaches the kernel, naming both byte orders.
fn load_refuses_the_other_byte_order() -> TestResult {
    let be = kiln_testkit::bpf_object("bpfeb/globals.bpf.o")?;
    let out = Command::new(kiln_bin())
        .args(["object", "load"])
        .arg(&be)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        return Err(
            format!("a big-endian object loaded on a little-endian kernel: {stderr}").into(),
        );
    }
    for needle in [
        "the object is big-endian (bpfeb)",
        "the running kernel is little-endian (bpfel)",
    ] {
        if !stderr.contains(needle) {
            return Err(format!("error does not say '{needle}': {stderr}").into());
        }
    }
    Ok(())
}

/// `object inspect` lists what `globals = { ... }` can set: each global
/// variable with its section, C type, size and whether it is read-only.
fn inspect_lists_globals() -> TestResult {
    let obj = kiln_testkit::bpf_object("manifest_counter.bpf.o")?;
    let (out, v) = kiln(&[os("object"), os("inspect"), os("--json"), obj.as_os_str()])?;
    assert!(out.status.success(), "{v}");
    let step = v["globals"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["name"] == "step"))
        .ok_or(format!("no global 'step' in {v}"))?;
    assert_eq!(step["section"], ".rodata", "{step}");
    assert_eq!(step["c_type"], "const volatile __u64", "{step}");
    assert_eq!(step["size"], 8, "{step}");
    assert_eq!(step["read_only"], true, "{step}");
    let text = Command::new(kiln_bin())
        .args([os("object"), os("inspect"), obj.as_os_str()])
        .output()?;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.lines().any(|l| l.contains("step")
            && l.contains("const volatile __u64")
            && l.contains("read-only")),
        "{text}"
    );
    Ok(())
}

fn main() {
    let mut tests = Vec::new();
    tests.push(kiln_testkit::test(
        "big_endian_twins_inspect_alike",
        &[],
        big_endian_twins_inspect_alike,
    ));
    tests.push(kiln_testkit::test(
        "load_refuses_the_other_byte_order",
        &[
            Need::Root,
            Need::Bpf,
            Need::Probe("a little-endian host", || {
                cfg!(target_endian = "big").then(|| "this host is big-endian".to_owned())
            }),
        ],
        load_refuses_the_other_byte_order,
    ));
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
    let bpf = [Need::Root, Need::Bpf];
    tests.push(kiln_testkit::test(
        "inspect_lists_globals",
        &[],
        inspect_lists_globals,
    ));
    tests.push(kiln_testkit::test(
        "deferred_programs_are_reported_as_such",
        &bpf,
        deferred_programs_are_reported_as_such,
    ));
    tests.push(kiln_testkit::test(
        "autoload_off_is_deferred_not_failed",
        &bpf,
        autoload_off_is_deferred_not_failed,
    ));
    tests.push(kiln_testkit::test(
        "freplace_loads_with_its_target",
        &[Need::Root, Need::Bpf, Need::Probe("freplace", no_freplace)],
        freplace_loads_with_its_target,
    ));
    tests.push(kiln_testkit::test(
        "struct_ops_programs_load",
        &[
            Need::Root,
            Need::Bpf,
            Need::Probe("tcp_congestion_ops", no_tcp_struct_ops),
        ],
        struct_ops_programs_load,
    ));
    tests.push(kiln_testkit::test(
        "maps_pin_under_libbpf_names",
        &[
            Need::Root,
            Need::Bpf,
            Need::Probe("cgroup local storage", no_cgrp_storage),
        ],
        maps_pin_under_libbpf_names,
    ));
    kiln_testkit::run(tests);
}
