//! One apply (or destroy) at a time per deployment: an exclusive `flock` on
//! `/run/kiln/<name>.lock` (or `$KILN_LOCK_DIR/<name>.lock`). The kernel drops
//! the lock when the process dies, so a crashed apply never wedges the next.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot open the deployment lock {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot take the deployment lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Held while a deployment is being changed; released on drop.
#[derive(Debug)]
pub struct DeploymentLock {
    _file: File,
}

pub fn lock_dir() -> PathBuf {
    std::env::var_os("KILN_LOCK_DIR").map_or_else(|| PathBuf::from("/run/kiln"), PathBuf::from)
}

impl DeploymentLock {
    /// Blocks until no other apply of `name` runs, saying so on stderr
    /// when it has to wait.
    pub fn acquire(name: &str) -> Result<Self, LockError> {
        let dir = lock_dir();
        let path = dir.join(format!("{name}.lock"));
        // Only the owner (root) may take or pre-create a deployment's lock:
        // anyone able to hold it could stall every apply.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| LockError::Open {
                path: path.clone(),
                source,
            })?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| LockError::Open {
                path: path.clone(),
                source,
            })?;
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let free = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if free {
            return Ok(DeploymentLock { _file: file });
        }
        // Another apply or destroy of this deployment runs: say why nothing
        // happens yet, rather than wait silently.
        let _ = writeln!(
            std::io::stderr(),
            "kiln: waiting for another apply or destroy of deployment '{name}' to finish (it holds {})",
            path.display()
        );
        loop {
            // SAFETY: flock on a descriptor we own; no memory is passed.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if r == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(LockError::Lock { path, source: err });
            }
        }
        Ok(DeploymentLock { _file: file })
    }
}
