//! `kiln object inspect|load`: what an eBPF object holds, and whether this
//! kernel accepts each of its programs (like `bpftool prog loadall`).

use std::path::Path;

use anyhow::Context;
use kiln_loader::EbpfLoader;
use kiln_loader::probe::program_type_name;
use kiln_obj::{ExternKind, MapOrigin, ObjectSpec, Pinning, ProgramKind};
use serde_json::json;

fn parse(path: &Path) -> anyhow::Result<ObjectSpec> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    ObjectSpec::parse(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// Where the section name says the program attaches, in `kind:target` form.
fn attach_target(kind: &ProgramKind) -> Option<String> {
    use ProgramKind::*;
    let t = match kind {
        Kprobe {
            function,
            offset,
            retprobe,
        } => {
            let f = function.clone()?;
            let p = if *retprobe { "kretprobe" } else { "kprobe" };
            if *offset > 0 {
                format!("{p}:{f}+{offset}")
            } else {
                format!("{p}:{f}")
            }
        }
        Uprobe { target, retprobe } => format!(
            "{}:{}",
            if *retprobe { "uretprobe" } else { "uprobe" },
            target.clone()?
        ),
        Tracepoint { category, name } => {
            format!("tracepoint:{}/{}", category.clone()?, name.clone()?)
        }
        RawTracepoint { name, .. } => format!("raw_tracepoint:{}", name.clone()?),
        Tracing { target, .. } => format!("btf:{}", target.clone()?),
        Lsm { hook, .. } => format!("lsm:{}", hook.clone()?),
        Tcx { direction } => format!("tcx:{direction:?}").to_lowercase(),
        CgroupSkb { direction: Some(d) } => format!("cgroup_skb:{d:?}").to_lowercase(),
        StructOps { name } => format!("struct_ops:{}", name.clone()?),
        Extension { target } => format!("freplace:{}", target.clone()?),
        _ => return None,
    };
    Some(t)
}

fn pinning(p: Pinning) -> &'static str {
    match p {
        Pinning::None => "none",
        Pinning::ByName => "by_name",
    }
}

fn map_origin(o: &MapOrigin) -> String {
    match o {
        MapOrigin::BtfMaps => ".maps".into(),
        MapOrigin::Legacy => "maps (legacy)".into(),
        MapOrigin::GlobalData { section } => section.clone(),
    }
}

fn extern_kind(k: &ExternKind) -> &'static str {
    match k {
        ExternKind::Kconfig { .. } => "kconfig",
        ExternKind::KsymVar { .. } => "ksym var",
        ExternKind::KsymFunc { .. } => "kfunc",
    }
}

/// Prints programs, maps, externs and relocation counts of the object at `path`.
pub fn inspect(path: &Path, json: bool) -> anyhow::Result<()> {
    let spec = parse(path)?;
    if json {
        let v = json!({
            "path": path.display().to_string(),
            "license": spec.license,
            "btf": spec.btf.is_some(),
            "programs": spec.programs.iter().map(|p| json!({
                "name": p.name,
                "section": p.section,
                "type": program_type_name(p.kind.program_type()),
                "insns": p.insns.len(),
                "attach_target": attach_target(&p.kind),
                "sleepable": p.sleepable,
                "relocations": {
                    "maps": p.relocations.len(),
                    "core": p.core_relocations.len(),
                    "externs": p.extern_relocations.len(),
                },
                "line_info": p.line_info.len(),
            })).collect::<Vec<_>>(),
            "maps": spec.maps.iter().map(|m| json!({
                "name": m.name,
                "type": m.map_type.name(),
                "key_size": m.key_size,
                "value_size": m.value_size,
                "max_entries": m.max_entries,
                "flags": m.map_flags,
                "pinning": pinning(m.pinning),
                "origin": map_origin(&m.origin),
            })).collect::<Vec<_>>(),
            "externs": spec.externs.iter().map(|e| json!({
                "name": e.name, "kind": extern_kind(&e.kind), "weak": e.weak,
            })).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    outln!(
        "{} (license {}, {})",
        path.display(),
        spec.license,
        if spec.btf.is_some() { "BTF" } else { "no BTF" }
    );
    outln!("programs:");
    for p in &spec.programs {
        outln!(
            "  {:<24} {:<28} {:<16} {:>6} insns  relocs: {} map, {} core, {} extern{}",
            p.name,
            p.section,
            program_type_name(p.kind.program_type()),
            p.insns.len(),
            p.relocations.len(),
            p.core_relocations.len(),
            p.extern_relocations.len(),
            attach_target(&p.kind)
                .map(|t| format!("  → {t}"))
                .unwrap_or_default(),
        );
    }
    outln!("maps:");
    for m in &spec.maps {
        outln!(
            "  {:<24} {:<18} key {:>4}  value {:>6}  max {:>8}  flags {:#x}  pin {}  ({})",
            m.name,
            m.map_type.name(),
            m.key_size,
            m.value_size,
            m.max_entries,
            m.map_flags,
            pinning(m.pinning),
            map_origin(&m.origin)
        );
    }
    if !spec.externs.is_empty() {
        outln!("externs:");
        for e in &spec.externs {
            outln!(
                "  {:<24} {}{}",
                e.name,
                extern_kind(&e.kind),
                if e.weak { " (weak)" } else { "" }
            );
        }
    }
    Ok(())
}

/// Pin file name of a map: global data sections lose their leading dot.
fn pin_name(name: &str) -> &str {
    name.strip_prefix('.').unwrap_or(name)
}

/// Loads every program of the object (maps first), reports each program's
/// verdict, pins what loaded under `pin_dir`. Returns false if any program failed.
pub fn load(
    path: &Path,
    pin_dir: Option<&Path>,
    log_dir: &Path,
    json: bool,
) -> anyhow::Result<bool> {
    let spec = parse(path)?;
    let mut loader = EbpfLoader::new();
    if let Some(dir) = pin_dir {
        // Owner-only, like a deployment's pin root: bpffs grants access by mode.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        loader.map_pin_path(dir);
    }
    let (ebpf, failures) = loader
        .load_each(&spec)
        .with_context(|| format!("loading {}", path.display()))?;
    let mut pinned = Vec::new();
    if let Some(dir) = pin_dir {
        for (name, prog) in ebpf.programs() {
            let p = dir.join(name);
            prog.pin(&p)?;
            pinned.push(p);
        }
        for (name, map) in ebpf.maps() {
            let p = dir.join(pin_name(name));
            let by_name = spec.map(name).is_some_and(|m| m.pinning == Pinning::ByName);
            // BY_NAME maps were pinned (or reused) by the loader itself.
            if !by_name {
                map.pin(&p)?;
            }
            pinned.push(p);
        }
    }
    let ok = failures.is_empty();
    // The message shows the log's tail; the whole log goes to a file.
    let mut log_files = std::collections::BTreeMap::new();
    for (name, e) in &failures {
        match e.save_log(log_dir) {
            Ok(Some(p)) => {
                log_files.insert(name.clone(), p.display().to_string());
            }
            Ok(None) => {}
            Err(err) => errln!(
                "warning: could not keep the verifier log of '{name}' in {}: {err}",
                log_dir.display()
            ),
        }
    }
    if json {
        let progs: Vec<_> = spec
            .programs
            .iter()
            .map(|p| {
                match (
                    ebpf.program(&p.name),
                    failures.iter().find(|(n, _)| *n == p.name),
                ) {
                    (Some(prog), _) => json!({"name": p.name, "loaded": true, "id": prog.id()}),
                    (None, Some((_, e))) => json!({
                        "name": p.name, "loaded": false, "reason": e.reason(),
                        "errno": e.errno(), "log": e.log(),
                        "log_file": log_files.get(&p.name),
                    }),
                    (None, None) => json!({
                        "name": p.name, "loaded": false,
                        "reason": "loads when attached (struct_ops/freplace need their target)",
                    }),
                }
            })
            .collect();
        let v = json!({
            "path": path.display().to_string(),
            "ok": ok,
            "programs": progs,
            "maps": ebpf.maps().map(|(n, m)| json!({"name": n, "id": m.info().map(|i| i.id).ok(), "reused": ebpf.reused_maps().iter().any(|r| r == n)})).collect::<Vec<_>>(),
            "pinned": pinned.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ok);
    }
    for p in &spec.programs {
        match ebpf.program(&p.name) {
            Some(prog) => outln!("{:<24} loaded (id {})", p.name, prog.id()),
            None => match failures.iter().find(|(n, _)| *n == p.name) {
                Some((_, e)) => {
                    outln!("{:<24} FAILED: {}", p.name, e.reason());
                    for line in e.to_string().lines().skip(1) {
                        outln!("    {line}");
                    }
                    if let Some(f) = log_files.get(&p.name) {
                        outln!("    full verifier log: {f}");
                    }
                }
                // struct_ops and freplace programs need their target to load.
                None => outln!(
                    "{:<24} not loaded: loads when attached (needs its target)",
                    p.name
                ),
            },
        }
    }
    for r in ebpf.reused_maps() {
        outln!("map {r}: reused the compatible pinned map");
    }
    for p in &pinned {
        outln!("pinned {}", p.display());
    }
    Ok(ok)
}
