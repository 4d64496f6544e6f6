//! Feature probes against the running kernel: answers a user can check by hand.

use std::os::fd::AsFd;

use kiln_loader::links::LinkError;
use kiln_loader::links::{multi, netfilter, netns, sockmap, xdp};
use kiln_loader::probe::{features, in_private_netns, probe_map_type, probe_program_type};
use kiln_loader::programs::LoadOptions;
use kiln_loader::{Map, Program};
use kiln_obj::{AttachType, Insn, MapType, ProgramKind, ProgramType};
use kiln_testkit::{Need, TestResult, test};

fn basics_are_present() -> TestResult {
    let f = features();
    // Need::Bpf created an array map, so these must hold on any kernel that passed it.
    assert_eq!(f.map_types.get("array"), Some(&true));
    assert_eq!(f.program_types.get("socket_filter"), Some(&true));
    assert_eq!(f.helpers.get("map_lookup_elem@socket_filter"), Some(&true));
    assert!(f.btf_load, "every supported kernel (5.10+) loads BTF");
    assert!(
        f.btf.func && f.btf.datasec,
        "5.10+ accepts func and datasec"
    );
    // A type number from the future is refused, not guessed.
    assert!(!probe_program_type(ProgramType(999), None));
    assert!(!probe_map_type(MapType(999)));
    Ok(())
}

fn consistent_with_direct_use() -> TestResult {
    let f = features();
    // ringbuf answers agree with the map-type table and with creating one.
    assert_eq!(f.ringbuf, f.map_types.get("ringbuf") == Some(&true));
    if f.ringbuf {
        assert!(probe_map_type(MapType::RINGBUF));
    }
    // Features the sanitizer gets are what the probe found.
    assert_eq!(kiln_loader::probe::btf_features(), f.btf);
    // Link kinds only exist where LINK_CREATE does.
    if !f.bpf_link {
        assert!(!f.link_kinds["cgroup"] && !f.link_kinds["perf_event"]);
    }
    assert_eq!(f.link_kinds["tcx"], f.tcx);
    Ok(())
}

fn json_is_parseable() -> TestResult {
    let json = features().to_json();
    let v: serde_json::Value = serde_json::from_str(&json).map_err(|e| format!("{e}: {json}"))?;
    assert_eq!(v["map_types"]["hash"], serde_json::Value::Bool(true));
    assert!(v["btf"]["func"].is_boolean());
    for kind in [
        "cgroup",
        "xdp",
        "netfilter",
        "kprobe_multi",
        "netns",
        "sockmap",
    ] {
        assert!(
            v["link_kinds"][kind].is_boolean(),
            "link_kinds.{kind} in {json}"
        );
    }
    assert!(v["program_types"].as_object().is_some_and(|o| o.len() > 20));
    Ok(())
}

/// `r0 = 0; exit` as a program of `program_type` (expected attach type `attach`).
fn ret0(program_type: ProgramType, attach: Option<AttachType>) -> Result<Program, String> {
    let insns = [
        Insn {
            code: 0xb7,
            regs: 0,
            off: 0,
            imm: 0,
        },
        Insn {
            code: 0x95,
            regs: 0,
            off: 0,
            imm: 0,
        },
    ];
    let kind = ProgramKind::Other {
        program_type,
        attach_type: attach,
    };
    let opts = LoadOptions {
        license: "GPL",
        ..Default::default()
    };
    Program::load("probe_ret0", kind, &insns, &opts).map_err(|e| e.to_string())
}

/// Attaches with `f` on a thread in a new network namespace; errors as text.
fn in_netns(f: impl FnOnce() -> Result<(), LinkError> + Send) -> Result<(), String> {
    in_private_netns(f)
        .ok_or("cannot create a network namespace")?
        .map_err(|e| e.to_string())
}

/// Each link-kind probe agrees with attaching that kind for real through the
/// links API (on harmless targets: a private netns, a fresh sockmap, the
/// test-run-only kernel function). A program type the kernel lacks counts as
/// a refused attach.
fn link_probes_agree_with_attach() -> TestResult {
    use netfilter::{NetfilterFlags, NfHook, NfProto};
    let attach: [(&str, Result<(), String>); 5] = [
        (
            "xdp",
            ret0(ProgramType::XDP, None).and_then(|p| {
                in_netns(|| xdp::attach_xdp_link(p.fd(), 1, xdp::XdpFlags::SKB_MODE).map(drop))
            }),
        ),
        (
            "netfilter",
            ret0(ProgramType::NETFILTER, Some(AttachType::NETFILTER)).and_then(|p| {
                in_netns(|| {
                    let flags = NetfilterFlags::empty();
                    netfilter::attach_netfilter(p.fd(), NfProto::Ipv4, NfHook::LocalOut, 1, flags)
                        .map(drop)
                })
            }),
        ),
        (
            "kprobe_multi",
            ret0(ProgramType::KPROBE, Some(AttachType::TRACE_KPROBE_MULTI)).and_then(|p| {
                let target = kiln_loader::probe::KPROBE_MULTI_PROBE_TARGET;
                multi::attach_kprobe_multi(p.fd(), &[target], false, None)
                    .map(drop)
                    .map_err(|e| e.to_string())
            }),
        ),
        (
            "netns",
            ret0(
                ProgramType::FLOW_DISSECTOR,
                Some(AttachType::FLOW_DISSECTOR),
            )
            .and_then(|p| {
                in_netns(|| {
                    let ns = netns::open_netns("/proc/thread-self/ns/net")?;
                    netns::attach_flow_dissector_link(p.fd(), ns.as_fd()).map(drop)
                })
            }),
        ),
        (
            "sockmap",
            ret0(ProgramType::SK_SKB, Some(AttachType::SK_SKB_STREAM_VERDICT)).and_then(|p| {
                let map = sockmap_map().map_err(|e| e.to_string())?;
                let hook = sockmap::SockMapHook::StreamVerdict;
                sockmap::attach_sockmap_link(p.fd(), map.fd(), hook)
                    .map(drop)
                    .map_err(|e| e.to_string())
            }),
        ),
    ];
    let kinds = &features().link_kinds;
    let mut disagree = Vec::new();
    for (kind, result) in attach {
        let probe = kinds.get(kind).copied();
        eprintln!("link kind {kind}: probe {probe:?}, attach {result:?}");
        if probe != Some(result.is_ok()) {
            disagree.push(format!(
                "{kind}: probe says {probe:?}, attaching gave {result:?}"
            ));
        }
    }
    if disagree.is_empty() {
        Ok(())
    } else {
        Err(disagree.join("; ").into())
    }
}

/// The SOCKMAP of the maps fixture (loader/tests/bpf/loader_maps.bpf.c).
fn sockmap_map() -> Result<Map, Box<dyn std::error::Error + Send + Sync>> {
    let path = kiln_testkit::bpf_object("loader_maps.bpf.o")?;
    let spec = kiln_obj::ObjectSpec::parse(&std::fs::read(&path)?)?;
    let mut ebpf = kiln_loader::EbpfLoader::new().load(&spec)?;
    Ok(ebpf.take_map("socks").ok_or("fixture has no map socks")?)
}

fn main() {
    kiln_testkit::run(vec![
        test("basics_are_present", &[Need::Bpf], basics_are_present),
        test(
            "consistent_with_direct_use",
            &[Need::Bpf],
            consistent_with_direct_use,
        ),
        test("json_is_parseable", &[Need::Bpf], json_is_parseable),
        test(
            "link_probes_agree_with_attach",
            &[Need::Bpf, Need::Root],
            link_probes_agree_with_attach,
        ),
    ]);
}
