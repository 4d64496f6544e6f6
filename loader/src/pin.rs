//! Pinning under bpffs, and the compatibility check before a pinned map is reused.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use kiln_obj::MapSpec;

use crate::maps::{Map, MapInfo};
use crate::sys::SysError;
use crate::sys::object::{self as sysobj};

pub use crate::sys::object::OpenFlags;

/// `BPF_FS_MAGIC` as `statfs(2)` reports it for a bpffs mount.
pub const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// A failed pin, unpin or open under bpffs; each names the object and the path.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The pin directory is not on a bpf filesystem.
    #[error(
        "cannot pin '{name}' at {path}: {path} is not on a bpf filesystem (mount -t bpf bpf /sys/fs/bpf)"
    )]
    NotBpffs {
        /// The pinned object's name.
        name: String,
        /// The pin path.
        path: PathBuf,
    },
    /// BPF_OBJ_PIN failed.
    #[error("cannot pin '{name}' at {path}: {source}")]
    Pin {
        /// The pinned object's name.
        name: String,
        /// The pin path.
        path: PathBuf,
        /// Why.
        #[source]
        source: SysError,
    },
    /// The pin path would leave its directory.
    #[error(
        "cannot pin '{name}' at {path}: the path has a '..' component, so the pin could land outside its directory (rename the object or pick a plain pin directory)"
    )]
    Escapes {
        /// The pinned object's name.
        name: String,
        /// The pin path.
        path: PathBuf,
    },
    /// A file system operation on the pin path failed.
    #[error("'{name}': {path}: {source}")]
    Io {
        /// The pinned object's name.
        name: String,
        /// The pin path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// BPF_OBJ_GET of a pin failed (no such pin, not a bpffs, no access).
    #[error("cannot open the pin {path}: {source}")]
    Open {
        /// The pin.
        path: PathBuf,
        /// The failed bpf(2) call.
        #[source]
        source: SysError,
    },
    /// A map pinned at the path differs from the object's definition.
    #[error("map '{name}': pinned map at {path} has {what} {pinned}, object wants {wanted}")]
    Incompatible {
        /// The pinned object's name.
        name: String,
        /// The pin path.
        path: PathBuf,
        /// What differs (`type`, `key size`, ...).
        what: &'static str,
        /// The pinned map's value.
        pinned: String,
        /// The object's value.
        wanted: String,
    },
}

/// Whether `path` (or, when it does not exist yet, its parent) is on a bpffs.
pub fn is_on_bpffs(path: &Path) -> std::io::Result<bool> {
    let probe = if path.exists() {
        path
    } else {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    };
    Ok(fs_type(probe)? == BPF_FS_MAGIC)
}

/// The file system magic `statfs(2)` reports for `path`.
fn fs_type(path: &Path) -> std::io::Result<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: statfs writes into `buf`, a zeroed struct of the right type; `c` is NUL-terminated.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    if unsafe { libc::statfs(c.as_ptr(), &mut buf) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(
        clippy::unnecessary_cast,
        reason = "f_type is i64 on x86_64, u32/i32 elsewhere"
    )]
    Ok(buf.f_type as i64)
}

/// Where systemd, bpftool and libbpf-based tools expect the bpf filesystem.
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf";

/// `SYSFS_MAGIC`: `/sys/fs/bpf` is still sysfs's own empty directory.
const SYSFS_MAGIC: i64 = 0x62656572;

/// Mounts a bpffs at [`DEFAULT_BPFFS`] when that is still sysfs's bare
/// directory, as systemd does at boot and bpftool does before it pins:
/// minimal systems, containers and fresh VMs often have nothing mounted
/// there. Anything already mounted there (a bpffs, or another file system
/// someone chose) is left alone. Returns whether this call mounted.
///
/// Needs CAP_SYS_ADMIN in the mount namespace.
pub fn mount_default_bpffs() -> std::io::Result<bool> {
    let dir = Path::new(DEFAULT_BPFFS);
    if fs_type(dir)? != SYSFS_MAGIC {
        return Ok(false);
    }
    // systemd's options for the same mount: private to root, no devices,
    // no set-uid, nothing executable.
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RELATIME;
    // SAFETY: all pointers are NUL-terminated literals that mount(2) only reads.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            c"/sys/fs/bpf".as_ptr(),
            c"bpf".as_ptr(),
            flags,
            c"mode=0700".as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(true)
}

/// Refuses a pin path with a `..` component: a map name such as `../x`
/// joined to a pin directory would otherwise pin (or reuse) outside it.
fn check_confined(path: &Path, name: &str) -> Result<(), PinError> {
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(PinError::Escapes {
            name: name.to_owned(),
            path: path.to_owned(),
        });
    }
    Ok(())
}

fn check_bpffs(path: &Path, name: &str) -> Result<(), PinError> {
    match is_on_bpffs(path) {
        Ok(true) => Ok(()),
        Ok(false) => Err(PinError::NotBpffs {
            name: name.to_owned(),
            path: path.to_owned(),
        }),
        Err(source) => Err(PinError::Io {
            name: name.to_owned(),
            path: path.to_owned(),
            source,
        }),
    }
}

/// Pins any bpf object fd at `path` after checking the directory is a bpffs.
/// `name` is what errors call the object.
pub fn pin_fd(fd: BorrowedFd<'_>, path: &Path, name: &str) -> Result<(), PinError> {
    check_confined(path, name)?;
    check_bpffs(path, name)?;
    sysobj::obj_pin(fd, path).map_err(|source| PinError::Pin {
        name: name.to_owned(),
        path: path.to_owned(),
        source,
    })
}

/// Opens whatever object (map, program or link) is pinned at `path` and
/// returns a new descriptor for it. Programs and links open only with
/// [`OpenFlags::ReadWrite`]. Typed handles: [`Map::from_pin`],
/// [`Program::from_pin`](crate::Program::from_pin).
pub fn open_pinned(path: impl AsRef<Path>, flags: OpenFlags) -> Result<OwnedFd, PinError> {
    let path = path.as_ref();
    sysobj::obj_get(path, flags).map_err(|source| PinError::Open {
        path: path.to_owned(),
        source,
    })
}

/// Removes a pin (the object lives on while other references exist).
pub fn unpin(path: &Path) -> std::io::Result<()> {
    std::fs::remove_file(path)
}

/// The flags the kernel reports for a map created from `spec`: devmaps and
/// cpumaps get `BPF_F_RDONLY_PROG` from the kernel itself (programs must not
/// write through the pointer a lookup returns), though creating one with
/// that flag is refused.
pub fn reported_map_flags(spec: &MapSpec) -> u32 {
    use kiln_obj::MapType as T;
    if [T::DEVMAP, T::DEVMAP_HASH, T::CPUMAP].contains(&spec.map_type) {
        spec.map_flags | crate::maps::MapFlags::RDONLY_PROG.bits()
    } else {
        spec.map_flags
    }
}

/// Compares a pinned map with what the object wants; the error names the first difference.
pub fn check_compatible(spec: &MapSpec, pinned: &MapInfo, path: &Path) -> Result<(), PinError> {
    let wanted_flags = reported_map_flags(spec);
    let checks: [(&'static str, String, String); 5] = [
        (
            "type",
            pinned.map_type.name().to_owned(),
            spec.map_type.name().to_owned(),
        ),
        (
            "key_size",
            pinned.key_size.to_string(),
            spec.key_size.to_string(),
        ),
        (
            "value_size",
            pinned.value_size.to_string(),
            spec.value_size.to_string(),
        ),
        (
            "max_entries",
            pinned.max_entries.to_string(),
            spec.max_entries.to_string(),
        ),
        (
            "map_flags",
            format!("{:#x}", pinned.flags.bits()),
            format!("{wanted_flags:#x}"),
        ),
    ];
    for (what, p, w) in checks {
        if p != w {
            return Err(PinError::Incompatible {
                name: spec.name.clone(),
                path: path.to_owned(),
                what,
                pinned: p,
                wanted: w,
            });
        }
    }
    Ok(())
}

/// Opens the map pinned at `path` when there is one and it matches `spec`.
/// `Ok(None)` when nothing is pinned there.
pub fn reuse_pinned_map(spec: &MapSpec, path: &Path) -> Result<Option<Map>, PinError> {
    check_confined(path, &spec.name)?;
    let fd = match sysobj::obj_get(path, sysobj::OpenFlags::ReadWrite) {
        Ok(fd) => fd,
        Err(e) if e.errno() == libc::ENOENT => return Ok(None),
        Err(source) => {
            return Err(PinError::Pin {
                name: spec.name.clone(),
                path: path.to_owned(),
                source,
            });
        }
    };
    let info =
        crate::maps::map_info(std::os::fd::AsFd::as_fd(&fd)).map_err(|source| PinError::Pin {
            name: spec.name.clone(),
            path: path.to_owned(),
            source,
        })?;
    check_compatible(spec, &info, path)?;
    Map::from_fd(fd, Some(&spec.name))
        .map(Some)
        .map_err(|e| PinError::Io {
            name: spec.name.clone(),
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_paths_with_dot_dot_are_refused() {
        let e = check_confined(Path::new("/sys/fs/bpf/app/../../etc"), "m").unwrap_err();
        assert!(matches!(e, PinError::Escapes { .. }), "{e}");
        assert!(e.to_string().contains("'..'"), "{e}");
        check_confined(Path::new("/sys/fs/bpf/app/COUNTERS"), "COUNTERS").unwrap();
    }
}
