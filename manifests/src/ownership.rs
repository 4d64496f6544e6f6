//! What a deployment owns under its pin root, so that Kiln removes only what
//! it created (or was told to adopt), never another tool's pins.
//!
//! The record lives on the bpffs itself, beside the pins it describes, so it
//! shares their lifetime (a reboot or an unmount clears both):
//!
//! ```text
//! <pin_root>/kiln_state/deployment      -> "<deployment name>"
//! <pin_root>/kiln_state/created_<hash>  -> "maps/COUNTERS"   (made by Kiln)
//! <pin_root>/kiln_state/adopted_<hash>  -> "maps/OLD"        (kiln apply --adopt)
//! ```
//!
//! Each entry is a symlink whose target is the owned path relative to the
//! pin root (bpffs holds no regular files, but it holds symlinks, and one
//! `symlink(2)` or `unlink(2)` is atomic). `.` stands for the pin root when
//! Kiln created it. Recording is write-ahead: a path is recorded before it is
//! pinned or created, and forgotten only after it was removed, so a process
//! killed at any point leaves a record that covers at least what exists. A
//! record of something absent is harmless and pruned by the next apply under
//! the deployment lock. The pin `P__kiln_new` (a staged pin) belongs to
//! whoever owns `P`.
//!
//! Pin roots laid out by Kiln before these records existed (no
//! `kiln_state`) are recognised as a *legacy* deployment only when the
//! evidence is complete: the deployment's lock file exists (this boot, an
//! apply of this name ran) and the pin root holds nothing but Kiln's own
//! layout (`maps/` with maps, `progs/` with programs, `links/` with links).
//! Anything else makes a first apply stop and ask for `--adopt`.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use crate::live::{LINKS, MAPS, PROGS};
use crate::plan::{Desired, Observed};

/// The directory under the pin root holding the record (no dot: bpffs
/// refuses dotted names).
pub const STATE_DIR: &str = "kiln_state";
const IDENTITY: &str = "deployment";
const CREATED: &str = "created_";
const ADOPTED: &str = "adopted_";
/// How many directories the search for nested deployments looks at, at most.
const WALK_LIMIT: usize = 10_000;
/// How many foreign paths an error lists before "and N more".
const LIST_LIMIT: usize = 12;

/// How a path came to be owned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Kiln pinned or created it.
    Created,
    /// `kiln apply --adopt` (or a legacy layout) took it over.
    Adopted,
}

#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    #[error(
        "pin root {root} is the bpf filesystem's mount point itself: other tools and the kernel (maps.debug, progs.debug) keep pins there\n  help: set [deployment] pin_root to a directory of its own under it, e.g. {root}/kiln/<name>"
    )]
    MountPoint { root: PathBuf },
    #[error(
        "pin root {root} lies inside the pin root {other_root} of deployment '{other}'\n  help: give each deployment a pin root of its own, side by side (e.g. /sys/fs/bpf/kiln/<name>)"
    )]
    InsideOther {
        root: PathBuf,
        other: String,
        other_root: PathBuf,
    },
    #[error(
        "pin root {root} contains the pin root {other_root} of deployment '{other}'\n  help: give each deployment a pin root of its own, side by side (e.g. /sys/fs/bpf/kiln/<name>)"
    )]
    ContainsOther {
        root: PathBuf,
        other: String,
        other_root: PathBuf,
    },
    #[error(
        "pin root {root} belongs to deployment '{other}' (its {STATE_DIR} record says so), not to '{name}'\n  help: pick another pin_root, or `kiln destroy` the other deployment first"
    )]
    BelongsTo {
        root: PathBuf,
        name: String,
        other: String,
    },
    #[error(
        "pin root {root} already holds pins that no Kiln deployment recorded as its own: {listing}\n  help: Kiln leaves them alone; `kiln apply --adopt` takes over the ones at this manifest's own paths (maps/<MAP>, progs/<PROG>, links/<PROG>) and records exactly those, or pick an empty pin_root"
    )]
    Unclaimed { root: PathBuf, listing: String },
    #[error(
        "{path} is pinned by something other than deployment '{name}', at a path the manifest needs\n  help: remove it, or take it over with `kiln apply --adopt` (only while the pin root has no Kiln record yet)"
    )]
    Occupied { name: String, path: PathBuf },
    /// A record entry points outside the pin root (a tampered record).
    #[error("ownership record {path}: '{target}' is not a plain path under the pin root")]
    RecordOutside { path: PathBuf, target: String },
    /// Every entry name for `rel` in the record directory is taken by
    /// something else.
    #[error("ownership record {dir}: no free entry for '{rel}'")]
    RecordFull { dir: PathBuf, rel: String },
    #[error("ownership record {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OwnershipError + '_ {
    move |source| OwnershipError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The record of what one deployment owns under its pin root.
#[derive(Clone, Debug)]
pub struct Ledger {
    root: PathBuf,
    name: String,
    /// Owned paths relative to the root ("." for the root itself).
    owned: BTreeMap<String, Origin>,
    /// The record entry (symlink) of each owned path.
    entries: BTreeMap<String, PathBuf>,
    /// The record exists on the bpffs (otherwise it is written on first use).
    written: bool,
    /// This process created the pin root.
    created_root: bool,
    /// This process wrote the record.
    created_record: bool,
}

impl Ledger {
    /// An empty record for a deployment not applied yet; nothing is written
    /// until something is recorded.
    pub fn fresh(root: &Path, name: &str) -> Ledger {
        Ledger {
            root: root.to_path_buf(),
            name: name.to_string(),
            owned: BTreeMap::new(),
            entries: BTreeMap::new(),
            written: false,
            created_root: false,
            created_record: false,
        }
    }

    /// The record under `root`, or `None` when there is none.
    pub fn read(root: &Path) -> Result<Option<Ledger>, OwnershipError> {
        let dir = root.join(STATE_DIR);
        let identity = dir.join(IDENTITY);
        let name = match std::fs::read_link(&identity) {
            Ok(t) => t.to_string_lossy().into_owned(),
            // No record (a kill between creating the directory and naming
            // it leaves none either: nothing can have been recorded yet).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&identity)(e)),
        };
        let mut owned = BTreeMap::new();
        let mut entries = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let file = entry.file_name().to_string_lossy().into_owned();
            let origin = if file.starts_with(CREATED) {
                Origin::Created
            } else if file.starts_with(ADOPTED) {
                Origin::Adopted
            } else {
                continue;
            };
            let path = entry.path();
            let target = std::fs::read_link(&path).map_err(io(&path))?;
            let rel = target.to_string_lossy().into_owned();
            if !is_plain_relative(&rel) {
                // Never let a tampered record point outside the pin root.
                return Err(OwnershipError::RecordOutside { path, target: rel });
            }
            owned.insert(rel.clone(), origin);
            entries.insert(rel, path);
        }
        Ok(Some(Ledger {
            root: root.to_path_buf(),
            name,
            owned,
            entries,
            written: true,
            created_root: false,
            created_record: false,
        }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether a record exists on the bpffs.
    pub fn is_written(&self) -> bool {
        self.written
    }

    /// Owned paths (relative to the root) and how each came to be owned.
    pub fn owned(&self) -> &BTreeMap<String, Origin> {
        &self.owned
    }

    /// Whether `rel` (relative to the root) is owned, a staged pin of an
    /// owned path included.
    pub fn owns(&self, rel: &str) -> bool {
        self.owned.contains_key(rel)
            || rel
                .strip_suffix(crate::apply::STAGING_SUFFIX)
                .is_some_and(|base| self.owned.contains_key(base))
    }

    /// `path` relative to the root, when it lies under it.
    pub fn relative(&self, path: &Path) -> Option<String> {
        let rel = path.strip_prefix(&self.root).ok()?;
        if rel.as_os_str().is_empty() {
            return Some(".".into());
        }
        Some(rel.to_string_lossy().into_owned())
    }

    /// Records `rel` as owned (before it is created), creating the record,
    /// and the pin root when it is missing, on first use. Returns whether
    /// the record is new.
    pub fn record(&mut self, rel: &str, origin: Origin) -> Result<bool, OwnershipError> {
        if self.owned.contains_key(rel) {
            return Ok(false);
        }
        self.write_identity()?;
        let entry = self.write_entry(rel, origin)?;
        self.owned.insert(rel.to_string(), origin);
        self.entries.insert(rel.to_string(), entry);
        Ok(true)
    }

    /// Forgets `rel` (after it was removed).
    pub fn forget(&mut self, rel: &str) -> Result<(), OwnershipError> {
        if self.owned.remove(rel).is_none() {
            return Ok(());
        }
        if let Some(path) = self.entries.remove(rel) {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Ok(())
    }

    /// Forgets every owned path that no longer exists (left by a killed
    /// apply or destroy), so that a foreign pin later placed there is never
    /// taken for ours.
    pub fn prune_absent(&mut self) -> Result<(), OwnershipError> {
        let absent: Vec<String> = self
            .owned
            .keys()
            .filter(|rel| self.root.join(rel).symlink_metadata().is_err())
            .cloned()
            .collect();
        for rel in absent {
            self.forget(&rel)?;
        }
        Ok(())
    }

    /// Removes the record itself (once nothing is owned any more).
    pub fn remove(&mut self) -> Result<(), OwnershipError> {
        if !self.written {
            return Ok(());
        }
        let dir = self.root.join(STATE_DIR);
        match std::fs::read_dir(&dir) {
            Ok(rd) => {
                for e in rd.flatten() {
                    std::fs::remove_file(e.path()).map_err(io(&e.path()))?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&dir)(e)),
        }
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&dir)(e)),
        }
        self.written = false;
        Ok(())
    }

    /// Undoes a first apply that failed: when this process wrote the
    /// record and nothing but the pin root is owned, removes the record and
    /// the pin root if it created it (and it is empty).
    pub fn discard_if_unused(&mut self) {
        if !self.created_record || self.owned.keys().any(|k| k != ".") {
            return;
        }
        if self.remove().is_ok() {
            if self.created_root {
                let _ = std::fs::remove_dir(&self.root);
            }
            self.owned.clear();
            self.entries.clear();
            self.created_root = false;
            self.created_record = false;
        }
    }

    fn write_identity(&mut self) -> Result<(), OwnershipError> {
        if self.written {
            return Ok(());
        }
        let created_root = !self.root.exists();
        let dir = self.root.join(STATE_DIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io(&dir))?;
        let identity = dir.join(IDENTITY);
        match std::os::unix::fs::symlink(&self.name, &identity) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(&identity)(e)),
        }
        self.written = true;
        self.created_record = true;
        if created_root {
            self.created_root = true;
            let entry = self.write_entry(".", Origin::Created)?;
            self.owned.insert(".".into(), Origin::Created);
            self.entries.insert(".".into(), entry);
        }
        Ok(())
    }

    fn entry_name(rel: &str, origin: Origin, probe: u64) -> String {
        let prefix = match origin {
            Origin::Created => CREATED,
            Origin::Adopted => ADOPTED,
        };
        format!("{prefix}{:016x}", fnv1a(rel).wrapping_add(probe))
    }

    /// Writes the entry of `rel`; returns its path.
    fn write_entry(&self, rel: &str, origin: Origin) -> Result<PathBuf, OwnershipError> {
        let dir = self.root.join(STATE_DIR);
        // Linear probing on the (vanishingly rare) hash collision.
        for probe in 0..64 {
            let path = dir.join(Self::entry_name(rel, origin, probe));
            match std::os::unix::fs::symlink(rel, &path) {
                Ok(()) => return Ok(path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if std::fs::read_link(&path).is_ok_and(|t| t == Path::new(rel)) {
                        return Ok(path);
                    }
                }
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Err(OwnershipError::RecordFull {
            dir,
            rel: rel.to_owned(),
        })
    }
}

/// A stable 64-bit hash of a record's path (FNV-1a): entry names must be
/// the same in every process, which `std`'s randomly seeded hasher is not.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `.` or a relative path of plain components.
fn is_plain_relative(rel: &str) -> bool {
    rel == "."
        || (!rel.is_empty()
            && Path::new(rel)
                .components()
                .all(|c| matches!(c, Component::Normal(_))))
}

/// How an apply takes hold of its pin root.
#[derive(Debug)]
pub struct Claim {
    pub ledger: Ledger,
    /// Paths to record as adopted before anything else happens.
    pub adopt: Vec<String>,
    /// What to tell the user (legacy layout recognised, what was adopted).
    pub note: Option<String>,
}

fn lock_path(name: &str) -> PathBuf {
    crate::lock::lock_dir().join(format!("{name}.lock"))
}

/// What this Kiln writes into every lock file it takes (`flock` ignores
/// the content): Kiln before ownership records never wrote one.
const LOCK_MARK: &str = "kiln: deployment with ownership records\n";

/// Whether the lock file of deployment `name` proves that a Kiln from
/// before ownership records applied this name since boot (`/run` is
/// cleared at boot, as the bpffs is): it exists and is empty, since this
/// Kiln marks every lock file it takes ([`mark_lock`]). Read before taking
/// the lock, which creates it.
pub fn lock_seen(name: &str) -> bool {
    std::fs::metadata(lock_path(name)).is_ok_and(|m| m.is_file() && m.len() == 0)
}

/// Marks the lock file of `name` (held by this process) as taken by a
/// Kiln that keeps ownership records, so that it never passes for a legacy
/// deployment's, whatever happens to the pin root later (a failed first
/// apply, a destroy, another tool's pins in the same place).
pub fn mark_lock(name: &str) {
    let path = lock_path(name);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
        let _ = std::fs::write(&path, LOCK_MARK);
    }
}

/// Decides how the deployment `name` takes hold of its pin root, and moves
/// everything it does not own into `observed.foreign`. Pure but for reading
/// the record and the pin root: the adoptions are written by the caller
/// ([`Ledger::record`]). `lock_seen`: see [`lock_seen`].
pub fn claim(
    root: &Path,
    name: &str,
    desired: &Desired,
    observed: &mut Observed,
    adopt: bool,
    lock_seen: bool,
) -> Result<Claim, OwnershipError> {
    if let Some(ledger) = Ledger::read(root)? {
        if ledger.name() != name {
            return Err(OwnershipError::BelongsTo {
                root: root.to_path_buf(),
                name: name.to_string(),
                other: ledger.name().to_string(),
            });
        }
        // `observe` already classified by this very record.
        return Ok(Claim {
            ledger,
            adopt: Vec::new(),
            note: None,
        });
    }
    let ledger = Ledger::fresh(root, name);
    let layout = layout_items(observed);
    if layout.is_empty() && observed.foreign.is_empty() && observed.strays.is_empty() {
        return Ok(Claim {
            ledger,
            adopt: Vec::new(),
            note: None,
        });
    }
    if lock_seen && legacy_layout(root, observed) {
        let mut adopt: Vec<String> = [MAPS, PROGS, LINKS]
            .into_iter()
            .filter(|d| root.join(d).is_dir())
            .map(String::from)
            .collect();
        adopt.push(".".into());
        adopt.extend(layout.iter().cloned());
        adopt.extend(
            observed
                .strays
                .iter()
                .filter_map(|p| p.strip_prefix(root).ok())
                .map(|p| p.to_string_lossy().into_owned()),
        );
        let note = format!(
            "pin root {} was laid out by an earlier Kiln (deployment '{name}', lock file present): recorded its {} pin(s) as owned",
            root.display(),
            layout.len()
        );
        return Ok(Claim {
            ledger,
            adopt,
            note: Some(note),
        });
    }
    if !adopt {
        let mut all: Vec<String> = layout.clone();
        all.extend(
            observed
                .foreign
                .iter()
                .chain(&observed.strays)
                .filter_map(|p| p.strip_prefix(root).ok())
                .map(|p| p.to_string_lossy().into_owned()),
        );
        all.sort();
        return Err(OwnershipError::Unclaimed {
            root: root.to_path_buf(),
            listing: listing(&all),
        });
    }
    // --adopt: exactly the pins at paths this manifest names.
    let wanted = |rel: &str| {
        let (dir, item) = rel.split_once('/').unwrap_or(("", rel));
        match dir {
            MAPS => desired.maps.contains_key(item),
            PROGS | LINKS => desired.programs.contains_key(item),
            _ => false,
        }
    };
    let (adopt, rest): (Vec<String>, Vec<String>) = layout.into_iter().partition(|r| wanted(r));
    for rel in &rest {
        disown(observed, root, rel);
    }
    let strays = std::mem::take(&mut observed.strays);
    observed.foreign.extend(strays);
    observed.foreign.sort();
    let note = if adopt.is_empty() {
        format!(
            "--adopt: nothing under {} is at this manifest's paths; adopted nothing, left {} foreign pin(s) alone",
            root.display(),
            observed.foreign.len()
        )
    } else {
        format!("--adopt: recorded as owned: {}", adopt.join(", "))
    };
    Ok(Claim {
        ledger,
        adopt,
        note: Some(note),
    })
}

/// Layout items found by `observe` (maps/X, progs/X, links/X), relative.
fn layout_items(o: &Observed) -> Vec<String> {
    let mut v: Vec<String> = o.maps.keys().map(|k| format!("{MAPS}/{k}")).collect();
    v.extend(o.programs.keys().map(|k| format!("{PROGS}/{k}")));
    v.extend(o.links.keys().map(|k| format!("{LINKS}/{k}")));
    v
}

/// Moves a layout item from the observed deployment to the foreign list.
fn disown(o: &mut Observed, root: &Path, rel: &str) {
    let Some((dir, item)) = rel.split_once('/') else {
        return;
    };
    let removed = match dir {
        MAPS => o.maps.remove(item).is_some(),
        PROGS => o.programs.remove(item).is_some(),
        LINKS => o.links.remove(item).is_some(),
        _ => false,
    };
    if removed {
        o.foreign.push(root.join(rel));
    }
}

/// The pin root holds nothing but an earlier Kiln's layout.
fn legacy_layout(root: &Path, observed: &Observed) -> bool {
    observed.foreign.is_empty()
        && observed.strays.iter().all(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(crate::apply::STAGING_SUFFIX))
        })
        && !layout_items(observed).is_empty()
        && root.is_dir()
}

fn listing(all: &[String]) -> String {
    let mut s = all
        .iter()
        .take(LIST_LIMIT)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > LIST_LIMIT {
        s += &format!(" and {} more", all.len() - LIST_LIMIT);
    }
    s
}

/// Refuses a manifest path that a foreign pin occupies: pinning there would
/// replace (and so destroy) it.
pub fn check_occupied(
    name: &str,
    root: &Path,
    desired: &Desired,
    observed: &Observed,
) -> Result<(), OwnershipError> {
    let mut needed: Vec<PathBuf> = desired
        .maps
        .keys()
        .map(|m| root.join(MAPS).join(m))
        .collect();
    for p in desired.programs.keys() {
        needed.push(root.join(PROGS).join(p));
        needed.push(root.join(LINKS).join(p));
    }
    match needed.into_iter().find(|p| observed.foreign.contains(p)) {
        Some(path) => Err(OwnershipError::Occupied {
            name: name.to_string(),
            path,
        }),
        None => Ok(()),
    }
}

/// The deployment whose record is at `dir`, if any.
fn deployment_at(dir: &Path) -> Option<String> {
    std::fs::read_link(dir.join(STATE_DIR).join(IDENTITY))
        .ok()
        .map(|t| t.to_string_lossy().into_owned())
}

/// Whether `path` is the root of a mount (its parent is on another device).
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    match path.parent() {
        None => true,
        Some(parent) => std::fs::metadata(parent).is_ok_and(|p| p.dev() != meta.dev()),
    }
}

/// Refuses a pin root that is a bpffs mount point, or that lies inside or
/// contains another deployment's pin root (found from the records on the
/// same bpffs).
pub fn check_root(root: &Path) -> Result<(), OwnershipError> {
    if root.exists() && is_mount_point(root) {
        return Err(OwnershipError::MountPoint {
            root: root.to_path_buf(),
        });
    }
    // Upwards, up to and including the mount point.
    for a in root.ancestors().skip(1) {
        if !a.exists() {
            continue;
        }
        if let Some(other) = deployment_at(a) {
            return Err(OwnershipError::InsideOther {
                root: root.to_path_buf(),
                other,
                other_root: a.to_path_buf(),
            });
        }
        if is_mount_point(a) {
            break;
        }
    }
    // Downwards, bounded.
    if !root.is_dir() {
        return Ok(());
    }
    let mut queue = vec![root.to_path_buf()];
    let mut seen = 0usize;
    while let Some(dir) = queue.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if !ft.is_dir() || e.file_name() == STATE_DIR {
                continue;
            }
            seen += 1;
            if seen > WALK_LIMIT {
                return Ok(());
            }
            let p = e.path();
            if let Some(other) = deployment_at(&p) {
                return Err(OwnershipError::ContainsOther {
                    root: root.to_path_buf(),
                    other,
                    other_root: p,
                });
            }
            queue.push(p);
        }
    }
    Ok(())
}

/// The group id `group` names: a number, or a name in the system's group
/// database.
pub fn group_id(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Some(gid);
    }
    let name = std::ffi::CString::new(group).ok()?;
    let mut size = 4096;
    // The group's member list can outgrow the buffer: retry larger, bounded.
    while size <= 1 << 20 {
        let mut buf = vec![0u8; size];
        // SAFETY: an all-zero `group` is a valid out-parameter.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer refers to memory we own for the call's
        // duration, `buf.len()` is its size, and `name` is NUL-terminated.
        let rc = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE {
            size *= 4;
            continue;
        }
        return (rc == 0 && !found.is_null()).then_some(grp.gr_gid);
    }
    None
}

/// Gives the group `readers` read access to the deployment's maps, or (with
/// `None`) takes it back: map pins 0640 (0600), the pin root and `maps/`
/// 0750 (0700), owned by that group. Only owned paths are touched. Returns
/// what it changed, and the directories above the pin root that the group
/// cannot pass through (the bpffs mount is often 0700).
pub fn apply_readers(
    ledger: &Ledger,
    readers: Option<u32>,
) -> Result<(Vec<String>, Vec<PathBuf>), OwnershipError> {
    use std::os::unix::fs::PermissionsExt;
    let mut changed = Vec::new();
    for rel in ledger.owned().keys() {
        let dir = rel == "." || rel == MAPS;
        let map = rel.strip_prefix(MAPS).is_some_and(|r| r.starts_with('/'));
        if !dir && !map {
            continue;
        }
        let path = ledger.root().join(rel);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let private = if dir { 0o700 } else { 0o600 };
        let mode = match readers {
            Some(_) if dir => 0o750,
            Some(_) => 0o640,
            None => private,
        };
        if let Some(gid) = readers
            && meta.gid() != gid
        {
            std::os::unix::fs::chown(&path, None, Some(gid)).map_err(io(&path))?;
            changed.push(rel.clone());
        }
        if meta.mode() & 0o777 != mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(io(&path))?;
            changed.push(rel.clone());
        }
    }
    changed.dedup();
    let mut blocked = Vec::new();
    if let Some(gid) = readers {
        for a in ledger.root().ancestors().skip(1) {
            if let Ok(m) = std::fs::metadata(a) {
                let passes = m.mode() & 0o001 != 0 || (m.gid() == gid && m.mode() & 0o010 != 0);
                if !passes {
                    blocked.push(a.to_path_buf());
                }
            }
            if is_mount_point(a) {
                break;
            }
        }
    }
    Ok((changed, blocked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_number_and_name() {
        assert_eq!(group_id("4242"), Some(4242));
        assert_eq!(group_id("no-such-group-kiln"), None);
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("a\0b"), None);
    }

    #[test]
    fn record_paths_are_plain_and_relative() {
        assert!(is_plain_relative("."));
        assert!(is_plain_relative("maps/COUNTERS"));
        assert!(!is_plain_relative("../x"));
        assert!(!is_plain_relative("/sys/fs/bpf"));
        assert!(!is_plain_relative("maps/../../x"));
        assert!(!is_plain_relative(""));
    }

    #[test]
    fn entry_names_are_stable_and_distinct() {
        assert_eq!(
            Ledger::entry_name("maps/A", Origin::Created, 0),
            Ledger::entry_name("maps/A", Origin::Created, 0)
        );
        assert_ne!(
            Ledger::entry_name("maps/A", Origin::Created, 0),
            Ledger::entry_name("maps/B", Origin::Created, 0)
        );
        assert!(Ledger::entry_name("maps/A", Origin::Adopted, 0).starts_with(ADOPTED));
        assert!(!Ledger::entry_name("x", Origin::Created, 0).contains('.'));
    }

    #[test]
    fn a_root_without_record_and_with_pins_is_refused_unless_adopted() {
        let root = Path::new("/nonexistent-kiln-test/root");
        let mut o = Observed::default();
        o.foreign.push(root.join("bpftool_map"));
        let err = claim(root, "t", &Desired::default(), &mut o, false, true).unwrap_err();
        assert!(err.to_string().contains("bpftool_map"), "{err}");
        let c = claim(root, "t", &Desired::default(), &mut o, true, true).unwrap();
        assert!(c.adopt.is_empty());
        assert_eq!(o.foreign, vec![root.join("bpftool_map")]);
    }
}
