//! Observing a deployment in the kernel: what is pinned under its pin root,
//! described by the kernel itself (never by a state file that can drift).
//!
//! Layout of a pin root:
//! ```text
//! <pin_root>/maps/<MAP>     shared maps, stable paths (data survives upgrades)
//! <pin_root>/progs/<PROG>   the live program of each declared program
//! <pin_root>/links/<PROG>   its attachment (a bpf_link)
//! ```

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use kiln_loader::OpenFlags;
use kiln_loader::links::attach_point::{XdpMode, names};
use kiln_loader::links::tc::ClsBpfFilter;
use kiln_loader::links::{AttachPoint, FdLink, Link};
use kiln_loader::{Map, Program};

use crate::ownership::{Ledger, STATE_DIR};
use crate::plan::{
    Desired, EntryDrift, HookHolder, LiveLink, LiveMap, LiveProgram, MapDef, Observed, UnpinnedMap,
};
use crate::schema::EntriesMode;

pub const MAPS: &str = "maps";
pub const PROGS: &str = "progs";
pub const LINKS: &str = "links";

/// Errors reading the live state: the path and what the kernel said.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error(
        "cannot read the pins under {0}: bpf(2) is not permitted here (needs CAP_BPF; reading the programs' maps by id needs CAP_SYS_ADMIN)\n  help: run as root, or grant CAP_BPF and CAP_SYS_ADMIN (plus CAP_NET_ADMIN / CAP_PERFMON to apply networking / tracing attachments)"
    )]
    NoBpf(PathBuf),
    #[error("cannot list {path}")]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the entries of map '{map}': {message}")]
    Entries { map: String, message: String },
    #[error(transparent)]
    Ownership(#[from] crate::ownership::OwnershipError),
}

/// The one observation `plan`, `apply` and `status` all work from: the pins
/// under `root`, the maps whose pins were removed but which the
/// deployment's programs still use, how live entries differ from the
/// declared ones, and what a smaller map would not hold.
pub fn observe_deployment(root: &Path, desired: &Desired) -> Result<Observed, ObserveError> {
    let mut observed = observe(root)?;
    complete_observation(root, desired, &mut observed)?;
    Ok(observed)
}

/// What [`observe`] leaves out because it needs the desired state: maps
/// whose pins were removed (found through the programs), entry drift,
/// live entries over the declared size, and foreign holders of XDP hooks.
pub fn complete_observation(
    root: &Path,
    desired: &Desired,
    observed: &mut Observed,
) -> Result<(), ObserveError> {
    observed.unpinned_maps = unpinned_maps(desired, observed);
    observed.entry_drift = entry_drift(root, desired, observed)?;
    observed.entries_over = entries_over(root, desired, observed)?;
    observed.hook_holders = hook_holders(desired, observed);
    Ok(())
}

/// For each desired XDP program: a program that is not this deployment's
/// (neither pinned under its root nor run by one of its links) in the XDP
/// slots that would keep the program from attaching on its interface.
fn hook_holders(
    desired: &Desired,
    observed: &Observed,
) -> std::collections::BTreeMap<String, HookHolder> {
    let ours: std::collections::BTreeSet<u32> = observed
        .programs
        .values()
        .map(|p| p.id)
        .chain(observed.all_links().map(|(_, l)| l.prog_id))
        .collect();
    let mut out = std::collections::BTreeMap::new();
    for (name, want) in &desired.programs {
        let Some(AttachPoint::Xdp {
            ifindex,
            mode: wanted_mode,
        }) = want.attach.as_ref().map(|a| &a.point)
        else {
            continue;
        };
        let ifindex = *ifindex;
        let Ok(attached) = kiln_loader::links::xdp::query_xdp_modes(ifindex) else {
            continue;
        };
        let slots = [
            (XdpMode::Generic, attached.generic),
            (XdpMode::Native, attached.native),
            (XdpMode::Offload, attached.offload),
        ];
        // The kernel runs one interface's XDP in generic or native mode,
        // never both: either slot blocks the other. Offload is apart.
        let blocks = |mode: XdpMode| match wanted_mode {
            XdpMode::Auto => true,
            XdpMode::Offload => mode == XdpMode::Offload,
            _ => mode != XdpMode::Offload,
        };
        let held = slots.into_iter().find_map(|(mode, prog)| {
            let prog = prog?;
            (blocks(mode) && !ours.contains(&prog)).then_some((mode, prog))
        });
        if let Some((mode, prog_id)) = held {
            let prog_name = Program::from_id(prog_id)
                .ok()
                .and_then(|p| p.info().ok())
                .map(|i| i.name)
                .unwrap_or_default();
            let interface = names::interface(ifindex);
            out.insert(
                name.clone(),
                HookHolder {
                    hook: format!("XDP on {interface} ({} mode)", names::xdp_mode(mode)),
                    prog_id,
                    prog_name,
                },
            );
        }
    }
    out
}

/// The kernel-visible name of a map created under `name` (what map info reports).
fn kernel_map_name(name: &str) -> String {
    kiln_loader::util::kernel_object_name(name)
}

/// Desired maps that have no pin but are still used by a running program of
/// the deployment (pinned, or attached through a pinned link): the map of
/// that name and shape among the program's `map_ids`.
fn unpinned_maps(
    desired: &Desired,
    observed: &Observed,
) -> std::collections::BTreeMap<String, UnpinnedMap> {
    let mut out = std::collections::BTreeMap::new();
    // Every running program of the deployment, by manifest name: the pinned
    // one, and the one a pinned link runs when that differs.
    let mut running: Vec<(String, u32)> = Vec::new();
    for (name, p) in &observed.programs {
        running.push((name.clone(), p.id));
    }
    for (name, l) in observed.all_links() {
        if !running.iter().any(|(_, id)| *id == l.prog_id) {
            running.push((name.clone(), l.prog_id));
        }
    }
    for (name, want) in &desired.maps {
        if observed.maps.contains_key(name) {
            continue;
        }
        let kernel_name = kernel_map_name(name);
        'search: for (prog_name, prog_id) in &running {
            let Ok(prog) = Program::from_id(*prog_id) else {
                continue;
            };
            let Ok(info) = prog.info() else { continue };
            for map_id in &info.map_ids {
                let Ok(map) = Map::from_id(*map_id) else {
                    continue;
                };
                let Ok(mi) = map.info() else { continue };
                // The same map: its name; when the kernel keeps only part
                // of the name, its type and key and value sizes too. Any
                // other difference (max_entries, flags, a new shape) is an
                // upgrade the manifest's on_upgrade decides, as for a
                // pinned map.
                let truncated = kernel_name.len() < name.len();
                if mi.name != kernel_name
                    || (truncated
                        && (mi.map_type.0 != want.def.map_type
                            || mi.key_size != want.def.key_size
                            || mi.value_size != want.def.value_size))
                {
                    continue;
                }
                out.insert(
                    name.clone(),
                    UnpinnedMap {
                        map: LiveMap {
                            id: mi.id,
                            def: MapDef {
                                map_type: mi.map_type.0,
                                key_size: mi.key_size,
                                value_size: mi.value_size,
                                max_entries: mi.max_entries,
                                map_flags: mi.flags.bits(),
                            },
                            btf_id: mi.btf_id,
                        },
                        via_program: prog_name.clone(),
                    },
                );
                break 'search;
            }
        }
    }
    out
}

/// Opens the live map of `name`: its pin, or, when the pin was removed, the
/// map found through a running program (by id, checked to be the same map).
pub fn open_live_map(
    root: &Path,
    name: &str,
    observed: &Observed,
    flags: OpenFlags,
) -> Result<Map, String> {
    if let Some(u) = observed.unpinned_maps.get(name) {
        return unpinned_map_by_id(name, u.map.id);
    }
    Map::from_pin(&root.join(MAPS).join(name), flags).map_err(|e| kiln_loader::error_chain(&e))
}

/// The unpinned map `name` found as `id` when planning, if it is still that
/// map (ids are not reused while a map lives, but it may have gone).
pub fn unpinned_map_by_id(name: &str, id: u32) -> Result<Map, String> {
    let gone = || format!("map id {id} (the unpinned map {name}) is gone");
    let map = Map::from_id(id).map_err(|_| gone())?;
    let info = map.info().map_err(|e| kiln_loader::error_chain(&e))?;
    if info.name != kernel_map_name(name) {
        return Err(gone());
    }
    Ok(map)
}

/// For each desired map whose live `max_entries` exceeds the manifest's:
/// how many live entries a map of the new size could not hold. Array
/// slots past the new end count when they hold a non-zero value; other
/// maps count the entries beyond the new capacity.
fn entries_over(
    root: &Path,
    desired: &Desired,
    observed: &Observed,
) -> Result<std::collections::BTreeMap<String, usize>, ObserveError> {
    let mut out = std::collections::BTreeMap::new();
    for (name, want) in &desired.maps {
        let Some(live) = observed
            .maps
            .get(name)
            .or_else(|| observed.unpinned_maps.get(name).map(|u| &u.map))
        else {
            continue;
        };
        if live.def.max_entries <= want.def.max_entries {
            continue;
        }
        let failed = |message: String| ObserveError::Entries {
            map: name.clone(),
            message,
        };
        let map = open_live_map(root, name, observed, OpenFlags::ReadOnly).map_err(failed)?;
        let is_array = [
            kiln_obj::MapType::ARRAY.0,
            kiln_obj::MapType::PERCPU_ARRAY.0,
        ]
        .contains(&live.def.map_type);
        let over = if is_array {
            let mut n = 0;
            for index in want.def.max_entries..live.def.max_entries {
                let v = map
                    .lookup_bytes(&index.to_ne_bytes(), Default::default())
                    .map_err(|e| failed(kiln_loader::error_chain(&e)))?;
                if v.is_some_and(|v| v.iter().any(|b| *b != 0)) {
                    n += 1;
                }
            }
            n
        } else {
            let mut count = 0usize;
            for key in map.keys_bytes() {
                key.map_err(|e| failed(kiln_loader::error_chain(&e)))?;
                count += 1;
            }
            count.saturating_sub(want.def.max_entries as usize)
        };
        if over > 0 {
            out.insert(name.clone(), over);
        }
    }
    Ok(out)
}

/// How each live map whose entries the manifest keeps (`entries_mode`
/// enforce or exact) differs from them, read from the map. Maps about to be
/// created, migrated or recreated get their entries anyway and are skipped.
pub fn entry_drift(
    root: &Path,
    desired: &Desired,
    observed: &Observed,
) -> Result<std::collections::BTreeMap<String, EntryDrift>, ObserveError> {
    let mut out = std::collections::BTreeMap::new();
    for (name, want) in &desired.maps {
        if want.entries_mode == EntriesMode::Create
            || observed
                .maps
                .get(name)
                .or_else(|| observed.unpinned_maps.get(name).map(|u| &u.map))
                .is_none_or(|live| live.def != want.def)
        {
            continue;
        }
        let failed = |message: String| ObserveError::Entries {
            map: name.clone(),
            message,
        };
        let map = open_live_map(root, name, observed, OpenFlags::ReadOnly).map_err(failed)?;
        // LPM trie lookups match the longest prefix, not the key: which keys
        // exist comes from walking them (also what "exact" needs anyway).
        let walk = want.entries_mode.prunes() || want.def.map_type == kiln_obj::MapType::LPM_TRIE.0;
        let present: std::collections::BTreeSet<Vec<u8>> = if walk {
            map.keys_bytes()
                .collect::<Result<_, _>>()
                .map_err(|e| failed(kiln_loader::error_chain(&e)))?
        } else {
            Default::default()
        };
        let mut drift = EntryDrift::default();
        for (k, v) in &want.entries {
            let live = if walk && !present.contains(k) {
                None
            } else if want.entries_mode == EntriesMode::Keys {
                // Present; its value is the programs' business.
                continue;
            } else {
                map.lookup_bytes(k, Default::default())
                    .map_err(|e| failed(kiln_loader::error_chain(&e)))?
            };
            if live.as_deref() != Some(v.as_slice()) {
                drift.set.push((k.clone(), v.clone()));
            }
        }
        if want.entries_mode.prunes() {
            let listed: std::collections::BTreeSet<&Vec<u8>> =
                want.entries.iter().map(|(k, _)| k).collect();
            drift.delete = present
                .into_iter()
                .filter(|k| !listed.contains(k))
                .collect();
        }
        if !drift.is_empty() {
            out.insert(name.clone(), drift);
        }
    }
    Ok(out)
}

/// Reads everything pinned under `root`, sorted by ownership: the layout
/// items the deployment owns (by its record under the root, see
/// [`crate::ownership`]) are its maps, programs and links; its other pins
/// are strays; everything else is foreign. Without a record, every layout
/// item counts as the deployment's (the apply decides whether to claim it:
/// a legacy layout, `--adopt`, or a refusal) and the rest is foreign. A
/// missing root is an empty deployment.
pub fn observe(root: &Path) -> Result<Observed, ObserveError> {
    let mut o = Observed::default();
    if !root.exists() {
        return Ok(o);
    }
    // Without bpf(2) every pin would look foreign. A token in scope proves
    // bpf(2) answers, though perhaps not for socket filters.
    if !kiln_loader::token::in_scope() && kiln_loader::probe::feature("socket_filter") != Some(true)
    {
        return Err(ObserveError::NoBpf(root.to_path_buf()));
    }
    let ledger = Ledger::read(root)?;
    // Owned per the record; `None`: no record (everything is a candidate).
    let owned = |p: &Path| -> Option<bool> {
        let l = ledger.as_ref()?;
        Some(l.relative(p).is_some_and(|rel| l.owns(&rel)))
    };
    for entry in list(root)? {
        let name = file_name(&entry);
        if name == STATE_DIR || ([MAPS, PROGS, LINKS].contains(&name.as_str()) && entry.is_dir()) {
            continue;
        }
        if owned(&entry) == Some(true) && !entry.is_dir() {
            o.strays.push(entry);
        } else {
            o.foreign.push(entry);
        }
    }
    for (dir, kind) in [(MAPS, 0), (PROGS, 1), (LINKS, 2)] {
        for path in list(&root.join(dir))? {
            let mine = owned(&path);
            if mine == Some(false) {
                o.foreign.push(path);
                continue;
            }
            if is_staged(&path) {
                o.strays.push(path);
                continue;
            }
            let name = file_name(&path);
            let found = match kind {
                0 => map_at(&path).map(|m| o.maps.insert(name, m)).is_some(),
                1 => program_at(&path)
                    .map(|p| o.programs.insert(name, p))
                    .is_some(),
                _ => link_at(&path).map(|l| o.links.insert(name, l)).is_some(),
            };
            if !found {
                if mine == Some(true) && !path.is_dir() {
                    o.strays.push(path);
                } else {
                    o.foreign.push(path);
                }
            }
        }
    }
    o.netlink_links = netlink_links(root)
        .into_iter()
        .map(|(name, f)| (name, netlink_live_link(&f)))
        .collect();
    Ok(o)
}

/// A TC filter as the plan sees attachments.
pub fn netlink_live_link(f: &ClsBpfFilter) -> LiveLink {
    LiveLink {
        id: 0,
        prog_id: f.prog_id,
        link_type: None,
        point: Some(AttachPoint::of_cls_bpf(f)),
    }
}

/// The name apply gives the netlink attachment (a cls_bpf filter) of
/// `program`: where its link would be pinned, so the filters of a pin root
/// are found from the pin root alone.
pub fn netlink_label(root: &Path, program: &str) -> String {
    format!("kiln:{}", root.join(LINKS).join(program).display())
}

/// The deployment's netlink attachments (TC filters on clsact qdiscs in
/// the caller's network namespace), by program.
pub fn netlink_links(root: &Path) -> Vec<(String, ClsBpfFilter)> {
    let prefix = netlink_label(root, "");
    kiln_loader::links::tc::list_all_cls_bpf()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| {
            let program = f.name.strip_prefix(&prefix)?.to_owned();
            (!program.is_empty() && !program.contains('/')).then_some((program, f))
        })
        .collect()
}

/// A pin left under its staging name by a killed apply: never a live item,
/// whatever the kernel object behind it.
fn is_staged(p: &Path) -> bool {
    file_name(p).ends_with(crate::apply::STAGING_SUFFIX)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn list(dir: &Path) -> Result<Vec<PathBuf>, ObserveError> {
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            v.sort();
            Ok(v)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(ObserveError::List {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// The pinned map at `path`, as the kernel describes it.
pub fn map_at(path: &Path) -> Option<LiveMap> {
    let map = Map::from_pin(path, OpenFlags::ReadOnly).ok()?;
    let info = map.info().ok()?;
    Some(LiveMap {
        id: info.id,
        def: MapDef {
            map_type: info.map_type.0,
            key_size: info.key_size,
            value_size: info.value_size,
            max_entries: info.max_entries,
            map_flags: info.flags.bits(),
        },
        btf_id: info.btf_id,
    })
}

/// The pinned program at `path`.
pub fn program_at(path: &Path) -> Option<LiveProgram> {
    let prog = Program::from_pin(path, None).ok()?;
    let info = prog.info().ok()?;
    Some(LiveProgram {
        id: info.id,
        prog_type: info.program_type.0,
        tag: info.tag,
        rodata: rodata_of(&info.map_ids),
        map_ids: info.map_ids,
        run_cnt: info.run_cnt,
        run_time_ns: info.run_time_ns,
    })
}

/// Values of the read-only global data maps among `map_ids` (single-entry
/// arrays named after a `.rodata*` section), sorted.
fn rodata_of(map_ids: &[u32]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for id in map_ids {
        let Ok(map) = Map::from_id(*id) else { continue };
        let Ok(info) = map.info() else { continue };
        if info.map_type != kiln_obj::MapType::ARRAY
            || info.max_entries != 1
            || !info.name.contains("rodata")
        {
            continue;
        }
        if let Ok(Some(v)) =
            map.lookup_bytes(&0u32.to_ne_bytes(), kiln_loader::maps::UpdateFlags::ANY)
        {
            out.push(v);
        }
    }
    out.sort();
    out
}

/// The pinned link at `path`.
pub fn link_at(path: &Path) -> Option<LiveLink> {
    let link = FdLink::from_pin(path).ok()?;
    let info = link.info().ok()?;
    Some(LiveLink {
        id: info.id,
        prog_id: info.prog_id,
        link_type: Some(info.link_type),
        point: AttachPoint::observed(&info),
    })
}

/// Whether the map at `path` still holds `fd`'s map (same id).
pub fn same_map(path: &Path, map: &Map) -> bool {
    let Some(live) = map_at(path) else {
        return false;
    };
    kiln_loader::maps::map_info(map.as_fd()).is_ok_and(|i| i.id == live.id)
}
