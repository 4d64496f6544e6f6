//! Differential test against libbpf: every object in target/bpf (the C
//! fixtures and the Rust SDK objects) is loaded twice into the running
//! kernel, once by libbpf (`bpftool prog loadall`, a reference tool only)
//! and once by Kiln (`kiln_obj::ObjectSpec::parse` + `kiln_loader`), and the
//! kernel's translated instructions of each program are compared, normalised
//! by `kiln_loader::programs::xlated` (map ids replaced by a description of
//! the map, kernel addresses masked, subprograms in one canonical order), the
//! same normaliser the conformance suite uses on objects we do not write.
//!
//! The func_info and line_info counts the kernel kept are compared too (a
//! program loaded without its BTF differs). Equal xlated code means Kiln's relocations (maps, global data, subprogram
//! calls, CO-RE against vmlinux) produced what libbpf's did, as the verifier
//! saw it. Objects libbpf itself cannot load, or that pin maps by name under
//! /sys/fs/bpf, are listed as not compared (stderr), never counted as passes.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_loader::programs::xlated::normalized_xlated;
use kiln_obj::{ObjectSpec, Pinning};
use kiln_testkit::{Need, TestResult};

type Error = Box<dyn std::error::Error + Send + Sync>;

const BPF_OBJ_GET: u32 = 7;
const BPF_MAP_GET_FD_BY_ID: u32 = 14;
const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;

/// bpf(2) with a 128-byte attribute buffer (tail zeros are what the kernel expects).
fn bpf(cmd: u32, attr: &mut [u8; 128]) -> std::io::Result<i64> {
    // SAFETY: `attr` is a live 128-byte buffer; the commands used here only
    // read it and write through pointers the callers set to live buffers of
    // the lengths they declare.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr.as_mut_ptr(),
            attr.len() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn owned(fd: i64) -> OwnedFd {
    // SAFETY: `fd` was just returned by bpf(2) and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

fn obj_get(path: &Path) -> Result<OwnedFd, Error> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())?;
    let mut attr = [0u8; 128];
    put64(&mut attr, 0, c.as_ptr() as u64);
    Ok(owned(bpf(BPF_OBJ_GET, &mut attr).map_err(|e| {
        format!("BPF_OBJ_GET {}: {e}", path.display())
    })?))
}

fn info_by_fd(fd: BorrowedFd<'_>, info: &mut [u8]) -> Result<(), Error> {
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, fd.as_raw_fd() as u32);
    put32(&mut attr, 4, info.len() as u32);
    put64(&mut attr, 8, info.as_mut_ptr() as u64);
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map_err(|e| format!("BPF_OBJ_GET_INFO_BY_FD: {e}"))?;
    Ok(())
}

/// The normalised xlated code, and as a last line the func_info and
/// line_info counts the kernel kept (Kiln must not load without the BTF
/// libbpf loads with).
fn xlated_with_btf(fd: BorrowedFd<'_>) -> Result<Vec<String>, Error> {
    let mut lines = normalized_xlated(fd)?;
    let (_, ext) = kiln_loader::programs::xlated::xlated_raw(fd)?;
    lines.push(format!(
        "func_info {} line_info {}",
        ext.func_info, ext.line_info
    ));
    Ok(lines)
}

const BPF_MAP_LOOKUP_ELEM: u32 = 1;
const BPF_PROG_GET_FD_BY_ID: u32 = 13;

/// The object name the kernel holds for a program or map (15 bytes at most).
fn kernel_name(info: &[u8], at: usize) -> String {
    let bytes = &info[at..at + 16];
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(16);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// What libbpf stored in each prog array / map-of-maps slot equals
/// `ObjectSpec::map_slots`: the same programs and inner maps at the same
/// keys, and nothing else.
fn slots_match_libbpf(spec: &ObjectSpec, maps_dir: &Path) -> Result<(), Error> {
    let mut outers: Vec<usize> = spec.map_slots.iter().map(|s| s.map).collect();
    outers.dedup();
    for outer in outers {
        let m = &spec.maps[outer];
        let fd = obj_get(&maps_dir.join(&m.name))?;
        let mut got = Vec::new();
        for key in 0..m.max_entries {
            let mut value = 0u32;
            let mut attr = [0u8; 128];
            put32(&mut attr, 0, fd.as_raw_fd() as u32);
            put64(&mut attr, 8, std::ptr::from_ref(&key) as u64);
            put64(&mut attr, 16, std::ptr::from_mut(&mut value) as u64);
            // Empty slots answer ENOENT; filled ones the program or map id.
            if bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).is_err() {
                continue;
            }
            let name = if m.map_type == kiln_obj::MapType::PROG_ARRAY {
                let mut a = [0u8; 128];
                put32(&mut a, 0, value);
                let prog = owned(bpf(BPF_PROG_GET_FD_BY_ID, &mut a)?);
                let mut info = [0u8; 256];
                info_by_fd(prog.as_fd(), &mut info)?;
                kernel_name(&info, 64)
            } else {
                let mut a = [0u8; 128];
                put32(&mut a, 0, value);
                let map = owned(bpf(BPF_MAP_GET_FD_BY_ID, &mut a)?);
                let mut info = [0u8; 128];
                info_by_fd(map.as_fd(), &mut info)?;
                kernel_name(&info, 24)
            };
            got.push((key, name));
        }
        let want: Vec<(u32, String)> = spec
            .map_slots
            .iter()
            .filter(|s| s.map == outer)
            .map(|s| {
                let name = match &s.target {
                    kiln_obj::MapSlotTarget::Program(p) => p.clone(),
                    kiln_obj::MapSlotTarget::Map(i) => spec.maps[*i].name.clone(),
                };
                (s.index, name.chars().take(15).collect())
            })
            .collect();
        if got != want {
            return Err(format!(
                "map '{}': libbpf filled {got:?}, map_slots say {want:?}",
                m.name
            )
            .into());
        }
    }
    Ok(())
}

fn bpffs_mounted() -> bool {
    std::fs::read_to_string("/proc/mounts").is_ok_and(|m| {
        m.lines().any(|l| {
            l.split(' ').nth(1) == Some("/sys/fs/bpf") && l.split(' ').nth(2) == Some("bpf")
        })
    })
}

/// Removes one pinned file on every exit path.
struct PinFile(PathBuf);
impl Drop for PinFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Removes a pin directory on every exit path.
struct PinDir(PathBuf);
impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

enum Outcome {
    Compared { programs: usize },
    NotCompared(String),
}

fn compare_object(path: &Path) -> Result<Outcome, Error> {
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".bpf.o"))
        .ok_or("not a .bpf.o")?;
    let spec = ObjectSpec::parse(&std::fs::read(path)?)?;
    let pins = PinDir(PathBuf::from(format!(
        "/sys/fs/bpf/kiln-diff-{}-{stem}",
        std::process::id()
    )));
    // libbpf pins `LIBBPF_PIN_BY_NAME` maps as /sys/fs/bpf/<name> and bpftool
    // cannot change that root: take those paths only when free, and remove
    // them afterwards (dropped in reverse order, after the programs).
    let mut libbpf_map_pins = Vec::new();
    for m in spec.maps.iter().filter(|m| m.pinning == Pinning::ByName) {
        let pin = PathBuf::from("/sys/fs/bpf").join(&m.name);
        if pin.exists() {
            return Ok(Outcome::NotCompared(format!(
                "{} already exists (someone else's pin): libbpf would reuse it",
                pin.display()
            )));
        }
        libbpf_map_pins.push(PinFile(pin));
    }
    // With `.values` initializers, also pin libbpf's maps to read what it
    // stored in them (libbpf refuses a second pin path for by-name maps,
    // which no such fixture has).
    let check_slots = !spec.map_slots.is_empty() && libbpf_map_pins.is_empty();
    let mut bpftool = Command::new("bpftool");
    bpftool.args(["prog", "loadall"]).arg(path).arg(&pins.0);
    if check_slots {
        bpftool.arg("pinmaps").arg(pins.0.join("maps"));
    }
    let out = bpftool.output()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err
            .lines()
            .find(|l| l.contains("failed") || l.contains("Error"))
            .unwrap_or("bpftool failed");
        return Ok(Outcome::NotCompared(format!(
            "libbpf cannot load it: {line}"
        )));
    }
    let mut theirs: Vec<(String, Vec<String>)> = Vec::new();
    for entry in std::fs::read_dir(&pins.0)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let fd = obj_get(&entry.path())?;
        theirs.push((name, xlated_with_btf(fd.as_fd())?));
    }
    theirs.sort();
    if theirs.is_empty() {
        return Ok(Outcome::NotCompared("bpftool pinned no programs".into()));
    }
    if check_slots {
        slots_match_libbpf(&spec, &pins.0.join("maps")).map_err(|e| format!("{stem}: {e}"))?;
    }

    std::fs::create_dir_all(pins.0.join("kiln-maps"))?;
    let ebpf = kiln_loader::EbpfLoader::new()
        .map_pin_path(pins.0.join("kiln-maps"))
        .load(&spec)
        .map_err(|e| format!("{stem}: libbpf loads it but Kiln does not: {e}"))?;
    let mut problems = Vec::new();
    for (name, want) in &theirs {
        let Some(prog) = ebpf.program(name) else {
            problems.push(format!(
                "program '{name}': loaded by libbpf, missing in Kiln"
            ));
            continue;
        };
        let got = xlated_with_btf(prog.fd())?;
        if &got != want {
            let first = got
                .iter()
                .zip(want)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            let show = |v: &[String]| {
                v.iter()
                    .enumerate()
                    .skip(first.saturating_sub(2))
                    .take(6)
                    .map(|(i, s)| format!("      {i}: {s}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            problems.push(format!(
                "program '{name}': xlated code differs at insn {first} (kiln {} insns, libbpf {}):\n    kiln:\n{}\n    libbpf:\n{}",
                got.len(),
                want.len(),
                show(&got),
                show(want)
            ));
        }
    }
    if problems.is_empty() {
        Ok(Outcome::Compared {
            programs: theirs.len(),
        })
    } else {
        Err(format!("{stem}:\n  {}", problems.join("\n  ")).into())
    }
}

fn xlated_matches_libbpf() -> TestResult {
    if !bpffs_mounted() {
        std::fs::create_dir_all("/sys/fs/bpf")?;
        let st = Command::new("mount")
            .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
            .status()?;
        if !st.success() {
            return Err("cannot mount bpffs at /sys/fs/bpf".into());
        }
    }
    let mut objects: Vec<PathBuf> = std::fs::read_dir(kiln_testkit::bpf_dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".bpf.o"))
        .collect();
    objects.sort();
    let (mut compared, mut programs, mut failures) = (Vec::new(), 0, Vec::new());
    for path in &objects {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        match compare_object(path) {
            Ok(Outcome::Compared { programs: n }) => {
                compared.push(name.into_owned());
                programs += n;
            }
            Ok(Outcome::NotCompared(why)) => eprintln!("differential: NOT COMPARED {name}: {why}"),
            Err(e) => failures.push(e.to_string()),
        }
    }
    eprintln!(
        "differential: {programs} programs in {} objects match libbpf: {}",
        compared.len(),
        compared.join(" ")
    );
    if !failures.is_empty() {
        return Err(failures.join("\n").into());
    }
    // The fixtures libbpf loads on any BTF kernel: they must have been compared.
    for must in ["globals.bpf.o", "maps.bpf.o", "sockfilter.bpf.o"] {
        if objects.iter().any(|p| p.ends_with(must)) && !compared.iter().any(|c| c == must) {
            return Err(format!("{must} was not compared").into());
        }
    }
    if compared.len() < 3 {
        return Err(format!("only {} objects compared", compared.len()).into());
    }
    Ok(())
}

/// Statically linked objects (`bpftool gen object` output: BTF deduplicated
/// and renumbered, DATASECs laid out by the linker) verify to libbpf's
/// instructions too. Linked here from fixtures with CO-RE type ids, kconfig
/// and kfuncs, subprograms, global data, map slots and USDT.
fn linked_objects_match_libbpf() -> TestResult {
    let dir = PinDir(std::env::temp_dir().join(format!("kiln-linked-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let mut failures = Vec::new();
    let mut compared = 0;
    for inputs in [
        &["core_types"][..],
        &["dropin"],
        &["globals"],
        &["loader_slots"],
        &["attach_usdt"],
        &["tool_execsnoop"],
        // Two files, each with a static `hits` in .data.
        &["linked_a", "linked_b"],
    ] {
        let stem = inputs.join("+");
        let linked = dir.0.join(format!("{stem}.bpf.o"));
        let mut link = Command::new("bpftool");
        link.args(["gen", "object"]).arg(&linked);
        for i in inputs {
            link.arg(kiln_testkit::bpf_object(&format!("{i}.bpf.o"))?);
        }
        let out = link.output()?;
        if !out.status.success() {
            return Err(format!(
                "bpftool gen object {stem}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        match compare_object(&linked) {
            Ok(Outcome::Compared { .. }) => compared += 1,
            Ok(Outcome::NotCompared(why)) => eprintln!("linked: NOT COMPARED {stem}: {why}"),
            Err(e) => failures.push(format!("linked {e}")),
        }
    }
    if !failures.is_empty() {
        return Err(failures.join("\n").into());
    }
    if compared < 3 {
        return Err(format!("only {compared} linked objects compared").into());
    }
    Ok(())
}

fn has_bpftool() -> Option<String> {
    Command::new("bpftool")
        .arg("version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_none()
        .then(|| "bpftool (the libbpf reference) is not installed".into())
}

fn main() {
    let needs = &[Need::Root, Need::Bpf, Need::Probe("bpftool", has_bpftool)];
    kiln_testkit::run(vec![
        kiln_testkit::test("xlated_matches_libbpf", needs, xlated_matches_libbpf),
        kiln_testkit::test(
            "linked_objects_match_libbpf",
            needs,
            linked_objects_match_libbpf,
        ),
    ]);
}
