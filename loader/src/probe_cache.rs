//! Probe verdicts remembered for the rest of the boot, so that a later
//! `kiln` command pays nothing for a feature already probed.
//!
//! One file per kernel release and boot (`probes-<release>-<boot id>`) in a
//! root-only runtime directory (`/run/kiln`, or `$KILN_PROBE_CACHE`; `off`
//! disables it). A probe's verdict can only change with the kernel, so the
//! key is the kernel and the boot. The cache is used only by a fully
//! privileged root (what a process without privileges probes says nothing
//! about the kernel) and only where the directory and the file are root's
//! and nobody else may write them.
//! Reading it is best effort: anything odd and the probe runs again.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const DEFAULT_DIR: &str = "/run/kiln";
const HEADER: &str = "kiln-probes 1";
/// A cache file larger than this is not ours.
const MAX_BYTES: u64 = 64 * 1024;

/// The cache file for this kernel and boot, if caching applies here: only
/// for root with every capability the probes use (with fewer, a probe may
/// fail for want of a capability, which says nothing about the kernel).
fn file() -> Option<PathBuf> {
    use crate::sys::caps::{Capability, missing};
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let all = [
        Capability::Bpf,
        Capability::Perfmon,
        Capability::NetAdmin,
        Capability::SysAdmin,
    ];
    // In a user namespace, capabilities reach bpf() only through a BPF
    // token, so the probes answer for its delegation, not for the kernel.
    if !root || !missing(&all).is_empty() || crate::sys::caps::in_child_user_namespace() {
        return None;
    }
    let dir = match std::env::var_os("KILN_PROBE_CACHE") {
        Some(d) if d == "off" => return None,
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(DEFAULT_DIR),
    };
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let key: String = format!("{}-{}", release.trim(), boot.trim())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(dir.join(format!("probes-{key}")))
}

/// Root's, and writable by root only.
fn private(meta: &std::fs::Metadata) -> bool {
    meta.uid() == 0 && meta.mode() & 0o022 == 0
}

fn read_at(path: &Path) -> BTreeMap<String, bool> {
    let mut out = BTreeMap::new();
    let ok = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| private(&m));
    let Some(dir) = path.parent() else {
        return out;
    };
    if !ok(dir) || !ok(path) {
        return out;
    }
    let Ok(meta) = std::fs::metadata(path) else {
        return out;
    };
    if meta.len() > MAX_BYTES {
        return out;
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return out;
    };
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return out;
    }
    for line in lines {
        match line.split_once('=') {
            Some((name, "1")) => out.insert(name.to_owned(), true),
            Some((name, "0")) => out.insert(name.to_owned(), false),
            _ => continue,
        };
    }
    out
}

/// The verdicts cached for this boot (empty when there is no usable cache).
pub(crate) fn read() -> BTreeMap<String, bool> {
    file().map(|p| read_at(&p)).unwrap_or_default()
}

/// Adds `verdicts` to the cache (best effort: written beside it, renamed
/// over it, so a reader never sees half a file).
pub(crate) fn store(verdicts: &BTreeMap<String, bool>) {
    let Some(path) = file() else { return };
    let Some(dir) = path.parent() else { return };
    if std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .is_err()
        || !std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && private(&m))
    {
        return;
    }
    let mut all = read_at(&path);
    all.extend(verdicts.iter().map(|(k, v)| (k.clone(), *v)));
    let mut text = format!("{HEADER}\n");
    for (name, v) in &all {
        text += &format!("{name}={}\n", u8::from(*v));
    }
    let tmp = dir.join(format!(".probes-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if written.is_err() || std::fs::rename(&tmp, &path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}
