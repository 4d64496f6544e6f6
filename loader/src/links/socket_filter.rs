//! Programs attached to a socket with setsockopt: socket filters
//! (`SO_ATTACH_BPF`, minimum kernel version 3.19) and reuseport selectors
//! (`SO_ATTACH_REUSEPORT_EBPF`, minimum kernel version 4.5; sk_reuseport
//! programs 4.19). Each lives as long as the socket.

use super::{Link, LinkError, Mechanism};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

const SO_ATTACH_BPF: libc::c_int = 50;
const SO_DETACH_BPF: libc::c_int = 27;
const SO_ATTACH_REUSEPORT_EBPF: libc::c_int = 52;
const SO_DETACH_REUSEPORT_BPF: libc::c_int = 68;

/// The setsockopt pair of one socket attachment.
#[derive(Clone, Copy, Debug)]
struct SockOpts {
    mechanism: Mechanism,
    attach: libc::c_int,
    detach: libc::c_int,
}

const FILTER: SockOpts = SockOpts {
    mechanism: Mechanism::SocketFilter,
    attach: SO_ATTACH_BPF,
    detach: SO_DETACH_BPF,
};

const REUSEPORT: SockOpts = SockOpts {
    mechanism: Mechanism::SkReuseport,
    attach: SO_ATTACH_REUSEPORT_EBPF,
    detach: SO_DETACH_REUSEPORT_BPF,
};

fn setsockopt(sock: BorrowedFd<'_>, opt: libc::c_int, value: libc::c_int) -> std::io::Result<()> {
    // SAFETY: `value` is a live c_int and its size is passed.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            &value as *const libc::c_int as *const libc::c_void,
            size_of::<libc::c_int>() as u32,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A socket filter or reuseport selector on a socket. Holds a duplicate of
/// the socket fd so it can detach; dropping it detaches (the socket itself
/// stays open for its owner).
#[derive(Debug)]
pub struct SocketFilterLink {
    socket: Option<OwnedFd>,
    opts: SockOpts,
}

fn target(sock: BorrowedFd<'_>) -> String {
    format!("socket fd {}", sock.as_raw_fd())
}

/// Attaches a socket_filter program to `socket` (replacing any filter it had).
pub fn attach_socket_filter(
    prog: BorrowedFd<'_>,
    socket: BorrowedFd<'_>,
) -> Result<SocketFilterLink, LinkError> {
    attach(prog, socket, FILTER)
}

/// Attaches an sk_reuseport program to the reuseport group of `socket` (a
/// socket bound with `SO_REUSEPORT`; replaces the group's selector): it picks
/// the group's socket for each incoming packet or connection, typically with
/// `bpf_sk_select_reuseport` and a `REUSEPORT_SOCKARRAY`
/// ([`crate::maps::ReusePortSockArray`]). Detaching (`SO_DETACH_REUSEPORT_BPF`)
/// needs 5.3.
pub fn attach_sk_reuseport(
    prog: BorrowedFd<'_>,
    socket: BorrowedFd<'_>,
) -> Result<SocketFilterLink, LinkError> {
    attach(prog, socket, REUSEPORT)
}

fn attach(
    prog: BorrowedFd<'_>,
    socket: BorrowedFd<'_>,
    opts: SockOpts,
) -> Result<SocketFilterLink, LinkError> {
    let m = opts.mechanism;
    setsockopt(socket, opts.attach, prog.as_raw_fd())
        .map_err(|e| LinkError::kernel(m, "attach", target(socket), e))?;
    let dup = socket
        .try_clone_to_owned()
        .map_err(|e| LinkError::kernel(m, "dup", target(socket), e))?;
    Ok(SocketFilterLink {
        socket: Some(dup),
        opts,
    })
}

impl Link for SocketFilterLink {
    fn mechanism(&self) -> Mechanism {
        self.opts.mechanism
    }

    fn target(&self) -> String {
        self.socket
            .as_ref()
            .map(|s| target(std::os::fd::AsFd::as_fd(s)))
            .unwrap_or_else(|| "detached socket".into())
    }

    /// `SO_ATTACH_BPF` again swaps the filter atomically; `old_prog` cannot be
    /// checked (the kernel does not report a socket's filter program).
    fn update(
        &mut self,
        new_prog: BorrowedFd<'_>,
        old_prog: Option<BorrowedFd<'_>>,
    ) -> Result<(), LinkError> {
        if old_prog.is_some() {
            return Err(LinkError::unsupported(
                self.opts.mechanism,
                "update with old program check",
                "a socket does not report its filter program",
            ));
        }
        let sock = self.socket.as_ref().ok_or_else(|| {
            LinkError::unsupported(self.opts.mechanism, "update", "already detached")
        })?;
        setsockopt(
            std::os::fd::AsFd::as_fd(sock),
            self.opts.attach,
            new_prog.as_raw_fd(),
        )
        .map_err(|e| LinkError::kernel(self.opts.mechanism, "update", self.target(), e))
    }

    fn detach(&mut self) -> Result<(), LinkError> {
        let Some(sock) = self.socket.take() else {
            return Ok(());
        };
        match setsockopt(std::os::fd::AsFd::as_fd(&sock), self.opts.detach, 0) {
            // ENOENT: the owner already detached or replaced it with a classic filter.
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => Err(LinkError::kernel(
                self.opts.mechanism,
                "detach",
                target(std::os::fd::AsFd::as_fd(&sock)),
                e,
            )),
            _ => Ok(()),
        }
    }

    fn keep(&mut self) -> Result<(), LinkError> {
        self.socket = None;
        Ok(())
    }
}

impl Drop for SocketFilterLink {
    fn drop(&mut self) {
        let _ = self.detach();
    }
}
