//! BPF tokens (kernel 6.9+): a process without CAP_BPF in the initial user
//! namespace loads exactly what a bpffs mounted with `delegate_cmds`,
//! `delegate_maps`, `delegate_progs` and `delegate_attachs` allows.
//!
//! The kernel creates a token only in the user namespace that owns the
//! bpffs (never in the initial one), so tokens are for containers and
//! user-namespaced services. Maps, BTF and programs take the token; links
//! do not (the kernel checks them against the program, which carries it).

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::sys::SysError;
use crate::sys::token::{token_create, with_token};

/// A failed [`Token::from_bpffs`], naming the bpffs.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The bpffs could not be opened.
    #[error("opening the bpffs {path} for a BPF token: {source}")]
    Open {
        /// The bpffs mount.
        path: PathBuf,
        /// Why it could not be opened.
        #[source]
        source: std::io::Error,
    },
    /// BPF_TOKEN_CREATE failed (the bpffs has no delegation, or the kernel is older than 6.9).
    #[error("creating a BPF token from {path}: {source}{}", token_hint(source.errno()))]
    Create {
        /// The bpffs mount.
        path: PathBuf,
        /// The kernel's answer.
        #[source]
        source: SysError,
    },
}

fn token_hint(errno: i32) -> &'static str {
    match errno {
        libc::EINVAL if !crate::probe::tokens() => " (this kernel has no BPF tokens: 6.9+)",
        libc::EINVAL => {
            " (the path must be the root of a bpffs mount, mounted with delegate_* options)"
        }
        libc::EOPNOTSUPP => {
            " (tokens are refused in the initial user namespace: run in a user namespace that owns the bpffs)"
        }
        libc::EPERM => {
            " (the bpffs must be mounted from inside this process's user namespace, which must hold CAP_BPF there)"
        }
        _ => "",
    }
}

/// A BPF token: an fd owned for as long as any clone lives.
///
/// Minimum kernel version: 6.9.
#[derive(Clone)]
pub struct Token {
    fd: Arc<OwnedFd>,
    bpffs: PathBuf,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("fd", &self.fd)
            .field("bpffs", &self.bpffs)
            .finish()
    }
}

impl Token {
    /// Creates a token from the bpffs mounted at `bpffs` (its root).
    pub fn from_bpffs(bpffs: impl AsRef<Path>) -> Result<Self, TokenError> {
        let path = bpffs.as_ref().to_owned();
        let dir = std::fs::File::open(&path).map_err(|source| TokenError::Open {
            path: path.clone(),
            source,
        })?;
        Self::from_bpffs_fd(dir.as_fd(), path)
    }

    /// Creates a token from `bpffs`, an fd of a bpffs root (an opened
    /// directory, or what `fsmount(2)` returned); `name` is what errors call it.
    pub fn from_bpffs_fd(bpffs: BorrowedFd<'_>, name: PathBuf) -> Result<Self, TokenError> {
        let fd = token_create(bpffs).map_err(|source| TokenError::Create {
            path: name.clone(),
            source,
        })?;
        Ok(Self {
            fd: Arc::new(fd),
            bpffs: name,
        })
    }

    /// The bpffs the token was created from.
    pub fn bpffs(&self) -> &Path {
        &self.bpffs
    }

    /// Runs `f` with every map, BTF and program it creates on this thread
    /// loaded through this token.
    pub fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        with_token(self.fd.as_fd(), f)
    }
}

impl AsFd for Token {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Whether a [`Token::scope`] is active on this thread (its MAP_CREATE,
/// BTF_LOAD and PROG_LOAD carry the token).
pub fn in_scope() -> bool {
    crate::sys::token::in_scope().is_some()
}

/// The command this thread last had refused with EPERM while a token was in
/// scope, cleared by the call: callers explain a failure through the token
/// with it (the bpffs did not delegate that command, map, program or attach type).
pub fn take_refusal() -> Option<crate::BpfCommand> {
    crate::sys::token::take_refusal()
}
