//! One object, loaded by libbpf (`bpftool prog loadall`, a reference tool)
//! and by Kiln (`EbpfLoader::load_each`, the path of `kiln object load`),
//! compared on what the kernel holds afterwards.
//!
//! Runs in a private mount namespace with a bpffs of its own at
//! /sys/fs/bpf ([`isolate`]): libbpf pins `LIBBPF_PIN_BY_NAME` maps at
//! /sys/fs/bpf/NAME and bpftool cannot move that root, so this keeps parallel
//! comparisons (and everyone else's pins) apart, and everything pinned
//! disappears with the process.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use kiln_loader::programs::xlated::{map_label, normalized_xlated, xlated_raw};
use kiln_loader::{EbpfLoader, Program};
use kiln_obj::ObjectSpec;

use crate::report::{Difference, ObjectReport, ProgramReport};

const BPFFS: &str = "/sys/fs/bpf";

/// Enters a new mount namespace and mounts a fresh bpffs at /sys/fs/bpf.
/// Call before any thread starts.
pub fn isolate() -> std::io::Result<()> {
    let c = |s: &str| CString::new(s).map_err(std::io::Error::other);
    let (none, root, bpf, target) = (c("none")?, c("/")?, c("bpf")?, c(BPFFS)?);
    // SAFETY: unshare takes only flags.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the strings are NUL-terminated and alive for the calls; a null
    // data pointer is allowed for both mounts.
    unsafe {
        // Nothing mounted here may propagate back to the host's namespace.
        if libc::mount(
            none.as_ptr(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        std::fs::create_dir_all(BPFFS)?;
        if libc::mount(
            bpf.as_ptr(),
            target.as_ptr(),
            bpf.as_ptr(),
            0,
            std::ptr::null(),
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What the kernel holds for one loaded program.
struct Loaded {
    xlated: Vec<String>,
    btf_id: u32,
    func_info: u32,
    line_info: u32,
    /// Maps the instructions reference (their labels), sorted.
    maps: Vec<String>,
    /// Maps the program holds without referencing them (BPF_PROG_BIND_MAP:
    /// libbpf binds `.rodata` maps so that tools can find them).
    bound: Vec<String>,
}

fn describe(prog: &Program) -> Result<Loaded, String> {
    let fd = prog.fd();
    let xlated = normalized_xlated(fd).map_err(|e| format!("reading xlated: {e}"))?;
    let (_, ext) = xlated_raw(fd).map_err(|e| format!("reading prog info: {e}"))?;
    let info = prog.info().map_err(|e| format!("reading prog info: {e}"))?;
    let mut maps: Vec<String> = xlated
        .iter()
        .filter_map(|l| {
            let at = l.find("map(")? + 4;
            Some(l[at..at + l[at..].find(')')?].to_owned())
        })
        .collect();
    maps.sort();
    maps.dedup();
    let mut bound = Vec::new();
    for id in info.map_ids {
        let label = map_label(id).map_err(|e| format!("map id {id}: {e}"))?;
        if maps.binary_search(&label).is_err() {
            bound.push(label);
        }
    }
    bound.sort();
    Ok(Loaded {
        xlated,
        btf_id: ext.btf_id,
        func_info: ext.func_info,
        line_info: ext.line_info,
        maps,
        bound,
    })
}

/// The most telling line of libbpf's stderr.
fn libbpf_reason(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    let pick = |pat: &str| lines.iter().find(|l| l.contains(pat)).copied();
    pick("failed to load")
        .or_else(|| pick("failed"))
        .or_else(|| pick("Error"))
        .or_else(|| lines.last().copied())
        .unwrap_or("bpftool failed")
        .trim()
        .to_owned()
}

fn pins_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Compares one object. Call after [`isolate`].
pub fn compare_object(path: &Path) -> ObjectReport {
    let start = Instant::now();
    let object = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let mut r = ObjectReport {
        object,
        ..ObjectReport::default()
    };
    if let Err(e) = compare_into(path, &mut r) {
        r.differences.push(Difference::new(
            None,
            "harness",
            format!("comparison failed: {e}"),
        ));
    }
    r.seconds = start.elapsed().as_secs_f64();
    r
}

fn compare_into(path: &Path, r: &mut ObjectReport) -> Result<(), String> {
    let libbpf_dir = PathBuf::from(BPFFS).join("libbpf-progs");
    let kiln_dir = PathBuf::from(BPFFS).join("kiln-pins");

    // A fresh bpffs already holds the kernel's preloaded iterators
    // (`maps.debug`, `progs.debug`): only what appears later is libbpf's.
    let preloaded = pins_in(Path::new(BPFFS));

    // libbpf first: bpftool loads every autoload program or none, and never
    // attaches (no `autoattach`).
    let out = Command::new("bpftool")
        .args(["prog", "loadall"])
        .arg(path)
        .arg(&libbpf_dir)
        .output()
        .map_err(|e| format!("running bpftool: {e}"))?;
    let mut theirs: BTreeMap<String, Loaded> = BTreeMap::new();
    if out.status.success() {
        for name in pins_in(&libbpf_dir) {
            let prog = Program::from_pin(&libbpf_dir.join(&name), None)
                .map_err(|e| format!("opening libbpf's pin of '{name}': {e}"))?;
            theirs.insert(
                name.clone(),
                describe(&prog).map_err(|e| format!("libbpf '{name}': {e}"))?,
            );
        }
        r.libbpf.loaded = true;
        r.libbpf.programs_loaded = theirs.len();
        r.libbpf.btf_loaded = theirs.values().any(|l| l.btf_id != 0);
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("can't pin program that wasn't loaded") {
            // libbpf loaded every autoload program; bpftool then fails on
            // pinning the autoload-off ones (`SEC("?...")`). The object loads
            // for libbpf's users, but there is nothing pinned to compare.
            r.libbpf.loaded = true;
            r.libbpf.error = Some(
                "autoload programs loaded; bpftool cannot pin the autoload-off ones, so none are compared"
                    .into(),
            );
        } else {
            r.libbpf.error = Some(libbpf_reason(&stderr));
        }
    }
    // libbpf's by-name pins sit at the root of the private bpffs.
    let libbpf_pins: Vec<String> = pins_in(Path::new(BPFFS))
        .into_iter()
        .filter(|p| !preloaded.contains(p))
        .collect();

    // Kiln: the loader API as `kiln object load` drives it.
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let kiln_fail = |r: &mut ObjectReport, msg: String| {
        r.kiln.error = Some(msg.clone());
        if r.libbpf.loaded {
            r.differences.push(Difference::new(None, "kiln-fails", msg));
        }
    };
    let spec = match ObjectSpec::parse(&bytes) {
        Ok(s) => s,
        Err(e) => {
            kiln_fail(r, format!("parse: {e}"));
            return Ok(());
        }
    };
    std::fs::create_dir_all(&kiln_dir).map_err(|e| format!("{}: {e}", kiln_dir.display()))?;
    let (ebpf, failures) = match EbpfLoader::new().map_pin_path(&kiln_dir).load_each(&spec) {
        Ok(v) => v,
        Err(e) => {
            kiln_fail(r, format!("load: {e}"));
            return Ok(());
        }
    };
    r.kiln.btf_loaded = ebpf.btf_fd().is_some();
    // The loader goes on without BTF when the kernel refuses it: ask why.
    let btf_refusal = if r.kiln.btf_loaded {
        String::new()
    } else {
        match spec.btf_for_kernel(kiln_loader::probe::btf_features()) {
            Ok(Some(bytes)) => match kiln_loader::Btf::load(&bytes) {
                Ok(_) => "the object's BTF loads on its own".into(),
                Err(e) => {
                    let text = e.to_string();
                    // The kernel's log ends with the reason.
                    let last = text.lines().rfind(|l| !l.trim().is_empty());
                    format!(
                        "the kernel refuses the object's BTF: {}",
                        last.unwrap_or("")
                    )
                }
            },
            Ok(None) => "the object has no BTF".into(),
            Err(e) => format!("preparing the object's BTF failed: {e}"),
        }
    };
    r.kiln.programs_loaded = ebpf.programs().count();
    for (name, e) in &failures {
        r.kiln.failed.push((name.clone(), e.reason()));
    }
    for p in &spec.programs {
        if ebpf.program(&p.name).is_none() && !failures.iter().any(|(n, _)| *n == p.name) {
            r.kiln
                .deferred
                .push((p.name.clone(), "left for attach time".into()));
        }
    }
    r.kiln.loaded = failures.is_empty() && r.kiln.deferred.is_empty();
    if !r.kiln.loaded && r.kiln.error.is_none() {
        r.kiln.error = Some(format!(
            "{} programs failed, {} deferred",
            r.kiln.failed.len(),
            r.kiln.deferred.len()
        ));
    }

    if r.libbpf.loaded {
        // Programs libbpf left alone (autoload off) that Kiln tried and failed.
        for (name, e) in failures.iter().filter(|(n, _)| !theirs.contains_key(n)) {
            r.differences.push(Difference::new(
                Some(name),
                "kiln-fails",
                format!(
                    "program load of a program libbpf does not autoload: {}",
                    e.reason()
                ),
            ));
        }
    }
    let (mut kiln_maps, mut libbpf_maps) = (Vec::new(), Vec::new());
    let (mut kiln_bound, mut libbpf_bound) = (Vec::new(), Vec::new());
    for (name, want) in &theirs {
        let Some(prog) = ebpf.program(name) else {
            match failures.iter().find(|(n, _)| n == name) {
                Some((_, e)) => r.differences.push(Difference::new(
                    Some(name),
                    "kiln-fails",
                    format!("program load: {}", e.reason()),
                )),
                None => r.differences.push(Difference::new(
                    Some(name),
                    "kiln-defers",
                    match spec.program(name) {
                        Some(p) => format!(
                            "Kiln leaves {} programs for attach time",
                            kiln_loader::probe::program_type_name(p.kind.program_type())
                        ),
                        None => "no program of this name in Kiln's parse".into(),
                    },
                )),
            }
            continue;
        };
        let got = describe(prog).map_err(|e| format!("Kiln '{name}': {e}"))?;
        kiln_maps.extend(got.maps.iter().cloned());
        libbpf_maps.extend(want.maps.iter().cloned());
        kiln_bound.extend(got.bound.iter().cloned());
        libbpf_bound.extend(want.bound.iter().cloned());
        let p = ProgramReport {
            name: name.clone(),
            xlated_equal: got.xlated == want.xlated,
            insns: [got.xlated.len(), want.xlated.len()],
            func_info: [got.func_info, want.func_info],
            line_info: [got.line_info, want.line_info],
        };
        if !p.xlated_equal {
            let at = got
                .xlated
                .iter()
                .zip(&want.xlated)
                .position(|(a, b)| a != b)
                .unwrap_or(got.xlated.len().min(want.xlated.len()));
            let line = |v: &[String]| v.get(at).cloned().unwrap_or_else(|| "<end>".into());
            r.differences.push(Difference::new(
                Some(name),
                "xlated",
                format!(
                    "first difference at line {at} ({} vs {} lines): kiln `{}` libbpf `{}`",
                    got.xlated.len(),
                    want.xlated.len(),
                    line(&got.xlated),
                    line(&want.xlated)
                ),
            ));
        }
        if want.btf_id != 0 && got.btf_id == 0 {
            r.differences.push(Difference::new(
                Some(name),
                "btf-dropped",
                format!("loaded without program BTF (no func_info or line_info); {btf_refusal}"),
            ));
        } else if !p.ext_info_equal() {
            r.differences.push(Difference::new(
                Some(name),
                "ext-info",
                format!(
                    "func_info {} vs {}, line_info {} vs {} (kiln vs libbpf)",
                    p.func_info[0], p.func_info[1], p.line_info[0], p.line_info[1]
                ),
            ));
        }
        r.programs.push(p);
    }
    if r.libbpf.loaded && !r.programs.is_empty() {
        if let Some(d) = set_difference("map definitions", kiln_maps, libbpf_maps) {
            r.differences.push(Difference::new(None, "maps", d));
        }
        if let Some(d) = set_difference("maps bound to programs", kiln_bound, libbpf_bound) {
            r.differences.push(Difference::new(None, "maps", d));
        }
        let kiln_pins = pins_in(&kiln_dir);
        if kiln_pins != libbpf_pins {
            r.differences.push(Difference::new(
                None,
                "pins",
                format!("by-name pins: kiln {kiln_pins:?}, libbpf {libbpf_pins:?}"),
            ));
        }
    }
    Ok(())
}

/// `None` when both sets hold the same labels, else what each side alone has.
fn set_difference(what: &str, mut kiln: Vec<String>, mut libbpf: Vec<String>) -> Option<String> {
    for v in [&mut kiln, &mut libbpf] {
        v.sort();
        v.dedup();
    }
    if kiln == libbpf {
        return None;
    }
    let only = |a: &[String], b: &[String]| {
        a.iter()
            .filter(|m| !b.contains(m))
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    };
    Some(format!(
        "{what} differ: only kiln [{}], only libbpf [{}]",
        only(&kiln, &libbpf),
        only(&libbpf, &kiln)
    ))
}
