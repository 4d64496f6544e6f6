//! CO-RE from Rust, end to end: sdk-core's raw tracepoint reads the current
//! `task_struct` through the generated accessors (`core_read::Task`), and
//! what it recorded must agree with `bpf_get_current_pid_tgid()` and with
//! what /proc says about this process. Field offsets differ across kernels,
//! so in the VM matrix the same object proves the relocations on each one.

use kiln_loader::EbpfLoader;
use kiln_loader::links::raw_tracepoint::attach_raw_tracepoint;
use kiln_loader::maps::{Array, Pod};
use kiln_obj::ObjectSpec;
use kiln_testkit::{Need, TestResult, bpf_object, test};

/// sdk-core's `Seen` (48 bytes, no padding).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Seen {
    pid_tgid: u64,
    pid: u32,
    tgid: u32,
    parent_tgid: u32,
    leader_pid: u32,
    uid: u32,
    euid: u32,
    comm: [u8; 16],
}

// SAFETY: repr(C), integers and a byte array with no padding; any bits are valid.
unsafe impl Pod for Seen {}

/// `Uid:` of /proc/self/status: real and effective uid.
fn proc_uids() -> Result<(u32, u32), Box<dyn std::error::Error + Send + Sync>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .ok_or("no Uid: line in /proc/self/status")?;
    let mut ids = line.split_whitespace().map(str::parse::<u32>);
    Ok((
        ids.next().ok_or("no real uid")??,
        ids.next().ok_or("no effective uid")??,
    ))
}

fn task_fields_match_helpers() -> TestResult {
    let bytes = std::fs::read(bpf_object("sdk-core.bpf.o")?)?;
    let spec = ObjectSpec::parse(&bytes)?;
    let me = std::process::id();
    let ebpf = EbpfLoader::new()
        .set_global("TARGET_TGID", &me.to_ne_bytes())
        .load(&spec)?;
    let prog = ebpf
        .program("core_sys_enter")
        .ok_or("no program core_sys_enter")?;
    let seen: Array<_, Seen> = Array::new(ebpf.map("SEEN").ok_or("no map SEEN")?)?;
    let link = attach_raw_tracepoint(prog.fd(), "sys_enter")?;
    // Any syscall of this process triggers it; getppid is one.
    let parent = std::os::unix::process::parent_id();
    drop(link);
    let s = seen.get(0)?;
    if s.pid_tgid == 0 {
        return Err("the program never recorded a syscall of this process".into());
    }
    assert_eq!(s.tgid, me, "task->tgid is this process: {s:?}");
    assert_eq!(
        s.tgid,
        (s.pid_tgid >> 32) as u32,
        "task->tgid vs helper: {s:?}"
    );
    assert_eq!(s.pid, s.pid_tgid as u32, "task->pid vs helper: {s:?}");
    assert_eq!(
        s.leader_pid, me,
        "group_leader->pid is the main thread: {s:?}"
    );
    assert_eq!(
        s.parent_tgid, parent,
        "real_parent->tgid is getppid(): {s:?}"
    );
    let (uid, euid) = proc_uids()?;
    assert_eq!((s.uid, s.euid), (uid, euid), "cred->uid/euid: {s:?}");
    let comm = std::fs::read_to_string(format!("/proc/self/task/{}/comm", s.pid))?;
    let got = s.comm.split(|&b| b == 0).next().unwrap_or_default();
    assert_eq!(
        String::from_utf8_lossy(got),
        comm.trim_end(),
        "task->comm of thread {}",
        s.pid
    );
    Ok(())
}

/// sdk-core's `SockSeen`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct SockSeen {
    family: u16,
    num: u16,
    dport: u16,
    _pad: u16,
    daddr: u32,
    rcv_saddr: u32,
}

// SAFETY: repr(C) integers, no padding (16 bytes); any bits are valid.
unsafe impl Pod for SockSeen {}

/// `struct sock`'s addresses and ports live in anonymous unions of
/// `sock_common`; the CO-RE reads must still land on them.
fn sock_fields_match_the_connection() -> TestResult {
    let bytes = std::fs::read(bpf_object("sdk-core.bpf.o")?)?;
    let spec = ObjectSpec::parse(&bytes)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let ebpf = EbpfLoader::new()
        .set_global("TARGET_PORT", &port.to_ne_bytes())
        .load(&spec)?;
    let prog = ebpf
        .program("core_sock_state")
        .ok_or("no program core_sock_state")?;
    let seen: Array<_, SockSeen> = Array::new(ebpf.map("SOCK_SEEN").ok_or("no map SOCK_SEEN")?)?;
    let link = attach_raw_tracepoint(prog.fd(), "inet_sock_set_state")?;
    let client = std::net::TcpStream::connect(("127.0.0.1", port))?;
    let (_server, _) = listener.accept()?;
    drop(link);
    let s = seen.get(0)?;
    let local = client.local_addr()?.port();
    if s.family == 0 {
        return Err("the program never saw the test's connection change state".into());
    }
    assert_eq!(s.family, libc::AF_INET as u16, "skc_family: {s:?}");
    assert_eq!(u16::from_be(s.dport), port, "skc_dport: {s:?}");
    assert_eq!(s.num, local, "skc_num is the client's local port: {s:?}");
    let loopback = u32::from_ne_bytes([127, 0, 0, 1]);
    assert_eq!(s.daddr, loopback, "skc_daddr: {s:?}");
    // connect picks the source before the first state change it records.
    assert_eq!(s.rcv_saddr, loopback, "skc_rcv_saddr: {s:?}");
    Ok(())
}

fn main() {
    kiln_testkit::run(vec![
        test(
            "task_fields_match_helpers",
            &[Need::Bpf],
            task_fields_match_helpers,
        ),
        test(
            "sock_fields_match_the_connection",
            &[Need::Bpf],
            sock_fields_match_the_connection,
        ),
    ]);
}
