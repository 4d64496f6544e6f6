//! An object shaped like the ones libbpf users ship (loader/tests/bpf/dropin.bpf.c)
//! loads with everything libbpf gives it (issue 13): every program keeps its
//! BTF (func and line info in the kernel, as many records as libbpf's), the
//! `.kconfig` externs read what libbpf would write (its virtual `LINUX_*`
//! values for any integer declaration), and local storage maps and a ring
//! buffer inside a map-in-map are created.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_loader::programs::{TestRun, program_info};
use kiln_loader::{Ebpf, EbpfLoader, Program};
use kiln_obj::{MapType, ObjectSpec};
use kiln_testkit::{Need, TestResult, test};

type Error = Box<dyn std::error::Error + Send + Sync>;

const OBJECT: &str = "dropin.bpf.o";
const PROGRAMS: [&str; 3] = ["dropin_xdp", "dropin_tc", "dropin_newtask"];

fn object() -> Result<(PathBuf, ObjectSpec), Error> {
    let path = kiln_testkit::bpf_object(OBJECT)?;
    let spec = ObjectSpec::parse(&std::fs::read(&path)?)?;
    Ok((path, spec))
}

fn load(spec: &ObjectSpec) -> Result<Ebpf, Error> {
    Ok(EbpfLoader::new().object_name("dropin").load(spec)?)
}

/// (nr_func_info, nr_line_info) the kernel kept for a loaded program.
fn info_counts(p: &Program) -> Result<(u32, u32), Error> {
    let info = program_info(p.fd())?;
    Ok((info.nr_func_info, info.nr_line_info))
}

fn every_program_keeps_its_btf() -> TestResult {
    let (_, spec) = object()?;
    let ebpf = load(&spec)?;
    assert_eq!(ebpf.btf_dropped(), None);
    // libbpf binds every .rodata* map to every program, referenced or not.
    let rodata: Vec<u32> = spec
        .maps
        .iter()
        .filter(|m| m.name.starts_with(".rodata"))
        .map(|m| Ok(ebpf.map(&m.name).ok_or("rodata map missing")?.info()?.id))
        .collect::<Result<_, Error>>()?;
    assert_eq!(rodata.len(), 3, ".rodata, .rodata.factor, .rodata.str1.1");
    for name in PROGRAMS {
        let p = ebpf.program(name).ok_or(format!("{name} not loaded"))?;
        let pspec = spec.program(name).ok_or("not in the spec")?;
        let (funcs, lines) = info_counts(p)?;
        assert!(funcs > 1, "{name}: {funcs} func_info records in the kernel");
        assert!(lines > 0, "{name}: no line_info in the kernel");
        assert_eq!(funcs as usize, pspec.func_info.len(), "{name}: func_info");
        assert_eq!(lines as usize, pspec.line_info.len(), "{name}: line_info");
        let bound = program_info(p.fd())?.map_ids;
        for id in &rodata {
            if kiln_loader::probe::prog_bind_map() {
                assert!(
                    bound.contains(id),
                    "{name}: rodata map {id} not in {bound:?}"
                );
            }
        }
    }
    Ok(())
}

/// SEC("?socket") programs are left alone, as libbpf leaves them (this one
/// would not verify), until the caller turns autoload on.
fn autoload_off_programs_stay_unloaded() -> TestResult {
    let path = kiln_testkit::bpf_object("autoload.bpf.o")?;
    let mut spec = ObjectSpec::parse(&std::fs::read(&path)?)?;
    let optional = spec.program("optional").ok_or("no program optional")?;
    assert!(!optional.autoload);
    assert!(spec.program("always").ok_or("no program always")?.autoload);
    let ebpf = EbpfLoader::new().load(&spec)?;
    assert!(ebpf.program("always").is_some());
    assert!(ebpf.program("optional").is_none());
    spec.program_mut("optional").ok_or("no optional")?.autoload = true;
    let err = EbpfLoader::new()
        .load(&spec)
        .err()
        .ok_or("the broken program loaded")?;
    assert!(err.to_string().contains("optional"), "{err}");
    Ok(())
}

/// Removes a bpffs directory tree on drop (bpftool's pins of this test).
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn btf_matches_libbpf() -> TestResult {
    let (path, spec) = object()?;
    let ebpf = load(&spec)?;
    let pins = Pins(PathBuf::from(format!(
        "/sys/fs/bpf/kiln-test-dropin-{}",
        std::process::id()
    )));
    let out = Command::new("bpftool")
        .args(["prog", "loadall"])
        .arg(&path)
        .arg(&pins.0)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "libbpf refused {OBJECT}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    for name in PROGRAMS {
        let theirs = Program::from_pin(&pins.0.join(name), None)?;
        let ours = ebpf.program(name).ok_or(format!("{name} not loaded"))?;
        assert_eq!(
            info_counts(ours)?,
            info_counts(&theirs)?,
            "{name}: (func_info, line_info) records, Kiln vs libbpf"
        );
    }
    Ok(())
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct KconfigSeen {
    syscall_wrapper: i32,
    bpf_cookie: i32,
    kernel_version: u64,
    bpf_syscall: u8,
    _pad: [u8; 3],
    bpf_jit: i32,
    hz: i32,
    hostname: [u8; 8],
    no_such_option: i32,
}

// SAFETY: plain integers and bytes, every bit pattern valid; the layout is
// the C struct's (`repr(C)`, explicit padding).
unsafe impl kiln_loader::Pod for KconfigSeen {}

fn kconfig_externs_read_what_libbpf_writes() -> TestResult {
    let (_, spec) = object()?;
    let ebpf = load(&spec)?;
    let r = ebpf
        .program("dropin_xdp")
        .ok_or("dropin_xdp not loaded")?
        .test_run(TestRun {
            data_in: Some(&[0u8; 64]),
            ..Default::default()
        })?;
    assert_eq!(r.retval, 2, "XDP_PASS: the subprograms computed 3");
    let seen: KconfigSeen = ebpf.global("seen")?;
    let config = kiln_loader::externs::kernel_config();
    let kprobes = Path::new("/sys/bus/event_source/devices/kprobe/type").exists();
    // libbpf answers "no" without kprobes (it tries one on the wrapped bpf syscall).
    if !kprobes {
        assert_eq!(seen.syscall_wrapper, 0, "{seen:?}");
    }
    assert!(matches!(seen.syscall_wrapper, 0 | 1), "{seen:?}");
    assert!(matches!(seen.bpf_cookie, 0 | 1), "{seen:?}");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u64>());
    let (a, b) = (parts.next(), parts.next());
    if let (Some(Ok(a)), Some(Ok(b))) = (a, b) {
        assert_eq!(seen.kernel_version >> 8, (a << 8) | b, "{seen:?}");
    }
    if config.get("CONFIG_BPF_SYSCALL").map(String::as_str) == Some("y") {
        assert_eq!(seen.bpf_syscall, b'y', "char extern gets the letter");
    }
    match config.get("CONFIG_BPF_JIT").map(String::as_str) {
        Some("y") => assert_eq!(seen.bpf_jit, 1, "libbpf_tristate: TRI_YES"),
        Some("m") => assert_eq!(seen.bpf_jit, 2, "libbpf_tristate: TRI_MODULE"),
        _ => {}
    }
    if let Some(hz) = config.get("CONFIG_HZ") {
        assert_eq!(seen.hz.to_string(), *hz);
    }
    if let Some(name) = config.get("CONFIG_DEFAULT_HOSTNAME") {
        let want = name.trim_matches('"').as_bytes();
        let n = want.len().min(7);
        assert_eq!(
            &seen.hostname[..n],
            &want[..n],
            "string truncated to char[8]"
        );
        assert_eq!(seen.hostname[n], 0);
    }
    assert_eq!(seen.no_such_option, 0, "a weak unknown option reads 0");
    Ok(())
}

fn storage_and_inner_ring_maps_are_created() -> TestResult {
    let (_, spec) = object()?;
    let ebpf = load(&spec)?;
    for (name, t) in [
        ("task_seen", MapType::TASK_STORAGE),
        ("sk_marks", MapType::SK_STORAGE),
        ("cgrp_bytes", MapType::CGRP_STORAGE),
        ("inode_marks", MapType::INODE_STORAGE),
        ("rings", MapType::ARRAY_OF_MAPS),
    ] {
        let map = ebpf.map(name).ok_or(format!("{name} not created"))?;
        let info = map.info()?;
        assert_eq!(info.map_type, t, "{name}");
        if name != "rings" {
            assert_ne!(info.btf_value_type_id, 0, "{name}: created with its BTF");
        }
    }
    // The inner template was rounded up to 4 pages, as libbpf does: a ring
    // of that size fits the outer map.
    let page = kiln_loader::util::page_size() as u32;
    let mut inner = spec
        .map("rings")
        .and_then(|m| m.inner.clone())
        .ok_or("no inner map")?;
    inner.max_entries = 4 * page;
    let ring = kiln_loader::Map::create(&inner, None, None)?;
    use std::os::fd::AsRawFd;
    ebpf.map("rings").ok_or("no rings")?.update_bytes(
        &0u32.to_ne_bytes(),
        &(ring.as_fd().as_raw_fd() as u32).to_ne_bytes(),
        kiln_loader::maps::UpdateFlags::ANY,
    )?;
    Ok(())
}

/// The object needs kernel 6.2+: cgroup local storage and the
/// `bpf_task_acquire` kfunc, and tp_btf programs.
fn too_old() -> Option<String> {
    if !kiln_loader::probe::probe_map_type(MapType::CGRP_STORAGE) {
        return Some("no cgroup local storage maps (kernel 6.2+)".into());
    }
    let btf = kiln_loader::externs::kernel_btf(None).ok()?;
    if btf
        .id_by_name("bpf_task_acquire", kiln_obj::btf::Kind::Func)
        .is_none()
    {
        return Some("no bpf_task_acquire kfunc (kernel 6.2+)".into());
    }
    None
}

fn main() {
    let needs = &[Need::Root, Need::Bpf, Need::Probe("kernel 6.2+", too_old)];
    let with_libbpf = &[
        Need::Root,
        Need::Bpf,
        Need::Probe("kernel 6.2+", too_old),
        Need::Probe("bpftool", kiln_testkit::bpftool_missing),
        Need::Probe("kernel config", kiln_testkit::kernel_config_missing),
    ];
    kiln_testkit::run(vec![
        test(
            "every_program_keeps_its_btf",
            needs,
            every_program_keeps_its_btf,
        ),
        test("btf_matches_libbpf", with_libbpf, btf_matches_libbpf),
        test(
            "autoload_off_programs_stay_unloaded",
            &[Need::Root, Need::Bpf],
            autoload_off_programs_stay_unloaded,
        ),
        test(
            "kconfig_externs_read_what_libbpf_writes",
            needs,
            kconfig_externs_read_what_libbpf_writes,
        ),
        test(
            "storage_and_inner_ring_maps_are_created",
            needs,
            storage_and_inner_ring_maps_are_created,
        ),
    ]);
}
