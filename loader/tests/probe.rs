//! Feature probes against the running kernel: answers a user can check by hand.

use kiln_loader::probe::{features, probe_map_type, probe_program_type};
use kiln_obj::{MapType, ProgramType};
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
    assert!(v["link_kinds"]["cgroup"].is_boolean());
    assert!(v["program_types"].as_object().is_some_and(|o| o.len() > 20));
    Ok(())
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
    ]);
}
