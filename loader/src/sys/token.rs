//! BPF_TOKEN_CREATE, and the token that MAP_CREATE, BTF_LOAD and PROG_LOAD
//! carry while one is in scope on the calling thread.
//!
//! A token is passed per command (there is no per-process token in the
//! kernel). Rather than threading an fd through every map, BTF and program
//! constructor, the caller puts a token in scope for a closure
//! ([`with_token`]); the three commands that take one add it to their
//! attributes. The scope borrows the token's fd for the closure's duration,
//! so the number never outlives the descriptor.

use std::cell::Cell;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use super::attr::{Attr, TokenCreateAttr};
use super::{Cmd, SysError, bpf_fd};

/// BPF_TOKEN_CREATE from `bpffs`, an fd of a bpffs root (an opened directory
/// or an `fsmount` fd). Minimum kernel version: 6.9.
pub fn token_create(bpffs: BorrowedFd<'_>) -> Result<OwnedFd, SysError> {
    let mut attr = Attr::new(TokenCreateAttr {
        flags: 0,
        bpffs_fd: bpffs.as_raw_fd() as u32,
    });
    // SAFETY: integers only; the result is a new descriptor.
    unsafe { bpf_fd(Cmd::TokenCreate, &mut attr) }
}

/// Whether the kernel knows BPF_TOKEN_CREATE: an invalid bpffs fd is EBADF
/// there and EINVAL (unknown command) before 6.9. Says nothing about whether
/// this process may create one.
pub fn token_create_known() -> bool {
    let mut attr = Attr::new(TokenCreateAttr {
        flags: 0,
        bpffs_fd: u32::MAX,
    });
    // SAFETY: integers only; success is impossible with fd -1, and would
    // hand back a descriptor, which `bpf_fd` would own and close.
    match unsafe { bpf_fd(Cmd::TokenCreate, &mut attr) } {
        Ok(_) => true,
        Err(e) => e.errno() == libc::EBADF,
    }
}

thread_local! {
    static IN_SCOPE: Cell<Option<RawFd>> = const { Cell::new(None) };
    static REFUSED: Cell<Option<Cmd>> = const { Cell::new(None) };
}

/// Records an EPERM from `cmd` while a token is in scope (see [`take_refusal`]).
pub(super) fn note_refusal(cmd: Cmd) {
    if in_scope().is_some() {
        REFUSED.with(|r| r.set(Some(cmd)));
    }
}

/// The last command this thread had refused with EPERM while a token was in
/// scope (probes included), cleared by the call: callers explain a failure
/// through the token with it.
pub fn take_refusal() -> Option<Cmd> {
    REFUSED.with(Cell::take)
}

/// Runs `f` with `token` added to every MAP_CREATE, BTF_LOAD and PROG_LOAD
/// this thread makes (those that do not already carry a token). Scopes nest;
/// the previous one is restored when `f` returns or unwinds.
pub fn with_token<R>(token: BorrowedFd<'_>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<RawFd>);
    impl Drop for Restore {
        fn drop(&mut self) {
            IN_SCOPE.with(|t| t.set(self.0));
        }
    }
    let _restore = Restore(IN_SCOPE.with(|t| t.replace(Some(token.as_raw_fd()))));
    f()
}

/// The token in scope on this thread (see [`with_token`]).
pub fn in_scope() -> Option<RawFd> {
    IN_SCOPE.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn scopes_nest_and_restore_even_on_unwind() {
        let outer = std::fs::File::open("/").unwrap();
        let inner = std::fs::File::open("/").unwrap();
        assert_eq!(in_scope(), None);
        with_token(outer.as_fd(), || {
            assert_eq!(in_scope(), Some(outer.as_raw_fd()));
            with_token(inner.as_fd(), || {
                assert_eq!(in_scope(), Some(inner.as_raw_fd()));
            });
            assert_eq!(in_scope(), Some(outer.as_raw_fd()));
            let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                with_token(inner.as_fd(), || panic!("load failed"))
            }));
            assert!(unwound.is_err());
            assert_eq!(in_scope(), Some(outer.as_raw_fd()));
        });
        assert_eq!(in_scope(), None);
        let other_thread = std::thread::scope(|s| {
            s.spawn(|| with_token(outer.as_fd(), || std::thread::spawn(in_scope).join()))
                .join()
        });
        assert_eq!(
            other_thread.unwrap().unwrap(),
            None,
            "the scope is this thread's only"
        );
    }
}
