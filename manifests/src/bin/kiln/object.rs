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
/// A global variable of the object: what `globals = { ... }` in a manifest can set.
struct Global<'a> {
    name: &'a str,
    section: &'a str,
    c_type: String,
    size: u32,
    read_only: bool,
}

/// The global variables of every global data section, with their C types
/// from the object's BTF.
fn globals(spec: &ObjectSpec) -> Vec<Global<'_>> {
    let btf = spec
        .btf
        .as_deref()
        .and_then(|b| kiln_obj::btf::Btf::parse(b).ok());
    spec.maps
        .iter()
        .filter_map(|m| match &m.origin {
            MapOrigin::GlobalData { section } => Some((m, section.as_str())),
            _ => None,
        })
        .flat_map(|(m, section)| {
            let btf = btf.as_ref();
            m.variables.iter().map(move |v| Global {
                name: &v.name,
                section,
                c_type: btf.map_or_else(|| "?".into(), |b| c_type(b, v.btf_type_id, 0)),
                size: v.size,
                read_only: m.is_read_only_data(),
            })
        })
        .collect()
}

/// The C spelling of BTF type `id` (`const volatile __u32`, `char[16]`,
/// `struct cfg`); a variable stands for its type. Bounded: a cycle or a
/// deep chain ends in `...`.
fn c_type(btf: &kiln_obj::btf::Btf, id: u32, depth: u32) -> String {
    use kiln_obj::btf::types::Type;
    if depth > 16 {
        return "...".into();
    }
    let name = |off: u32| btf.str_at(off).unwrap_or("?").to_owned();
    let named = |kw: &str, off: u32| match btf.str_at(off) {
        Ok(n) if !n.is_empty() => format!("{kw} {n}"),
        _ => format!("{kw} (anonymous)"),
    };
    match btf.type_by_id(id) {
        Ok(Type::Void) => "void".into(),
        Ok(Type::Var { type_id, .. }) => c_type(btf, type_id, depth + 1),
        Ok(Type::Int { name_off, .. })
        | Ok(Type::Float { name_off, .. })
        | Ok(Type::Typedef { name_off, .. }) => name(name_off),
        Ok(Type::Ptr { target, .. }) => format!("{} *", c_type(btf, target, depth + 1)),
        Ok(Type::Array { elem, nelems, .. }) => {
            format!("{}[{nelems}]", c_type(btf, elem, depth + 1))
        }
        Ok(Type::Const { target, .. }) => format!("const {}", c_type(btf, target, depth + 1)),
        Ok(Type::Volatile { target, .. }) => {
            format!("volatile {}", c_type(btf, target, depth + 1))
        }
        Ok(Type::Restrict { target, .. }) | Ok(Type::TypeTag { target, .. }) => {
            c_type(btf, target, depth + 1)
        }
        Ok(Type::Struct { name_off, .. }) => named("struct", name_off),
        Ok(Type::Union { name_off, .. }) => named("union", name_off),
        Ok(Type::Enum { name_off, .. }) | Ok(Type::Enum64 { name_off, .. }) => {
            named("enum", name_off)
        }
        Ok(Type::Fwd { name_off, union }) => {
            named(if union { "union" } else { "struct" }, name_off)
        }
        Ok(_) | Err(_) => "?".into(),
    }
}

pub fn inspect(path: &Path, json: bool) -> anyhow::Result<()> {
    let spec = parse(path)?;
    let globals = globals(&spec);
    if json {
        let v = json!({
            "path": path.display().to_string(),
            "byte_order": spec.byte_order.name(),
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
            "globals": globals.iter().map(|g| json!({
                "name": g.name,
                "section": g.section,
                "c_type": g.c_type,
                "size": g.size,
                "read_only": g.read_only,
            })).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    outln!(
        "{} ({}, license {}, {})",
        path.display(),
        spec.byte_order,
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
    if !globals.is_empty() {
        outln!("globals (what a manifest's `globals = {{ ... }}` can set):");
        for g in &globals {
            outln!(
                "  {:<24} {:<14} {:<28} {:>4} bytes{}",
                g.name,
                g.section,
                g.c_type,
                g.size,
                if g.read_only { "  read-only" } else { "" }
            );
        }
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

/// `--attach-target PROG=TARGET[:FUNC]`: the BPF program a freplace or
/// fentry/fexit program of the object attaches to (a pinned program's path,
/// or `id:N`), and the function in it (default: the one the section names).
#[derive(Clone, Debug)]
pub struct AttachTarget {
    pub program: String,
    pub target: String,
    pub func: Option<String>,
}

impl std::str::FromStr for AttachTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (program, rest) = s.split_once('=').ok_or_else(|| {
            format!("--attach-target {s}: expected PROG=TARGET[:FUNC], e.g. ext=/sys/fs/bpf/xdp_main:handle")
        })?;
        // A trailing `:name` is the function, unless the whole is an existing path.
        let (target, func) = match rest.rsplit_once(':') {
            Some((t, f))
                if !t.is_empty()
                    && t != "id"
                    && !Path::new(rest).exists()
                    && f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                (t.to_owned(), Some(f.to_owned()))
            }
            _ => (rest.to_owned(), None),
        };
        if program.is_empty() || target.is_empty() {
            return Err(format!("--attach-target {s}: expected PROG=TARGET[:FUNC]"));
        }
        Ok(AttachTarget {
            program: program.to_owned(),
            target,
            func,
        })
    }
}

fn open_target(t: &AttachTarget) -> anyhow::Result<kiln_loader::Program> {
    let prog = match t.target.strip_prefix("id:") {
        Some(id) => kiln_loader::Program::from_id(
            id.parse()
                .with_context(|| format!("--attach-target {}: bad program id", t.program))?,
        ),
        None => kiln_loader::Program::from_pin(Path::new(&t.target), None),
    };
    prog.with_context(|| format!("--attach-target {}: opening {}", t.program, t.target))
}

/// What became of one program of the object.
enum Outcome {
    Loaded(kiln_loader::Program),
    /// Not loaded, and why: what it needs that neither the object nor the
    /// command line gives.
    Deferred(String),
    /// The kernel refused it.
    Failed {
        reason: String,
        detail: String,
        errno: Option<i32>,
        log: Option<String>,
    },
}

impl Outcome {
    fn failed(e: &kiln_loader::LoadError) -> Self {
        Outcome::Failed {
            reason: e.reason(),
            detail: kiln_loader::error_chain(e),
            errno: e.errno(),
            log: e.log().map(str::to_owned),
        }
    }
    fn failed_link(e: &kiln_loader::links::LinkError) -> Self {
        let text = kiln_loader::error_chain(e);
        Outcome::Failed {
            reason: text.lines().next().unwrap_or_default().to_owned(),
            detail: text,
            errno: None,
            log: None,
        }
    }
}

/// Why autoload-off programs are not loaded (not a failure: libbpf does not
/// load them either).
const AUTOLOAD_OFF: &str =
    "autoload off: SEC(\"?...\") programs load only when asked for, as with libbpf";

/// Why a program the loader left alone was not loaded.
fn deferral(p: &kiln_obj::ProgramSpec) -> String {
    if !p.autoload {
        return AUTOLOAD_OFF.into();
    }
    let (kind, name) = (&p.kind, &p.name);
    match kind {
        ProgramKind::Extension { .. } => format!(
            "freplace: needs the program it replaces a function of (--attach-target {name}=PINNED_PROG[:FUNC])"
        ),
        ProgramKind::StructOps { .. } => {
            "struct_ops: no struct_ops variable of the object uses it".into()
        }
        _ => "not loaded".into(),
    }
}

/// Loads every program of the object (maps first), like `bpftool prog
/// loadall`: the rest of the object's programs, freplace and fentry/fexit
/// programs given a target with `--attach-target`, and the programs of each
/// struct_ops variable whose struct the kernel has (loaded, not registered).
/// Reports each program as loaded, deferred (with what it needs) or failed
/// (with the verifier's reason), and pins what loaded under `pin_dir`.
/// Returns false unless every program loaded.
pub fn load(
    path: &Path,
    pin_dir: Option<&Path>,
    log_dir: &Path,
    json: bool,
    attach_targets: &[AttachTarget],
) -> anyhow::Result<bool> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let spec = ObjectSpec::parse(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    let object_name = kiln_obj::object_name_from_path(path);
    let pin_names = match pin_dir {
        Some(_) => Some(spec.map_pin_names(&object_name).map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot pin its maps: {}",
                path.display(),
                kiln_loader::error_chain(&e)
            )
        })?),
        None => None,
    };
    for t in attach_targets {
        let p = spec.program(&t.program).ok_or_else(|| {
            anyhow::anyhow!(
                "--attach-target {}: {} has no such program",
                t.program,
                path.display()
            )
        })?;
        if !matches!(
            p.kind,
            ProgramKind::Extension { .. } | ProgramKind::Tracing { .. }
        ) {
            anyhow::bail!(
                "--attach-target {}: only freplace and fentry/fexit programs take a target program",
                t.program
            );
        }
    }
    let mut loader = EbpfLoader::new();
    loader.object_name(&object_name);
    if let Some(dir) = pin_dir {
        // Owner-only, like a deployment's pin root: bpffs grants access by mode.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        loader.map_pin_path(dir);
    }
    for t in attach_targets {
        loader.skip_program(&t.program);
    }
    let (ebpf, failures) = loader
        .load_each(&spec)
        .with_context(|| format!("loading {}", path.display()))?;

    let mut outcomes: std::collections::BTreeMap<String, Outcome> = Default::default();
    for (name, e) in &failures {
        outcomes.insert(name.clone(), Outcome::failed(e));
    }
    for t in attach_targets {
        let target = open_target(t)?;
        let outcome = match kiln_loader::links::freplace::load_extension(
            &spec,
            &ebpf,
            &t.program,
            target.fd(),
            t.func.as_deref(),
        ) {
            Ok(p) => Outcome::Loaded(p),
            Err(e) => Outcome::failed_link(&e),
        };
        outcomes.insert(t.program.clone(), outcome);
    }
    if spec
        .programs
        .iter()
        .any(|p| matches!(p.kind, ProgramKind::StructOps { .. }))
    {
        use kiln_loader::links::struct_ops::{StructOpsProgram, load_struct_ops_programs};
        let file = path.display().to_string();
        for (name, r) in load_struct_ops_programs(&bytes, &spec, &ebpf, &file)? {
            let outcome = match r {
                StructOpsProgram::Loaded(p) => Outcome::Loaded(p),
                StructOpsProgram::KernelLacks(why) => Outcome::Deferred(why),
                StructOpsProgram::Failed(e) => Outcome::failed_link(&e),
            };
            outcomes.insert(name, outcome);
        }
    }
    let mut ebpf = ebpf;
    for p in &spec.programs {
        if let Some(prog) = ebpf.take_program(&p.name) {
            outcomes.insert(p.name.clone(), Outcome::Loaded(prog));
        }
        outcomes
            .entry(p.name.clone())
            .or_insert_with(|| Outcome::Deferred(deferral(p)));
    }

    let mut pinned = Vec::new();
    if let (Some(dir), Some(pin_names)) = (pin_dir, &pin_names) {
        for (name, o) in &outcomes {
            if let Outcome::Loaded(prog) = o {
                let p = dir.join(name);
                prog.pin(&p)?;
                pinned.push(p);
            }
        }
        for (m, pin_name) in spec.maps.iter().zip(pin_names) {
            let Some(map) = ebpf.map(&m.name) else {
                continue;
            };
            let p = dir.join(pin_name);
            // BY_NAME maps were pinned (or reused) by the loader itself.
            if m.pinning != Pinning::ByName {
                map.pin(&p)?;
            }
            pinned.push(p);
        }
    }
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
    let count = |f: fn(&Outcome) -> bool| outcomes.values().filter(|o| f(o)).count();
    let loaded = count(|o| matches!(o, Outcome::Loaded(_)));
    let deferred = count(|o| matches!(o, Outcome::Deferred(_)));
    let failed = count(|o| matches!(o, Outcome::Failed { .. }));
    // Exit 0 when everything libbpf would load loaded.
    let ok = failed == 0
        && outcomes
            .values()
            .all(|o| !matches!(o, Outcome::Deferred(why) if why != AUTOLOAD_OFF));
    // Func and line info records the kernel kept: no BTF means no source
    // lines in the verifier's messages and no BTF-based features.
    let btf_counts = |p: &kiln_loader::Program| {
        p.info()
            .map(|i| (i.nr_func_info, i.nr_line_info))
            .unwrap_or((0, 0))
    };
    if json {
        let progs: Vec<_> = spec
            .programs
            .iter()
            .map(|p| match &outcomes[&p.name] {
                Outcome::Loaded(prog) => {
                    let (funcs, lines) = btf_counts(prog);
                    json!({
                        "name": p.name, "section": p.section, "status": "loaded",
                        "loaded": true, "id": prog.id(),
                        "btf": funcs > 0, "func_info": funcs, "line_info": lines,
                    })
                }
                Outcome::Deferred(reason) => json!({
                    "name": p.name, "section": p.section, "status": "deferred",
                    "loaded": false, "reason": reason,
                }),
                Outcome::Failed {
                    reason, errno, log, ..
                } => json!({
                    "name": p.name, "section": p.section, "status": "failed",
                    "loaded": false, "reason": reason, "errno": errno, "log": log,
                    "log_file": log_files.get(&p.name),
                }),
            })
            .collect();
        let v = json!({
            "path": path.display().to_string(),
            "ok": ok,
            "summary": {"loaded": loaded, "deferred": deferred, "failed": failed},
            "btf": {
                "in_object": spec.btf.is_some(),
                "loaded": ebpf.btf_fd().is_some(),
                "dropped_reason": ebpf.btf_dropped(),
            },
            "programs": progs,
            "maps": spec.maps.iter().zip(0..).filter_map(|(m, i)| {
                let map = ebpf.map(&m.name)?;
                Some(json!({
                    "name": m.name,
                    "kernel_name": m.libbpf_name(&object_name),
                    "pin_name": pin_names.as_ref().map(|n: &Vec<String>| n[i].clone()),
                    "id": map.info().map(|i| i.id).ok(),
                    "reused": ebpf.reused_maps().contains(&m.name),
                }))
            }).collect::<Vec<_>>(),
            "pinned": pinned.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ok);
    }
    for p in &spec.programs {
        match &outcomes[&p.name] {
            Outcome::Loaded(prog) => {
                let (funcs, lines) = btf_counts(prog);
                let btf = if funcs > 0 {
                    format!("BTF: {funcs} func, {lines} line info")
                } else {
                    "no BTF".to_owned()
                };
                outln!("{:<24} loaded (id {}, {btf})", p.name, prog.id());
            }
            Outcome::Deferred(reason) => outln!("{:<24} deferred: {reason}", p.name),
            Outcome::Failed { reason, detail, .. } => {
                outln!("{:<24} FAILED: {reason}", p.name);
                for line in detail.lines().skip(1) {
                    outln!("    {line}");
                }
                if let Some(f) = log_files.get(&p.name) {
                    outln!("    full verifier log: {f}");
                }
            }
        }
    }
    if let Some(why) = ebpf.btf_dropped() {
        outln!("the programs were loaded without the object's BTF: {why}");
    }
    for r in ebpf.reused_maps() {
        outln!("map {r}: reused the compatible pinned map");
    }
    for p in &pinned {
        outln!("pinned {}", p.display());
    }
    outln!("{loaded} loaded, {deferred} deferred, {failed} failed");
    Ok(ok)
}
