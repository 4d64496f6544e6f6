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

use kiln_loader::links::{FdLink, Link, LinkInfo, LinkTarget, LinkType};
use kiln_loader::sys::object::OpenFlags;
use kiln_loader::{Map, Program};

use crate::plan::{
    Desired, EntryDrift, LinkIdentity, LiveLink, LiveMap, LiveProgram, MapDef, Observed,
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
    #[error("cannot list {path}: {source}")]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the entries of map '{map}': {message}")]
    Entries { map: String, message: String },
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
                .is_none_or(|live| live.def != want.def)
        {
            continue;
        }
        let failed = |message: String| ObserveError::Entries {
            map: name.clone(),
            message,
        };
        let map = Map::from_pin(&root.join(MAPS).join(name), OpenFlags::ReadOnly)
            .map_err(|e| failed(e.to_string()))?;
        // LPM trie lookups match the longest prefix, not the key: which keys
        // exist comes from walking them (also what "exact" needs anyway).
        let walk = want.entries_mode.prunes() || want.def.map_type == kiln_obj::MapType::LPM_TRIE.0;
        let present: std::collections::BTreeSet<Vec<u8>> = if walk {
            map.keys_bytes()
                .collect::<Result<_, _>>()
                .map_err(|e| failed(e.to_string()))?
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
                    .map_err(|e| failed(e.to_string()))?
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

/// Reads everything pinned under `root`. A missing root is an empty deployment.
pub fn observe(root: &Path) -> Result<Observed, ObserveError> {
    let mut o = Observed::default();
    if !root.exists() {
        return Ok(o);
    }
    // Without bpf(2) every pin would look foreign and be planned for removal.
    if kiln_loader::probe::feature("socket_filter") != Some(true) {
        return Err(ObserveError::NoBpf(root.to_path_buf()));
    }
    for entry in list(root)? {
        let name = entry
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if ![MAPS, PROGS, LINKS].contains(&name.as_str()) || !entry.is_dir() {
            o.strays.push(entry);
        }
    }
    for path in list(&root.join(MAPS))? {
        if is_staged(&path) {
            o.strays.push(path);
            continue;
        }
        match map_at(&path) {
            Some(m) => {
                o.maps.insert(file_name(&path), m);
            }
            None => o.strays.push(path),
        }
    }
    for path in list(&root.join(PROGS))? {
        if is_staged(&path) {
            o.strays.push(path);
            continue;
        }
        match program_at(&path) {
            Some(p) => {
                o.programs.insert(file_name(&path), p);
            }
            None => o.strays.push(path),
        }
    }
    for path in list(&root.join(LINKS))? {
        if is_staged(&path) {
            o.strays.push(path);
            continue;
        }
        match link_at(&path) {
            Some(l) => {
                o.links.insert(file_name(&path), l);
            }
            None => o.strays.push(path),
        }
    }
    Ok(o)
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
        identity: identity(&info),
    })
}

/// A link's identity in the words [`crate::desired::describe`] uses.
pub fn identity(info: &LinkInfo) -> LinkIdentity {
    let target = match &info.target {
        LinkTarget::Xdp { ifindex } => vec![u64::from(*ifindex)],
        LinkTarget::Device {
            ifindex,
            attach_type,
        } => vec![u64::from(*ifindex), u64::from(*attach_type)],
        LinkTarget::Cgroup {
            cgroup_id,
            attach_type,
        } => vec![*cgroup_id, u64::from(*attach_type)],
        LinkTarget::Netns {
            netns_ino,
            attach_type,
        } => vec![u64::from(*netns_ino), u64::from(*attach_type)],
        LinkTarget::Netfilter {
            pf,
            hooknum,
            priority,
            ..
        } => {
            vec![u64::from(*pf), u64::from(*hooknum), *priority as u32 as u64]
        }
        _ => Vec::new(),
    };
    LinkIdentity {
        link_type: link_type_raw(info.link_type),
        target,
    }
}

fn link_type_raw(t: LinkType) -> u32 {
    match t {
        LinkType::RawTracepoint => 1,
        LinkType::Tracing => 2,
        LinkType::Cgroup => 3,
        LinkType::Iter => 4,
        LinkType::Netns => 5,
        LinkType::Xdp => 6,
        LinkType::PerfEvent => 7,
        LinkType::KprobeMulti => 8,
        LinkType::StructOps => 9,
        LinkType::Netfilter => 10,
        LinkType::Tcx => 11,
        LinkType::UprobeMulti => 12,
        LinkType::Netkit => 13,
        LinkType::Sockmap => 14,
        LinkType::Unknown(n) => n,
    }
}

/// Whether the map at `path` still holds `fd`'s map (same id).
pub fn same_map(path: &Path, map: &Map) -> bool {
    let Some(live) = map_at(path) else {
        return false;
    };
    kiln_loader::maps::map_info(map.as_fd()).is_ok_and(|i| i.id == live.id)
}
