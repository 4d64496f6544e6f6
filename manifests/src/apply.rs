//! Executing a plan as a transaction.
//!
//! 1. **Build** the new generation beside the old one, holding only file
//!    descriptors: create or migrate maps, load programs, attach new links.
//!    Nothing is pinned yet, so a crash here leaves the kernel as it was (the
//!    kernel frees what only our fds hold).
//! 2. **Commit**: pin new maps and programs at their stable paths (rename over
//!    the old pin), switch links with `BPF_LINK_UPDATE`, pin new links,
//!    unpin what the deployment no longer has. Every step records how to undo
//!    it; a failure undoes them in reverse, leaving the old generation running.
//! 3. **Finish** (past the point of no return): detach the replaced links.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use kiln_loader::OpenFlags;
use kiln_loader::links::attach_point::MapRef;
use kiln_loader::links::tc::{ClsBpfFilter, ClsBpfLink};
use kiln_loader::links::{AttachPoint, FdLink, Link, Mechanism};
use kiln_loader::maps::UpdateFlags;
use kiln_loader::pin::open_pinned;
use kiln_loader::{EbpfLoader, Map, Program};
use kiln_obj::MapOrigin;

use crate::desired::Resolved;
use crate::live::{self, LINKS, MAPS, PROGS};
use crate::lock::DeploymentLock;
use crate::manifest::Manifest;
use crate::ownership::{self, Claim, Ledger, Origin};
use crate::plan::{self, Action, EntryDrift, PinKind, Plan, ReplaceHow};
use crate::schema::EntriesMode;

/// A step of apply where a failure can be injected (tests, and debug builds
/// through `KILN_FAIL_AT=<step>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    CreateMap,
    SyncEntries,
    MigrateMap,
    LoadProgram,
    Attach,
    PinMap,
    PinProgram,
    Replace,
    PinLink,
    Unpin,
}

impl Step {
    pub const ALL: [Step; 10] = [
        Step::CreateMap,
        Step::SyncEntries,
        Step::MigrateMap,
        Step::LoadProgram,
        Step::Attach,
        Step::PinMap,
        Step::PinProgram,
        Step::Replace,
        Step::PinLink,
        Step::Unpin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::CreateMap => "create_map",
            Step::SyncEntries => "sync_entries",
            Step::MigrateMap => "migrate_map",
            Step::LoadProgram => "load_program",
            Step::Attach => "attach",
            Step::PinMap => "pin_map",
            Step::PinProgram => "pin_program",
            Step::Replace => "replace",
            Step::PinLink => "pin_link",
            Step::Unpin => "unpin",
        }
    }

    pub fn from_name(s: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|st| st.name() == s)
    }
}

#[derive(Clone, Debug, Default)]
pub struct ApplyOptions {
    /// Fail on the first step of this kind, as if the kernel had refused it.
    pub fail_at: Option<Step>,
    /// Crash-safety tests: on reaching this point (a [`Step`] name, or
    /// [`STAGED_PIN`]), print `kiln: paused at <point>` on stderr and block
    /// forever, so the test can SIGKILL the process exactly there.
    pub pause_at: Option<String>,
    /// Where a rejected program's whole verifier log is written (default:
    /// the temporary directory); the error shows its tail and the path.
    pub verifier_log_dir: Option<PathBuf>,
    /// `kiln apply --adopt`: on a pin root with pins but no Kiln record,
    /// take over the pins at this manifest's paths (and only those).
    pub adopt: bool,
}

/// The pause point between pinning an object under its staging name and
/// renaming it over the stable pin: the only moment a crash leaves a pin the
/// layout does not name.
pub const STAGED_PIN: &str = "staged_pin";

/// Suffix of a pin being staged (bpffs refuses dots in names, so none here).
/// A staged pin belongs to whoever owns the path it is staged for; the
/// leftovers of a killed apply are removed by the next apply and by destroy.
pub const STAGING_SUFFIX: &str = "__kiln_new";

/// Blocks forever once `point` is reached (see [`ApplyOptions::pause_at`]).
fn pause(opts: &ApplyOptions, point: &str) {
    if opts.pause_at.as_deref() != Some(point) {
        return;
    }
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "kiln: paused at {point}");
    let _ = err.flush();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Why an apply failed. After any of these, the previous generation is in place.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Observe(#[from] live::ObserveError),
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error(transparent)]
    Privilege(#[from] crate::privilege::MissingPrivilege),
    #[error(transparent)]
    Ownership(#[from] ownership::OwnershipError),
    /// A kernel or filesystem operation failed; `source` says why.
    #[error("{what}")]
    Kernel {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "pin root {0} is not on a bpffs, so nothing could outlive this process\n  help: mount one (`mount -t bpf bpf /sys/fs/bpf`) or set [deployment] pin_root under a bpffs mount"
    )]
    NotBpffs(PathBuf),
    #[error("failure injected at step `{}` (KILN_FAIL_AT)", .0.name())]
    Injected(Step),
}

fn kerr(
    what: impl Into<String>,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> ApplyError {
    ApplyError::Kernel {
        what: what.into(),
        source: source.into(),
    }
}

/// What an apply did.
#[derive(Debug)]
pub struct Outcome {
    pub plan: Plan,
    /// What the apply did besides the plan (such as mounting the bpffs).
    pub notes: Vec<String>,
    /// Problems after the point of no return (the new generation is live).
    pub warnings: Vec<String>,
}

/// Computes the plan against the live kernel (under the deployment lock).
/// It refuses what apply would refuse about the pin root and its owner.
pub fn plan(manifest: &Manifest, resolved: &Resolved) -> Result<Plan, ApplyError> {
    let lock_seen = ownership::lock_seen(manifest.name());
    plan_claimed(manifest, resolved, false, lock_seen).map(|(plan, _)| plan)
}

/// The plan, and how the deployment takes hold of its pin root: only what
/// it owns is in the observed state the plan starts from.
fn plan_claimed(
    manifest: &Manifest,
    resolved: &Resolved,
    adopt: bool,
    lock_seen: bool,
) -> Result<(Plan, Claim), ApplyError> {
    let root = manifest.pin_root();
    ownership::check_root(&root)?;
    let mut observed = live::observe(&root)?;
    let claim = ownership::claim(
        &root,
        manifest.name(),
        &resolved.desired,
        &mut observed,
        adopt,
        lock_seen,
    )?;
    ownership::check_occupied(manifest.name(), &root, &resolved.desired, &observed)?;
    // Only what the deployment owns is looked into further.
    live::complete_observation(&root, &resolved.desired, &mut observed)?;
    let plan = plan::compute(manifest.name(), root, &resolved.desired, &observed)?;
    Ok((plan, claim))
}

/// Plans and executes. An unchanged deployment gives an empty plan and does nothing.
pub fn apply(
    manifest: &Manifest,
    resolved: &Resolved,
    opts: &ApplyOptions,
) -> Result<Outcome, ApplyError> {
    let root = manifest.pin_root();
    // Before anything else, so a missing capability changes nothing.
    crate::privilege::check(
        &format!("applying deployment '{}'", manifest.name()),
        crate::privilege::needed(resolved, root.exists()),
    )?;
    let mut notes = Vec::new();
    if root.starts_with(kiln_loader::pin::DEFAULT_BPFFS) {
        // When mounting fails, the check below says what is missing.
        if let Ok(true) = kiln_loader::pin::mount_default_bpffs() {
            notes.push(format!(
                "mounted a bpf filesystem at {} (nothing was mounted there)",
                kiln_loader::pin::DEFAULT_BPFFS
            ));
        }
    }
    let existing = root
        .ancestors()
        .find(|a| a.exists())
        .unwrap_or(Path::new("/"));
    if !kiln_loader::pin::is_on_bpffs(existing).unwrap_or(false) {
        return Err(ApplyError::NotBpffs(root));
    }
    let lock_seen = ownership::lock_seen(manifest.name());
    let lock = DeploymentLock::acquire(manifest.name())?;
    ownership::mark_lock(manifest.name());
    // A staged pin left by a killed apply is one of the deployment's strays:
    // the plan removes it.
    let (plan, claim) = plan_claimed(manifest, resolved, opts.adopt, lock_seen)?;
    let mut ledger = claim.ledger;
    notes.extend(claim.note);
    // Recorded before anything changes, so they are owned from here on.
    for rel in &claim.adopt {
        ledger.record(rel, Origin::Adopted)?;
    }
    if ledger.is_written() {
        ledger.prune_absent()?;
    }
    if plan.is_noop() {
        let mut warnings = Vec::new();
        readers_access(manifest, &ledger, &mut notes, &mut warnings);
        return Ok(Outcome {
            plan,
            notes,
            warnings,
        });
    }
    let mut tx = Tx::new(manifest.pin_root(), opts.clone(), ledger);
    let result = tx.build(&plan, resolved).and_then(|()| tx.commit(&plan));
    match result {
        Ok(()) => {
            let retired = tx.finish();
            let mut warnings = Vec::new();
            readers_access(manifest, &tx.ledger, &mut notes, &mut warnings);
            drop(tx);
            // Only the kernel's teardown of the replaced links is left:
            // another apply of this deployment need not wait for it.
            drop(lock);
            warnings.extend(detach_all(retired));
            Ok(Outcome {
                plan,
                notes,
                warnings,
            })
        }
        Err(e) => {
            tx.rollback();
            Err(e)
        }
    }
}

/// Past the commit: gives `[deployment] readers` read access to the maps
/// (or takes it back), saying what changed and what still blocks the group.
fn readers_access(
    manifest: &Manifest,
    ledger: &Ledger,
    notes: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    let readers = manifest.readers();
    match ownership::apply_readers(ledger, readers) {
        Ok((changed, blocked)) => {
            if !changed.is_empty() {
                notes.push(match readers {
                    Some(gid) => format!("maps readable by group {gid}: {}", changed.join(", ")),
                    None => format!("maps readable by root only: {}", changed.join(", ")),
                });
            }
            if let (Some(gid), false) = (readers, blocked.is_empty()) {
                let dirs: Vec<String> = blocked.iter().map(|p| p.display().to_string()).collect();
                warnings.push(format!(
                    "group {gid} cannot pass through {} (no search permission for it): give it one (chmod o+x, or chgrp and g+x), or its members cannot reach the maps",
                    dirs.join(", ")
                ));
            }
        }
        Err(e) => warnings.push(format!(
            "setting the readers' access: {}",
            kiln_loader::error_chain(&e)
        )),
    }
}

/// How to undo one commit step.
enum Undo {
    /// A pin that did not exist before.
    Unpin(PathBuf),
    /// A pin that held another object before: put that one back.
    Restore { path: PathBuf, old: OwnedFd },
    /// A link switched to a new program: switch it back.
    Relink { link: FdLink, old_prog: Program },
    /// An XDP link detached to attach in another mode: detach the new
    /// link, attach the old program in its old mode again and pin it.
    Reattach {
        program: String,
        path: PathBuf,
        old_prog: Program,
        ifindex: u32,
        flags: kiln_loader::links::xdp::XdpFlags,
    },
    /// A TC filter switched to a new program over netlink: switch it back.
    RelinkFilter {
        filter: ClsBpfFilter,
        old_prog: Program,
    },
    /// A program array slot pointed at a new program: point it back at
    /// the old one (or empty it).
    Slot {
        map: Map,
        index: u32,
        old: Option<Program>,
    },
    /// Entries written into (or deleted from) a live map: their previous
    /// values, `None` where the key was absent.
    Entries {
        map: Map,
        old: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    },
    /// A path recorded as owned before it was created: forget it.
    Forget(String),
    /// An owned path forgotten after it was removed: record it again
    /// (before the pin is restored).
    Record(String, Origin),
    /// A directory this apply created.
    RemoveDir(PathBuf),
}

struct Tx {
    root: PathBuf,
    opts: ApplyOptions,
    /// A handle on every desired shared map (new or reused).
    maps: BTreeMap<String, Map>,
    new_maps: BTreeSet<String>,
    /// Programs loaded by this apply.
    progs: BTreeMap<String, Program>,
    /// Links created by this apply.
    links: BTreeMap<String, Box<dyn Link>>,
    /// Program array slots (map, index, program) of reused maps that must
    /// point at a program this apply reloads: switched at commit.
    slots: Vec<(String, u32, String)>,
    /// Old links to detach once the new generation is committed.
    retired: Vec<FdLink>,
    /// Old TC filters (netlink attachments) to remove once committed.
    retired_filters: Vec<ClsBpfFilter>,
    journal: Vec<Undo>,
    /// Attachments made at commit, after their old link is detached.
    reattach: BTreeMap<String, AttachPoint>,
    /// What the deployment owns; every pin and directory is recorded here
    /// before it is made and forgotten after it is removed.
    ledger: Ledger,
}

impl Tx {
    fn new(root: PathBuf, opts: ApplyOptions, ledger: Ledger) -> Self {
        Tx {
            root,
            opts,
            maps: BTreeMap::new(),
            new_maps: BTreeSet::new(),
            progs: BTreeMap::new(),
            links: BTreeMap::new(),
            slots: Vec::new(),
            retired: Vec::new(),
            retired_filters: Vec::new(),
            journal: Vec::new(),
            reattach: BTreeMap::new(),
            ledger,
        }
    }

    fn inject(&mut self, step: Step) -> Result<(), ApplyError> {
        pause(&self.opts, step.name());
        if self.opts.fail_at == Some(step) {
            self.opts.fail_at = None;
            return Err(ApplyError::Injected(step));
        }
        Ok(())
    }

    fn path(&self, dir: &str, name: &str) -> PathBuf {
        self.root.join(dir).join(name)
    }

    /// Phase 1: everything held by fds only.
    fn build(&mut self, plan: &Plan, resolved: &Resolved) -> Result<(), ApplyError> {
        // Maps this apply makes anew (created, recreated or migrated) and
        // programs it loads; everything else of the deployment is reused.
        let mut renew = BTreeSet::new();
        let mut load = BTreeSet::new();
        // Maps whose pin was removed, found through their programs.
        let mut found: BTreeMap<String, Map> = BTreeMap::new();
        for action in &plan.actions {
            match action {
                Action::CreateMap { map, .. }
                | Action::RecreateMap { map, .. }
                | Action::MigrateMap { map, .. } => {
                    renew.insert(map.as_str());
                }
                Action::RepinMap { map, id, .. } => {
                    // Pinned again at commit, like a new map; the programs
                    // that found it keep using it (or, migrated, it is the
                    // old side of the migration).
                    let m = live::unpinned_map_by_id(map, *id)
                        .map_err(|e| kerr(format!("re-pin map '{map}'"), e))?;
                    found.insert(map.clone(), m);
                }
                Action::LoadProgram { program, .. } => {
                    load.insert(program.as_str());
                }
                _ => {}
            }
        }
        for name in resolved.desired.maps.keys() {
            if renew.contains(name.as_str()) {
                continue;
            }
            if let Some(m) = found.remove(name) {
                self.new_maps.insert(name.clone());
                self.maps.insert(name.clone(), m);
                continue;
            }
            let path = self.path(MAPS, name);
            let m = Map::from_pin(&path, OpenFlags::ReadWrite)
                .map_err(|e| kerr(format!("open pinned map '{name}'"), e))?;
            self.maps.insert(name.clone(), m);
        }
        // One load per object, as libbpf does: its programs share its global
        // data and its BTF, and the loader creates every map kind itself.
        let objects: BTreeSet<&str> = renew
            .iter()
            .filter_map(|m| resolved.map_specs.get(*m).map(|(o, _)| o.as_str()))
            .chain(load.iter().map(|p| resolved.builds[*p].object.as_str()))
            .collect();
        for object in objects {
            self.load_object(resolved, object, &renew, &load)?;
        }
        for action in &plan.actions {
            match action {
                Action::CreateMap { map, .. } | Action::RecreateMap { map, .. } => {
                    // Global data got its contents from the load (and
                    // read-only data is frozen now).
                    let global_data = resolved.map_specs.get(map).is_some_and(|(_, spec)| {
                        matches!(spec.origin, MapOrigin::GlobalData { .. })
                    });
                    if let Some(d) = resolved.desired.maps.get(map)
                        && !global_data
                    {
                        let m = &self.maps[map];
                        for (k, v) in &d.entries {
                            m.update_bytes(k, v, UpdateFlags::ANY)
                                .map_err(|e| kerr(format!("map '{map}': initial entry"), e))?;
                        }
                    }
                }
                Action::MigrateMap { map, .. } => {
                    self.inject(Step::MigrateMap)?;
                    // An unpinned map found through its programs is the old side.
                    let old = match found.remove(map) {
                        Some(m) => m,
                        None => Map::from_pin(&self.path(MAPS, map), OpenFlags::ReadOnly)
                            .map_err(|e| kerr(format!("open map '{map}' to migrate"), e))?,
                    };
                    let new = &self.maps[map];
                    migrate_map(resolved, map, &old, new)
                        .map_err(|e| kerr(format!("migrate map '{map}'"), e))?;
                    if let Some(d) = resolved.desired.maps.get(map) {
                        keep_entries(new, d)
                            .map_err(|e| kerr(format!("map '{map}': declared entries"), e))?;
                    }
                }
                _ => {}
            }
        }
        for action in &plan.actions {
            if let Action::Reattach { program, .. } = action
                && let Some(how) = &resolved.builds[program].attach
            {
                self.reattach.insert(program.clone(), how.clone());
            }
        }
        for action in &plan.actions {
            match action {
                Action::Attach { program, .. }
                | Action::Replace {
                    program,
                    how: ReplaceHow::AttachThenDetach,
                    ..
                } => {
                    self.inject(Step::Attach)?;
                    let build = &resolved.builds[program];
                    let Some(how) = &build.attach else { continue };
                    let link = self.attach_program(program, how)?;
                    self.links.insert(program.clone(), link);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Loads `object` once through the loader: the programs this apply
    /// loads (the others skipped), the deployment's maps of the object it
    /// renews created by the loader, the others handed in from their pins
    /// (each checked once against the object's definition).
    fn load_object(
        &mut self,
        resolved: &Resolved,
        object: &str,
        renew: &BTreeSet<&str>,
        load: &BTreeSet<&str>,
    ) -> Result<(), ApplyError> {
        let spec = &resolved.objects.specs[object];
        // Function name -> the manifest's programs loading it.
        let mut functions: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for program in load {
            let build = &resolved.builds[*program];
            if build.object == object {
                functions
                    .entry(build.function.as_str())
                    .or_default()
                    .push(program);
            }
        }
        let mut loader = EbpfLoader::new();
        for p in &spec.programs {
            if !functions.contains_key(p.name.as_str()) {
                loader.skip_program(&p.name);
            }
        }
        let mut created = Vec::new();
        for (name, (owner, want)) in &resolved.map_specs {
            if owner != object {
                continue;
            }
            if spec
                .map(&want.name)
                .is_some_and(|m| m.max_entries != want.max_entries)
            {
                loader.map_max_entries(&want.name, want.max_entries);
            }
            if renew.contains(name.as_str()) {
                self.inject(Step::CreateMap)?;
                created.push((name, &want.name));
                continue;
            }
            let handle = self.maps[name]
                .try_clone()
                .map_err(|e| kerr(format!("map '{name}'"), e))?;
            loader.replace_map(&want.name, handle);
        }
        // The object's globals, as every program of it in the manifest sets
        // them (resolve refused conflicting values).
        let mut globals = BTreeMap::new();
        for build in resolved.builds.values().filter(|b| b.object == object) {
            for (gname, bytes) in &build.globals {
                globals.entry(gname.as_str()).or_insert(bytes.as_slice());
            }
        }
        for (gname, bytes) in globals {
            loader.set_global(gname, bytes);
        }
        for _ in functions.values().flatten() {
            self.inject(Step::LoadProgram)?;
        }
        let loaded = match resolved.prepared.get(object) {
            Some(prepared) => loader.load_prepared(prepared),
            None => loader.load(spec),
        };
        let mut ebpf = loaded.map_err(|e| self.load_error(resolved, object, e))?;
        for (name, spec_name) in created {
            let map = ebpf.take_map(spec_name).ok_or_else(|| {
                kerr(
                    format!("map '{name}' of object '{object}'"),
                    "the loader did not create it",
                )
            })?;
            self.new_maps.insert(name.clone());
            self.maps.insert(name.clone(), map);
        }
        self.program_slots(resolved, object, renew, &functions)?;
        for (function, programs) in functions {
            let prog = ebpf.take_program(function).ok_or_else(|| {
                kerr(
                    format!("load function '{function}' of object '{object}'"),
                    "the loader did not return it",
                )
            })?;
            for program in programs {
                let handle = prog
                    .try_clone()
                    .map_err(|e| kerr(format!("program '{program}'"), e))?;
                self.progs.insert(program.to_string(), handle);
            }
        }
        Ok(())
    }

    /// Keeps the `.values` of the object's program arrays pointing at the
    /// deployment's programs: a new array gets the pinned programs this
    /// apply does not reload (the loader filled in those it loaded); a
    /// reused one gets the reloaded programs, at commit.
    fn program_slots(
        &mut self,
        resolved: &Resolved,
        object: &str,
        renew: &BTreeSet<&str>,
        loaded: &BTreeMap<&str, Vec<&str>>,
    ) -> Result<(), ApplyError> {
        let spec = &resolved.objects.specs[object];
        for slot in &spec.map_slots {
            let kiln_obj::MapSlotTarget::Program(function) = &slot.target else {
                continue;
            };
            let Some(outer) = spec.maps.get(slot.map) else {
                continue;
            };
            let Some((map, _)) = resolved
                .map_specs
                .iter()
                .find(|(_, (owner, want))| owner == object && want.name == outer.name)
            else {
                continue;
            };
            if let Some(programs) = loaded.get(function.as_str()) {
                if !renew.contains(map.as_str()) {
                    self.slots
                        .push((map.clone(), slot.index, programs[0].to_string()));
                }
                continue;
            }
            if !renew.contains(map.as_str()) {
                continue;
            }
            let Some((program, _)) = resolved
                .builds
                .iter()
                .find(|(_, b)| b.object == object && b.function == *function)
            else {
                continue;
            };
            let pinned = Program::from_pin(&self.path(PROGS, program), None)
                .map_err(|e| kerr(format!("open pinned program '{program}'"), e))?;
            set_slot(&self.maps[map], slot.index, Some(&pinned))
                .map_err(|e| kerr(format!("map '{map}': values[{}]", slot.index), e))?;
        }
        Ok(())
    }

    /// A failed object load, named as the manifest names it, with the whole
    /// verifier log kept in a file.
    fn load_error(
        &self,
        resolved: &Resolved,
        object: &str,
        e: kiln_loader::EbpfError,
    ) -> ApplyError {
        let mut message = kiln_loader::error_chain(&e);
        let kiln_loader::EbpfError::Program(le) = &e else {
            return kerr(format!("load object '{object}'"), message);
        };
        let dir = self
            .opts
            .verifier_log_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        match le.save_log(&dir) {
            Ok(Some(path)) => {
                message += &format!("\n  full verifier log: {}", path.display());
            }
            Ok(None) => {}
            Err(err) => {
                message += &format!(
                    "\n  (could not keep the full verifier log in {}: {err})",
                    dir.display()
                );
            }
        }
        let programs: Vec<&str> = resolved
            .builds
            .iter()
            .filter(|(_, b)| b.object == object && b.function == le.program())
            .map(|(name, _)| name.as_str())
            .collect();
        kerr(
            format!(
                "load program '{}' (function '{}' of object '{object}')",
                programs.join("', '"),
                le.program()
            ),
            message,
        )
    }

    /// Pins `fd` at `path`, replacing whatever is there; journals the undo.
    fn pin_replace(&mut self, fd: BorrowedFd<'_>, path: &Path) -> Result<(), ApplyError> {
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        self.make_dir(&dir)?;
        self.own(path)?;
        let old = if path.exists() {
            // Flags must be 0: links and programs refuse BPF_F_RDONLY.
            Some(
                open_pinned(path, OpenFlags::ReadWrite)
                    .map_err(|e| kerr(format!("open {}", path.display()), e))?,
            )
        } else {
            None
        };
        pin_at(fd, path, &self.opts)?;
        self.journal.push(match old {
            Some(old) => Undo::Restore {
                path: path.to_path_buf(),
                old,
            },
            None => Undo::Unpin(path.to_path_buf()),
        });
        Ok(())
    }

    /// Records `path` as owned before it is pinned or created (write-ahead),
    /// journaling the undo.
    fn own(&mut self, path: &Path) -> Result<(), ApplyError> {
        let Some(rel) = self.ledger.relative(path) else {
            return Ok(());
        };
        if self.ledger.record(&rel, Origin::Created)? {
            self.journal.push(Undo::Forget(rel));
        }
        Ok(())
    }

    /// Creates a directory under the pin root (and the root itself) when
    /// missing, recorded as owned first.
    fn make_dir(&mut self, dir: &Path) -> Result<(), ApplyError> {
        if dir.is_dir() {
            return Ok(());
        }
        self.own(dir)?;
        create_private_dir(dir)?;
        self.journal.push(Undo::RemoveDir(dir.to_path_buf()));
        Ok(())
    }

    /// Removes an owned pin, journaling how to put it back.
    fn unpin(&mut self, path: &Path) -> Result<(), ApplyError> {
        self.inject(Step::Unpin)?;
        let rel = self.ledger.relative(path).unwrap_or_default();
        let Some(origin) = self.ledger.owned().get(&rel).copied().or_else(|| {
            // A staged pin: owned through the path it was staged for.
            self.ledger.owns(&rel).then_some(Origin::Created)
        }) else {
            return Err(kerr(
                format!("unpin {}", path.display()),
                "not recorded as this deployment's (internal error: the plan never removes foreign pins)",
            ));
        };
        if path.exists() {
            let old = open_pinned(path, OpenFlags::ReadWrite)
                .map_err(|e| kerr(format!("open {}", path.display()), e))?;
            std::fs::remove_file(path).map_err(|e| kerr(format!("unpin {}", path.display()), e))?;
            self.journal.push(Undo::Restore {
                path: path.to_path_buf(),
                old,
            });
        }
        if self.ledger.owned().contains_key(&rel) {
            self.ledger.forget(&rel)?;
            self.journal.push(Undo::Record(rel, origin));
        }
        Ok(())
    }

    /// Writes the declared entries that differ into a live map (and deletes
    /// the unlisted keys for "exact"), journaling the old values.
    fn sync_entries(&mut self, name: &str, drift: &EntryDrift) -> Result<(), ApplyError> {
        self.inject(Step::SyncEntries)?;
        let map = self
            .maps
            .get(name)
            .ok_or_else(|| kerr(format!("map '{name}'"), "not open (internal error)"))?
            .try_clone()
            .map_err(|e| kerr(format!("map '{name}'"), e))?;
        let mut old = Vec::new();
        let result = (|| -> Result<(), kiln_loader::MapError> {
            for (k, v) in &drift.set {
                let before = map.lookup_bytes(k, UpdateFlags::ANY)?;
                map.update_bytes(k, v, UpdateFlags::ANY)?;
                old.push((k.clone(), before));
            }
            for k in &drift.delete {
                let before = map.lookup_bytes(k, UpdateFlags::ANY)?;
                map.delete_bytes(k)?;
                old.push((k.clone(), before));
            }
            Ok(())
        })();
        self.journal.push(Undo::Entries { map, old });
        result.map_err(|e| kerr(format!("map '{name}': sync entries"), e))
    }

    /// Phase 2: make the new generation the pinned one.
    fn commit(&mut self, plan: &Plan) -> Result<(), ApplyError> {
        for action in &plan.actions {
            if let Action::SyncEntries { map, drift, .. } = action {
                self.sync_entries(map, drift)?;
            }
        }
        for name in self.new_maps.clone() {
            self.inject(Step::PinMap)?;
            let path = self.path(MAPS, &name);
            let fd = self.maps[&name]
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| kerr("dup", e))?;
            self.pin_replace(fd.as_fd(), &path)?;
        }
        let progs: Vec<String> = self.progs.keys().cloned().collect();
        for name in progs {
            self.inject(Step::PinProgram)?;
            let path = self.path(PROGS, &name);
            let fd = self.progs[&name]
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| kerr("dup", e))?;
            self.pin_replace(fd.as_fd(), &path)?;
        }
        for (name, index, program) in std::mem::take(&mut self.slots) {
            let map = self.maps[&name]
                .try_clone()
                .map_err(|e| kerr(format!("map '{name}'"), e))?;
            // A program array reads back the id of the program in a slot.
            let old = map
                .lookup_bytes(&index.to_ne_bytes(), UpdateFlags::ANY)
                .ok()
                .flatten()
                .and_then(|id| Some(u32::from_ne_bytes(id.get(..4)?.try_into().ok()?)))
                .and_then(|id| Program::from_id(id).ok());
            set_slot(&map, index, Some(&self.progs[&program]))
                .map_err(|e| kerr(format!("map '{name}': values[{index}]"), e))?;
            self.journal.push(Undo::Slot { map, index, old });
        }
        for action in &plan.actions {
            match action {
                Action::Replace {
                    program,
                    how: ReplaceHow::LinkUpdate,
                    ..
                } => {
                    self.inject(Step::Replace)?;
                    let path = self.path(LINKS, program);
                    if !path.exists()
                        && let Some(filter) = self.netlink_filter(program)
                    {
                        self.replace_filter(program, filter)?;
                        continue;
                    }
                    let mut link = FdLink::from_pin(&path)
                        .map_err(|e| kerr(format!("open link of '{program}'"), e))?;
                    let info = link
                        .info()
                        .map_err(|e| kerr(format!("link of '{program}'"), e))?;
                    let old_prog = Program::from_id(info.prog_id)
                        .map_err(|e| kerr(format!("program attached to '{program}'"), e))?;
                    // Not reloaded: the pinned program is already the new
                    // one and only the link lags behind it (an apply killed
                    // between pinning programs and switching links).
                    self.with_program(program, |new_prog| {
                        link.update(new_prog, Some(old_prog.as_fd()))
                    })?
                    .map_err(|e| kerr(format!("switch link of '{program}'"), e))?;
                    self.journal.push(Undo::Relink { link, old_prog });
                }
                Action::Reattach { program, .. } => self.reattach(program)?,
                Action::Detach { link, .. } => {
                    let path = self.path(LINKS, link);
                    if !path.exists()
                        && let Some(filter) = self.netlink_filter(link)
                    {
                        self.retired_filters.push(filter);
                        continue;
                    }
                    if let Ok(old) = FdLink::from_pin(&path) {
                        self.retired.push(old);
                    }
                    self.unpin(&path)?;
                }
                _ => {}
            }
        }
        // Netlink attachments (TC filters) cannot be pinned: they are kept
        // at the end, and found again by their name.
        let links: Vec<String> = self
            .links
            .iter()
            .filter(|(_, l)| l.fd().is_some() || l.mechanism() != Mechanism::Tc)
            .map(|(name, _)| name.clone())
            .collect();
        for name in links {
            self.inject(Step::PinLink)?;
            let path = self.path(LINKS, &name);
            if path.exists()
                && let Ok(old) = FdLink::from_pin(&path)
            {
                self.retired.push(old);
            }
            let fd = match self.links[&name].fd() {
                Some(fd) => fd.try_clone_to_owned().map_err(|e| kerr("dup", e))?,
                None => {
                    return Err(kerr(
                        format!("pin link of '{name}'"),
                        "this kernel attached it without a bpf_link, which cannot be pinned (tracepoint links need 5.15+)",
                    ));
                }
            };
            self.pin_replace(fd.as_fd(), &path)?;
        }
        for action in &plan.actions {
            if let Action::Unpin { kind, name, .. } = action {
                let path = match kind {
                    PinKind::Map => self.path(MAPS, name),
                    PinKind::Program => self.path(PROGS, name),
                    PinKind::Link => self.path(LINKS, name),
                    PinKind::Other => PathBuf::from(name),
                };
                self.unpin(&path)?;
            }
        }
        Ok(())
    }

    /// Detaches `program`'s XDP link and attaches its (new or pinned)
    /// program in the manifest's mode; the new link is pinned with the others.
    fn reattach(&mut self, program: &str) -> Result<(), ApplyError> {
        self.inject(Step::Attach)?;
        let how = self.reattach[program].clone();
        let path = self.path(LINKS, program);
        let mut old =
            FdLink::from_pin(&path).map_err(|e| kerr(format!("open link of '{program}'"), e))?;
        let info = old
            .info()
            .map_err(|e| kerr(format!("link of '{program}'"), e))?;
        let kiln_loader::links::LinkTarget::Xdp { ifindex } = info.target else {
            return Err(kerr(format!("link of '{program}'"), "not an XDP link"));
        };
        let flags = kiln_loader::links::xdp::query_xdp_modes(ifindex)
            .map_err(|e| kerr(format!("XDP modes of '{program}'s interface"), e))?
            .mode_of(info.prog_id)
            .unwrap_or_default();
        let old_prog = Program::from_id(info.prog_id)
            .map_err(|e| kerr(format!("program attached to '{program}'"), e))?;
        old.detach()
            .map_err(|e| kerr(format!("detach the link of '{program}'"), e))?;
        let _ = std::fs::remove_file(&path);
        self.journal.push(Undo::Reattach {
            program: program.to_string(),
            path,
            old_prog,
            ifindex,
            flags,
        });
        let link = self.attach_program(program, &how)?;
        self.links.insert(program.to_string(), link);
        Ok(())
    }

    /// The TC filter (netlink attachment) of `program`, if it has one.
    fn netlink_filter(&self, program: &str) -> Option<ClsBpfFilter> {
        live::netlink_links(&self.root)
            .into_iter()
            .find(|(name, _)| name == program)
            .map(|(_, f)| f)
    }

    /// Switches `program`'s TC filter to its new program in place (a
    /// netlink replace: no gap, no overlap).
    fn replace_filter(&mut self, program: &str, filter: ClsBpfFilter) -> Result<(), ApplyError> {
        let old_prog = Program::from_id(filter.prog_id)
            .map_err(|e| kerr(format!("program attached to '{program}'"), e))?;
        let mut link = ClsBpfLink::adopt(filter);
        let switched = self.with_program(program, |new_prog| {
            link.update(new_prog, Some(old_prog.as_fd()))
        })?;
        let _ = link.keep();
        switched.map_err(|e| kerr(format!("switch the TC filter of '{program}'"), e))?;
        self.journal.push(Undo::RelinkFilter {
            filter: link.filter().clone(),
            old_prog,
        });
        Ok(())
    }

    /// Attaches `program` as `how` says: the one this apply loaded, else the pinned one.
    fn attach_program(
        &self,
        program: &str,
        how: &AttachPoint,
    ) -> Result<Box<dyn Link>, ApplyError> {
        let label = live::netlink_label(&self.root, program);
        // A sockmap of the deployment: the map this apply holds (created
        // now, so perhaps not pinned yet), by id.
        let how = match how {
            AttachPoint::SockMap {
                map: MapRef::Pin(pin),
                hook,
            } => match pin
                .file_name()
                .and_then(|n| self.maps.get(n.to_string_lossy().as_ref()))
                .and_then(|m| m.info().ok())
            {
                Some(info) => &AttachPoint::SockMap {
                    map: MapRef::Id(info.id),
                    hook: *hook,
                },
                None => how,
            },
            _ => how,
        };
        self.with_program(program, |prog| attach(prog, how, &label))?
            .map_err(|e| kerr(format!("attach program '{program}'"), e))
    }

    /// Runs `f` on `program`'s new generation: the one this apply loaded,
    /// else the pinned one (not reloaded, or an apply killed between
    /// pinning programs and switching links left the links behind).
    fn with_program<T>(
        &self,
        program: &str,
        f: impl FnOnce(BorrowedFd<'_>) -> T,
    ) -> Result<T, ApplyError> {
        match self.progs.get(program) {
            Some(p) => Ok(f(p.as_fd())),
            None => {
                let pinned = Program::from_pin(&self.path(PROGS, program), None)
                    .map_err(|e| kerr(format!("open pinned program '{program}'"), e))?;
                Ok(f(pinned.as_fd()))
            }
        }
    }

    /// Phase 3: the new generation is committed: the old links to let go
    /// (see [`detach_all`]).
    fn finish(&mut self) -> Vec<FdLink> {
        self.journal.clear();
        // Links created here are pinned now; dropping the handles keeps
        // them. Netlink attachments stay by themselves once kept.
        for link in self.links.values_mut() {
            if link.fd().is_none() {
                let _ = link.keep();
            }
        }
        for filter in std::mem::take(&mut self.retired_filters) {
            let _ = ClsBpfLink::adopt(filter).detach();
        }
        std::mem::take(&mut self.retired)
    }

    /// Undoes the commit steps done so far, newest first. Build-phase objects
    /// go away with their fds when `self` is dropped.
    fn rollback(&mut self) {
        while let Some(undo) = self.journal.pop() {
            match undo {
                Undo::Unpin(path) => {
                    let _ = std::fs::remove_file(&path);
                }
                Undo::Restore { path, old } => {
                    let _ = pin_at(old.as_fd(), &path, &ApplyOptions::default());
                }
                Undo::Relink { mut link, old_prog } => {
                    let _ = link.update(old_prog.as_fd(), None);
                }
                Undo::RelinkFilter { filter, old_prog } => {
                    let mut link = ClsBpfLink::adopt(filter);
                    let _ = link.update(old_prog.as_fd(), None);
                    let _ = link.keep();
                }
                Undo::Reattach {
                    program,
                    path,
                    old_prog,
                    ifindex,
                    flags,
                } => {
                    // One XDP mode at a time: the new link goes first.
                    if let Some(mut new) = self.links.remove(&program) {
                        let _ = new.detach();
                    }
                    if let Ok(link) =
                        kiln_loader::links::xdp::attach_xdp_link(old_prog.as_fd(), ifindex, flags)
                        && let Some(fd) = link.fd()
                    {
                        let _ = pin_at(fd, &path, &ApplyOptions::default());
                    }
                }
                Undo::Slot { map, index, old } => {
                    let _ = set_slot(&map, index, old.as_ref());
                }
                Undo::Entries { map, old } => {
                    for (k, v) in old.iter().rev() {
                        let _ = match v {
                            Some(v) => map.update_bytes(k, v, UpdateFlags::ANY),
                            None => map.delete_bytes(k).map(|_| ()),
                        };
                    }
                }
                Undo::Forget(rel) => {
                    let _ = self.ledger.forget(&rel);
                }
                Undo::Record(rel, origin) => {
                    let _ = self.ledger.record(&rel, origin);
                }
                Undo::RemoveDir(dir) => {
                    let _ = std::fs::remove_dir(&dir);
                }
            }
        }
        self.ledger.discard_if_unused();
        self.retired.clear();
        self.retired_filters.clear();
        for (_, mut link) in std::mem::take(&mut self.links) {
            let _ = link.detach();
        }
        self.progs.clear();
        self.maps.clear();
    }
}

/// Detaches replaced links, each on a thread of its own (at most
/// [`DETACH_THREADS`] at a time): closing some links waits for an RCU grace
/// period in the kernel, and concurrent detaches overlap those waits instead
/// of adding them up (200 tracepoint links: one wait, not 200).
fn detach_all(links: Vec<FdLink>) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut links = links.into_iter().peekable();
    while links.peek().is_some() {
        let batch: Vec<FdLink> = links.by_ref().take(DETACH_THREADS).collect();
        std::thread::scope(|s| {
            let mut running = Vec::new();
            for mut link in batch {
                let detach = move || {
                    let r = link.detach();
                    drop(link);
                    r.map_err(|e| {
                        format!(
                            "detaching a replaced link: {}",
                            kiln_loader::error_chain(&e)
                        )
                    })
                };
                // Without a thread to spare, the closure is dropped, and
                // with it the link's last fd: closing it lets the link go too.
                if let Ok(h) = std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn_scoped(s, detach)
                {
                    running.push(h);
                }
            }
            for h in running {
                match h.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(w)) => warnings.push(w),
                    Err(_) => warnings.push("a link detach thread panicked".into()),
                }
            }
        });
    }
    warnings
}

/// How many replaced links [`detach_all`] lets go of at once.
const DETACH_THREADS: usize = 128;

/// Makes a freshly migrated map hold the declared entries, as
/// `entries_mode` says: listed keys set to their values (for "keys", only
/// the missing ones), and for "exact" and "keys" every other copied key
/// deleted.
fn keep_entries(map: &Map, want: &crate::plan::DesiredMap) -> Result<(), kiln_loader::MapError> {
    if want.entries_mode == EntriesMode::Create {
        return Ok(());
    }
    for (k, v) in &want.entries {
        // "keys": a copied key keeps its migrated value.
        if want.entries_mode == EntriesMode::Keys
            && map.lookup_bytes(k, UpdateFlags::ANY)?.is_some()
        {
            continue;
        }
        map.update_bytes(k, v, UpdateFlags::ANY)?;
    }
    if want.entries_mode.prunes() {
        let listed: BTreeSet<&Vec<u8>> = want.entries.iter().map(|(k, _)| k).collect();
        let unlisted: Vec<Vec<u8>> = map
            .keys_bytes()
            .filter_map(Result::ok)
            .filter(|k| !listed.contains(k))
            .collect();
        for k in unlisted {
            map.delete_bytes(&k)?;
        }
    }
    Ok(())
}

/// Points slot `index` of program array `map` at `prog`, or empties it.
fn set_slot(map: &Map, index: u32, prog: Option<&Program>) -> Result<(), kiln_loader::MapError> {
    use std::os::fd::AsRawFd;
    let key = index.to_ne_bytes();
    match prog {
        Some(p) => map.update_bytes(
            &key,
            &(p.fd().as_raw_fd() as u32).to_ne_bytes(),
            UpdateFlags::ANY,
        ),
        None => map.delete_bytes(&key).map(|_| ()),
    }
}

/// Creates `dir` and its missing parents readable by the owner only: a pin
/// root lists what runs in the kernel, and bpffs grants access by file mode.
fn create_private_dir(dir: &Path) -> Result<(), ApplyError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| kerr(format!("create {}", dir.display()), e))
}

/// Pins `fd` at `path` atomically: pin beside it, then rename over it.
fn pin_at(fd: BorrowedFd<'_>, path: &Path, opts: &ApplyOptions) -> Result<(), ApplyError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!("{name}{STAGING_SUFFIX}"));
    let _ = std::fs::remove_file(&tmp);
    kiln_loader::pin::pin_fd(fd, &tmp, &name)
        .map_err(|e| kerr(format!("pin {}", tmp.display()), e))?;
    pause(opts, STAGED_PIN);
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(kerr(format!("move pin to {}", path.display()), e));
    }
    Ok(())
}

/// Copies `old`'s entries into `new`, converting by BTF field names when
/// both maps have types.
fn migrate_map(resolved: &Resolved, name: &str, old: &Map, new: &Map) -> Result<usize, String> {
    use crate::migrate::{Side, copy_entries, kernel_btf};
    let info = old.info().map_err(|e| kiln_loader::error_chain(&e))?;
    let old_btf = (info.btf_id != 0 && info.btf_value_type_id != 0)
        .then(|| kernel_btf(info.btf_id).ok())
        .flatten();
    let (object, spec) = &resolved.map_specs[name];
    let new_btf = resolved.objects.specs[object]
        .btf
        .as_deref()
        .and_then(|b| kiln_obj::btf::Btf::parse(b).ok())
        .filter(|_| spec.btf_value_type_id.is_some_and(|v| v != 0));
    let types = match (&old_btf, &new_btf) {
        (Some(ob), Some(nb)) => Some((
            Side {
                btf: ob,
                key: info.btf_key_type_id,
                value: info.btf_value_type_id,
            },
            Side {
                btf: nb,
                key: spec.btf_key_type_id.unwrap_or(0),
                value: spec.btf_value_type_id.unwrap_or(0),
            },
        )),
        _ => None,
    };
    copy_entries(old, new, types).map_err(|e| kiln_loader::error_chain(&e))
}

/// Attaches, retrying briefly while the hook is busy: the kernel releases a
/// link whose last pin was just removed from a workqueue, a moment later
/// (EBUSY; EEXIST while an XDP link of the other mode is still there).
/// `label` names a netlink attachment (see [`live::netlink_label`]).
pub fn attach(
    prog: BorrowedFd<'_>,
    how: &AttachPoint,
    label: &str,
) -> Result<Box<dyn Link>, String> {
    let mut tries = 0;
    loop {
        match kiln_loader::links::attach_labelled(prog, how, label) {
            Err(e) if matches!(e.errno(), Some(libc::EBUSY | libc::EEXIST)) && tries < 40 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            r => return r.map_err(|e| kiln_loader::error_chain(&e)),
        }
    }
}

/// What `destroy` did.
#[derive(Debug, Default)]
pub struct Destroyed {
    /// The pins removed, relative to the pin root.
    pub removed: Vec<String>,
    /// What stays under the pin root because the deployment does not own it
    /// (the pin root, its record and the directories holding these stay too).
    pub left: Vec<PathBuf>,
    /// The pin root itself was removed (Kiln created it and it is empty).
    pub root_removed: bool,
}

/// Removes everything the deployment owns: links first (programs stop
/// running), then programs, then maps, then the directories. Returns the
/// pins removed.
pub fn destroy(manifest_name: &str, root: &Path) -> Result<Vec<String>, ApplyError> {
    destroy_owned(manifest_name, root).map(|d| d.removed)
}

/// [`destroy`], also saying what was left alone. Only what the deployment's
/// record names is removed (pins, and its directories once empty); a pin
/// root off bpffs is never touched.
pub fn destroy_owned(manifest_name: &str, root: &Path) -> Result<Destroyed, ApplyError> {
    if root.exists() {
        // Links are opened from their pins to detach them: CAP_BPF; bpffs
        // itself grants unpinning by file mode.
        crate::privilege::check(
            &format!("destroying deployment '{manifest_name}'"),
            vec![kiln_loader::caps::Capability::Bpf],
        )?;
    }
    let lock_seen = ownership::lock_seen(manifest_name);
    let _lock = DeploymentLock::acquire(manifest_name)?;
    ownership::mark_lock(manifest_name);
    let mut done = Destroyed::default();
    if !root.exists() {
        return Ok(done);
    }
    if !kiln_loader::pin::is_on_bpffs(root).unwrap_or(false) {
        return Err(ApplyError::NotBpffs(root.to_path_buf()));
    }
    if ownership::is_mount_point(root) {
        return Err(ownership::OwnershipError::MountPoint {
            root: root.to_path_buf(),
        }
        .into());
    }
    let mut ledger = match Ledger::read(root)? {
        Some(l) if l.name() != manifest_name => {
            return Err(ownership::OwnershipError::BelongsTo {
                root: root.to_path_buf(),
                name: manifest_name.to_string(),
                other: l.name().to_string(),
            }
            .into());
        }
        Some(l) => l,
        None => {
            // No record: only a layout an earlier Kiln provably made is ours.
            let mut observed = live::observe(root)?;
            let claim = ownership::claim(
                root,
                manifest_name,
                &plan::Desired::default(),
                &mut observed,
                false,
                lock_seen,
            )?;
            let mut l = claim.ledger;
            for rel in &claim.adopt {
                l.record(rel, Origin::Adopted)?;
            }
            l
        }
    };
    let owned: Vec<String> = ledger.owned().keys().cloned().collect();
    let (dirs, mut pins): (Vec<String>, Vec<String>) =
        owned.into_iter().partition(|rel| root.join(rel).is_dir());
    let rank = |rel: &String| match rel.split('/').next() {
        Some(LINKS) => 0,
        Some(PROGS) => 1,
        Some(MAPS) => 2,
        _ => 3,
    };
    pins.sort_by_key(|rel| (rank(rel), rel.clone()));
    for rel in pins {
        let path = root.join(&rel);
        let staged = path.with_file_name(format!(
            "{}{STAGING_SUFFIX}",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
        for p in [&staged, &path] {
            if p.symlink_metadata().is_err() {
                continue;
            }
            if rank(&rel) == 0
                && let Ok(mut l) = FdLink::from_pin(p)
            {
                let _ = l.detach();
            }
            std::fs::remove_file(p).map_err(|e| kerr(format!("unpin {}", p.display()), e))?;
            if p == &path {
                done.removed.push(rel.clone());
            }
        }
        // Forgotten only once gone: a kill before leaves it recorded.
        ledger.forget(&rel)?;
    }
    // TC filters (netlink attachments) carry no pin: found by their name.
    for (program, filter) in live::netlink_links(root) {
        ClsBpfLink::adopt(filter)
            .detach()
            .map_err(|e| kerr(format!("remove the TC filter of '{program}'"), e))?;
        done.removed.push(format!("{LINKS}/{program} (tc filter)"));
    }
    // Deepest first; a directory still holding foreign pins stays recorded.
    let mut dirs: Vec<String> = dirs.into_iter().filter(|d| d != ".").collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
    for rel in dirs {
        if std::fs::remove_dir(root.join(&rel)).is_ok() {
            ledger.forget(&rel)?;
        }
    }
    done.left = foreign_under(root, &ledger);
    if !done.left.is_empty() {
        return Ok(done);
    }
    let root_owned = ledger.owned().contains_key(".");
    ledger.remove()?;
    if root_owned {
        std::fs::remove_dir(root).map_err(|e| kerr(format!("remove {}", root.display()), e))?;
        done.root_removed = true;
    }
    Ok(done)
}

/// Every entry under `root` but the record and the deployment's own
/// directories, descended into (bounded): what a destroy left alone.
fn foreign_under(root: &Path, ledger: &Ledger) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut queue = vec![root.to_path_buf()];
    while let Some(dir) = queue.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if dir == root && e.file_name() == ownership::STATE_DIR {
                continue;
            }
            if out.len() >= 1000 {
                return out;
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                queue.push(p.clone());
                if ledger.relative(&p).is_some_and(|rel| ledger.owns(&rel)) {
                    continue;
                }
            }
            out.push(p);
        }
    }
    out.sort();
    out
}
