//! struct_ops: a BPF TCP congestion control (`kiln_cc` in
//! attach_struct_ops.bpf.c) is registered through a struct_ops link, used by
//! a loopback TCP connection, and unregistered by dropping the link.

mod attach_util;

use attach_util::*;
use kiln_loader::links::Link;
use kiln_loader::links::struct_ops::{StructOpsLink, register_struct_ops, struct_ops_specs};
use kiln_testkit::{Need, test};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const AVAILABLE: &str = "/proc/sys/net/ipv4/tcp_available_congestion_control";

struct Loaded {
    elf: Vec<u8>,
    spec: kiln_obj::ObjectSpec,
    ebpf: kiln_loader::Ebpf,
}

fn register(var: &str) -> Res<(Loaded, StructOpsLink)> {
    let path = kiln_testkit::bpf_object("attach_struct_ops.bpf.o")?;
    let elf = std::fs::read(&path)?;
    let spec = kiln_obj::ObjectSpec::parse(&elf)?;
    let ebpf = kiln_loader::EbpfLoader::new().load(&spec)?;
    let link = register_struct_ops(&elf, &spec, &ebpf, var)?;
    Ok((Loaded { elf, spec, ebpf }, link))
}

/// Whether this kernel registers the BPF congestion control `var` (a
/// `.struct_ops.link` table needs 6.4; both need the struct_ops
/// trampolines, which some kernels refuse).
fn refused(var: &str) -> Option<String> {
    // A missing or unloadable object is no reason to skip: the test then
    // runs and fails on it. Only the registration itself may be refused.
    let path = kiln_testkit::bpf_object("attach_struct_ops.bpf.o").ok()?;
    let elf = std::fs::read(path).ok()?;
    let spec = kiln_obj::ObjectSpec::parse(&elf).ok()?;
    let ebpf = kiln_loader::EbpfLoader::new().load(&spec).ok()?;
    register_struct_ops(&elf, &spec, &ebpf, var)
        .err()
        .map(|e| format!("kernel refuses the struct_ops registration of {var}: {e}"))
}

fn no_struct_ops_link() -> Option<String> {
    refused("kiln_cc")
}

fn no_struct_ops() -> Option<String> {
    refused("kiln_cc_old")
}

fn available() -> Res<Vec<String>> {
    Ok(std::fs::read_to_string(AVAILABLE)?
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

fn set_cc(s: &TcpStream, name: &str) -> Res<()> {
    // SAFETY: the option value is `name`'s bytes, valid for the call.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(format!("TCP_CONGESTION {name}: {}", std::io::Error::last_os_error()).into());
    }
    Ok(())
}

fn get_cc(s: &TcpStream) -> Res<String> {
    let mut buf = [0u8; 16];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` and `len` are valid and `len` says how long `buf` is.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

fn spec_lists_members_and_programs() -> TestResult {
    let elf = std::fs::read(kiln_testkit::bpf_object("attach_struct_ops.bpf.o")?)?;
    let specs = struct_ops_specs(&elf, "attach_struct_ops.bpf.o")?;
    check(specs.len() == 3, || format!("{specs:?}"))?;
    let old = specs
        .iter()
        .find(|s| s.name == "kiln_cc_old")
        .ok_or("no kiln_cc_old")?;
    check(!old.link && old.section == ".struct_ops", || {
        format!("{old:?}")
    })?;
    let s = specs
        .iter()
        .find(|s| s.name == "kiln_cc")
        .ok_or("no kiln_cc")?;
    check(
        s.name == "kiln_cc" && s.link && s.type_name == "tcp_congestion_ops",
        || format!("{s:?}"),
    )?;
    let prog_of = |m: &str| {
        s.members
            .iter()
            .find(|x| x.name == m)
            .and_then(|x| x.program.clone())
    };
    for (member, prog) in [
        ("init", "kiln_init"),
        ("ssthresh", "kiln_ssthresh"),
        ("cong_avoid", "kiln_cong_avoid"),
        ("undo_cwnd", "kiln_undo_cwnd"),
    ] {
        check(prog_of(member).as_deref() == Some(prog), || {
            format!("{member} -> {:?}", prog_of(member))
        })?;
    }
    check(prog_of("cwnd_event").is_none(), || {
        "unset member has a program".into()
    })?;
    let name = s
        .members
        .iter()
        .find(|m| m.name == "name")
        .ok_or("no name member")?;
    let bytes = &s.data[name.offset as usize..][..8];
    check(bytes == b"kiln_cc\0", || format!("name bytes {bytes:?}"))
}

/// Sends 4 MiB over a loopback connection whose sender uses congestion
/// control `cc`; returns the callback counts of the program.
fn transfer(ebpf: &kiln_loader::Ebpf, cc: &str) -> Res<[u64; 5]> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> Res<usize> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    });
    let mut client = TcpStream::connect(addr)?;
    set_cc(&client, cc)?;
    check(get_cc(&client)? == cc, || {
        format!("socket uses {:?}", get_cc(&client))
    })?;
    let chunk = vec![0x5au8; 1 << 16];
    for _ in 0..64 {
        client.write_all(&chunk)?;
    }
    client.shutdown(std::net::Shutdown::Write)?;
    let got = reader.join().map_err(|_| "reader thread panicked")??;
    check(got == 64 << 16, || format!("server read {got} bytes"))?;
    Ok(ebpf.global("calls")?)
}

fn unregistered(cc: &str) -> TestResult {
    check(!available()?.iter().any(|n| n == cc), || {
        format!("{cc} still registered: {:?}", available())
    })?;
    // A new socket cannot pick it any more.
    let s = TcpStream::connect(TcpListener::bind("127.0.0.1:0")?.local_addr()?)?;
    check(set_cc(&s, cc).is_err(), || {
        format!("TCP_CONGESTION {cc} accepted after unregistering")
    })
}

fn congestion_control_runs_replaces_then_unregisters() -> TestResult {
    let (o, mut link) = register("kiln_cc")?;
    let ebpf = &o.ebpf;
    check(available()?.iter().any(|n| n == "kiln_cc"), || {
        format!("kiln_cc not in {AVAILABLE}: {:?}", available())
    })?;
    check(link.info().is_ok() && link.fd().is_some(), || {
        format!("link info {:?}", link.info())
    })?;
    let calls = transfer(ebpf, "kiln_cc")?;
    // init runs when the option is set on the connected socket; cong_avoid on
    // the ACKs of a transfer that fills the congestion window.
    check(calls[0] >= 1 && calls[2] >= 1 && calls[4] == 0, || {
        format!("calls [init, ssthresh, cong_avoid, undo, init v2] = {calls:?}")
    })?;

    // Swap in kiln_cc_v2 (same name, another init) through the same link.
    let id = link.info()?.id;
    link.replace_with_var(&o.elf, &o.spec, ebpf, "kiln_cc_v2")?;
    check(link.info()?.id == id, || "replace made a new link".into())?;
    let after = transfer(ebpf, "kiln_cc")?;
    check(after[4] >= 1 && after[0] == calls[0], || {
        format!("after replace: calls {after:?} (before {calls:?})")
    })?;
    drop(link);
    unregistered("kiln_cc")
}

fn table_without_link_registers_on_update() -> TestResult {
    let (o, mut link) = register("kiln_cc_old")?;
    let ebpf = &o.ebpf;
    check(link.fd().is_none(), || {
        "a .struct_ops table got a link".into()
    })?;
    check(available()?.iter().any(|n| n == "kiln_cc_old"), || {
        format!("kiln_cc_old not in {AVAILABLE}: {:?}", available())
    })?;
    let calls = transfer(ebpf, "kiln_cc_old")?;
    check(
        link.replace_with_var(&o.elf, &o.spec, ebpf, "kiln_cc_v2")
            .is_err(),
        || "a table without a link was replaced".into(),
    )?;
    check(calls[0] >= 1, || format!("calls {calls:?}"))?;
    link.detach()?;
    unregistered("kiln_cc_old")
}

fn main() {
    let base = [Need::Root, Need::Bpf];
    let with = |probe: Need| {
        let mut v = base.to_vec();
        v.push(probe);
        v
    };
    let linked = with(Need::Probe("struct_ops link", no_struct_ops_link));
    let legacy = with(Need::Probe("struct_ops", no_struct_ops));
    kiln_testkit::run(vec![
        test(
            "struct_ops_spec_lists_members_and_programs",
            &[],
            spec_lists_members_and_programs,
        ),
        test(
            "struct_ops_congestion_control_runs_replaces_then_unregisters",
            &linked,
            congestion_control_runs_replaces_then_unregisters,
        ),
        test(
            "struct_ops_table_without_link_registers_on_update",
            &legacy,
            table_without_link_registers_on_update,
        ),
    ]);
}
