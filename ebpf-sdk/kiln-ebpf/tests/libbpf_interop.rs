//! Objects built with kiln-ebpf load with libbpf (through `bpftool prog
//! loadall`): the proof that the SDK's section names, BTF map definitions and
//! license follow libbpf's conventions, independently of Kiln's own loader.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_testkit::{Need, TestResult, bpf_object, test};

/// An object, the programs libbpf must find in it, and the maps it pins by
/// name (libbpf pins those under /sys/fs/bpf).
struct Case {
    object: &'static str,
    programs: &'static [&'static str],
    pinned_maps: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        object: "counter.bpf.o",
        programs: &["count_exec", "count_packets"],
        pinned_maps: &["COUNTERS"],
    },
    // Log entries live in .kiln_log.* sections libbpf must skip, with BTF
    // the kernel accepts.
    Case {
        object: "sdk-log.bpf.o",
        programs: &["log_packet"],
        pinned_maps: &[],
    },
    // CO-RE relocations from the generated accessors, applied by libbpf.
    Case {
        object: "sdk-core.bpf.o",
        programs: &["core_sys_enter", "core_sock_state"],
        pinned_maps: &[],
    },
    // CO-RE declared by a crate outside the SDK (its own core.toml): local
    // types with a per-crate ___flavor, bitfield and enum relocations.
    Case {
        object: "core-tracer.bpf.o",
        programs: &["trace_exec", "trace_connect"],
        pinned_maps: &[],
    },
    Case {
        object: "sdk-maps.bpf.o",
        programs: &["maps_xdp", "maps_sk_msg", "maps_sk_skb", "maps_sock_ops"],
        pinned_maps: &["HASH"],
    },
    Case {
        object: "sdk-programs.bpf.o",
        programs: &[
            "prog_xdp",
            "prog_xdp_frags",
            "prog_tc",
            "prog_tracepoint",
            "prog_raw_tracepoint",
            "prog_tp_btf",
            "prog_kprobe",
            "prog_kretprobe",
            "prog_uprobe",
            "prog_uretprobe",
            "prog_cgroup_skb",
            "prog_cgroup_sock",
            "prog_connect4",
            "prog_socket_filter",
            "prog_sk_msg",
            "prog_sk_skb_parser",
            "prog_sock_ops",
            "prog_sk_lookup",
            "prog_perf_event",
            "prog_flow_dissector",
            "prog_helpers",
        ],
        pinned_maps: &[],
    },
    Case {
        object: "sockfilter.bpf.o",
        programs: &["count_protocols", "count_bytes"],
        pinned_maps: &["proto_packets", "tc_bytes"],
    },
];

fn bpftool() -> Option<PathBuf> {
    ["/usr/sbin/bpftool", "/usr/bin/bpftool", "/sbin/bpftool"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn no_bpftool() -> Option<String> {
    bpftool()
        .is_none()
        .then(|| "bpftool (libbpf) is not installed; `cargo xtask setup` installs it".into())
}

/// Removes what the test pinned, even when it fails half-way.
struct Pins {
    dir: PathBuf,
    by_name: Vec<PathBuf>,
}

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        for p in &self.by_name {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn load_with_libbpf(case: &Case) -> TestResult {
    let object = bpf_object(case.object)?;
    let bpftool = bpftool().ok_or("bpftool vanished")?;
    // Maps pinned by name land in /sys/fs/bpf/<name>; one left by someone
    // else would be reused (and must not be deleted by us).
    let mut by_name = Vec::new();
    for m in case.pinned_maps {
        let p = Path::new("/sys/fs/bpf").join(m);
        if p.exists() {
            return Err(format!(
                "{} already exists (left by another run?); remove it and retry",
                p.display()
            )
            .into());
        }
        by_name.push(p);
    }
    let dir = PathBuf::from(format!(
        "/sys/fs/bpf/kiln-sdk-test-{}-{}",
        std::process::id(),
        case.object.trim_end_matches(".bpf.o")
    ));
    let pins = Pins {
        dir: dir.clone(),
        by_name,
    };
    let out = Command::new(&bpftool)
        .args(["prog", "loadall"])
        .arg(&object)
        .arg(&dir)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "libbpf refused {}:\n{}",
            object.display(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    // libbpf drops BTF the kernel rejects and carries on; the SDK's objects
    // must not depend on that (no source lines, no func info otherwise).
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("Error loading .BTF into kernel") {
        return Err(format!("the kernel rejected {}'s BTF:\n{stderr}", case.object).into());
    }
    for prog in case.programs {
        if !dir.join(prog).exists() {
            return Err(format!("program {prog} of {} was not loaded", case.object).into());
        }
    }
    for p in &pins.by_name {
        if !p.exists() {
            return Err(format!("map pinned by name was not pinned at {}", p.display()).into());
        }
    }
    Ok(())
}

/// The BTF of a Rust object describes its maps the way libbpf expects.
fn btf_maps_layout() -> TestResult {
    let object = bpf_object("counter.bpf.o")?;
    let bpftool = bpftool().ok_or("bpftool vanished")?;
    let out = Command::new(&bpftool)
        .args(["btf", "dump", "file"])
        .arg(&object)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "bpftool btf dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let dump = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "'type' type_id=",
        "'key' type_id=",
        "'value' type_id=",
        "'max_entries' type_id=",
        "'pinning' type_id=",
        "VAR 'COUNTERS'",
        "DATASEC '.maps'",
        "FUNC 'count_exec'",
        "FUNC 'count_packets'",
        "nr_elems=16",
    ] {
        if !dump.contains(needle) {
            return Err(format!("BTF of {} lacks {needle:?}:\n{dump}", object.display()).into());
        }
    }
    Ok(())
}

fn main() {
    let needs = [Need::Root, Need::Bpf, Need::Probe("bpftool", no_bpftool)];
    let mut tests = vec![test(
        "btf_maps_layout",
        &[Need::Probe("bpftool", no_bpftool)],
        btf_maps_layout,
    )];
    for case in CASES {
        let name = format!(
            "libbpf_loads_{}",
            case.object.trim_end_matches(".bpf.o").replace('-', "_")
        );
        // What libbpf needs of the kernel for the whole object to load.
        let mut case_needs = needs.to_vec();
        match case.object {
            "sdk-maps.bpf.o" => case_needs.push(Need::Probe("bloom filter maps", || {
                (!kiln_loader::probe::probe_map_type(kiln_obj::MapType::BLOOM_FILTER))
                    .then(|| "kernel has no bloom filter maps (5.16+)".into())
            })),
            "sdk-programs.bpf.o" => case_needs.push(Need::Probe(
                "xdp.frags",
                kiln_testkit::helpers::xdp_frags_refused,
            )),
            _ => {}
        }
        tests.push(test(name, &case_needs, move || load_with_libbpf(case)));
    }
    kiln_testkit::run(tests);
}
