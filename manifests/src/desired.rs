//! From manifest + parsed objects to the desired state, validating on the
//! way everything that can be checked before touching the kernel: programs
//! and maps exist in their object, attach points fit the program type,
//! interfaces and cgroups exist, values fit their slots.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kiln_obj::{
    AttachType, MapOrigin, MapSpec, ObjectSpec, ProgramKind, ProgramType, RelocationTarget,
};

use crate::diag::Diagnostic;
use crate::manifest::Manifest;
use crate::objects::Objects;
use crate::plan::{Desired, DesiredAttach, DesiredMap, DesiredProgram, LinkIdentity, MapDef};
use crate::schema::{Attach, Direction, EntriesMode, OnUpgrade, XdpMode};

/// An attachment with every name resolved on this host (ifindex, cgroup fd path...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolvedAttach {
    Tracepoint {
        category: String,
        name: String,
    },
    RawTracepoint {
        name: String,
    },
    /// tp_btf, fentry, fexit, lsm: the target is fixed at load time.
    Tracing {
        kind: ProgramKind,
    },
    Kprobe {
        function: String,
        offset: u64,
        retprobe: bool,
    },
    Uprobe {
        path: PathBuf,
        symbol: Option<String>,
        offset: u64,
        pid: Option<i32>,
        retprobe: bool,
    },
    Xdp {
        ifindex: u32,
        interface: String,
        mode: XdpMode,
    },
    Tcx {
        ifindex: u32,
        interface: String,
        direction: Direction,
    },
    Cgroup {
        path: PathBuf,
        attach_type: AttachType,
    },
    SkLookup {
        netns: PathBuf,
    },
    Netfilter {
        pf: u32,
        hooknum: u32,
        priority: i32,
    },
}

/// What apply needs per program beyond the plan's data.
#[derive(Clone, Debug)]
pub struct ProgramBuild {
    pub object: String,
    pub function: String,
    pub attach: Option<ResolvedAttach>,
    /// Global variables to set: name and encoded bytes.
    pub globals: Vec<(String, Vec<u8>)>,
}

/// The desired state and what apply needs to build it.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub desired: Desired,
    pub builds: BTreeMap<String, ProgramBuild>,
    /// Final map specs of the shared maps (max_entries applied), by name.
    pub map_specs: BTreeMap<String, (String, MapSpec)>,
    pub objects: Objects,
}

/// Builds the desired state, or every problem found.
pub fn resolve(manifest: &Manifest, objects: Objects) -> Result<Resolved, Vec<Diagnostic>> {
    resolve_with(manifest, objects, crate::objects::prepared)
}

/// Like [`resolve`], with `prepare` standing in for
/// [`crate::objects::prepared`] (what the loader will submit, from which the
/// program tags are predicted). `ObjectSpec::clone` gives a resolution that
/// reads nothing of the running kernel (no kernel BTF, kconfig or ksyms);
/// the predicted tags then assume no CO-RE or extern relocation.
pub fn resolve_with(
    manifest: &Manifest,
    objects: Objects,
    prepare: fn(&ObjectSpec) -> ObjectSpec,
) -> Result<Resolved, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut desired = Desired::default();
    let mut builds = BTreeMap::new();
    let mut map_specs: BTreeMap<String, (String, MapSpec)> = BTreeMap::new();

    // Declared maps first: they carry settings.
    for (key, decl) in manifest.maps() {
        let name = key.get_ref();
        let d = decl.get_ref();
        let obj_name = d.object.get_ref();
        let Some(obj) = objects.specs.get(obj_name) else {
            continue;
        };
        let Some(spec) = obj
            .map(name)
            .filter(|m| !matches!(m.origin, MapOrigin::GlobalData { .. }))
        else {
            errors.push(
                manifest
                    .error(
                        key.span(),
                        format!(
                            "map '{name}' is not in object '{obj_name}' (it has: {})",
                            shared_map_names(obj)
                        ),
                    )
                    .help("use one of the names listed, as the object's source spells it"),
            );
            continue;
        };
        let mut spec = spec.clone();
        if let Some(max) = &d.max_entries {
            spec.max_entries = *max.get_ref();
        }
        let lpm = spec.map_type == kiln_obj::MapType::LPM_TRIE;
        let btf = object_btf(obj);
        let mut entries = Vec::new();
        for e in &d.entries {
            let e = e.get_ref();
            let k = kiln_values(
                btf.as_ref(),
                spec.btf_key_type_id,
                &e.key,
                spec.key_size,
                lpm,
            );
            let v = kiln_values(
                btf.as_ref(),
                spec.btf_value_type_id,
                &e.value,
                spec.value_size,
                false,
            );
            match (k, v) {
                (Ok(k), Ok(v)) => entries.push((k, v)),
                (Err(msg), _) => errors.push(
                    manifest
                        .error(
                            e.key.span(),
                            format!("map '{name}': key{}: {msg}", short(e.key.get_ref())),
                        )
                        .help(format!("the key is {} bytes", spec.key_size)),
                ),
                (_, Err(msg)) => errors.push(
                    manifest
                        .error(
                            e.value.span(),
                            format!("map '{name}': value{}: {msg}", short(e.value.get_ref())),
                        )
                        .help(format!("the value is {} bytes", spec.value_size)),
                ),
            }
        }
        let entries_mode = d
            .entries_mode
            .as_ref()
            .map_or(EntriesMode::Create, |m| *m.get_ref());
        if let Some(mode) = &d.entries_mode
            && let Some(why) = entries_mode_unsupported(*mode.get_ref(), spec.map_type)
        {
            errors.push(
                manifest
                    .error(mode.span(), format!("map '{name}': {why}"))
                    .help("use entries_mode = \"create\" (entries seed a new map only), or a map type whose entries can be compared and deleted"),
            );
        }
        if !d.pin {
            errors.push(
                manifest
                    .error(
                        key.span(),
                        format!("map '{name}': pin = false: a deployment outlives `kiln apply`, so every map it keeps is pinned"),
                    )
                    .help("unpinned, the map would live only inside the programs using it: plan and status could not see it, `entries` could not be checked, and reloading one of the programs sharing it would give that program a new, empty map of its own; remove `pin = false`"),
            );
        }
        desired.maps.insert(
            name.clone(),
            DesiredMap {
                name: name.clone(),
                object: obj_name.clone(),
                def: def_of(&spec),
                on_upgrade: d
                    .on_upgrade
                    .as_ref()
                    .map_or(OnUpgrade::Keep, |o| *o.get_ref()),
                declared: true,
                btf: btf.is_some() && spec.btf_value_type_id.is_some_and(|v| v != 0),
                entries,
                entries_mode,
            },
        );
        map_specs.insert(name.clone(), (obj_name.clone(), spec));
    }

    for (key, decl) in manifest.programs() {
        let name = key.get_ref();
        let d = decl.get_ref();
        if !d.enabled {
            continue;
        }
        let obj_name = d.object.get_ref();
        let Some(obj) = objects.specs.get(obj_name) else {
            continue;
        };
        let function = d
            .function
            .as_ref()
            .map_or(name.as_str(), |f| f.get_ref().as_str());
        let Some(prog) = obj.program(function) else {
            let at = d.function.as_ref().map_or(key.span(), |f| f.span());
            let have: Vec<&str> = obj.programs.iter().map(|p| p.name.as_str()).collect();
            errors.push(
                manifest
                    .error(
                        at,
                        format!(
                            "program '{function}' is not in object '{obj_name}' (it has: {})",
                            have.join(", ")
                        ),
                    )
                    .help("name the table after the function, or set `function = \"...\"`"),
            );
            continue;
        };
        // Shared maps this program uses.
        let mut uses = Vec::new();
        for r in &prog.relocations {
            let idx = match r.target {
                RelocationTarget::Map { map } | RelocationTarget::MapValue { map, .. } => map,
            };
            let Some(m) = obj.maps.get(idx) else { continue };
            if matches!(m.origin, MapOrigin::GlobalData { .. }) {
                continue;
            }
            if !uses.contains(&m.name) {
                uses.push(m.name.clone());
            }
            if let Some((other_obj, _)) = map_specs.get(&m.name) {
                if other_obj != obj_name {
                    errors.push(
                        manifest
                            .error(key.span(), format!("program '{name}' uses map '{}' of object '{obj_name}', but that name is already taken by object '{other_obj}'", m.name))
                            .help("map names are unique per deployment (one pin per name): rename one of the maps"),
                    );
                }
                continue;
            }
            // An undeclared map: kept like a declared one with default settings.
            desired.maps.insert(
                m.name.clone(),
                DesiredMap {
                    name: m.name.clone(),
                    object: obj_name.clone(),
                    def: def_of(m),
                    on_upgrade: OnUpgrade::Keep,
                    declared: false,
                    btf: obj.btf.is_some() && m.btf_value_type_id.is_some_and(|v| v != 0),
                    entries: Vec::new(),
                    entries_mode: EntriesMode::Create,
                },
            );
            map_specs.insert(m.name.clone(), (obj_name.clone(), m.clone()));
        }
        // Globals.
        let mut globals = Vec::new();
        let btf = object_btf(obj);
        for (gkey, gval) in &d.globals {
            let gname = gkey.get_ref();
            let found = obj
                .maps
                .iter()
                .find_map(|m| m.variables.iter().find(|v| v.name == *gname).cloned());
            let Some(var) = found else {
                let have: Vec<&str> = obj
                    .maps
                    .iter()
                    .flat_map(|m| m.variables.iter().map(|v| v.name.as_str()))
                    .collect();
                errors.push(
                    manifest
                        .error(gkey.span(), format!("global '{gname}' is not in object '{obj_name}' (it has: {})", if have.is_empty() { "no globals".to_string() } else { have.join(", ") }))
                        .help("globals are the object's `static`/global variables in .data, .rodata or .bss"),
                );
                continue;
            };
            match kiln_values(btf.as_ref(), Some(var.btf_type_id), gval, var.size, false) {
                Err(msg) => errors.push(
                    manifest
                        .error(gval.span(), format!("global '{gname}': {msg}"))
                        .help(format!("'{gname}' is {} bytes", var.size)),
                ),
                Ok(bytes) => globals.push((gname.clone(), bytes)),
            }
        }
        // Attachment.
        let attach = match resolve_attach(d.attach.get_ref(), &prog.kind, prog.kind.program_type())
        {
            Ok(a) => a,
            Err((msg, help)) => {
                errors.push(
                    manifest
                        .error(d.attach.span(), format!("program '{name}': {msg}"))
                        .help(help),
                );
                continue;
            }
        };
        let prepared = prepare(obj);
        let insns = prepared
            .program(function)
            .unwrap_or(prog)
            .resolved_insns(|_| 0);
        // Read-only data the program binds, with the manifest's globals in
        // place: a global change is a program change even if the code is not.
        // The loader binds every `.rodata*` map of the object to each program
        // where the kernel can (as libbpf does), else only those it references.
        let mut rodata = Vec::new();
        let mut seen = Vec::new();
        let referenced = prog.relocations.iter().map(|r| match r.target {
            RelocationTarget::Map { map } | RelocationTarget::MapValue { map, .. } => map,
        });
        let bound: Vec<usize> = if kiln_loader::probe::prog_bind_map() {
            (0..obj.maps.len()).collect()
        } else {
            referenced.collect()
        };
        for idx in bound {
            let Some(m) = obj
                .maps
                .get(idx)
                .filter(|m| matches!(&m.origin, MapOrigin::GlobalData { section } if section.starts_with(".rodata")))
            else {
                continue;
            };
            if seen.contains(&idx) {
                continue;
            }
            seen.push(idx);
            let mut bytes = m.initial_data.clone().unwrap_or_default();
            bytes.resize(m.value_size as usize, 0);
            for (gname, gbytes) in &globals {
                if let Some(v) = m.variables.iter().find(|v| v.name == *gname) {
                    let start = v.offset as usize;
                    if let Some(slot) = bytes.get_mut(start..start + gbytes.len()) {
                        slot.copy_from_slice(gbytes);
                    }
                }
            }
            rodata.push(bytes);
        }
        rodata.sort();
        desired.programs.insert(
            name.clone(),
            DesiredProgram {
                name: name.clone(),
                object: obj_name.clone(),
                function: function.to_string(),
                prog_type: prog.kind.program_type().0,
                tags: crate::tag::candidate_tags(&insns),
                rodata,
                maps: uses,
                attach: attach.as_ref().map(describe),
            },
        );
        builds.insert(
            name.clone(),
            ProgramBuild {
                object: obj_name.clone(),
                function: function.to_string(),
                attach,
                globals,
            },
        );
    }

    if errors.is_empty() {
        Ok(Resolved {
            desired,
            builds,
            map_specs,
            objects,
        })
    } else {
        Err(errors)
    }
}

fn kiln_values(
    btf: Option<&kiln_obj::btf::Btf>,
    id: Option<u32>,
    v: &toml::Spanned<toml::Value>,
    size: u32,
    lpm: bool,
) -> Result<Vec<u8>, String> {
    crate::values::encode_typed(btf, id, v.get_ref(), size as usize, lpm)
}

/// A value for a message: scalars shown, tables and arrays not (the error
/// names the member at fault).
fn short(v: &toml::Value) -> String {
    match v {
        toml::Value::Table(_) | toml::Value::Array(_) => String::new(),
        v => format!(" {v}"),
    }
}

fn object_btf(obj: &ObjectSpec) -> Option<kiln_obj::btf::Btf> {
    kiln_obj::btf::Btf::parse(obj.btf.as_deref()?).ok()
}

fn shared_map_names(obj: &ObjectSpec) -> String {
    let names: Vec<&str> = obj
        .maps
        .iter()
        .filter(|m| !matches!(m.origin, MapOrigin::GlobalData { .. }))
        .map(|m| m.name.as_str())
        .collect();
    if names.is_empty() {
        "no maps".into()
    } else {
        names.join(", ")
    }
}

pub fn def_of(m: &MapSpec) -> MapDef {
    MapDef {
        map_type: m.map_type.0,
        key_size: m.key_size,
        value_size: m.value_size,
        max_entries: m.max_entries,
        map_flags: m.map_flags,
    }
}

type AttachError = (String, String);

fn need(kind: &str, want: &[ProgramType], have: ProgramType) -> Result<(), AttachError> {
    if want.contains(&have) {
        Ok(())
    } else {
        Err((
            format!("attach kind `{kind}` does not fit this program (program type {})", have.0),
            "pick the attach kind that matches the program's section (its SEC(\"...\")), or use attach = \"auto\"".into(),
        ))
    }
}

/// Checks the attachment against the program and resolves host names.
pub fn resolve_attach(
    attach: &Attach,
    kind: &ProgramKind,
    ptype: ProgramType,
) -> Result<Option<ResolvedAttach>, AttachError> {
    Ok(Some(match attach {
        Attach::None => return Ok(None),
        Attach::Auto => return resolve_attach(&auto_attach(kind)?, kind, ptype),
        Attach::Tracepoint { category, name } => {
            need("tracepoint", &[ProgramType::TRACEPOINT], ptype)?;
            for base in [
                "/sys/kernel/tracing/events",
                "/sys/kernel/debug/tracing/events",
            ] {
                let events = Path::new(base);
                if events.is_dir() && !events.join(category).join(name).is_dir() {
                    return Err((
                        format!("tracepoint {category}/{name} does not exist on this kernel"),
                        format!("list the available ones in {base}"),
                    ));
                }
            }
            ResolvedAttach::Tracepoint {
                category: category.clone(),
                name: name.clone(),
            }
        }
        Attach::RawTracepoint { name } => {
            need(
                "raw_tracepoint",
                &[
                    ProgramType::RAW_TRACEPOINT,
                    ProgramType::RAW_TRACEPOINT_WRITABLE,
                ],
                ptype,
            )?;
            ResolvedAttach::RawTracepoint { name: name.clone() }
        }
        Attach::TpBtf { name }
        | Attach::Fentry { function: name }
        | Attach::Fexit { function: name }
        | Attach::Lsm { hook: name } => {
            let lsm = matches!(attach, Attach::Lsm { .. });
            need(
                attach.kind_name(),
                &[if lsm {
                    ProgramType::LSM
                } else {
                    ProgramType::TRACING
                }],
                ptype,
            )?;
            let section_target = match kind {
                ProgramKind::Tracing { target, .. } => target.clone(),
                ProgramKind::Lsm { hook, .. } => hook.clone(),
                _ => None,
            };
            if section_target.as_deref() != Some(name.as_str()) {
                return Err((
                    format!(
                        "`{}` targets are fixed when the program is loaded, from its section; the section names {}",
                        attach.kind_name(),
                        section_target.map_or("no target".to_string(), |t| format!("'{t}'"))
                    ),
                    "make the manifest's target match the section, or use attach = \"auto\"".into(),
                ));
            }
            ResolvedAttach::Tracing { kind: kind.clone() }
        }
        Attach::Kprobe { function, offset } => {
            need("kprobe", &[ProgramType::KPROBE], ptype)?;
            ResolvedAttach::Kprobe {
                function: function.clone(),
                offset: *offset,
                retprobe: false,
            }
        }
        Attach::Kretprobe { function } => {
            need("kretprobe", &[ProgramType::KPROBE], ptype)?;
            ResolvedAttach::Kprobe {
                function: function.clone(),
                offset: 0,
                retprobe: true,
            }
        }
        Attach::Uprobe {
            path,
            symbol,
            offset,
            pid,
        }
        | Attach::Uretprobe {
            path,
            symbol,
            offset,
            pid,
        } => {
            need(attach.kind_name(), &[ProgramType::KPROBE], ptype)?;
            if !Path::new(path).is_file() {
                return Err((
                    format!("uprobe target {path} does not exist"),
                    "give the absolute path of an executable or library".into(),
                ));
            }
            ResolvedAttach::Uprobe {
                path: path.into(),
                symbol: symbol.clone(),
                offset: *offset,
                pid: *pid,
                retprobe: matches!(attach, Attach::Uretprobe { .. }),
            }
        }
        Attach::Xdp { interface, mode } => {
            need("xdp", &[ProgramType::XDP], ptype)?;
            ResolvedAttach::Xdp {
                ifindex: ifindex(interface)?,
                interface: interface.clone(),
                mode: *mode,
            }
        }
        Attach::Tcx {
            interface,
            direction,
        } => {
            need("tcx", &[ProgramType::SCHED_CLS], ptype)?;
            ResolvedAttach::Tcx {
                ifindex: ifindex(interface)?,
                interface: interface.clone(),
                direction: *direction,
            }
        }
        Attach::Tc { .. } => {
            return Err((
                "`tc` (cls_bpf over netlink) attachments are not bpf_links, so apply cannot pin, update or observe them".into(),
                "use `tcx = { interface = ..., direction = ... }` (kernel 6.6+)".into(),
            ));
        }
        Attach::Cgroup { path, attach_type } => {
            let at = match attach_type {
                Some(name) => cgroup_attach_type(name).ok_or_else(|| {
                    (format!("unknown cgroup attach type '{name}'"), "use e.g. cgroup_inet_ingress, cgroup_inet_egress, cgroup_inet4_connect, cgroup_inet_sock_create".into())
                })?,
                None => kind.expected_attach_type().ok_or_else(|| {
                    ("the section does not imply a cgroup attach type".to_string(), "set attach = { cgroup = { path = ..., attach_type = \"cgroup_inet_ingress\" } }".to_string())
                })?,
            };
            if !Path::new(path).is_dir() {
                return Err((format!("cgroup {path} does not exist"), "give a cgroup v2 directory, e.g. /sys/fs/cgroup/unified or /sys/fs/cgroup/system.slice".into()));
            }
            ResolvedAttach::Cgroup {
                path: path.into(),
                attach_type: at,
            }
        }
        Attach::SkLookup { netns } => {
            need("sk_lookup", &[ProgramType::SK_LOOKUP], ptype)?;
            if !Path::new(netns).exists() {
                return Err((
                    format!("network namespace file {netns} does not exist"),
                    "use /proc/self/ns/net or /run/netns/NAME".into(),
                ));
            }
            ResolvedAttach::SkLookup {
                netns: netns.into(),
            }
        }
        Attach::Netfilter {
            family,
            hook,
            priority,
        } => {
            need("netfilter", &[ProgramType::NETFILTER], ptype)?;
            let pf = match family.as_str() {
                "ipv4" => 2,
                "ipv6" => 10,
                _ => {
                    return Err((
                        format!("unknown netfilter family '{family}'"),
                        "use \"ipv4\" or \"ipv6\"".into(),
                    ));
                }
            };
            let hooknum = ["prerouting", "input", "forward", "output", "postrouting"]
                .iter()
                .position(|h| h == hook)
                .ok_or_else(|| {
                    (
                        format!("unknown netfilter hook '{hook}'"),
                        "use prerouting, input, forward, output or postrouting".to_string(),
                    )
                })? as u32;
            ResolvedAttach::Netfilter {
                pf,
                hooknum,
                priority: *priority,
            }
        }
    }))
}

/// What `attach = "auto"` means for a program, from its section name.
fn auto_attach(kind: &ProgramKind) -> Result<Attach, AttachError> {
    let no = |what: &str, example: &str| -> AttachError {
        (
            format!("attach = \"auto\" cannot attach {what}: the section does not say where"),
            format!("write the target explicitly, e.g. attach = {{ {example} }}"),
        )
    };
    Ok(match kind {
        ProgramKind::Tracepoint {
            category: Some(c),
            name: Some(n),
        } => Attach::Tracepoint {
            category: c.clone(),
            name: n.clone(),
        },
        ProgramKind::RawTracepoint { name: Some(n), .. } => {
            Attach::RawTracepoint { name: n.clone() }
        }
        ProgramKind::Tracing {
            attach_type,
            target: Some(t),
        } => match *attach_type {
            AttachType::TRACE_FENTRY => Attach::Fentry {
                function: t.clone(),
            },
            AttachType::TRACE_FEXIT => Attach::Fexit {
                function: t.clone(),
            },
            _ => Attach::TpBtf { name: t.clone() },
        },
        ProgramKind::Lsm {
            hook: Some(h),
            cgroup: false,
        } => Attach::Lsm { hook: h.clone() },
        ProgramKind::Kprobe {
            function: Some(f),
            offset,
            retprobe,
        } => {
            if *retprobe {
                Attach::Kretprobe {
                    function: f.clone(),
                }
            } else {
                Attach::Kprobe {
                    function: f.clone(),
                    offset: *offset,
                }
            }
        }
        ProgramKind::SocketFilter => Attach::None,
        ProgramKind::Xdp { .. } => {
            return Err(no(
                "an XDP program",
                "xdp = { interface = \"eth0\", mode = \"generic\" }",
            ));
        }
        ProgramKind::Tcx { .. } | ProgramKind::SchedCls => {
            return Err(no(
                "a TC program",
                "tcx = { interface = \"eth0\", direction = \"ingress\" }",
            ));
        }
        ProgramKind::CgroupSkb { .. } | ProgramKind::Cgroup { .. } => {
            return Err(no(
                "a cgroup program",
                "cgroup = { path = \"/sys/fs/cgroup/unified\" }",
            ));
        }
        _ => {
            return Err(no(
                "this kind of program",
                "tracepoint = { category = \"sched\", name = \"sched_switch\" }",
            ));
        }
    })
}

fn ifindex(name: &str) -> Result<u32, AttachError> {
    let c = std::ffi::CString::new(name).map_err(|_| {
        (
            format!("interface name {name:?} contains a NUL byte"),
            "fix the name".to_string(),
        )
    })?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        let have: Vec<String> = std::fs::read_dir("/sys/class/net")
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        return Err((
            format!("network interface '{name}' does not exist"),
            format!("interfaces here: {}", have.join(", ")),
        ));
    }
    Ok(idx)
}

fn cgroup_attach_type(name: &str) -> Option<AttachType> {
    const NAMES: &[(&str, AttachType)] = &[
        ("cgroup_inet_ingress", AttachType::CGROUP_INET_INGRESS),
        ("cgroup_inet_egress", AttachType::CGROUP_INET_EGRESS),
        (
            "cgroup_inet_sock_create",
            AttachType::CGROUP_INET_SOCK_CREATE,
        ),
        ("cgroup_sock_ops", AttachType::CGROUP_SOCK_OPS),
        ("cgroup_device", AttachType::CGROUP_DEVICE),
        ("cgroup_inet4_bind", AttachType::CGROUP_INET4_BIND),
        ("cgroup_inet6_bind", AttachType::CGROUP_INET6_BIND),
        ("cgroup_inet4_connect", AttachType::CGROUP_INET4_CONNECT),
        ("cgroup_inet6_connect", AttachType::CGROUP_INET6_CONNECT),
        ("cgroup_inet4_post_bind", AttachType::CGROUP_INET4_POST_BIND),
        ("cgroup_inet6_post_bind", AttachType::CGROUP_INET6_POST_BIND),
        ("cgroup_udp4_sendmsg", AttachType::CGROUP_UDP4_SENDMSG),
        ("cgroup_udp6_sendmsg", AttachType::CGROUP_UDP6_SENDMSG),
        ("cgroup_sysctl", AttachType::CGROUP_SYSCTL),
        ("cgroup_getsockopt", AttachType::CGROUP_GETSOCKOPT),
        ("cgroup_setsockopt", AttachType::CGROUP_SETSOCKOPT),
        (
            "cgroup_inet_sock_release",
            AttachType::CGROUP_INET_SOCK_RELEASE,
        ),
    ];
    NAMES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Link types (`enum bpf_link_type`) whose info identifies the target.
const LINK_CGROUP: u32 = 3;
const LINK_NETNS: u32 = 5;
const LINK_XDP: u32 = 6;
const LINK_NETFILTER: u32 = 10;
const LINK_TCX: u32 = 11;

const LINK_RAW_TRACEPOINT: u32 = 1;
const LINK_PERF_EVENT: u32 = 7;

/// An identity that checks only the link's type: the kernel does not report
/// the target of raw tracepoint and perf-event links in a comparable form,
/// but a link of another type is certainly another attachment.
fn kind_only(link_type: u32) -> Option<LinkIdentity> {
    Some(LinkIdentity {
        link_type,
        target: Vec::new(),
    })
}

/// The plan's view of an attachment: description, observable identity, updatability.
pub fn describe(a: &ResolvedAttach) -> DesiredAttach {
    let (description, identity, updatable) = match a {
        ResolvedAttach::Tracepoint { category, name } => (
            format!("tracepoint {category}/{name}"),
            kind_only(LINK_PERF_EVENT),
            false,
        ),
        ResolvedAttach::RawTracepoint { name } => (
            format!("raw_tracepoint {name}"),
            kind_only(LINK_RAW_TRACEPOINT),
            false,
        ),
        ResolvedAttach::Tracing { kind } => (
            match kind {
                ProgramKind::Tracing {
                    target: Some(t), ..
                }
                | ProgramKind::Lsm { hook: Some(t), .. } => format!("btf target {t}"),
                _ => "its BTF target".to_string(),
            },
            None,
            false,
        ),
        ResolvedAttach::Kprobe {
            function, retprobe, ..
        } => (
            format!(
                "{} {function}",
                if *retprobe { "kretprobe" } else { "kprobe" }
            ),
            kind_only(LINK_PERF_EVENT),
            false,
        ),
        ResolvedAttach::Uprobe {
            path,
            symbol,
            retprobe,
            ..
        } => (
            format!(
                "{} {}:{}",
                if *retprobe { "uretprobe" } else { "uprobe" },
                path.display(),
                symbol.as_deref().unwrap_or("<offset>")
            ),
            kind_only(LINK_PERF_EVENT),
            false,
        ),
        ResolvedAttach::Xdp {
            ifindex,
            interface,
            mode,
        } => (
            format!(
                "xdp {interface} ({})",
                match mode {
                    XdpMode::Auto => "auto",
                    XdpMode::Generic => "generic",
                    XdpMode::Native => "native",
                    XdpMode::Offload => "offload",
                }
            ),
            Some(LinkIdentity {
                link_type: LINK_XDP,
                target: vec![u64::from(*ifindex)],
            }),
            true,
        ),
        ResolvedAttach::Tcx {
            ifindex,
            interface,
            direction,
        } => {
            let at = match direction {
                Direction::Ingress => AttachType::TCX_INGRESS,
                Direction::Egress => AttachType::TCX_EGRESS,
            };
            (
                format!(
                    "tcx {interface} {}",
                    if at == AttachType::TCX_INGRESS {
                        "ingress"
                    } else {
                        "egress"
                    }
                ),
                Some(LinkIdentity {
                    link_type: LINK_TCX,
                    target: vec![u64::from(*ifindex), u64::from(at.0)],
                }),
                true,
            )
        }
        ResolvedAttach::Cgroup { path, attach_type } => {
            let id = std::fs::metadata(path).map(|m| m.ino()).unwrap_or(0);
            (
                format!("cgroup {} (attach type {})", path.display(), attach_type.0),
                Some(LinkIdentity {
                    link_type: LINK_CGROUP,
                    target: vec![id, u64::from(attach_type.0)],
                }),
                true,
            )
        }
        ResolvedAttach::SkLookup { netns } => {
            let ino = std::fs::metadata(netns).map(|m| m.ino()).unwrap_or(0);
            (
                format!("sk_lookup in {}", netns.display()),
                Some(LinkIdentity {
                    link_type: LINK_NETNS,
                    target: vec![ino, u64::from(AttachType::SK_LOOKUP.0)],
                }),
                true,
            )
        }
        ResolvedAttach::Netfilter {
            pf,
            hooknum,
            priority,
        } => (
            format!("netfilter pf {pf} hook {hooknum} priority {priority}"),
            Some(LinkIdentity {
                link_type: LINK_NETFILTER,
                target: vec![u64::from(*pf), u64::from(*hooknum), *priority as u32 as u64],
            }),
            false,
        ),
    };
    DesiredAttach {
        description,
        identity,
        updatable,
    }
}

/// Why `mode` cannot be kept on a map of type `t`, if it cannot. Entries are
/// compared value by value and, for "exact", deleted: per-CPU maps hold one
/// value per CPU (not the one declared), arrays cannot delete a key, and maps
/// of file descriptors or streams hold no comparable values.
fn entries_mode_unsupported(mode: EntriesMode, t: kiln_obj::MapType) -> Option<String> {
    use kiln_obj::MapType as M;
    if mode == EntriesMode::Create {
        return None;
    }
    let keyed = [M::HASH, M::LRU_HASH, M::LPM_TRIE];
    let arrays = [M::ARRAY];
    if keyed.contains(&t) || (mode == EntriesMode::Enforce && arrays.contains(&t)) {
        return None;
    }
    Some(if arrays.contains(&t) {
        format!(
            "entries_mode = \"{}\" deletes unlisted keys, and an array's keys always exist",
            mode.name()
        )
    } else {
        format!(
            "entries_mode = \"{}\" works on hash, LRU hash and LPM trie maps{}; this map is {}",
            mode.name(),
            if mode == EntriesMode::Enforce {
                " and arrays"
            } else {
                ""
            },
            t.name()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_obj::MapType;

    #[test]
    fn entries_modes_fit_the_map_type() {
        for t in [MapType::HASH, MapType::LRU_HASH, MapType::LPM_TRIE] {
            for mode in [
                EntriesMode::Create,
                EntriesMode::Enforce,
                EntriesMode::Exact,
            ] {
                assert_eq!(
                    entries_mode_unsupported(mode, t),
                    None,
                    "{} {}",
                    mode.name(),
                    t.name()
                );
            }
        }
        assert_eq!(
            entries_mode_unsupported(EntriesMode::Enforce, MapType::ARRAY),
            None
        );
        let exact_array = entries_mode_unsupported(EntriesMode::Exact, MapType::ARRAY).unwrap();
        assert!(exact_array.contains("always exist"), "{exact_array}");
        assert!(entries_mode_unsupported(EntriesMode::Keys, MapType::ARRAY).is_some());
        let percpu = entries_mode_unsupported(EntriesMode::Enforce, MapType::PERCPU_HASH).unwrap();
        assert!(
            percpu.contains("percpu_hash") && percpu.contains("and arrays"),
            "{percpu}"
        );
        assert_eq!(
            entries_mode_unsupported(EntriesMode::Create, MapType::PERCPU_HASH),
            None
        );
    }
}
