//! Manifest text through `kiln_manifest::Deployment::check_offline`: TOML
//! parsing, the structural checks and validation against parsed objects
//! (maps, programs, globals, typed entries, attach kinds), then the pure parts
//! of plan and status (against an empty pin root). No bpf(2): nothing touches the kernel.
//!
//! Every `[objects.NAME]` gets the object `target/bpf/NAME.bpf.o` when it
//! exists, else `manifest_counter.bpf.o` (the object of the bad-manifest
//! corpus), else an error diagnostic; `$KILN_BPF_DIR` overrides target/bpf.
#![no_main]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kiln_manifest::plan::Observed;
use kiln_manifest::{Deployment, plan, status};
use kiln_obj::ObjectSpec;
use libfuzzer_sys::fuzz_target;

fn objects() -> &'static BTreeMap<String, ObjectSpec> {
    static O: OnceLock<BTreeMap<String, ObjectSpec>> = OnceLock::new();
    O.get_or_init(|| {
        let dir = std::env::var_os("KILN_BPF_DIR").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bpf"),
            PathBuf::from,
        );
        let mut out = BTreeMap::new();
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            let Some(stem) = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".bpf.o"))
            else {
                continue;
            };
            if let Ok(spec) = std::fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|b| ObjectSpec::parse(&b).map_err(|e| e.to_string()))
            {
                out.insert(stem.to_owned(), spec);
            }
        }
        if !out.contains_key("manifest_counter") {
            eprintln!(
                "manifest_check: no manifest_counter.bpf.o in {}: objects are not validated (run cargo xtask build-ebpf)",
                dir.display()
            );
        }
        out
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let objs = objects();
    let found = Deployment::check_offline(Path::new("fuzz/manifest.toml"), text, |name| {
        objs.get(name)
            .or_else(|| objs.get("manifest_counter"))
            .cloned()
    });
    match found {
        // The pure parts of plan and status: against an empty pin root.
        Ok(d) => {
            let desired = &d.resolved.desired;
            let empty = Observed::default();
            let plan = plan::compute(d.manifest.name(), d.manifest.pin_root(), desired, &empty);
            if let Ok(plan) = &plan {
                let _ = plan.to_string();
            }
            let _ = status::compute(d.manifest.name(), desired, &empty, plan.as_ref());
        }
        // Rendering the diagnostics walks the spans into the text.
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
