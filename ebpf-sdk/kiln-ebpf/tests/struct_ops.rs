//! A TCP congestion control written in Rust (rust-cc: `#[struct_ops]`
//! programs and a `tcp_congestion_ops` table in `.struct_ops.link`) is
//! registered through a struct_ops link, chosen by a loopback connection
//! with TCP_CONGESTION, and its callbacks run.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use kiln_loader::links::struct_ops::register_struct_ops;
use kiln_loader::maps::Array;
use kiln_obj::ObjectSpec;
use kiln_testkit::{Need, TestResult, bpf_object, test};

const NAME: &str = "kiln_rust_cc";
const TABLE: &str = "KILN_RUST_CC";

/// Whether this kernel registers a BPF congestion control through a link
/// (6.4+; the struct_ops trampolines are refused on some hosts). Only the
/// registration may be refused: a missing or unloadable object runs the test.
fn refused() -> Option<String> {
    let elf = std::fs::read(bpf_object("rust-cc.bpf.o").ok()?).ok()?;
    let spec = ObjectSpec::parse(&elf).ok()?;
    let ebpf = kiln_loader::EbpfLoader::new().load(&spec).ok()?;
    register_struct_ops(&elf, &spec, &ebpf, TABLE)
        .err()
        .map(|e| format!("kernel refuses the struct_ops registration of {TABLE}: {e}"))
}

fn rust_congestion_control_runs() -> TestResult {
    let elf = std::fs::read(bpf_object("rust-cc.bpf.o")?)?;
    let spec = ObjectSpec::parse(&elf)?;
    let ebpf = kiln_loader::EbpfLoader::new().load(&spec)?;
    let link = register_struct_ops(&elf, &spec, &ebpf, TABLE)?;
    let available = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control")?;
    assert!(
        available.split_whitespace().any(|n| n == NAME),
        "{NAME} registered: {available}"
    );
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let client = std::net::TcpStream::connect(("127.0.0.1", port))?;
    // SAFETY: the option value is NAME's bytes, valid for the call.
    let rc = unsafe {
        libc::setsockopt(
            client.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            NAME.as_ptr().cast(),
            NAME.len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(format!("TCP_CONGESTION {NAME}: {}", std::io::Error::last_os_error()).into());
    }
    let (mut server, _) = listener.accept()?;
    let payload = vec![7u8; 256 * 1024];
    let writer = std::thread::spawn(move || -> std::io::Result<TcpStream> {
        let mut client = client;
        client.write_all(&payload)?;
        Ok(client)
    });
    let mut got = vec![0u8; 256 * 1024];
    server.read_exact(&mut got)?;
    let client = writer.join().map_err(|_| "writer panicked")??;
    let calls: Array<_, u64> = Array::new(ebpf.map("CALLS").ok_or("no map CALLS")?)?;
    let init = calls.get(0)?;
    let acks = calls.get(2)?;
    drop(client);
    drop(link);
    assert!(init >= 1, "the Rust init callback ran for the connection");
    assert!(acks >= 1, "cong_avoid ran on ACKs of 256 KiB");
    Ok(())
}

fn main() {
    kiln_testkit::run(vec![test(
        "rust_congestion_control_runs",
        &[
            Need::Root,
            Need::Bpf,
            Need::Probe("struct_ops registration", refused),
        ],
        rust_congestion_control_runs,
    )]);
}
