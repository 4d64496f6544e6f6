//! sk_reuseport (loader/tests/bpf/attach_reuseport.bpf.c): two UDP sockets
//! of one reuseport group in a REUSEPORT_SOCKARRAY, a selector attached with
//! SO_ATTACH_REUSEPORT_EBPF; each datagram lands on the socket its first
//! byte names, and after detach the kernel's hash decides again.

mod attach_util;

use std::net::UdpSocket;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use attach_util::*;
use kiln_loader::EbpfLoader;
use kiln_loader::links::Link;
use kiln_loader::links::socket_filter::attach_sk_reuseport;
use kiln_loader::maps::{Array, ReusePortSockArray, UpdateFlags};
use kiln_obj::ObjectSpec;
use kiln_testkit::{Need, test};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A UDP socket with SO_REUSEPORT bound to 127.0.0.1:`port` (0: any).
fn reuseport_socket(port: u16) -> Result<UdpSocket, Error> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: `raw` is a fresh fd nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let one: libc::c_int = 1;
    // SAFETY: `one` is a live c_int and its size goes with it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as u32,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let sock = UdpSocket::from(fd);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    // std's bind makes a new socket; bind the one with SO_REUSEPORT through libc.
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `sin` is a complete sockaddr_in and its size goes with it.
    let r = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&sin as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as u32,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    sock.set_read_timeout(Some(Duration::from_millis(300)))?;
    Ok(sock)
}

/// First bytes of the datagrams waiting on `sock`.
fn received(sock: &UdpSocket) -> Vec<u8> {
    let mut firsts = Vec::new();
    let mut buf = [0u8; 64];
    while let Ok(n) = sock.recv(&mut buf) {
        if n > 0 {
            firsts.push(buf[0]);
        }
    }
    firsts
}

fn so_cookie(sock: &UdpSocket) -> Result<u64, Error> {
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as u32;
    // SAFETY: `cookie` is writable for `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(cookie)
}

fn reuseport_selects_socket_by_payload() -> TestResult {
    let path = kiln_testkit::bpf_object("attach_reuseport.bpf.o")?;
    let ebpf = EbpfLoader::new().load(&ObjectSpec::parse(&std::fs::read(&path)?)?)?;
    let a = reuseport_socket(0)?;
    let port = a.local_addr()?.port();
    let b = reuseport_socket(port)?;
    let group = ReusePortSockArray::new(ebpf.map("group").ok_or("no group")?)?;
    group.set(0, a.as_fd(), UpdateFlags::ANY)?;
    group.set(1, b.as_fd(), UpdateFlags::ANY)?;
    check(group.cookie(1)? == Some(so_cookie(&b)?), || {
        "lookup does not answer b's cookie".into()
    })?;
    let selected: Array<_, u64> = Array::new(ebpf.map("selected").ok_or("no selected")?)?;
    let prog = ebpf.program("by_first_byte").ok_or("no by_first_byte")?;

    let mut link = attach_sk_reuseport(prog.fd(), a.as_fd())?;
    // One client socket: without the program the kernel's 4-tuple hash
    // would send every datagram to the same socket.
    let client = UdpSocket::bind("127.0.0.1:0")?;
    for first in [1u8, 0, 1, 1, 0] {
        client.send_to(&[first, b'k', b'i', b'l', b'n'], ("127.0.0.1", port))?;
    }
    let (on_a, on_b) = (received(&a), received(&b));
    check(on_a == [0, 0] && on_b == [1, 1, 1], || {
        format!("a got {on_a:?}, b got {on_b:?}")
    })?;
    check((selected.get(0)?, selected.get(1)?) == (2, 3), || {
        "selection counters".into()
    })?;

    link.detach()?;
    for _ in 0..4 {
        client.send_to(&[1, b'k'], ("127.0.0.1", port))?;
    }
    let (on_a, on_b) = (received(&a), received(&b));
    check(on_a.len() + on_b.len() == 4, || {
        format!("after detach a got {on_a:?}, b got {on_b:?}")
    })?;
    check(on_a.is_empty() || on_b.is_empty(), || {
        format!("after detach one 4-tuple went to both sockets: {on_a:?} / {on_b:?}")
    })?;
    check(selected.get(1)? == 3, || {
        "the selector ran after detach".into()
    })?;
    Ok(())
}

fn main() {
    kiln_testkit::run(vec![test(
        "reuseport_selects_socket_by_payload",
        &[Need::Root, Need::Bpf],
        reuseport_selects_socket_by_payload,
    )]);
}
