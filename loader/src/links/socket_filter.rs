//! Socket filters: `setsockopt(SO_ATTACH_BPF)` on one socket. The filter lives
//! as long as the socket; minimum kernel version 3.19.

use super::{Link, LinkError, Mechanism};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

const SO_ATTACH_BPF: libc::c_int = 50;
const SO_DETACH_BPF: libc::c_int = 27;

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

/// A socket filter on a socket. Holds a duplicate of the socket fd so it can
/// detach; dropping it detaches (the socket itself stays open for its owner).
#[derive(Debug)]
pub struct SocketFilterLink {
    socket: Option<OwnedFd>,
}

fn target(sock: BorrowedFd<'_>) -> String {
    format!("socket fd {}", sock.as_raw_fd())
}

/// Attaches a socket_filter program to `socket` (replacing any filter it had).
pub fn attach_socket_filter(
    prog: BorrowedFd<'_>,
    socket: BorrowedFd<'_>,
) -> Result<SocketFilterLink, LinkError> {
    setsockopt(socket, SO_ATTACH_BPF, prog.as_raw_fd())
        .map_err(|e| LinkError::kernel(Mechanism::SocketFilter, "attach", target(socket), e))?;
    let dup = socket
        .try_clone_to_owned()
        .map_err(|e| LinkError::kernel(Mechanism::SocketFilter, "dup", target(socket), e))?;
    Ok(SocketFilterLink { socket: Some(dup) })
}

impl Link for SocketFilterLink {
    fn mechanism(&self) -> Mechanism {
        Mechanism::SocketFilter
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
                Mechanism::SocketFilter,
                "update with old program check",
                "a socket does not report its filter program",
            ));
        }
        let sock = self.socket.as_ref().ok_or_else(|| {
            LinkError::unsupported(Mechanism::SocketFilter, "update", "already detached")
        })?;
        setsockopt(
            std::os::fd::AsFd::as_fd(sock),
            SO_ATTACH_BPF,
            new_prog.as_raw_fd(),
        )
        .map_err(|e| LinkError::kernel(Mechanism::SocketFilter, "update", self.target(), e))
    }

    fn detach(&mut self) -> Result<(), LinkError> {
        let Some(sock) = self.socket.take() else {
            return Ok(());
        };
        match setsockopt(std::os::fd::AsFd::as_fd(&sock), SO_DETACH_BPF, 0) {
            // ENOENT: the owner already detached or replaced it with a classic filter.
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => Err(LinkError::kernel(
                Mechanism::SocketFilter,
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
