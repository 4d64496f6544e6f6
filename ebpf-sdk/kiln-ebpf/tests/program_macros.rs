//! The program macros added for libbpf parity: each program of sdk-hooks
//! (program types 5.10 has) and sdk-hooks-new (newer ones) loads where the
//! kernel has its program type, probed with a bare load of that type; those
//! a test can trigger without touching the rest of the machine run and are
//! read back (an iterator over tasks, an sk_reuseport group on loopback, a
//! syscall program under BPF_PROG_TEST_RUN). Section names are unit-tested in
//! kiln-ebpf-macros; fmod_ret's load is covered by loader's objects test
//! (the host refuses trampolines).

use std::os::fd::{AsFd, AsRawFd};

mod common;

use kiln_loader::links::iter::{IterTarget, attach_iter};
use kiln_loader::maps::Array;
use kiln_loader::probe::probe_program_type;
use kiln_loader::programs::TestRun;
use kiln_loader::{Ebpf, EbpfLoader};
use kiln_obj::{AttachType, ObjectSpec, ProgramType};
use kiln_testkit::{Need, TestResult, bpf_object, test};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Loads every program of `file` it can; a program that failed is reported
/// by the test that needs it, with the loader's reason.
fn load(file: &str) -> Result<(Ebpf, Vec<(String, String)>), BoxError> {
    let spec = ObjectSpec::parse(&std::fs::read(bpf_object(file)?)?)?;
    let (ebpf, failed) = EbpfLoader::new().load_each(&spec)?;
    Ok((
        ebpf,
        failed
            .into_iter()
            .map(|(n, e)| (n, e.to_string()))
            .collect(),
    ))
}

/// Loads `file` and fails unless `program` loaded.
fn load_with(file: &str, program: &str) -> Result<Ebpf, BoxError> {
    let (ebpf, failed) = load(file)?;
    if let Some((_, e)) = failed.iter().find(|(n, _)| n == program) {
        return Err(format!("{file}: {program} did not load: {e}").into());
    }
    ebpf.program(program)
        .ok_or_else(|| format!("{file}: no program {program}"))?;
    Ok(ebpf)
}

fn loaded(file: &str, program: &str) -> TestResult {
    load_with(file, program).map(drop)
}

fn hits(ebpf: &Ebpf, slot: u32) -> Result<u64, BoxError> {
    let hits: Array<_, u64> = Array::new(ebpf.map("HITS").ok_or("no map HITS")?)?;
    Ok(hits.get(slot)?)
}

/// `iter/task`: one iteration runs the program once per task.
fn iter_task_runs_per_task() -> TestResult {
    let ebpf = load_with("sdk-hooks.bpf.o", "prog_iter_task")?;
    let prog = ebpf.program("prog_iter_task").ok_or("no prog_iter_task")?;
    let link = attach_iter(prog.fd(), IterTarget::All)?;
    link.read_to_vec()?;
    let tasks = std::fs::read_dir("/proc")?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .count() as u64;
    let seen = hits(&ebpf, 5)?;
    // Threads count too and processes come and go: half of /proc's is a
    // floor no kernel should miss.
    assert!(
        seen >= tasks / 2 && seen > 0,
        "iter/task ran for {seen} tasks, /proc lists {tasks} processes"
    );
    Ok(())
}

/// `sk_reuseport`: two UDP sockets share a port; a datagram to it runs the
/// program to pick one.
fn reuseport_selects_on_a_datagram() -> TestResult {
    const SO_ATTACH_REUSEPORT_EBPF: libc::c_int = 52;
    let ebpf = load_with("sdk-hooks.bpf.o", "prog_reuseport")?;
    let prog = ebpf.program("prog_reuseport").ok_or("no prog_reuseport")?;
    let bind_reuseport = |port: u16| -> Result<std::net::UdpSocket, std::io::Error> {
        // SAFETY: socket(2); checked below and owned by the UdpSocket.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let sock = unsafe { <std::net::UdpSocket as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let one: libc::c_int = 1;
        // SAFETY: `one` outlives the call.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEPORT,
                (&raw const one).cast(),
                4,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let addr = common::loopback_v4(port);
        // SAFETY: a valid sockaddr_in for the call.
        let r = unsafe {
            libc::bind(
                fd,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_in>() as u32,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(sock)
    };
    let first = bind_reuseport(0)?;
    let port = first.local_addr()?.port();
    let prog_fd: libc::c_int = prog.fd().as_raw_fd();
    // SAFETY: `prog_fd` outlives the call; the kernel takes its own reference.
    let r = unsafe {
        libc::setsockopt(
            first.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_EBPF,
            (&raw const prog_fd).cast(),
            4,
        )
    };
    if r < 0 {
        return Err(format!(
            "SO_ATTACH_REUSEPORT_EBPF: {}",
            std::io::Error::last_os_error()
        )
        .into());
    }
    let _second = bind_reuseport(port)?;
    let sender = std::net::UdpSocket::bind("127.0.0.1:0")?;
    sender.send_to(b"kiln", ("127.0.0.1", port))?;
    let seen = hits(&ebpf, 4)?;
    assert_eq!(seen, 1, "one datagram, one sk_reuseport run");
    Ok(())
}

/// `syscall`: BPF_PROG_TEST_RUN passes the context; the program returns a sum.
fn syscall_program_runs() -> TestResult {
    let ebpf = load_with("sdk-hooks-new.bpf.o", "prog_syscall")?;
    let prog = ebpf.program("prog_syscall").ok_or("no prog_syscall")?;
    let mut ctx = [0u8; 8];
    ctx[..4].copy_from_slice(&40u32.to_ne_bytes());
    ctx[4..].copy_from_slice(&2u32.to_ne_bytes());
    let out = prog.test_run(TestRun {
        data_in: None,
        data_out: None,
        ctx_in: Some(&ctx),
        ctx_out: None,
        repeat: 0,
        flags: 0,
        cpu: 0,
    })?;
    assert_eq!(out.retval, 42, "40 + 2");
    assert_eq!(hits(&ebpf, 0)?, 1, "it ran once");
    Ok(())
}

/// A probe per program type (and expected attach type): a bare load of that
/// type, independent of the objects under test.
macro_rules! probes {
    ($($fn_name:ident: $t:ident, $eat:expr, $what:literal;)*) => {
        $(
            fn $fn_name() -> Option<String> {
                (!probe_program_type(ProgramType::$t, $eat))
                    .then(|| format!("kernel has no {} programs", $what))
            }
        )*
    };
}

probes! {
    no_sysctl: CGROUP_SYSCTL, Some(AttachType::CGROUP_SYSCTL), "cgroup/sysctl";
    no_device: CGROUP_DEVICE, Some(AttachType::CGROUP_DEVICE), "cgroup/dev";
    no_getsockopt: CGROUP_SOCKOPT, Some(AttachType::CGROUP_GETSOCKOPT), "cgroup/getsockopt";
    no_setsockopt: CGROUP_SOCKOPT, Some(AttachType::CGROUP_SETSOCKOPT), "cgroup/setsockopt";
    no_kprobe: KPROBE, None, "kprobe";
    no_iter: TRACING, Some(AttachType::TRACE_ITER), "iterator";
    no_reuseport: SK_REUSEPORT, None, "sk_reuseport";
    no_syscall: SYSCALL, None, "syscall (5.14+)";
    no_migrate: SK_REUSEPORT, Some(AttachType::SK_REUSEPORT_SELECT_OR_MIGRATE), "sk_reuseport/migrate (5.14+)";
    no_kprobe_multi: KPROBE, Some(AttachType::TRACE_KPROBE_MULTI), "kprobe.multi (5.18+)";
    no_uprobe_multi: KPROBE, Some(AttachType::TRACE_UPROBE_MULTI), "uprobe.multi (6.6+)";
    no_netfilter: NETFILTER, Some(AttachType::NETFILTER), "netfilter (6.4+)";
    no_netkit_primary: SCHED_CLS, Some(AttachType::NETKIT_PRIMARY), "netkit (6.7+)";
    no_netkit_peer: SCHED_CLS, Some(AttachType::NETKIT_PEER), "netkit (6.7+)";
}

type Probe = fn() -> Option<String>;

/// Programs whose test is their load: (object, program, what, probe).
const LOAD_ONLY: &[(&str, &str, &str, Probe)] = &[
    ("sdk-hooks.bpf.o", "prog_sysctl", "cgroup/sysctl", no_sysctl),
    ("sdk-hooks.bpf.o", "prog_device", "cgroup/dev", no_device),
    (
        "sdk-hooks.bpf.o",
        "prog_getsockopt",
        "cgroup/getsockopt",
        no_getsockopt,
    ),
    (
        "sdk-hooks.bpf.o",
        "prog_setsockopt",
        "cgroup/setsockopt",
        no_setsockopt,
    ),
    ("sdk-hooks.bpf.o", "prog_ksyscall", "kprobe", no_kprobe),
    ("sdk-hooks.bpf.o", "prog_kretsyscall", "kprobe", no_kprobe),
    ("sdk-hooks.bpf.o", "prog_usdt", "kprobe", no_kprobe),
    (
        "sdk-hooks-new.bpf.o",
        "prog_reuseport_migrate",
        "sk_reuseport/migrate",
        no_migrate,
    ),
    (
        "sdk-hooks-new.bpf.o",
        "prog_kprobe_multi",
        "kprobe.multi",
        no_kprobe_multi,
    ),
    (
        "sdk-hooks-new.bpf.o",
        "prog_kretprobe_multi",
        "kprobe.multi",
        no_kprobe_multi,
    ),
    (
        "sdk-hooks-new.bpf.o",
        "prog_uprobe_multi",
        "uprobe.multi",
        no_uprobe_multi,
    ),
    (
        "sdk-hooks-new.bpf.o",
        "prog_uretprobe_multi",
        "uprobe.multi",
        no_uprobe_multi,
    ),
    (
        "sdk-hooks-new.bpf.o",
        "prog_netfilter",
        "netfilter",
        no_netfilter,
    ),
    (
        "sdk-hooks-new.bpf.o",
        "prog_netkit_primary",
        "netkit",
        no_netkit_primary,
    ),
    (
        "sdk-hooks-new.bpf.o",
        "prog_netkit_peer",
        "netkit",
        no_netkit_peer,
    ),
];

fn main() {
    let mut tests: Vec<_> = LOAD_ONLY
        .iter()
        .map(|&(file, program, what, probe)| {
            let name = format!("{}_loads", program.trim_start_matches("prog_"));
            test(name, &[Need::Bpf, Need::Probe(what, probe)], move || {
                loaded(file, program)
            })
        })
        .collect();
    tests.push(test(
        "iter_task_runs_per_task",
        &[Need::Bpf, Need::Probe("task iterators", no_iter)],
        iter_task_runs_per_task,
    ));
    tests.push(test(
        "reuseport_selects_on_a_datagram",
        &[Need::Bpf, Need::Probe("sk_reuseport", no_reuseport)],
        reuseport_selects_on_a_datagram,
    ));
    tests.push(test(
        "syscall_program_runs",
        &[Need::Bpf, Need::Probe("syscall programs", no_syscall)],
        syscall_program_runs,
    ));
    kiln_testkit::run(tests);
}
