//! CO-RE declared by a program crate outside the SDK: `core-tracer`
//! (ebpf-sdk/examples/core-tracer) lists kernel fields the SDK does not
//! (`mm_struct.arg_start`, `sock.__sk_common.skc_dport`, bitfields, an
//! enum value, a `___flavor` struct) in its own core.toml, and its build
//! script generates the accessors. Each value read in the kernel is compared
//! with what userspace knows: a child's argv and auxv from /proc, a loopback
//! connection's ports and socket options. Field offsets differ between the
//! kernels of the VM matrix, so the same object proves the relocations on
//! each.

use std::io::{BufRead, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use kiln_loader::EbpfLoader;
use kiln_loader::links::raw_tracepoint::attach_raw_tracepoint;
use kiln_loader::maps::{Array, Pod};
use kiln_obj::ObjectSpec;
use kiln_testkit::{Need, TestResult, bpf_object, test};

/// The argument that makes this binary the exec'd child: it waits for a
/// line on stdin, so /proc still describes it while the test looks.
const CHILD_FLAG: &str = "--kiln-core-tracer-child";

const ARGV_BYTES: usize = 128;

/// core-tracer's `ExecSeen`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct ExecSeen {
    tgid: u64,
    arg_len: u64,
    auxv_type0: u64,
    auxv_value0: u64,
    state: i64,
    state_exists: u64,
    state_pre_5_14_exists: u64,
    argv: [u8; ARGV_BYTES],
}

// SAFETY: repr(C), 64-bit integers then a byte array, no padding.
unsafe impl Pod for ExecSeen {}

/// core-tracer's `ConnectSeen`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct ConnectSeen {
    dport: u64,
    num: u64,
    family: u64,
    userlocks: u64,
    nonagle: u64,
    sk_type: u64,
    sk_type_size: u64,
    sock_stream: i64,
    sock_dgram: i64,
    bogus_enum_exists: u64,
    no_such_field_exists: u64,
    no_such_struct_exists: u64,
    tcp_sock_exists: u64,
}

// SAFETY: repr(C), 64-bit integers only.
unsafe impl Pod for ConnectSeen {}

/// CO-RE needs the running kernel's BTF; probed independently of the loader.
fn kernel_btf() -> Option<String> {
    (!std::path::Path::new("/sys/kernel/btf/vmlinux").exists())
        .then(|| "no /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF off)".into())
}

/// Polls `read` until it returns `Some` or two seconds pass: the tracepoint
/// runs in the child, which the parent does not wait for.
fn wait_for<T>(mut read: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if let Some(v) = read() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn exec_reads_argv_auxv_and_state() -> TestResult {
    let bytes = std::fs::read(bpf_object("core-tracer.bpf.o")?)?;
    let spec = ObjectSpec::parse(&bytes)?;
    let me = std::process::id();
    let ebpf = EbpfLoader::new()
        .set_global("TARGET_TGID", &me.to_ne_bytes())
        .load(&spec)?;
    let prog = ebpf.program("trace_exec").ok_or("no program trace_exec")?;
    let seen: Array<_, ExecSeen> = Array::new(ebpf.map("EXEC_SEEN").ok_or("no map EXEC_SEEN")?)?;
    let link = attach_raw_tracepoint(prog.fd(), "sched_process_exec")?;
    let mark = format!("kiln-core-tracer-{me}");
    let mut child = Command::new(std::env::current_exe()?)
        .args([CHILD_FLAG, &mark])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let s = wait_for(|| seen.get(0).ok().filter(|s| s.tgid == u64::from(pid)));
    drop(link);
    // /proc while the child still waits on stdin.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"));
    let auxv = std::fs::read(format!("/proc/{pid}/auxv"));
    drop(child.stdin.take());
    child.wait()?;
    let s = s.ok_or_else(|| format!("no exec of child {pid} was recorded"))?;
    let (cmdline, auxv) = (cmdline?, auxv?);
    assert_eq!(
        s.arg_len as usize,
        cmdline.len(),
        "mm->arg_end - mm->arg_start is the size of /proc/{pid}/cmdline: {s:?}"
    );
    let n = cmdline.len().min(ARGV_BYTES);
    assert_eq!(
        String::from_utf8_lossy(&s.argv[..n]),
        String::from_utf8_lossy(&cmdline[..n]),
        "argv read at mm->arg_start"
    );
    let word = |i: usize| u64::from_ne_bytes(auxv[i * 8..i * 8 + 8].try_into().unwrap());
    assert_eq!(
        (s.auxv_type0, s.auxv_value0),
        (word(0), word(1)),
        "mm->saved_auxv[0], [1] vs /proc/{pid}/auxv"
    );
    assert_eq!(
        s.state_exists + s.state_pre_5_14_exists,
        1,
        "exactly one of task_struct.__state and task_struct___pre_5_14.state exists: {s:?}"
    );
    assert_eq!(
        s.state, 0,
        "the exec'ing task is running (TASK_RUNNING): {s:?}"
    );
    Ok(())
}

/// A TCP socket with `SO_RCVBUF` and `TCP_NODELAY` set, connected to `port`
/// on loopback.
fn connect_with_options(port: u16) -> Result<OwnedFd, std::io::Error> {
    // SAFETY: plain socket(2); the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let set = |level, name, value: libc::c_int| {
        // SAFETY: `value` outlives the call; the length is its size.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                level,
                name,
                (&raw const value).cast(),
                size_of::<libc::c_int>() as u32,
            )
        };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SOCK_RCVBUF_LOCK in sk_userlocks; TCP_NAGLE_OFF in tcp_sock.nonagle.
    set(libc::SOL_SOCKET, libc::SO_RCVBUF, 65536)?;
    set(libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    let addr = common::loopback_v4(port);
    // SAFETY: `addr` is a valid sockaddr_in for the call's duration.
    let r = unsafe {
        libc::connect(
            sock.as_raw_fd(),
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_in>() as u32,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(sock)
}

/// The local port of a socket (getsockname).
fn local_port(sock: &OwnedFd) -> Result<u16, std::io::Error> {
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `addr` and `len` are valid for writing.
    let r = unsafe { libc::getsockname(sock.as_raw_fd(), (&raw mut addr).cast(), &mut len) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(u16::from_be(addr.sin_port))
}

fn connect_reads_sock_fields_bitfields_and_enums() -> TestResult {
    const SOCK_RCVBUF_LOCK: u64 = 2;
    // The low four bits are the lock flags every kernel has (5.10 makes
    // sk_userlocks a 4-bit bitfield; newer kernels add SOCK_CONNECT_BIND).
    const USERLOCK_BITS: u64 = 0xf;
    // TCP_NODELAY sets TCP_NAGLE_OFF | TCP_NAGLE_PUSH.
    const NODELAY: u64 = 1 | 4;
    let bytes = std::fs::read(bpf_object("core-tracer.bpf.o")?)?;
    let spec = ObjectSpec::parse(&bytes)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let ebpf = EbpfLoader::new()
        .set_global("TARGET_PORT", &port.to_ne_bytes())
        .load(&spec)?;
    let prog = ebpf
        .program("trace_connect")
        .ok_or("no program trace_connect")?;
    let seen: Array<_, ConnectSeen> =
        Array::new(ebpf.map("CONNECT_SEEN").ok_or("no map CONNECT_SEEN")?)?;
    let link = attach_raw_tracepoint(prog.fd(), "inet_sock_set_state")?;
    let client = connect_with_options(port)?;
    let (_server, _) = listener.accept()?;
    let s = wait_for(|| seen.get(0).ok().filter(|s| s.family != 0));
    drop(link);
    let s = s.ok_or("the program never saw the test's connection established")?;
    assert_eq!(u16::from_be(s.dport as u16), port, "skc_dport: {s:?}");
    assert_eq!(s.num as u16, local_port(&client)?, "skc_num: {s:?}");
    assert_eq!(s.family, libc::AF_INET as u64, "skc_family: {s:?}");
    assert_eq!(
        s.userlocks & USERLOCK_BITS,
        SOCK_RCVBUF_LOCK,
        "sk_userlocks after SO_RCVBUF: {s:?}"
    );
    assert_eq!(
        s.nonagle, NODELAY,
        "tcp_sock.nonagle after TCP_NODELAY: {s:?}"
    );
    assert_eq!(s.sk_type, libc::SOCK_STREAM as u64, "sk_type: {s:?}");
    assert_eq!(s.sk_type_size, 2, "field_size(sk_type): {s:?}");
    assert_eq!(
        (s.sock_stream, s.sock_dgram),
        (libc::SOCK_STREAM as i64, libc::SOCK_DGRAM as i64),
        "enum sock_type values: {s:?}"
    );
    assert_eq!(s.bogus_enum_exists, 0, "a made-up enumerator: {s:?}");
    assert_eq!(s.no_such_field_exists, 0, "a made-up field: {s:?}");
    assert_eq!(s.no_such_struct_exists, 0, "a made-up struct: {s:?}");
    assert_eq!(s.tcp_sock_exists, 1, "type_exists(tcp_sock): {s:?}");
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == CHILD_FLAG) {
        // The exec'd child: wait until the parent closes stdin.
        let _ = std::io::stdin().lock().read_line(&mut String::new());
        let _ = std::io::stdout().flush();
        return;
    }
    let btf = Need::Probe("kernel BTF", kernel_btf);
    kiln_testkit::run(vec![
        test(
            "exec_reads_argv_auxv_and_state",
            &[Need::Bpf, btf],
            exec_reads_argv_auxv_and_state,
        ),
        test(
            "connect_reads_sock_fields_bitfields_and_enums",
            &[Need::Bpf, btf],
            connect_reads_sock_fields_bitfields_and_enums,
        ),
    ]);
}
