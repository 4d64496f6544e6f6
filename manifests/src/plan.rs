//! The plan: a plain list of actions computed from the desired state (the
//! manifest and its objects) and the observed state (what is pinned under the
//! pin root, as the kernel reports it). `kiln plan` prints it; `kiln apply`
//! executes the very same value, so the two can never disagree.
//!
//! Planning is pure: [`compute`] takes both states as data. That keeps every
//! decision unit-testable without a kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use kiln_loader::links::attach_point::names;
use kiln_loader::links::{AttachPoint, LinkType};

use crate::schema::{EntriesMode, OnShrink, OnUpgrade};

/// The parts of a map definition that decide whether live data can be kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MapDef {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
}

impl fmt::Display for MapDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} key {}B value {}B max_entries {}{}",
            kiln_obj::MapType(self.map_type).name(),
            self.key_size,
            self.value_size,
            self.max_entries,
            if self.map_flags != 0 {
                format!(" flags {:#x}", self.map_flags)
            } else {
                String::new()
            }
        )
    }
}

/// A map the deployment wants (one per non-global-data map its programs use).
#[derive(Clone, Debug)]
pub struct DesiredMap {
    pub name: String,
    pub object: String,
    pub def: MapDef,
    pub on_upgrade: OnUpgrade,
    /// Whether a migration to a smaller map may drop live entries.
    pub on_shrink: OnShrink,
    /// Declared in the manifest (undeclared maps of used objects are kept too).
    pub declared: bool,
    /// Key and value types are known from the object's BTF (migration can convert).
    pub btf: bool,
    /// Declared entries (key bytes, value bytes): written into a new map,
    /// and kept on a live one as `entries_mode` says.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    pub entries_mode: EntriesMode,
    /// Read-only global data (`.rodata*`, `.kconfig`): frozen once written,
    /// so entries that differ mean a new map, not a write.
    pub frozen: bool,
}

/// How a live map's contents differ from its declared entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryDrift {
    /// Declared entries whose key is missing or holds another value.
    pub set: Vec<(Vec<u8>, Vec<u8>)>,
    /// Keys the map holds but the manifest does not list (`exact` only).
    pub delete: Vec<Vec<u8>>,
}

impl EntryDrift {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.delete.is_empty()
    }
}

/// Where and how a program attaches, resolved against this host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DesiredAttach {
    /// For messages: `xdp lo (generic)`, `tracepoint sched/sched_process_exec`.
    pub description: String,
    /// The attach point, in the library's vocabulary.
    #[serde(skip)]
    pub point: AttachPoint,
    /// Whether the program can be swapped in place (link update, netlink
    /// replace); false for perf-event links.
    pub updatable: bool,
}

impl DesiredAttach {
    /// The plan's view of an attach point.
    pub fn of(point: AttachPoint) -> DesiredAttach {
        DesiredAttach {
            description: point.to_string(),
            updatable: point.updatable(),
            point,
        }
    }

    /// Whether `live` is this attachment: where the kernel reports the
    /// target, the same point (a desired XDP mode "auto" matches the mode
    /// the kernel chose); elsewhere (perf-event, raw tracepoint, tracing
    /// links) a link of the same type.
    pub fn matches(&self, live: &LiveLink) -> bool {
        match &live.point {
            Some(p) => self.point.covers(p),
            None => !self.point.reported() && self.point.link_type() == live.link_type,
        }
    }
}

/// Whether the only difference is the XDP mode on the same interface.
fn xdp_mode_only(want: &AttachPoint, live: &LiveLink) -> bool {
    matches!(
        (want, &live.point),
        (AttachPoint::Xdp { ifindex, .. }, Some(AttachPoint::Xdp { ifindex: i, .. })) if ifindex == i
    )
}

/// Why a live link is not the desired attachment, in the user's words.
pub fn target_change(want: &AttachPoint, live: &LiveLink) -> String {
    match (want, &live.point) {
        (
            AttachPoint::Xdp { ifindex, mode },
            Some(AttachPoint::Xdp {
                ifindex: i,
                mode: m,
            }),
        ) if ifindex == i => format!(
            "XDP mode changed: the kernel runs it in {} mode, the manifest wants {}",
            names::xdp_mode(*m),
            names::xdp_mode(*mode)
        ),
        (_, Some(p)) => format!("attach target changed: the kernel has it on {p}"),
        (_, None) => "attach target changed".into(),
    }
}

/// A program the deployment wants.
#[derive(Clone, Debug)]
pub struct DesiredProgram {
    pub name: String,
    pub object: String,
    pub function: String,
    pub prog_type: u32,
    /// Tags the kernel may report for this program's instructions (SHA-1
    /// based before 6.18-ish kernels, SHA-256 based after): any one matches.
    pub tags: Vec<[u8; 8]>,
    /// Contents of the read-only data maps it binds (`.rodata*`), sorted.
    pub rodata: Vec<Vec<u8>>,
    /// Names of the shared maps it uses (keys of [`Desired::maps`]).
    pub maps: Vec<String>,
    /// `None`: load and pin only.
    pub attach: Option<DesiredAttach>,
}

/// Everything the manifest asks for, with objects already parsed.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub maps: BTreeMap<String, DesiredMap>,
    pub programs: BTreeMap<String, DesiredProgram>,
    /// Programs declared with `enabled = false`: not wanted in the kernel,
    /// but still the manifest's (not "removed", not "extra").
    pub disabled: BTreeSet<String>,
}

/// A pinned map as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiveMap {
    pub id: u32,
    pub def: MapDef,
    /// The map's BTF object id (0: created without BTF).
    pub btf_id: u32,
}

/// A map whose pin was removed while a program of the deployment still uses it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnpinnedMap {
    pub map: LiveMap,
    /// The program (by manifest name) through which it was found.
    pub via_program: String,
}

/// A program of someone else on the hook a desired program attaches to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HookHolder {
    /// For messages: `xdp on lo (generic mode)`.
    pub hook: String,
    pub prog_id: u32,
    pub prog_name: String,
}

/// A pinned program as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiveProgram {
    pub id: u32,
    pub prog_type: u32,
    #[serde(serialize_with = "ser_tag")]
    pub tag: [u8; 8],
    pub map_ids: Vec<u32>,
    /// Contents of its read-only global data maps, sorted.
    #[serde(skip)]
    pub rodata: Vec<Vec<u8>>,
    pub run_cnt: u64,
    pub run_time_ns: u64,
}

/// A pinned link as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiveLink {
    pub id: u32,
    pub prog_id: u32,
    /// The kind of `bpf_link`; `None` for an attachment the kernel keeps
    /// without one (a TC filter on a clsact qdisc, found through netlink).
    #[serde(serialize_with = "ser_link_type")]
    pub link_type: Option<LinkType>,
    /// Where the kernel says it is attached, when its link info names it.
    #[serde(serialize_with = "ser_display_opt")]
    pub point: Option<AttachPoint>,
}

/// The mechanism's name of a link type (`xdp`, `tcx`, `perf_event`), or
/// `null` for a netlink attachment.
fn ser_link_type<S: serde::Serializer>(v: &Option<LinkType>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(t) => s.serialize_some(t.mechanism().name()),
        None => s.serialize_none(),
    }
}

fn ser_display_opt<S: serde::Serializer, T: fmt::Display>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(&v.to_string()),
        None => s.serialize_none(),
    }
}

/// What is pinned under the pin root now.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Observed {
    pub maps: BTreeMap<String, LiveMap>,
    pub programs: BTreeMap<String, LiveProgram>,
    pub links: BTreeMap<String, LiveLink>,
    /// Attachments the kernel keeps without a `bpf_link` (TC filters on a
    /// clsact qdisc), by program: found through netlink by the name apply
    /// gave them, since nothing of them can be pinned.
    pub netlink_links: BTreeMap<String, LiveLink>,
    /// Pins this deployment owns outside its layout (such as a staged pin
    /// left by a killed apply): removed by the next apply.
    pub strays: Vec<PathBuf>,
    /// Desired maps whose pin is gone but which the deployment's running
    /// programs still use: found through the programs' map ids, so their
    /// data can be re-pinned instead of replaced by an empty map.
    pub unpinned_maps: BTreeMap<String, UnpinnedMap>,
    /// Live entry counts that matter to a planned shrink: for each desired
    /// map whose live `max_entries` is larger than the manifest's, how many
    /// live entries would not fit (array slots past the new end that hold
    /// data, or hash entries beyond the new capacity).
    pub entries_over: BTreeMap<String, usize>,
    /// Desired XDP programs whose hook (interface and mode) already runs a
    /// program that is not this deployment's: attaching would fail busy.
    pub hook_holders: BTreeMap<String, HookHolder>,
    /// Everything under the pin root this deployment does not own (another
    /// tool's pins, another deployment's): shown, never touched.
    pub foreign: Vec<PathBuf>,
    /// Live maps whose contents differ from the entries the manifest keeps
    /// on them (`entries_mode` enforce or exact), read from the map itself.
    #[serde(skip)]
    pub entry_drift: BTreeMap<String, EntryDrift>,
}

impl Observed {
    /// The attachment of `program`: its pinned link, else its netlink filter.
    pub fn link(&self, program: &str) -> Option<&LiveLink> {
        self.links
            .get(program)
            .or_else(|| self.netlink_links.get(program))
    }

    /// Every attachment, pinned links first, by program.
    pub fn all_links(&self) -> impl Iterator<Item = (&String, &LiveLink)> {
        self.links.iter().chain(&self.netlink_links)
    }
}

pub fn tag_hex(tag: &[u8; 8]) -> String {
    tag.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn ser_tag<S: serde::Serializer>(tag: &[u8; 8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&tag_hex(tag))
}

/// How a changed program takes over from the old one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplaceHow {
    /// `BPF_LINK_UPDATE`: atomic, no gap, no overlap.
    LinkUpdate,
    /// Attach the new link, then detach the old: both run for an instant
    /// (perf-event links cannot be updated).
    AttachThenDetach,
}

/// One step. The order in [`Plan::actions`] is the order of execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    CreateMap {
        map: String,
        def: MapDef,
        entries: usize,
    },
    /// Pin again a live map whose pin was removed, found through a running
    /// program of the deployment (its data is kept).
    RepinMap {
        map: String,
        id: u32,
        via_program: String,
    },
    /// Create the new map and copy the entries that fit, then replace the pin.
    MigrateMap {
        map: String,
        from: MapDef,
        to: MapDef,
        /// Live entries that do not fit the smaller map and are dropped
        /// (only with `on_shrink = "drop"`).
        #[serde(skip_serializing_if = "is_zero")]
        dropped: usize,
    },
    /// Create the new map empty (old data dropped), then replace the pin.
    RecreateMap {
        map: String,
        from: MapDef,
        to: MapDef,
    },
    /// Write the declared entries that differ into the live map (and, for
    /// `entries_mode = "exact"`, delete the keys it does not list).
    SyncEntries {
        map: String,
        set: usize,
        delete: usize,
        /// The writes and deletes themselves, as observed when planning.
        #[serde(skip)]
        drift: EntryDrift,
    },
    LoadProgram {
        program: String,
        reason: String,
    },
    Attach {
        program: String,
        target: String,
    },
    /// Switch an existing attachment to the newly loaded program.
    Replace {
        program: String,
        target: String,
        how: ReplaceHow,
    },
    Detach {
        link: String,
        reason: String,
    },
    /// Detach the live link, then attach again on the same hook in another
    /// XDP mode: the kernel cannot run one interface's XDP in generic and
    /// native mode at once, so for an instant neither runs.
    Reattach {
        program: String,
        target: String,
        reason: String,
    },
    Unpin {
        kind: PinKind,
        name: String,
        reason: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PinKind {
    Map,
    Program,
    Link,
    Other,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::CreateMap { map, def, entries } => {
                write!(f, "+ create map {map} ({def})")?;
                if *entries > 0 {
                    write!(f, ", {entries} initial entries")?;
                }
                Ok(())
            }
            Action::RepinMap {
                map,
                id,
                via_program,
            } => write!(
                f,
                "~ re-pin map {map} found through program {via_program} (id {id}; its pin was removed, its data is kept)"
            ),
            Action::MigrateMap {
                map,
                from,
                to,
                dropped,
            } => {
                write!(f, "~ migrate map {map}: {from} -> {to} (")?;
                if *dropped > 0 {
                    write!(
                        f,
                        "{dropped} live entries do not fit and are dropped, on_shrink = \"drop\")"
                    )
                } else {
                    write!(f, "entries that fit are copied)")
                }
            }
            Action::RecreateMap { map, from, to } => {
                write!(
                    f,
                    "! recreate map {map}: {from} -> {to} (its data is dropped)"
                )
            }
            Action::SyncEntries {
                map, set, delete, ..
            } => {
                write!(f, "~ sync entries of map {map}: {set} to set")?;
                if *delete > 0 {
                    write!(f, ", {delete} to delete")?;
                }
                Ok(())
            }
            Action::LoadProgram { program, reason } => {
                write!(f, "+ load program {program} ({reason})")
            }
            Action::Attach { program, target } => write!(f, "+ attach {program} to {target}"),
            Action::Replace {
                program,
                target,
                how,
            } => write!(
                f,
                "~ replace {program} on {target} ({})",
                match how {
                    ReplaceHow::LinkUpdate => "atomic link update",
                    ReplaceHow::AttachThenDetach => "attach new, then detach old",
                }
            ),
            Action::Detach { link, reason } => write!(f, "- detach {link} ({reason})"),
            Action::Reattach {
                program,
                target,
                reason,
            } => write!(
                f,
                "~ re-attach {program} to {target} ({reason}; detached first, so for an instant no XDP program runs there)"
            ),
            Action::Unpin { kind, name, reason } => {
                let kind = match kind {
                    PinKind::Map => "map",
                    PinKind::Program => "program",
                    PinKind::Link => "link",
                    PinKind::Other => "pin",
                };
                write!(f, "- unpin {kind} {name} ({reason})")
            }
        }
    }
}

/// The computed plan.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub deployment: String,
    pub pin_root: PathBuf,
    pub actions: Vec<Action>,
    /// Declared items that are already as desired.
    pub unchanged: Vec<String>,
    /// Pins under the pin root that the deployment does not own: left alone.
    pub foreign: Vec<PathBuf>,
}

impl Plan {
    pub fn is_noop(&self) -> bool {
        self.actions.is_empty()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "deployment {} at {}",
            self.deployment,
            self.pin_root.display()
        )?;
        for p in &self.foreign {
            writeln!(
                f,
                "  = foreign {} (not this deployment's; left alone)",
                p.display()
            )?;
        }
        if self.actions.is_empty() {
            return write!(f, "no changes");
        }
        for a in &self.actions {
            writeln!(f, "  {a}")?;
        }
        write!(f, "{} action(s)", self.actions.len())
    }
}

/// A plan that cannot be made, and how to get past it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "map '{map}' changed ({from} -> {to}) and on_upgrade = \"{policy}\" keeps live data only when the definition is unchanged\n  help: set on_upgrade = \"migrate\" (copy the entries that fit) or \"recreate\" (drop the data) in [maps.{map}]"
    )]
    IncompatibleMap {
        map: String,
        from: MapDef,
        to: MapDef,
        policy: &'static str,
    },
    #[error(
        "map '{map}' cannot be migrated ({from} -> {to}): its key or value size changed and the live map or the object has no BTF to convert entries by field name\n  help: build the object with BTF (-g), or set on_upgrade = \"recreate\" in [maps.{map}] to start from an empty map"
    )]
    CannotMigrate {
        map: String,
        from: MapDef,
        to: MapDef,
    },
    #[error(
        "map '{map}' would shrink from {from} to {to} entries while it holds data that does not fit: {over} live entries would be dropped\n  help: raise max_entries in [maps.{map}], or set on_shrink = \"drop\" there to migrate anyway and drop them"
    )]
    ShrinkDropsData {
        map: String,
        from: u32,
        to: u32,
        over: usize,
    },
    #[error(
        "program '{program}' cannot attach: {} already runs program id {} '{}', which is not this deployment's\n  help: detach that program first (`bpftool net detach` / its owner's tool), or attach this one in another mode or on another interface",
        .holder.hook, .holder.prog_id, .holder.prog_name
    )]
    HookHeld { program: String, holder: HookHolder },
}

/// Computes the actions that take `observed` to `desired`.
pub fn compute(
    deployment: &str,
    pin_root: PathBuf,
    desired: &Desired,
    observed: &Observed,
) -> Result<Plan, PlanError> {
    let mut map_actions = Vec::new();
    let mut prog_actions = Vec::new();
    let mut link_actions = Vec::new();
    let mut cleanup = Vec::new();
    let mut unchanged = Vec::new();
    // Maps whose kernel object will be new: programs using them must be reloaded.
    let mut new_maps = BTreeSet::new();

    for (name, want) in &desired.maps {
        let unpinned = observed.unpinned_maps.get(name);
        // A map whose pin is gone but whose programs still run is the live
        // map: its data is kept, never replaced by an empty one.
        let live = observed.maps.get(name).or_else(|| unpinned.map(|u| &u.map));
        match live {
            None => {
                map_actions.push(Action::CreateMap {
                    map: name.clone(),
                    def: want.def,
                    entries: want.entries.len(),
                });
                new_maps.insert(name.clone());
            }
            Some(live) if live.def == want.def => {
                if let Some(u) = unpinned {
                    map_actions.push(Action::RepinMap {
                        map: name.clone(),
                        id: u.map.id,
                        via_program: u.via_program.clone(),
                    });
                }
                match observed.entry_drift.get(name) {
                    // Frozen read-only data cannot be written: a new map.
                    Some(drift) if !drift.is_empty() && want.frozen => {
                        map_actions.push(Action::RecreateMap {
                            map: name.clone(),
                            from: live.def,
                            to: want.def,
                        });
                        new_maps.insert(name.clone());
                    }
                    Some(drift) if !drift.is_empty() => map_actions.push(Action::SyncEntries {
                        map: name.clone(),
                        set: drift.set.len(),
                        delete: drift.delete.len(),
                        drift: drift.clone(),
                    }),
                    _ if unpinned.is_some() => {}
                    _ => unchanged.push(format!("map {name}")),
                }
            }
            Some(live) => {
                let (from, to) = (live.def, want.def);
                match want.on_upgrade {
                    OnUpgrade::Keep | OnUpgrade::Refuse => {
                        return Err(PlanError::IncompatibleMap {
                            map: name.clone(),
                            from,
                            to,
                            policy: if want.on_upgrade == OnUpgrade::Keep {
                                "keep"
                            } else {
                                "refuse"
                            },
                        });
                    }
                    OnUpgrade::Recreate => map_actions.push(Action::RecreateMap {
                        map: name.clone(),
                        from,
                        to,
                    }),
                    OnUpgrade::Migrate => {
                        let sizes_differ =
                            from.key_size != to.key_size || from.value_size != to.value_size;
                        if sizes_differ && !(want.btf && live.btf_id != 0) {
                            return Err(PlanError::CannotMigrate {
                                map: name.clone(),
                                from,
                                to,
                            });
                        }
                        let over = observed.entries_over.get(name).copied().unwrap_or(0);
                        if over > 0 && want.on_shrink != OnShrink::Drop {
                            return Err(PlanError::ShrinkDropsData {
                                map: name.clone(),
                                from: from.max_entries,
                                to: to.max_entries,
                                over,
                            });
                        }
                        // The migration reads the old map from its pin.
                        if let Some(u) = unpinned {
                            map_actions.push(Action::RepinMap {
                                map: name.clone(),
                                id: u.map.id,
                                via_program: u.via_program.clone(),
                            });
                        }
                        map_actions.push(Action::MigrateMap {
                            map: name.clone(),
                            from,
                            to,
                            dropped: over,
                        });
                    }
                }
                new_maps.insert(name.clone());
            }
        }
    }

    for (name, want) in &desired.programs {
        let live = observed.programs.get(name);
        let reason = match live {
            None => Some("new".to_string()),
            Some(live) if live.prog_type != want.prog_type => Some(format!(
                "program type changed from {} to {}",
                live.prog_type, want.prog_type
            )),
            Some(live) if !want.tags.contains(&live.tag) => Some(format!(
                "code changed: live tag {}, new tag {}",
                tag_hex(&live.tag),
                want.tags.first().map(tag_hex).unwrap_or_default()
            )),
            Some(live) if live.rodata != want.rodata => Some("global data changed".to_string()),
            Some(live) => {
                let renewed: Vec<&str> = want
                    .maps
                    .iter()
                    .filter(|m| new_maps.contains(*m))
                    .map(String::as_str)
                    .collect();
                // A live program bound to a map that is no longer the pinned
                // one (replaced behind our back) must be reloaded too.
                let rebound = stale_maps(want, live, observed);
                if !renewed.is_empty() {
                    Some(format!("uses new map(s) {}", renewed.join(", ")))
                } else if !rebound.is_empty() {
                    Some(format!(
                        "bound to map(s) no longer pinned: {}",
                        rebound.join(", ")
                    ))
                } else {
                    None
                }
            }
        };
        let reload = reason.is_some();
        if let Some(reason) = reason {
            prog_actions.push(Action::LoadProgram {
                program: name.clone(),
                reason,
            });
        }
        let link = observed.link(name);
        match (&want.attach, link) {
            (None, None) => {}
            (None, Some(_)) => link_actions.push(Action::Detach {
                link: name.clone(),
                reason: "the manifest no longer attaches it".into(),
            }),
            (Some(att), None) => {
                refuse_held_hook(name, observed)?;
                link_actions.push(Action::Attach {
                    program: name.clone(),
                    target: att.description.clone(),
                });
            }
            (Some(att), Some(live_link)) => {
                let changed = !att.matches(live_link);
                let bound_to_pinned = live.is_some_and(|p| p.id == live_link.prog_id);
                if changed && xdp_mode_only(&att.point, live_link) {
                    refuse_held_hook(name, observed)?;
                    link_actions.push(Action::Reattach {
                        program: name.clone(),
                        target: att.description.clone(),
                        reason: target_change(&att.point, live_link),
                    });
                } else if changed {
                    refuse_held_hook(name, observed)?;
                    link_actions.push(Action::Detach {
                        link: name.clone(),
                        reason: target_change(&att.point, live_link),
                    });
                    link_actions.push(Action::Attach {
                        program: name.clone(),
                        target: att.description.clone(),
                    });
                } else if reload || !bound_to_pinned {
                    link_actions.push(Action::Replace {
                        program: name.clone(),
                        target: att.description.clone(),
                        how: if att.updatable {
                            ReplaceHow::LinkUpdate
                        } else {
                            ReplaceHow::AttachThenDetach
                        },
                    });
                }
            }
        }
        if !reload && link_actions.iter().all(|a| !action_is_about(a, name)) {
            unchanged.push(format!("program {name}"));
        }
    }

    // What the deployment owns but no longer wants.
    let why_unwanted = |name: &str| {
        if desired.disabled.contains(name) {
            "disabled: enabled = false"
        } else {
            "removed from the manifest"
        }
    };
    for (name, _) in observed.all_links() {
        if !desired.programs.contains_key(name) {
            cleanup.push(Action::Detach {
                link: name.clone(),
                reason: format!("program {}", why_unwanted(name)),
            });
        }
    }
    for name in observed.programs.keys() {
        if !desired.programs.contains_key(name) {
            cleanup.push(Action::Unpin {
                kind: PinKind::Program,
                name: name.clone(),
                reason: why_unwanted(name).into(),
            });
        }
    }
    for name in observed.maps.keys() {
        if !desired.maps.contains_key(name) {
            cleanup.push(Action::Unpin {
                kind: PinKind::Map,
                name: name.clone(),
                reason: "no declared program uses it any more".into(),
            });
        }
    }
    for path in &observed.strays {
        cleanup.push(Action::Unpin {
            kind: PinKind::Other,
            name: path.display().to_string(),
            reason: "this deployment's, outside its layout (left by an interrupted apply)".into(),
        });
    }

    let mut actions = map_actions;
    actions.extend(prog_actions);
    actions.extend(link_actions);
    actions.extend(cleanup);
    Ok(Plan {
        deployment: deployment.to_string(),
        pin_root,
        actions,
        unchanged,
        foreign: observed.foreign.clone(),
    })
}

/// The maps of `want` that the live program is not bound to: their pin now
/// holds another map (replaced behind Kiln's back), so the program writes
/// where nobody reads.
pub fn stale_maps<'a>(
    want: &'a DesiredProgram,
    live: &LiveProgram,
    observed: &Observed,
) -> Vec<&'a str> {
    want.maps
        .iter()
        .filter(|m| {
            observed
                .maps
                .get(*m)
                .or_else(|| observed.unpinned_maps.get(*m).map(|u| &u.map))
                .is_some_and(|lm| !live.map_ids.contains(&lm.id))
        })
        .map(String::as_str)
        .collect()
}

/// Refuses a new attachment of `program` to a hook someone else holds.
fn refuse_held_hook(program: &str, observed: &Observed) -> Result<(), PlanError> {
    match observed.hook_holders.get(program) {
        Some(holder) => Err(PlanError::HookHeld {
            program: program.to_string(),
            holder: holder.clone(),
        }),
        None => Ok(()),
    }
}

fn action_is_about(a: &Action, program: &str) -> bool {
    match a {
        Action::Attach { program: p, .. }
        | Action::Replace { program: p, .. }
        | Action::Reattach { program: p, .. } => p == program,
        Action::Detach { link, .. } => link == program,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_loader::links::attach_point::XdpMode;

    fn xdp(mode: XdpMode) -> AttachPoint {
        AttachPoint::Xdp { ifindex: 1, mode }
    }

    const DEF: MapDef = MapDef {
        map_type: 1,
        key_size: 4,
        value_size: 8,
        max_entries: 16,
        map_flags: 0,
    };

    fn desired() -> Desired {
        let mut d = Desired::default();
        d.maps.insert(
            "COUNTERS".into(),
            DesiredMap {
                name: "COUNTERS".into(),
                object: "counter".into(),
                def: DEF,
                on_upgrade: OnUpgrade::Keep,
                on_shrink: OnShrink::Refuse,
                declared: true,
                btf: false,
                entries: vec![],
                entries_mode: EntriesMode::Create,
                frozen: false,
            },
        );
        d.programs.insert(
            "count_packets".into(),
            DesiredProgram {
                name: "count_packets".into(),
                object: "counter".into(),
                function: "count_packets".into(),
                prog_type: 6,
                tags: vec![[1; 8]],
                rodata: vec![],
                maps: vec!["COUNTERS".into()],
                attach: Some(DesiredAttach::of(xdp(XdpMode::Auto))),
            },
        );
        d
    }

    fn live_matching() -> Observed {
        let mut o = Observed::default();
        o.maps.insert(
            "COUNTERS".into(),
            LiveMap {
                id: 10,
                def: DEF,
                btf_id: 0,
            },
        );
        o.programs.insert(
            "count_packets".into(),
            LiveProgram {
                id: 20,
                prog_type: 6,
                tag: [1; 8],
                map_ids: vec![10],
                rodata: vec![],
                run_cnt: 0,
                run_time_ns: 0,
            },
        );
        o.links.insert(
            "count_packets".into(),
            LiveLink {
                id: 30,
                prog_id: 20,
                link_type: Some(LinkType::Xdp),
                point: Some(xdp(XdpMode::Generic)),
            },
        );
        o
    }

    fn plan(d: &Desired, o: &Observed) -> Result<Plan, PlanError> {
        compute("t", "/sys/fs/bpf/t".into(), d, o)
    }

    #[test]
    fn from_nothing_creates_loads_attaches_in_order() {
        let p = plan(&desired(), &Observed::default()).unwrap();
        let kinds: Vec<_> = p.actions.iter().map(|a| a.to_string()).collect();
        assert!(kinds[0].starts_with("+ create map COUNTERS"), "{kinds:?}");
        assert!(
            kinds[1].starts_with("+ load program count_packets (new)"),
            "{kinds:?}"
        );
        assert!(
            kinds[2].starts_with("+ attach count_packets to xdp lo"),
            "{kinds:?}"
        );
        assert_eq!(kinds.len(), 3);
    }

    #[test]
    fn same_state_is_a_noop() {
        let p = plan(&desired(), &live_matching()).unwrap();
        assert!(p.is_noop(), "{p}");
        assert_eq!(p.to_string().lines().last(), Some("no changes"));
    }

    #[test]
    fn changed_code_is_replaced_by_link_update_and_keeps_map() {
        let mut d = desired();
        d.programs.get_mut("count_packets").unwrap().tags = vec![[2; 8]];
        let p = plan(&d, &live_matching()).unwrap();
        assert!(matches!(&p.actions[0], Action::LoadProgram { .. }));
        assert!(matches!(
            &p.actions[1],
            Action::Replace {
                how: ReplaceHow::LinkUpdate,
                ..
            }
        ));
        assert_eq!(p.actions.len(), 2);
    }

    #[test]
    fn incompatible_map_is_refused_by_default_then_migrated() {
        let mut d = desired();
        d.maps.get_mut("COUNTERS").unwrap().def.max_entries = 32;
        let err = plan(&d, &live_matching()).unwrap_err();
        assert!(
            err.to_string().contains("on_upgrade = \"migrate\""),
            "{err}"
        );
        d.maps.get_mut("COUNTERS").unwrap().on_upgrade = OnUpgrade::Migrate;
        let p = plan(&d, &live_matching()).unwrap();
        assert!(matches!(&p.actions[0], Action::MigrateMap { .. }));
        // The program must be reloaded against the new map.
        assert!(
            matches!(&p.actions[1], Action::LoadProgram { reason, .. } if reason.contains("COUNTERS"))
        );
        assert!(matches!(&p.actions[2], Action::Replace { .. }));
    }

    #[test]
    fn an_unpinned_map_still_used_is_repinned_not_recreated() {
        let mut o = live_matching();
        let map = o.maps.remove("COUNTERS").unwrap();
        o.unpinned_maps.insert(
            "COUNTERS".into(),
            UnpinnedMap {
                map,
                via_program: "count_packets".into(),
            },
        );
        let p = plan(&desired(), &o).unwrap();
        assert_eq!(
            p.actions,
            vec![Action::RepinMap {
                map: "COUNTERS".into(),
                id: 10,
                via_program: "count_packets".into()
            }],
            "{p}"
        );
    }

    #[test]
    fn shrinking_below_the_live_entries_needs_on_shrink_drop() {
        let mut d = desired();
        let want = d.maps.get_mut("COUNTERS").unwrap();
        want.def.max_entries = 4;
        want.on_upgrade = OnUpgrade::Migrate;
        let mut o = live_matching();
        o.entries_over.insert("COUNTERS".into(), 3);
        let err = plan(&d, &o).unwrap_err();
        assert!(
            matches!(err, PlanError::ShrinkDropsData { over: 3, .. }),
            "{err}"
        );
        d.maps.get_mut("COUNTERS").unwrap().on_shrink = OnShrink::Drop;
        let p = plan(&d, &o).unwrap();
        assert!(
            matches!(&p.actions[0], Action::MigrateMap { dropped: 3, .. }),
            "{p}"
        );
        assert!(
            p.to_string()
                .contains("3 live entries do not fit and are dropped")
        );
    }

    #[test]
    fn other_read_only_data_is_a_new_map_not_a_write() {
        let mut d = desired();
        let rodata = d.maps.get_mut("COUNTERS").unwrap();
        rodata.frozen = true;
        rodata.entries = vec![(vec![0; 4], vec![5; 8])];
        rodata.entries_mode = EntriesMode::Enforce;
        let mut o = live_matching();
        o.entry_drift.insert(
            "COUNTERS".into(),
            EntryDrift {
                set: vec![(vec![0; 4], vec![5; 8])],
                delete: vec![],
            },
        );
        let p = plan(&d, &o).unwrap();
        assert!(
            matches!(&p.actions[0], Action::RecreateMap { map, .. } if map == "COUNTERS"),
            "{p}"
        );
        assert!(
            matches!(&p.actions[1], Action::LoadProgram { reason, .. } if reason.contains("COUNTERS")),
            "{p}"
        );
    }

    #[test]
    fn xdp_mode_change_is_a_reattach_and_a_held_hook_refuses() {
        let mut d = desired();
        let att = d
            .programs
            .get_mut("count_packets")
            .unwrap()
            .attach
            .as_mut()
            .unwrap();
        *att = DesiredAttach::of(xdp(XdpMode::Native));
        let mut o = live_matching();
        let p = plan(&d, &o).unwrap();
        assert!(
            matches!(&p.actions[..], [Action::Reattach { reason, .. }] if reason.contains("generic mode, the manifest wants native")),
            "{p}"
        );
        o.hook_holders.insert(
            "count_packets".into(),
            HookHolder {
                hook: "XDP on lo (native mode)".into(),
                prog_id: 99,
                prog_name: "other".into(),
            },
        );
        let err = plan(&d, &o).unwrap_err();
        assert!(err.to_string().contains("program id 99 'other'"), "{err}");
        // "auto" matches whichever mode the kernel chose.
        d.programs.get_mut("count_packets").unwrap().attach =
            Some(DesiredAttach::of(xdp(XdpMode::Auto)));
        assert!(plan(&d, &o).unwrap().is_noop());
    }

    #[test]
    fn removed_link_is_drift_and_reattached() {
        let mut o = live_matching();
        o.links.clear();
        let p = plan(&desired(), &o).unwrap();
        assert_eq!(p.actions.len(), 1);
        assert!(matches!(&p.actions[0], Action::Attach { .. }));
    }

    #[test]
    fn undeclared_leftovers_are_cleaned_up() {
        let mut o = live_matching();
        o.programs.insert(
            "old".into(),
            LiveProgram {
                id: 21,
                prog_type: 6,
                tag: [3; 8],
                map_ids: vec![],
                rodata: vec![],
                run_cnt: 0,
                run_time_ns: 0,
            },
        );
        o.links.insert(
            "old".into(),
            LiveLink {
                id: 31,
                prog_id: 21,
                link_type: Some(LinkType::Xdp),
                point: Some(AttachPoint::Xdp {
                    ifindex: 2,
                    mode: XdpMode::Generic,
                }),
            },
        );
        let p = plan(&desired(), &o).unwrap();
        assert!(matches!(&p.actions[0], Action::Detach { link, .. } if link == "old"));
        assert!(matches!(
            &p.actions[1],
            Action::Unpin {
                kind: PinKind::Program,
                ..
            }
        ));
    }
}
