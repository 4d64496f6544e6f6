//! From manifest + parsed objects to the desired state, validating on the
//! way everything that can be checked before touching the kernel: programs
//! and maps exist in their object, attach points fit the program type,
//! interfaces and cgroups exist, values fit their slots.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_loader::links::AttachPoint;
use kiln_loader::links::attach_point::{BtfHook, MapRef, names};
use kiln_loader::links::netfilter::{NfHook, NfProto};
use kiln_loader::links::netkit::NetkitSide;
use kiln_loader::links::sockmap::SockMapHook;
use kiln_obj::{
    AttachType, MapOrigin, MapSpec, ObjectSpec, ProgramKind, ProgramType, RelocationTarget,
};

use crate::diag::Diagnostic;
use crate::manifest::Manifest;
use crate::objects::Objects;
use crate::plan::{Desired, DesiredAttach, DesiredMap, DesiredProgram, MapDef};
use crate::schema::{Attach, EntriesMode, OnShrink, OnUpgrade};

/// What apply needs per program beyond the plan's data.
#[derive(Clone, Debug)]
pub struct ProgramBuild {
    pub object: String,
    pub function: String,
    pub attach: Option<AttachPoint>,
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
    /// Objects as the loader prepared them for this kernel (those of the
    /// programs, where preparing worked): apply loads these, so each object
    /// is prepared once per process.
    pub prepared: BTreeMap<String, ObjectSpec>,
}

/// Builds the desired state, or every problem found.
pub fn resolve(manifest: &Manifest, objects: Objects) -> Result<Resolved, Vec<Diagnostic>> {
    resolve_with(manifest, objects, crate::objects::prepared)
}

/// Like [`resolve`], with `prepare` standing in for
/// [`crate::objects::prepared`] (what the loader will submit, from which the
/// program tags are predicted). `|_| None` gives a resolution that reads
/// nothing of the running kernel (no kernel BTF, kconfig or ksyms); the
/// predicted tags then assume no CO-RE or extern relocation.
pub fn resolve_with(
    manifest: &Manifest,
    objects: Objects,
    prepare: fn(&ObjectSpec) -> Option<ObjectSpec>,
) -> Result<Resolved, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut desired = Desired::default();
    let mut builds = BTreeMap::new();
    let mut map_specs: BTreeMap<String, (String, MapSpec)> = BTreeMap::new();

    // Each object is prepared (CO-RE, externs) and its BTF parsed once, however
    // many programs and maps of it the manifest names.
    let btfs: BTreeMap<&str, Option<kiln_obj::btf::Btf>> = objects
        .specs
        .iter()
        .map(|(name, obj)| (name.as_str(), object_btf(obj)))
        .collect();

    // Global-data maps of the deployment: map name -> (object, index).
    let mut global_data: BTreeMap<String, (String, usize)> = BTreeMap::new();
    // Global data declared in [maps.*] (as `kiln export` writes it): its policy.
    let mut global_upgrade: BTreeMap<String, OnUpgrade> = BTreeMap::new();

    // Declared maps first: they carry settings.
    for (key, decl) in manifest.maps() {
        let name = key.get_ref();
        let d = decl.get_ref();
        let obj_name = d.object.get_ref();
        let Some(obj) = objects.specs.get(obj_name) else {
            continue;
        };
        let path = &objects.paths[obj_name];
        if let Some(idx) = obj.maps.iter().position(|m| {
            matches!(&m.origin, MapOrigin::GlobalData { section } if global_data_pin_name(path, section) == *name)
        }) {
            if !d.entries.is_empty() || d.entries_mode.is_some() || d.max_entries.as_ref().is_some_and(|m| *m.get_ref() != 1) {
                errors.push(
                    manifest
                        .error(key.span(), format!("map '{name}' is the global data of object '{obj_name}': it holds one value, the object's variables"))
                        .help("set its variables with `globals = { ... }` on a program of the object; here only `on_upgrade` applies"),
                );
                continue;
            }
            let mut spec = obj.maps[idx].clone();
            if let Err(e) = kiln_loader::loader::finish_map_spec(&mut spec) {
                errors.push(manifest.error(key.span(), kiln_loader::error_chain(&e)));
                continue;
            }
            global_data.insert(name.clone(), (obj_name.clone(), idx));
            if let Some(o) = &d.on_upgrade {
                global_upgrade.insert(name.clone(), *o.get_ref());
            }
            map_specs.insert(name.clone(), (obj_name.clone(), spec));
            continue;
        }
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
                            shared_map_names(obj, path)
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
        if let Err(e) = kiln_loader::loader::finish_map_spec(&mut spec) {
            errors.push(manifest.error(key.span(), kiln_loader::error_chain(&e)));
            continue;
        }
        let lpm = spec.map_type == kiln_obj::MapType::LPM_TRIE;
        let btf = btfs.get(obj_name.as_str()).and_then(Option::as_ref);
        let mut entries = Vec::new();
        // Keys as the kernel compares them, to find those listed twice.
        let mut seen_keys = std::collections::BTreeSet::new();
        for e in &d.entries {
            let e = e.get_ref();
            let k = kiln_values(btf, spec.btf_key_type_id, &e.key, spec.key_size, lpm);
            let v = kiln_values(
                btf,
                spec.btf_value_type_id,
                &e.value,
                spec.value_size,
                false,
            );
            match (k, v) {
                (Ok(k), Ok(v)) => {
                    if let Some(problem) = entry_key_problem(&spec, &mut seen_keys, &k) {
                        errors.push(
                            manifest
                                .error(
                                    e.key.span(),
                                    format!(
                                        "map '{name}': key{}: {}",
                                        short(e.key.get_ref()),
                                        problem.0
                                    ),
                                )
                                .help(problem.1),
                        );
                    } else {
                        entries.push((k, v));
                    }
                }
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
                on_shrink: d
                    .on_shrink
                    .as_ref()
                    .map_or(OnShrink::Refuse, |o| *o.get_ref()),
                declared: true,
                btf: btf.is_some() && spec.btf_value_type_id.is_some_and(|v| v != 0),
                entries,
                entries_mode,
                frozen: false,
            },
        );
        map_specs.insert(name.clone(), (obj_name.clone(), spec));
    }

    let mut clashes = std::collections::BTreeSet::new();
    let mut prepared: BTreeMap<String, Option<ObjectSpec>> = BTreeMap::new();
    // Globals per object: programs of one object share one load, so one
    // `.rodata`/`.data`/`.bss` (as libbpf does). Value and the program that set it.
    let mut object_globals: BTreeMap<String, BTreeMap<String, (Vec<u8>, String)>> = BTreeMap::new();

    // (object, function) of every enabled program: what a program array's
    // `.values` may name.
    let declared_functions: Vec<(&str, &str)> = manifest
        .programs()
        .filter(|(_, d)| d.get_ref().enabled)
        .map(|(key, d)| {
            let d = d.get_ref();
            let function = d.function.as_ref().map_or(key.get_ref(), |f| f.get_ref());
            (d.object.get_ref().as_str(), function.as_str())
        })
        .collect();

    for (key, decl) in manifest.programs() {
        let name = key.get_ref();
        let d = decl.get_ref();
        if !d.enabled {
            desired.disabled.insert(name.clone());
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
        if let Some(why) = loads_only_with_its_target(&prog.kind) {
            errors.push(
                manifest
                    .error(key.span(), format!("program '{name}': {why}"))
                    .help("remove this program from the manifest; `kiln object load` lists how such programs load"),
            );
            continue;
        }
        // Maps this program uses: shared maps by their name, global data
        // by its pin name.
        let mut uses = Vec::new();
        for r in &prog.relocations {
            let idx = match r.target {
                RelocationTarget::Map { map } | RelocationTarget::MapValue { map, .. } => map,
            };
            let Some(m) = obj.maps.get(idx) else { continue };
            let map_name = match &m.origin {
                MapOrigin::GlobalData { section } => {
                    global_data_pin_name(&objects.paths[obj_name], section)
                }
                _ => m.name.clone(),
            };
            if uses.contains(&map_name) {
                continue;
            }
            uses.push(map_name.clone());
            // A program array keeps what its `.values` name running: the
            // deployment must load (and pin) each of them.
            for slot in obj.map_slots.iter().filter(|s| s.map == idx) {
                if let kiln_obj::MapSlotTarget::Program(target) = &slot.target
                    && !declared_functions.contains(&(obj_name.as_str(), target.as_str()))
                {
                    errors.push(
                        manifest
                            .error(key.span(), format!("program '{name}' uses map '{map_name}', whose `.values` hold program '{target}' of object '{obj_name}' at index {}, which the manifest does not declare", slot.index))
                            .help(format!("declare it: [programs.{target}] with object = \"{obj_name}\" and attach = \"none\"")),
                    );
                }
            }
            if let Some((other_obj, _)) = map_specs.get(&map_name) {
                // Once per object and map, however many programs and
                // instructions use it.
                if other_obj != obj_name && clashes.insert((obj_name.clone(), map_name.clone())) {
                    errors.push(
                        manifest
                            .error(key.span(), format!("program '{name}' uses map '{map_name}' of object '{obj_name}', but that name is already taken by object '{other_obj}'"))
                            .help("map names are unique per deployment (one pin per name; global data is pinned under libbpf's name for it, `<object file prefix>_bss` or the section name): rename one of the maps or sections, or one of the object files"),
                    );
                }
                continue;
            }
            let mut spec = m.clone();
            if let Err(e) = kiln_loader::loader::finish_map_spec(&mut spec) {
                errors.push(manifest.error(
                    key.span(),
                    format!("program '{name}': {}", kiln_loader::error_chain(&e)),
                ));
                continue;
            }
            if matches!(m.origin, MapOrigin::GlobalData { .. }) {
                global_data.insert(map_name.clone(), (obj_name.clone(), idx));
            } else {
                // An undeclared map: kept like a declared one with default settings.
                desired.maps.insert(
                    map_name.clone(),
                    DesiredMap {
                        name: map_name.clone(),
                        object: obj_name.clone(),
                        def: def_of(&spec),
                        on_upgrade: OnUpgrade::Keep,
                        on_shrink: OnShrink::Refuse,
                        declared: false,
                        btf: obj.btf.is_some() && m.btf_value_type_id.is_some_and(|v| v != 0),
                        entries: Vec::new(),
                        entries_mode: EntriesMode::Create,
                        frozen: false,
                    },
                );
            }
            map_specs.insert(map_name, (obj_name.clone(), spec));
        }
        // Globals.
        let mut globals = Vec::new();
        let btf = btfs.get(obj_name.as_str()).and_then(Option::as_ref);
        let shared = object_globals.entry(obj_name.clone()).or_default();
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
            match kiln_values(btf, Some(var.btf_type_id), gval, var.size, false) {
                Err(msg) => errors.push(
                    manifest
                        .error(gval.span(), format!("global '{gname}': {msg}"))
                        .help(format!("'{gname}' is {} bytes", var.size)),
                ),
                Ok(bytes) => {
                    match shared.get(gname) {
                        Some((other, by)) if *other != bytes => errors.push(
                            manifest
                                .error(gval.span(), format!("global '{gname}': program '{by}' of object '{obj_name}' sets it to another value"))
                                .help("the programs of one object share its global data (one .rodata, .data and .bss, as with libbpf): give the global one value, or load the other program from a copy of the object file under another name, declared as another [objects.*] table"),
                        ),
                        Some(_) => {}
                        None => {
                            shared.insert(gname.clone(), (bytes.clone(), name.clone()));
                        }
                    }
                    globals.push((gname.clone(), bytes));
                }
            }
        }
        // Attachment.
        let declared_map = |m: &str| {
            manifest
                .maps()
                .any(|(k, _)| k.get_ref() == m)
                .then(|| manifest.pin_root().join(crate::live::MAPS).join(m))
        };
        let attach = match resolve_attach(
            d.attach.get_ref(),
            &prog.kind,
            prog.kind.program_type(),
            &declared_map,
        ) {
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
        let insns = prepared
            .entry(obj_name.clone())
            .or_insert_with(|| prepare(obj))
            .as_ref()
            .and_then(|p| p.program(function))
            .unwrap_or(prog)
            .resolved_insns(|_| 0);
        desired.programs.insert(
            name.clone(),
            DesiredProgram {
                name: name.clone(),
                object: obj_name.clone(),
                function: function.to_string(),
                prog_type: prog.kind.program_type().0,
                tags: crate::tag::candidate_tags(&insns),
                // Filled in below, once every program's globals are known.
                rodata: Vec::new(),
                maps: uses,
                attach: attach.clone().map(DesiredAttach::of),
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

    // Global data with every global the object's programs set: the maps'
    // initial contents, and for read-only data what the programs bind (a
    // change there is a program change even if the code is not).
    let mut contents: BTreeMap<&str, (bool, Vec<u8>)> = BTreeMap::new();
    let object_of = |obj_name: &str| {
        prepared
            .get(obj_name)
            .and_then(Option::as_ref)
            .unwrap_or(&objects.specs[obj_name])
    };
    // A global data map's initial value with the manifest's globals in place.
    let initial = |obj_name: &str, m: &kiln_obj::MapSpec| {
        let mut bytes = m.initial_data.clone().unwrap_or_default();
        bytes.resize(m.value_size as usize, 0);
        for (gname, (gbytes, _)) in object_globals.get(obj_name).into_iter().flatten() {
            if let Some(v) = m.variables.iter().find(|v| v.name == *gname) {
                let start = v.offset as usize;
                if let Some(slot) = bytes.get_mut(start..start + gbytes.len()) {
                    slot.copy_from_slice(gbytes);
                }
            }
        }
        bytes
    };
    for (map_name, (obj_name, idx)) in &global_data {
        let obj = object_of(obj_name);
        let Some(m) = obj.maps.get(*idx) else {
            continue;
        };
        let bytes = initial(obj_name, m);
        let read_only = m.is_read_only_data();
        let (_, spec) = &map_specs[map_name];
        desired.maps.insert(
            map_name.clone(),
            DesiredMap {
                name: map_name.clone(),
                object: obj_name.clone(),
                def: def_of(spec),
                // Global data is the object's: by default a new layout
                // starts from the object's initial values.
                on_upgrade: global_upgrade
                    .get(map_name)
                    .copied()
                    .unwrap_or(OnUpgrade::Recreate),
                on_shrink: OnShrink::Refuse,
                declared: global_upgrade.contains_key(map_name),
                btf: false,
                // Read-only data is written once, at creation, and frozen:
                // other contents need a new map.
                entries: if read_only {
                    vec![(0u32.to_ne_bytes().to_vec(), bytes.clone())]
                } else {
                    Vec::new()
                },
                entries_mode: if read_only {
                    EntriesMode::Enforce
                } else {
                    EntriesMode::Create
                },
                frozen: read_only,
            },
        );
        contents.insert(map_name.as_str(), (read_only, bytes));
    }
    // The loader binds every `.rodata*` map of an object to each of its
    // programs where the kernel can (as libbpf does), so the live program
    // lists them all; else only the read-only data it references.
    let binds_all = kiln_loader::probe::prog_bind_map();
    for want in desired.programs.values_mut() {
        let mut rodata: Vec<Vec<u8>> = if binds_all {
            object_of(&want.object)
                .maps
                .iter()
                .filter(|m| {
                    matches!(&m.origin, MapOrigin::GlobalData { section } if section.starts_with(".rodata"))
                })
                .map(|m| initial(&want.object, m))
                .collect()
        } else {
            want.maps
                .iter()
                .filter_map(|m| contents.get(m.as_str()))
                .filter(|(read_only, _)| *read_only)
                .map(|(_, bytes)| bytes.clone())
                .collect()
        };
        rodata.sort();
        want.rodata = rodata;
    }

    if errors.is_empty() {
        Ok(Resolved {
            desired,
            builds,
            map_specs,
            objects,
            prepared: prepared
                .into_iter()
                .filter_map(|(name, p)| Some((name, p?)))
                .collect(),
        })
    } else {
        Err(errors)
    }
}

/// Why a program of this kind cannot be loaded on its own, if it cannot:
/// the loader loads struct_ops programs with their `.struct_ops` table and
/// freplace programs against the program they replace a function of.
fn loads_only_with_its_target(kind: &ProgramKind) -> Option<&'static str> {
    match kind {
        ProgramKind::StructOps { .. } => Some(
            "a struct_ops program loads only with the .struct_ops table that names it, which a manifest cannot declare yet",
        ),
        ProgramKind::Extension { .. } => Some(
            "a freplace program loads only against the program it replaces a function of, which a manifest cannot name yet",
        ),
        _ => None,
    }
}

/// The pin name libbpf gives the global-data map of `section` in the object
/// file at `path` (`<object prefix><section>` with `.` made `_`): kiln-obj's
/// one rule, [`kiln_obj::global_data_pin_name`] (`MapSpec::pin_name`), with
/// the object named as libbpf names it from its file.
pub fn global_data_pin_name(path: &Path, section: &str) -> String {
    kiln_obj::global_data_pin_name(&kiln_obj::object_name_from_path(path), section)
}

fn kiln_values(
    btf: Option<&kiln_obj::btf::Btf>,
    id: Option<u32>,
    v: &toml::Spanned<toml::Value>,
    size: u32,
    lpm: bool,
) -> Result<Vec<u8>, String> {
    crate::values::encode_typed(btf, id, v.get_ref(), size as usize, lpm)
        .map_err(|e| kiln_loader::error_chain(&e))
}

/// A value for a message: scalars shown, tables and arrays not (the error
/// names the member at fault).
/// Why the kernel would not hold `key` as one more entry of a map made from
/// `spec` beside the `earlier` keys (message, help), if it would not, else
/// adds it to them: a key
/// listed twice (for LPM tries: the same prefix once masked, as the trie
/// compares them), an array index past the end, or one entry more than
/// `max_entries`. Without this check the entries would never converge: every
/// apply would write one of the values over the other.
fn entry_key_problem(
    spec: &MapSpec,
    earlier: &mut std::collections::BTreeSet<Vec<u8>>,
    key: &[u8],
) -> Option<(String, String)> {
    let lpm = spec.map_type == kiln_obj::MapType::LPM_TRIE;
    let this = if lpm {
        masked_lpm_key(key)
    } else {
        key.to_vec()
    };
    if earlier.contains(&this) {
        return Some(if lpm {
            (
                "the same prefix as an earlier entry once the bits past the prefix length are masked, which is how the LPM trie compares keys".into(),
                "list each prefix once; write it with the bits past the prefix length zeroed (e.g. \"10.0.0.0/8\")".into(),
            )
        } else {
            (
                "listed twice".into(),
                "list each key once: with two values for one key, every apply would write one over the other".into(),
            )
        });
    }
    let is_array =
        [kiln_obj::MapType::ARRAY, kiln_obj::MapType::PERCPU_ARRAY].contains(&spec.map_type);
    if is_array {
        let index = key
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes);
        if let Some(index) = index
            && index >= spec.max_entries
        {
            return Some((
                format!(
                    "index {index} is past the end of the array (max_entries = {})",
                    spec.max_entries
                ),
                format!(
                    "use an index below {}, or raise max_entries",
                    spec.max_entries
                ),
            ));
        }
    } else if earlier.len() >= spec.max_entries as usize {
        return Some((
            format!(
                "one entry more than max_entries = {} holds",
                spec.max_entries
            ),
            format!(
                "list at most {} entries, or raise max_entries",
                spec.max_entries
            ),
        ));
    }
    earlier.insert(this);
    None
}

/// An LPM trie key (`u32` prefix length, then the data) with the data bits
/// past the prefix length cleared.
fn masked_lpm_key(key: &[u8]) -> Vec<u8> {
    let mut out = key.to_vec();
    let Some(prefix) = key
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_ne_bytes)
    else {
        return out;
    };
    for (i, byte) in out.iter_mut().skip(4).enumerate() {
        let bit = (i * 8) as u64;
        let keep = u64::from(prefix).saturating_sub(bit).min(8);
        *byte &= !(0xffu16 >> keep) as u8;
    }
    out
}

fn short(v: &toml::Value) -> String {
    match v {
        toml::Value::Table(_) | toml::Value::Array(_) => String::new(),
        v => format!(" {v}"),
    }
}

fn object_btf(obj: &ObjectSpec) -> Option<kiln_obj::btf::Btf> {
    kiln_obj::btf::Btf::parse(obj.btf.as_deref()?).ok()
}

fn shared_map_names(obj: &ObjectSpec, path: &Path) -> String {
    let names: Vec<String> = obj
        .maps
        .iter()
        .map(|m| match &m.origin {
            MapOrigin::GlobalData { section } => global_data_pin_name(path, section),
            _ => m.name.clone(),
        })
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
        map_flags: kiln_loader::pin::reported_map_flags(m),
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

/// The manifest's one translation of attach kinds: its TOML attachment to
/// the library's [`AttachPoint`], checked against the program and with
/// host names resolved (interfaces, cgroups, namespaces, tracepoints).
/// `declared_map` gives the pin of a map the manifest declares.
pub fn resolve_attach(
    attach: &Attach,
    kind: &ProgramKind,
    ptype: ProgramType,
    declared_map: &dyn Fn(&str) -> Option<std::path::PathBuf>,
) -> Result<Option<AttachPoint>, AttachError> {
    let point = match attach {
        Attach::None => return Ok(None),
        Attach::Auto => {
            let point = AttachPoint::from_section(kind).map_err(|e| {
                (
                    format!("attach = \"auto\" cannot attach {}: the section does not say where", e.what),
                    match e.example {
                        Some(ex) => format!("write the target explicitly, e.g. attach = {{ {ex} }}"),
                        None => "use attach = \"none\" to load and pin it only".into(),
                    },
                )
            });
            match (point, kind) {
                // A socket filter needs the user's socket: loaded and pinned only.
                (Err(_), ProgramKind::SocketFilter) => return Ok(None),
                (p, _) => p?,
            }
        }
        Attach::Tracepoint { category, name } => {
            need("tracepoint", &[ProgramType::TRACEPOINT], ptype)?;
            AttachPoint::Tracepoint {
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
            AttachPoint::RawTracepoint { name: name.clone() }
        }
        Attach::TpBtf { name }
        | Attach::Fentry { function: name }
        | Attach::Fexit { function: name }
        | Attach::FmodRet { function: name }
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
            let from_section = AttachPoint::from_section(kind).ok();
            match from_section {
                Some(AttachPoint::Btf { hook, target })
                    if hook.name() == attach.kind_name() && target == *name =>
                {
                    AttachPoint::Btf { hook, target }
                }
                other => {
                    return Err((
                        format!(
                            "`{}` targets are fixed when the program is loaded, from its section; the section names {}",
                            attach.kind_name(),
                            other.map_or("no target".to_string(), |p| format!("'{p}'"))
                        ),
                        "make the manifest's target match the section, or use attach = \"auto\"".into(),
                    ));
                }
            }
        }
        Attach::Iter { target } => {
            need("iter", &[ProgramType::TRACING], ptype)?;
            match AttachPoint::from_section(kind).ok() {
                Some(AttachPoint::Iter { target: t }) if t == *target => {
                    AttachPoint::Iter { target: t }
                }
                other => {
                    return Err((
                        format!(
                            "iterator targets are fixed when the program is loaded, from its section; the section names {}",
                            other.map_or("no iterator".to_string(), |p| format!("'{p}'"))
                        ),
                        "make the manifest's target match the section (SEC(\"iter/TARGET\")), or use attach = \"auto\"".into(),
                    ));
                }
            }
        }
        Attach::Kprobe { function, offset } => {
            need("kprobe", &[ProgramType::KPROBE], ptype)?;
            AttachPoint::Kprobe {
                function: function.clone(),
                offset: *offset,
                retprobe: false,
            }
        }
        Attach::Kretprobe { function } => {
            need("kretprobe", &[ProgramType::KPROBE], ptype)?;
            AttachPoint::Kprobe {
                function: function.clone(),
                offset: 0,
                retprobe: true,
            }
        }
        Attach::KprobeMulti {
            functions,
            retprobe,
            cookies,
        } => {
            need_multi("kprobe_multi", kind, AttachType::TRACE_KPROBE_MULTI)?;
            AttachPoint::KprobeMulti {
                functions: functions.clone(),
                retprobe: *retprobe,
                cookies: cookies.clone(),
            }
        }
        Attach::UprobeMulti {
            path,
            symbols,
            retprobe,
            pid,
            cookies,
        } => {
            need_multi("uprobe_multi", kind, AttachType::TRACE_UPROBE_MULTI)?;
            AttachPoint::UprobeMulti {
                path: kiln_loader::links::uprobe::resolve_library(Path::new(path)),
                symbols: symbols.clone(),
                retprobe: *retprobe,
                pid: *pid,
                cookies: cookies.clone(),
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
            AttachPoint::Uprobe {
                path: kiln_loader::links::uprobe::resolve_library(Path::new(path)),
                symbol: symbol.clone(),
                offset: *offset,
                pid: *pid,
                retprobe: matches!(attach, Attach::Uretprobe { .. }),
            }
        }
        Attach::Xdp { interface, mode } => {
            need("xdp", &[ProgramType::XDP], ptype)?;
            AttachPoint::Xdp {
                ifindex: ifindex(interface)?,
                mode: *mode,
            }
        }
        Attach::Tcx {
            interface,
            direction,
        } => {
            need("tcx", &[ProgramType::SCHED_CLS], ptype)?;
            AttachPoint::Tcx {
                ifindex: ifindex(interface)?,
                direction: *direction,
            }
        }
        Attach::Tc {
            interface,
            direction,
            priority,
            handle,
        } => {
            need("tc", &[ProgramType::SCHED_CLS], ptype)?;
            AttachPoint::Tc {
                ifindex: ifindex(interface)?,
                direction: *direction,
                priority: *priority,
                handle: *handle,
            }
        }
        Attach::Netkit { interface, side } => {
            let section = NetkitSide::of_section(kind).ok_or_else(|| {
                (
                    "`netkit` needs a netkit program".to_string(),
                    "declare the function with SEC(\"netkit/primary\") or SEC(\"netkit/peer\")"
                        .to_string(),
                )
            })?;
            let side = match side {
                None => section,
                Some(name) => names::netkit_side_from(name)
                    .filter(|s| *s == section)
                    .ok_or_else(|| {
                        (
                            format!(
                                "netkit side '{name}': the program was loaded for the {} side",
                                names::netkit_side(section)
                            ),
                            "the side is fixed by the section (netkit/primary or netkit/peer); omit `side` or match it".to_string(),
                        )
                    })?,
            };
            AttachPoint::Netkit {
                ifindex: ifindex(interface)?,
                side,
            }
        }
        Attach::Cgroup { path, attach_type } => AttachPoint::Cgroup {
            path: path.into(),
            attach_type: match attach_type {
                Some(name) => names::cgroup_attach_type_from(name).ok_or_else(|| {
                    (
                        format!("unknown cgroup attach type '{name}'"),
                        format!(
                            "use one of {}",
                            names::cgroup_attach_type_names().collect::<Vec<_>>().join(", ")
                        ),
                    )
                })?,
                None => kind.expected_attach_type().ok_or_else(|| {
                    ("the section does not imply a cgroup attach type".to_string(), "set attach = { cgroup = { path = ..., attach_type = \"cgroup_inet_ingress\" } }".to_string())
                })?,
            },
        },
        Attach::SkLookup { netns } => {
            need("sk_lookup", &[ProgramType::SK_LOOKUP], ptype)?;
            AttachPoint::SkLookup {
                netns: netns.into(),
            }
        }
        Attach::Sockmap { map } => {
            need("sockmap", &[ProgramType::SK_MSG, ProgramType::SK_SKB], ptype)?;
            let hook = match kind {
                ProgramKind::SkMsg => Some(SockMapHook::MsgVerdict),
                ProgramKind::SkSkb {
                    attach_type: Some(at),
                } => SockMapHook::from_attach_type(*at),
                _ => None,
            }
            .ok_or_else(|| {
                (
                    "the section does not say which sockmap hook".to_string(),
                    "use SEC(\"sk_msg\"), SEC(\"sk_skb/stream_parser\"), SEC(\"sk_skb/stream_verdict\") or SEC(\"sk_skb/verdict\")".to_string(),
                )
            })?;
            let pin = declared_map(map).ok_or_else(|| {
                (
                    format!("map '{map}' is not declared in the manifest"),
                    format!("declare it: [maps.{map}] with the object that defines it"),
                )
            })?;
            AttachPoint::SockMap {
                map: MapRef::Pin(pin),
                hook,
            }
        }
        Attach::FlowDissector { netns } => {
            need("flow_dissector", &[ProgramType::FLOW_DISSECTOR], ptype)?;
            AttachPoint::FlowDissector {
                netns: netns.into(),
            }
        }
        Attach::Netfilter {
            family,
            hook,
            priority,
        } => {
            need("netfilter", &[ProgramType::NETFILTER], ptype)?;
            // The kernel keeps the first and last priorities for
            // netfilter's own hooks (NF_IP_PRI_FIRST / _LAST): EINVAL.
            if *priority == i32::MIN || *priority == i32::MAX {
                return Err((
                    format!("netfilter priority {priority} is reserved by the kernel"),
                    format!(
                        "use a priority between {} and {}",
                        i32::MIN + 1,
                        i32::MAX - 1
                    ),
                ));
            }
            AttachPoint::Netfilter {
                family: NfProto::from_name(family).ok_or_else(|| {
                    (
                        format!("unknown netfilter family '{family}'"),
                        "use \"ipv4\" or \"ipv6\"".to_string(),
                    )
                })?,
                hook: NfHook::from_name(hook).ok_or_else(|| {
                    (
                        format!("unknown netfilter hook '{hook}'"),
                        "use prerouting, input, forward, output or postrouting".to_string(),
                    )
                })?,
                priority: *priority,
            }
        }
    };
    exists_on_host(&point)?;
    Ok(Some(point))
}

/// A `*.multi` attachment needs a program loaded for it (its section).
fn need_multi(kind_name: &str, kind: &ProgramKind, want: AttachType) -> Result<(), AttachError> {
    if kind.program_type() == ProgramType::KPROBE && kind.expected_attach_type() == Some(want) {
        return Ok(());
    }
    Err((
        format!("attach kind `{kind_name}` needs a program loaded for it"),
        format!(
            "give the program the section SEC(\"{}\")",
            kind_name.replace('_', ".")
        ),
    ))
}

/// Checks that the files and kernel objects a point names exist here, so
/// `check` reports what apply would fail on.
fn exists_on_host(point: &AttachPoint) -> Result<(), AttachError> {
    match point {
        AttachPoint::Tracepoint { category, name } => {
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
        }
        AttachPoint::Uprobe { path, .. } | AttachPoint::UprobeMulti { path, .. }
            if !path.is_file() =>
        {
            return Err((
                format!("uprobe target {} does not exist", path.display()),
                "give the absolute path of an executable or library, or a library name such as libc.so.6".into(),
            ));
        }
        AttachPoint::Cgroup { path, .. } if !path.is_dir() => {
            return Err((format!("cgroup {} does not exist", path.display()), "give a cgroup v2 directory, e.g. /sys/fs/cgroup/unified or /sys/fs/cgroup/system.slice".into()));
        }
        AttachPoint::SkLookup { netns } | AttachPoint::FlowDissector { netns }
            if !netns.exists() =>
        {
            return Err((
                format!("network namespace file {} does not exist", netns.display()),
                "use /proc/self/ns/net or /run/netns/NAME".into(),
            ));
        }
        _ => {}
    }
    Ok(())
}

/// The manifest attachment of a point the kernel reports (for `export`): the
/// inverse of [`resolve_attach`]. `None` where the manifest cannot name it
/// (an interface or cgroup that no longer exists).
pub fn attach_of_point(point: &AttachPoint) -> Option<Attach> {
    Some(match point {
        AttachPoint::Tracepoint { category, name } => Attach::Tracepoint {
            category: category.clone(),
            name: name.clone(),
        },
        AttachPoint::RawTracepoint { name } => Attach::RawTracepoint { name: name.clone() },
        AttachPoint::Btf { hook, target } => {
            let target = target.clone();
            match hook {
                BtfHook::TpBtf => Attach::TpBtf { name: target },
                BtfHook::Fentry => Attach::Fentry { function: target },
                BtfHook::Fexit => Attach::Fexit { function: target },
                BtfHook::FmodRet => Attach::FmodRet { function: target },
                BtfHook::Lsm => Attach::Lsm { hook: target },
            }
        }
        AttachPoint::Kprobe {
            function,
            offset,
            retprobe: false,
        } => Attach::Kprobe {
            function: function.clone(),
            offset: *offset,
        },
        AttachPoint::Kprobe { function, .. } => Attach::Kretprobe {
            function: function.clone(),
        },
        AttachPoint::KprobeMulti {
            functions,
            retprobe,
            cookies,
        } => Attach::KprobeMulti {
            functions: functions.clone(),
            retprobe: *retprobe,
            cookies: cookies.clone(),
        },
        AttachPoint::UprobeMulti {
            path,
            symbols,
            retprobe,
            pid,
            cookies,
        } => Attach::UprobeMulti {
            path: path.to_str()?.to_owned(),
            symbols: symbols.clone(),
            retprobe: *retprobe,
            pid: *pid,
            cookies: cookies.clone(),
        },
        AttachPoint::Uprobe {
            path,
            symbol,
            offset,
            pid,
            retprobe,
        } => {
            let (path, symbol, offset, pid) =
                (path.to_str()?.to_owned(), symbol.clone(), *offset, *pid);
            if *retprobe {
                Attach::Uretprobe {
                    path,
                    symbol,
                    offset,
                    pid,
                }
            } else {
                Attach::Uprobe {
                    path,
                    symbol,
                    offset,
                    pid,
                }
            }
        }
        AttachPoint::Iter { target } => Attach::Iter {
            target: target.clone(),
        },
        AttachPoint::Xdp { ifindex, mode } => Attach::Xdp {
            interface: names::interface_name(*ifindex)?,
            mode: *mode,
        },
        AttachPoint::Tcx { ifindex, direction } => Attach::Tcx {
            interface: names::interface_name(*ifindex)?,
            direction: *direction,
        },
        AttachPoint::Tc {
            ifindex,
            direction,
            priority,
            handle,
        } => Attach::Tc {
            interface: names::interface_name(*ifindex)?,
            direction: *direction,
            priority: *priority,
            handle: *handle,
        },
        AttachPoint::Netkit { ifindex, side } => Attach::Netkit {
            interface: names::interface_name(*ifindex)?,
            side: Some(names::netkit_side(*side).to_owned()),
        },
        AttachPoint::Cgroup { path, attach_type } => Attach::Cgroup {
            path: path.to_str()?.to_owned(),
            attach_type: names::cgroup_attach_type(*attach_type).map(String::from),
        },
        AttachPoint::SkLookup { netns } => Attach::SkLookup {
            netns: netns.to_str()?.to_owned(),
        },
        AttachPoint::FlowDissector { netns } => Attach::FlowDissector {
            netns: netns.to_str()?.to_owned(),
        },
        AttachPoint::SockMap { map, .. } => Attach::Sockmap {
            map: export_map_name(map)?,
        },
        AttachPoint::Netfilter {
            family,
            hook,
            priority,
        } => Attach::Netfilter {
            family: family.name().into(),
            hook: hook.name().into(),
            priority: *priority,
        },
        _ => return None,
    })
}

/// The manifest name of a map a live link names by id: the pin under a
/// deployment's `maps/` directory holding that id is found by the export's
/// caller; here only a pin path gives the name.
fn export_map_name(map: &MapRef) -> Option<String> {
    match map {
        MapRef::Pin(p) => Some(p.file_name()?.to_str()?.to_owned()),
        MapRef::Id(_) => None,
    }
}

fn ifindex(name: &str) -> Result<u32, AttachError> {
    if name.contains('\0') {
        return Err((
            format!("interface name {name:?} contains a NUL byte"),
            "fix the name".to_string(),
        ));
    }
    names::interface_index(name).ok_or_else(|| {
        let have: Vec<String> = std::fs::read_dir("/sys/class/net")
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        (
            format!("network interface '{name}' does not exist"),
            format!("interfaces here: {}", have.join(", ")),
        )
    })
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
    fn lpm_keys_compare_masked() {
        let key = |prefix: u32, data: [u8; 4]| {
            let mut k = prefix.to_ne_bytes().to_vec();
            k.extend(data);
            k
        };
        assert_eq!(
            masked_lpm_key(&key(8, [10, 1, 2, 3])),
            key(8, [10, 0, 0, 0])
        );
        assert_eq!(
            masked_lpm_key(&key(12, [10, 0xff, 2, 3])),
            key(12, [10, 0xf0, 0, 0])
        );
        assert_eq!(
            masked_lpm_key(&key(32, [1, 2, 3, 4])),
            key(32, [1, 2, 3, 4])
        );
        assert_eq!(masked_lpm_key(&key(0, [1, 2, 3, 4])), key(0, [0; 4]));
    }

    #[test]
    fn global_data_pins_follow_libbpf_names() {
        let file = Path::new("/x/manifest_counter.bpf.o");
        assert_eq!(global_data_pin_name(file, ".bss"), "manifest_bss");
        assert_eq!(global_data_pin_name(file, ".rodata"), "manifest_rodata");
        assert_eq!(global_data_pin_name(file, ".kconfig"), "manifes_kconfig");
        // libbpf's own example: 8 characters of the object, 7 of the section.
        let file = Path::new("my_object_name.o");
        assert_eq!(global_data_pin_name(file, ".rodata"), "my_objec_rodata");
        // A second dot: a custom section, named alone.
        assert_eq!(
            global_data_pin_name(file, ".rodata.str1.1"),
            "_rodata_str1_1"
        );
        assert_eq!(
            global_data_pin_name(file, ".data.very_long_section"),
            "_data_very_long"
        );
        assert_eq!(global_data_pin_name(Path::new("a-b.o"), ".bss"), "a_b_bss");
    }

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
