//! A socket filter on a UDP socket: packets sent to it run the program.

mod attach_util;

use attach_util::*;
use kiln_loader::links::Link;
use kiln_loader::links::socket_filter::attach_socket_filter;
use kiln_obj::ProgramKind;
use kiln_testkit::{Need, test};
use std::net::UdpSocket;
use std::os::fd::AsFd;

fn send(to: &UdpSocket, n: usize) -> TestResult {
    let from = UdpSocket::bind("127.0.0.1:0")?;
    for _ in 0..n {
        from.send_to(b"kiln", to.local_addr()?)?;
    }
    // Drain what arrived so the socket buffer never fills.
    to.set_nonblocking(true)?;
    let mut buf = [0u8; 16];
    while to.recv(&mut buf).is_ok() {}
    Ok(())
}

fn socket_filter_counts_updates_detaches() -> TestResult {
    let map = counters("sf_counts")?;
    // Returning -1 keeps the whole packet.
    let p0 = counter_prog(ProgramKind::SocketFilter, map.fd(), 0, -1)?;
    let p1 = counter_prog(ProgramKind::SocketFilter, map.fd(), 1, -1)?;
    let sock = UdpSocket::bind("127.0.0.1:0")?;

    let mut link = attach_socket_filter(p0.fd(), sock.as_fd())?;
    send(&sock, 4)?;
    check(count(&map, 0) == 4, || {
        format!("counter 0 = {}", count(&map, 0))
    })?;

    link.update(p1.fd(), None)?;
    send(&sock, 2)?;
    check(count(&map, 1) == 2, || {
        format!("counter 1 = {}", count(&map, 1))
    })?;
    check(count(&map, 0) == 4, || "old filter still runs".into())?;

    link.detach()?;
    send(&sock, 2)?;
    check(count(&map, 1) == 2, || "filter runs after detach".into())?;
    Ok(())
}

fn main() {
    kiln_testkit::run(vec![test(
        "socket_filter_counts_updates_detaches",
        &[Need::Root, Need::Bpf],
        socket_filter_counts_updates_detaches,
    )]);
}
