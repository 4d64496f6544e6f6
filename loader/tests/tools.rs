//! The tool corpus (`loader/tests/tools/*.bpf.c`): programs written the way
//! libbpf-based tools write theirs (execsnoop, opensnoop, runqlat, tcpstates,
//! tcpconnect, an XDP port filter, a socket load balancer), loaded with
//! their `.rodata` knobs set, attached, triggered for real and read back the
//! way those tools read them (perf and ring buffers, histograms in hash maps,
//! per-CPU counters).

mod attach_util;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use attach_util::*;
use kiln_loader::links::cgroup::{attach_cgroup, open_cgroup};
use kiln_loader::links::tracing::attach_tracing;
use kiln_loader::links::{Link, auto_attach};
use kiln_loader::maps::{
    Array, HashMap, PerCpuArray, PerfEventArray, PerfRecord, RingBuf, UpdateFlags,
};
use kiln_loader::programs::TestRun;
use kiln_loader::{Ebpf, EbpfLoader};
use kiln_obj::ObjectSpec;
use kiln_testkit::{Need, test};

type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How long a test waits for events that its trigger has already caused.
const EVENT_DEADLINE: Duration = Duration::from_secs(5);

fn spec(stem: &str) -> R<ObjectSpec> {
    let path = kiln_testkit::bpf_object(&format!("{stem}.bpf.o"))?;
    Ok(ObjectSpec::parse(&std::fs::read(&path)?).map_err(|e| format!("{stem}: {e}"))?)
}

/// Loads `stem` with `.rodata` knobs set, leaving out the programs in `skip`.
fn load(stem: &str, knobs: &[(&str, &[u8])], skip: &[&str]) -> R<Ebpf> {
    let mut loader = EbpfLoader::new();
    for (name, bytes) in knobs {
        loader.set_global(name, bytes);
    }
    for name in skip {
        loader.skip_program(name);
    }
    Ok(loader
        .load(&spec(stem)?)
        .map_err(|e| format!("{stem}: {e}"))?)
}

/// Attaches program `name` where its section says, as a skeleton would.
fn attach(ebpf: &Ebpf, name: &str) -> R<Box<dyn Link>> {
    let prog = ebpf
        .program(name)
        .ok_or_else(|| format!("no program {name}"))?;
    Ok(auto_attach(prog.fd(), prog.kind()).map_err(|e| format!("{name}: {e}"))?)
}

fn our_pid() -> u32 {
    std::process::id()
}

fn i32_at(b: &[u8], off: usize) -> i32 {
    i32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes(b[off..off + 2].try_into().expect("2 bytes"))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// A NUL-terminated string in a fixed-size field.
fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Perf samples from every CPU until `done` says enough or the deadline
/// passes; lost records fail the test (they would hide what it looks for).
fn perf_samples(
    perf: &PerfEventArray<kiln_loader::Map>,
    trigger: impl FnOnce() -> R<()>,
    mut done: impl FnMut(&[Vec<u8>]) -> bool,
) -> R<Vec<Vec<u8>>> {
    let mut bufs = perf.open_all(8)?;
    trigger()?;
    let mut samples = Vec::new();
    let mut lost = 0;
    let deadline = Instant::now() + EVENT_DEADLINE;
    while !done(&samples) && Instant::now() < deadline {
        bufs.wait(Some(Duration::from_millis(100)))?;
        bufs.read_events(|_cpu, rec| match rec {
            PerfRecord::Sample(data) => samples.push(data.to_vec()),
            PerfRecord::Lost(n) => lost += n,
        });
    }
    check(lost == 0, || format!("{lost} perf records lost"))?;
    Ok(samples)
}

/// Ring buffer records until `done` says enough or the deadline passes.
fn ring_records(
    ring: &mut RingBuf<kiln_loader::Map>,
    mut done: impl FnMut(&[Vec<u8>]) -> bool,
) -> R<Vec<Vec<u8>>> {
    let mut records = Vec::new();
    let deadline = Instant::now() + EVENT_DEADLINE;
    while !done(&records) && Instant::now() < deadline {
        ring.wait(Some(Duration::from_millis(100)))?;
        ring.drain(|r| records.push(r.to_vec()));
    }
    Ok(records)
}

// ---- execsnoop -------------------------------------------------------------

/// `struct exec_event` of tool_execsnoop.bpf.c.
struct ExecEvent {
    pid: i32,
    ppid: i32,
    retval: i32,
    comm: String,
    args: Vec<String>,
}

fn exec_event(b: &[u8]) -> ExecEvent {
    let args_count = i32_at(b, 16) as usize;
    let args_size = (i32_at(b, 20) as usize).min(b.len().saturating_sub(40));
    let args = b[40..40 + args_size]
        .split(|&c| c == 0)
        .filter(|a| !a.is_empty())
        .take(args_count)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    ExecEvent {
        pid: i32_at(b, 0),
        ppid: i32_at(b, 4),
        retval: i32_at(b, 12),
        comm: c_str(&b[24..40]),
        args,
    }
}

fn execsnoop_reports_execs_with_args_and_parent() -> TestResult {
    let marker = format!("kiln-execsnoop-{}", our_pid());
    let mut ebpf = load("tool_execsnoop", &[], &[])?;
    let _enter = attach(&ebpf, "execve_enter")?;
    let _exit = attach(&ebpf, "execve_exit")?;
    let perf = PerfEventArray::new(ebpf.take_map("events").ok_or("no events map")?)?;
    let mut child = 0;
    let samples = perf_samples(
        &perf,
        || {
            let c = std::process::Command::new("/bin/true")
                .args([marker.as_str(), "second"])
                .spawn()?;
            child = c.id() as i32;
            let st = c.wait_with_output()?.status;
            check(st.success(), || format!("/bin/true: {st}"))
        },
        |s| s.iter().any(|b| exec_event(b).args.contains(&marker)),
    )?;
    let e = samples
        .iter()
        .map(|b| exec_event(b))
        .find(|e| e.args.contains(&marker))
        .ok_or_else(|| {
            format!(
                "no exec event with {marker} among {} samples",
                samples.len()
            )
        })?;
    check(e.comm == "true", || format!("comm {:?}", e.comm))?;
    check(e.args == ["/bin/true", marker.as_str(), "second"], || {
        format!("args {:?}", e.args)
    })?;
    check(e.pid == child, || format!("pid {} (child {child})", e.pid))?;
    check(e.ppid == our_pid() as i32, || {
        format!(
            "ppid {} (CO-RE task->real_parent->tgid), want {}",
            e.ppid,
            our_pid()
        )
    })?;
    check(e.retval == 0, || format!("retval {}", e.retval))?;
    Ok(())
}

/// With `ignore_failed = false` set before load, a failed exec is reported
/// with its errno; the default (true) hides it. A successful exec after it
/// marks the point by which its event would have arrived.
fn execsnoop_failed_exec_follows_its_knob() -> TestResult {
    let missing = format!("/nonexistent-kiln-{}/exe", our_pid());
    let marker = format!("kiln-execsnoop-after-{}", our_pid());
    for (ignore_failed, reported) in [(0u8, true), (1u8, false)] {
        let mut ebpf = load(
            "tool_execsnoop",
            &[("ignore_failed", &[ignore_failed])],
            &[],
        )?;
        let _enter = attach(&ebpf, "execve_enter")?;
        let _exit = attach(&ebpf, "execve_exit")?;
        let perf = PerfEventArray::new(ebpf.take_map("events").ok_or("no events map")?)?;
        let samples = perf_samples(
            &perf,
            || {
                let err = std::process::Command::new(&missing).status();
                check(err.is_err(), || "a missing binary ran".into())?;
                std::process::Command::new("/bin/true")
                    .arg(&marker)
                    .status()?;
                Ok(())
            },
            |s| s.iter().any(|b| exec_event(b).args.contains(&marker)),
        )?;
        let events: Vec<ExecEvent> = samples.iter().map(|b| exec_event(b)).collect();
        check(events.iter().any(|e| e.args.contains(&marker)), || {
            "the marker exec was not reported".into()
        })?;
        let failed: Vec<&ExecEvent> = events
            .iter()
            .filter(|e| e.args.first() == Some(&missing))
            .collect();
        if reported {
            let e = failed.first().ok_or("the failed exec was not reported")?;
            check(e.retval == -libc::ENOENT, || format!("retval {}", e.retval))?;
        } else {
            check(failed.is_empty(), || {
                "ignore_failed = true still reported it".into()
            })?;
        }
    }
    Ok(())
}

// ---- opensnoop -------------------------------------------------------------

fn opensnoop_reports_this_process_opens() -> TestResult {
    let pid = our_pid() as i32;
    let mut ebpf = load("tool_opensnoop", &[("targ_tgid", &pid.to_ne_bytes())], &[])?;
    let _enter = attach(&ebpf, "openat_enter")?;
    let _exit = attach(&ebpf, "openat_exit")?;
    let mut ring = RingBuf::new(ebpf.take_map("events").ok_or("no events map")?)?;
    let dir = std::env::temp_dir();
    let missing = dir.join(format!("kiln-opensnoop-{pid}-missing"));
    let present = dir.join(format!("kiln-opensnoop-{pid}-present"));
    std::fs::write(&present, b"x")?;
    let opened = std::fs::File::open(&present);
    let _ = std::fs::remove_file(&present);
    opened?;
    check(std::fs::File::open(&missing).is_err(), || {
        "missing file opened".into()
    })?;
    let (missing_s, present_s) = (missing.display().to_string(), present.display().to_string());
    let path_of = |b: &Vec<u8>| c_str(&b[32..]);
    // The file is opened twice: written (O_WRONLY|O_CREAT|O_TRUNC), then read.
    let is_read =
        |b: &Vec<u8>| path_of(b) == present_s && i32_at(b, 12) & libc::O_ACCMODE == libc::O_RDONLY;
    let records = ring_records(&mut ring, |r| {
        r.iter().any(|b| path_of(b) == missing_s) && r.iter().any(is_read)
    })?;
    for b in &records {
        check(i32_at(b, 0) == pid, || {
            format!(
                "targ_tgid filter let pid {} through ({})",
                i32_at(b, 0),
                path_of(b)
            )
        })?;
    }
    let missing_e = records
        .iter()
        .find(|b| path_of(b) == missing_s)
        .ok_or("no event for the missing file")?;
    check(i32_at(missing_e, 8) == -libc::ENOENT, || {
        format!("ret {}", i32_at(missing_e, 8))
    })?;
    let written = records
        .iter()
        .find(|b| path_of(b) == present_s && i32_at(b, 12) & libc::O_CREAT != 0)
        .ok_or("no event for creating the file")?;
    check(
        i32_at(written, 12) & libc::O_ACCMODE == libc::O_WRONLY,
        || format!("create flags {:#o}", i32_at(written, 12)),
    )?;
    let read = records
        .iter()
        .find(|b| is_read(b))
        .ok_or("no event for reading the file")?;
    check(i32_at(read, 8) >= 0, || format!("ret {}", i32_at(read, 8)))?;
    check(i32_at(read, 12) & libc::O_CLOEXEC != 0, || {
        format!("read flags {:#o}", i32_at(read, 12))
    })?;
    Ok(())
}

// ---- runqlat ---------------------------------------------------------------

/// `struct hist` of tool_runqlat.bpf.c: 26 log2 slots, then the comm.
type Hist = [u8; 26 * 4 + 16];

/// Two named threads hand a token back and forth through rendezvous
/// channels, so each blocks and is woken `rounds` times. `ready` runs once
/// both have named themselves and before the first round, so what it attaches
/// sees them under their names. Returns their tids and names.
fn ping_pong(rounds: u32, ready: impl FnOnce() -> TestResult) -> R<Vec<(i32, String)>> {
    let (to_b, from_a) = std::sync::mpsc::sync_channel::<u32>(0);
    let (to_a, from_b) = std::sync::mpsc::sync_channel::<u32>(0);
    let (tids_tx, tids_rx) = std::sync::mpsc::channel();
    let start = std::sync::Arc::new(std::sync::Barrier::new(3));
    let names = ["kiln-rq-ping", "kiln-rq-pong"];
    let (tx_a, start_a) = (tids_tx.clone(), start.clone());
    let a = std::thread::Builder::new()
        .name(names[0].into())
        .spawn(move || {
            // SAFETY: gettid has no preconditions.
            let _ = tx_a.send((unsafe { libc::gettid() }, names[0].to_string()));
            start_a.wait();
            for i in 0..rounds {
                if to_b.send(i).is_err() || from_b.recv().is_err() {
                    break;
                }
            }
        })?;
    let start_b = start.clone();
    let b = std::thread::Builder::new()
        .name(names[1].into())
        .spawn(move || {
            // SAFETY: gettid has no preconditions.
            let _ = tids_tx.send((unsafe { libc::gettid() }, names[1].to_string()));
            start_b.wait();
            while let Ok(i) = from_a.recv() {
                if to_a.send(i).is_err() {
                    break;
                }
            }
        })?;
    let threads: Vec<(i32, String)> = tids_rx.iter().take(2).collect();
    let attached = ready();
    start.wait();
    a.join().map_err(|_| "ping thread panicked")?;
    b.join().map_err(|_| "pong thread panicked")?;
    attached?;
    Ok(threads)
}

/// Per-thread histograms for this process's two ping-pong threads, with the
/// tp_btf programs or with their raw_tp twins.
fn runqlat_per_thread(programs: [&str; 3], others: [&str; 3]) -> TestResult {
    let pid = our_pid() as i32;
    let ebpf = load(
        "tool_runqlat",
        &[("targ_per_thread", &[1]), ("targ_tgid", &pid.to_ne_bytes())],
        &others,
    )?;
    let mut links: Vec<Box<dyn Link>> = Vec::new();
    let rounds = 300;
    let threads = ping_pong(rounds, || {
        for p in programs {
            links.push(attach(&ebpf, p)?);
        }
        Ok(())
    })?;
    let hists: HashMap<_, u32, Hist> = HashMap::new(ebpf.map("hists").ok_or("no hists")?)?;
    for (tid, name) in &threads {
        let h = hists
            .get(&(*tid as u32))?
            .ok_or_else(|| format!("no histogram for thread {name} ({tid})"))?;
        let total: u64 = h[..26 * 4]
            .chunks_exact(4)
            .map(|c| u32::from_ne_bytes(c.try_into().unwrap()) as u64)
            .sum();
        // Each round blocks both threads unless the partner was faster;
        // a tenth of them is a safe floor on a loaded machine.
        check(total >= u64::from(rounds) / 10, || {
            format!("{name}: {total} wakeups recorded for {rounds} rounds")
        })?;
        check(c_str(&h[26 * 4..]) == *name, || {
            format!("comm {:?}, want {name}", c_str(&h[26 * 4..]))
        })?;
    }
    // targ_tgid keeps every other process out.
    for key in hists.keys() {
        let key = key?;
        check(
            std::path::Path::new(&format!("/proc/{pid}/task/{key}")).exists()
                || !std::path::Path::new(&format!("/proc/{key}")).exists(),
            || format!("histogram for thread {key}, not of this process"),
        )?;
    }
    Ok(())
}

const RUNQLAT_BTF: [&str; 3] = ["sched_wakeup", "sched_wakeup_new", "sched_switch"];
const RUNQLAT_RAW: [&str; 3] = [
    "raw_sched_wakeup",
    "raw_sched_wakeup_new",
    "raw_sched_switch",
];

fn runqlat_tp_btf_histograms_wakeups() -> TestResult {
    runqlat_per_thread(RUNQLAT_BTF, RUNQLAT_RAW)
}

fn runqlat_raw_tp_histograms_wakeups() -> TestResult {
    runqlat_per_thread(RUNQLAT_RAW, RUNQLAT_BTF)
}

// ---- tcpstates -------------------------------------------------------------

const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_FIN_WAIT1: i32 = 4;
const TCP_CLOSE: i32 = 7;

/// A TCP connection on loopback, seen through the destination port filter:
/// the client socket's transitions in order, with addresses and times.
fn tcpstates_follows_a_connection() -> TestResult {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let port = listener.local_addr()?.port();
    let mut ebpf = load(
        "tool_tcpstates",
        &[
            ("filter_by_dport", &[1]),
            ("target_family", &2i16.to_ne_bytes()),
        ],
        &[],
    )?;
    let dports: HashMap<_, u16, u16> = HashMap::new(ebpf.map("dports").ok_or("no dports")?)?;
    dports.insert(&port, &1, UpdateFlags::ANY)?;
    let _link = attach(&ebpf, "tcp_set_state")?;
    let perf = PerfEventArray::new(ebpf.take_map("events").ok_or("no events map")?)?;
    let mut client_port = 0;
    let transitions = |s: &[Vec<u8>]| -> Vec<(i32, i32)> {
        s.iter().map(|b| (i32_at(b, 28), i32_at(b, 32))).collect()
    };
    let samples = perf_samples(
        &perf,
        || {
            let mut client = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
            client_port = client.local_addr()?.port();
            let (mut server, _) = listener.accept()?;
            client.write_all(b"ping")?;
            let mut buf = [0u8; 4];
            server.read_exact(&mut buf)?;
            drop(client);
            drop(server);
            Ok(())
        },
        |s| transitions(s).contains(&(TCP_ESTABLISHED, TCP_FIN_WAIT1)),
    )?;
    // Layout: skaddr 0, ts_us 8, delta_us 16, pid 24, oldstate 28,
    // newstate 32, family 36, sport 38, dport 40, saddr 44, daddr 60.
    for b in &samples {
        check(u16_at(b, 40) == port, || {
            format!("dport filter let {} through", u16_at(b, 40))
        })?;
    }
    // The SYN_SENT transition comes before the source port is chosen: the
    // socket's address, not its port, ties its events together.
    let established = samples
        .iter()
        .find(|b| {
            u16_at(b, 38) == client_port
                && (i32_at(b, 28), i32_at(b, 32)) == (TCP_SYN_SENT, TCP_ESTABLISHED)
        })
        .ok_or_else(|| format!("no SYN_SENT -> ESTABLISHED for client port {client_port}"))?;
    let client: Vec<Vec<u8>> = samples
        .iter()
        .filter(|b| u64_at(b, 0) == u64_at(established, 0))
        .cloned()
        .collect();
    let seen = transitions(&client);
    let want = [
        (TCP_CLOSE, TCP_SYN_SENT),
        (TCP_SYN_SENT, TCP_ESTABLISHED),
        (TCP_ESTABLISHED, TCP_FIN_WAIT1),
    ];
    check(seen.starts_with(&want), || {
        format!("client {client_port} -> {port}: transitions {seen:?}, want {want:?} first")
    })?;
    let syn = &client[0];
    check(i32_at(syn, 24) == our_pid() as i32, || {
        format!("SYN_SENT by pid {}", i32_at(syn, 24))
    })?;
    check(u16_at(syn, 36) == libc::AF_INET as u16, || "family".into())?;
    let lo = Ipv4Addr::LOCALHOST.octets();
    check(syn[44..48] == lo && syn[60..64] == lo, || {
        format!(
            "saddr {:?} daddr {:?} (CO-RE reads of struct sock)",
            &syn[44..48],
            &syn[60..64]
        )
    })?;
    // The established socket remembers when it left SYN_SENT.
    // Each later event knows how long the socket spent in the old state.
    let fin = &client[2];
    let elapsed = u64_at(fin, 8).saturating_sub(u64_at(syn, 8));
    check(
        u64_at(fin, 8) >= u64_at(syn, 8) && u64_at(fin, 16) <= elapsed,
        || {
            format!(
                "ts_us {} after {}, delta_us {}",
                u64_at(fin, 8),
                u64_at(syn, 8),
                u64_at(fin, 16)
            )
        },
    )?;
    Ok(())
}

// ---- xdp port filter -------------------------------------------------------

const BLOCK_TCP: u8 = 1;
const BLOCK_UDP: u8 = 2;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// An Ethernet frame: `vlans` tags, then `l3` of `ethertype`.
fn frame(vlans: &[u16], ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    for tpid in vlans {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&[0x00, 0x64]); // VLAN 100
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

/// TCP (6) or UDP (17) header with destination port `dport`.
fn l4(proto: u8, dport: u16) -> Vec<u8> {
    let mut h = vec![0x30, 0x39];
    h.extend_from_slice(&dport.to_be_bytes());
    h.resize(if proto == 6 { 20 } else { 8 }, 0);
    if proto == 6 {
        h[12] = 5 << 4;
    }
    h
}

fn ipv4(proto: u8, options: usize, frag_off: u16, payload: &[u8]) -> Vec<u8> {
    let ihl = 5 + options / 4;
    let mut h = vec![0x40 | ihl as u8, 0];
    h.extend_from_slice(&((ihl * 4 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 1]);
    h.extend_from_slice(&frag_off.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    h.resize(ihl * 4, 1); // NOP options
    h.extend_from_slice(payload);
    h
}

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&[0xfd; 16]);
    h.extend_from_slice(&[0xfe; 16]);
    h.extend_from_slice(payload);
    h
}

fn xdp_port_filter_drops_blocked_ports() -> TestResult {
    let ebpf = load("tool_xdp_portfilter", &[], &[])?;
    let blocked: HashMap<_, u16, u8> =
        HashMap::new(ebpf.map("blocked_ports").ok_or("no blocked_ports")?)?;
    blocked.insert(&53, &BLOCK_UDP, UpdateFlags::ANY)?;
    blocked.insert(&22, &(BLOCK_TCP | BLOCK_UDP), UpdateFlags::ANY)?;
    let (ip, ip6, q, ad) = (0x0800, 0x86dd, 0x8100, 0x88a8);
    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        (
            "udp/53",
            frame(&[], ip, &ipv4(17, 0, 0, &l4(17, 53))),
            XDP_DROP,
        ),
        (
            "tcp/53 (only udp blocked)",
            frame(&[], ip, &ipv4(6, 0, 0, &l4(6, 53))),
            XDP_PASS,
        ),
        (
            "udp/53 after ip options",
            frame(&[], ip, &ipv4(17, 8, 0, &l4(17, 53))),
            XDP_DROP,
        ),
        (
            "vlan tcp/22",
            frame(&[q], ip, &ipv4(6, 0, 0, &l4(6, 22))),
            XDP_DROP,
        ),
        (
            "qinq ipv6 udp/22",
            frame(&[ad, q], ip6, &ipv6(17, &l4(17, 22))),
            XDP_DROP,
        ),
        (
            "ipv6 tcp/80",
            frame(&[], ip6, &ipv6(6, &l4(6, 80))),
            XDP_PASS,
        ),
        (
            "later fragment",
            frame(&[], ip, &ipv4(17, 0, 100, &l4(17, 53))),
            XDP_PASS,
        ),
        (
            "truncated udp",
            frame(&[], ip, &ipv4(17, 0, 0, &[0, 1, 0])),
            XDP_PASS,
        ),
        ("arp", frame(&[], 0x0806, &[0u8; 28]), XDP_PASS),
    ];
    let prog = ebpf
        .program("xdp_port_filter")
        .ok_or("no xdp_port_filter")?;
    let mut want = [(0u64, 0u64); 5];
    for (what, pkt, verdict) in &cases {
        let r = prog.test_run(TestRun {
            data_in: Some(pkt),
            ..Default::default()
        })?;
        check(r.retval == *verdict, || {
            format!("{what}: verdict {} want {verdict}", r.retval)
        })?;
        want[*verdict as usize].0 += 1;
        want[*verdict as usize].1 += pkt.len() as u64;
    }
    let stats: PerCpuArray<_, [u64; 2]> =
        PerCpuArray::new(ebpf.map("xdp_stats").ok_or("no xdp_stats")?)?;
    for action in [XDP_DROP, XDP_PASS] {
        let per_cpu = stats.get(action)?;
        let packets: u64 = per_cpu.iter().map(|v| v[0]).sum();
        let bytes: u64 = per_cpu.iter().map(|v| v[1]).sum();
        check((packets, bytes) == want[action as usize], || {
            format!(
                "action {action}: {packets} packets {bytes} bytes, want {:?}",
                want[action as usize]
            )
        })?;
    }
    Ok(())
}

// ---- socket load balancer --------------------------------------------------

/// The service address the child connects to: loopback, so that without the
/// rewrite nothing leaves the machine (the connect is refused instead).
const VIP: Ipv4Addr = Ipv4Addr::new(127, 77, 0, 1);

/// `struct service` / `struct backend`: address and port in network order.
fn endpoint(addr: Ipv4Addr, port: u16) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[..4].copy_from_slice(&addr.octets());
    k[4..6].copy_from_slice(&port.to_be_bytes());
    k
}

fn sock_lb_rewrites_connect_and_sendmsg() -> TestResult {
    let tcp_backend = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let udp_backend = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    udp_backend.set_read_timeout(Some(EVENT_DEADLINE))?;
    let ebpf = load("tool_sock_lb", &[], &[])?;
    let services: HashMap<_, [u8; 8], [u8; 8]> =
        HashMap::new(ebpf.map("services").ok_or("no services")?)?;
    services.insert(
        &endpoint(VIP, 80),
        &endpoint(Ipv4Addr::LOCALHOST, tcp_backend.local_addr()?.port()),
        UpdateFlags::ANY,
    )?;
    services.insert(
        &endpoint(VIP, 53),
        &endpoint(Ipv4Addr::LOCALHOST, udp_backend.local_addr()?.port()),
        UpdateFlags::ANY,
    )?;
    let cg = TestCgroup::new("tools-sock-lb")?;
    let cg_fd = open_cgroup(&cg.0)?;
    let _links: Vec<Box<dyn Link>> = ["lb_connect4", "lb_sendmsg4", "lb_egress_bytes"]
        .iter()
        .map(|name| -> R<Box<dyn Link>> {
            let prog = ebpf.program(name).ok_or("missing program")?;
            let at = prog.kind().expected_attach_type().ok_or("no attach type")?;
            Ok(attach_cgroup(prog.fd(), cg_fd.as_fd(), at)?)
        })
        .collect::<R<_>>()?;
    let accepted = std::thread::spawn(move || -> R<Vec<u8>> {
        let (mut s, _) = tcp_backend.accept()?;
        let mut got = Vec::new();
        s.read_to_end(&mut got)?;
        Ok(got)
    });
    let procs = cg.0.join("cgroup.procs");
    run_child(
        "sock-lb",
        &[("KILN_CGROUP_PROCS", procs.to_str().ok_or("path")?)],
    )?;
    let got = accepted.join().map_err(|_| "accept thread panicked")??;
    check(got == b"kiln-lb-tcp", || format!("backend got {got:?}"))?;
    let mut buf = [0u8; 64];
    let (n, _) = udp_backend.recv_from(&mut buf)?;
    check(&buf[..n] == b"kiln-lb-udp", || {
        format!("udp backend got {:?}", &buf[..n])
    })?;
    let stats: Array<_, u64> = Array::new(ebpf.map("lb_stats").ok_or("no lb_stats")?)?;
    check(stats.get(0)? == 2, || {
        format!("{} rewrites, want 2", stats.get(0).unwrap_or(0))
    })?;
    check(stats.get(2)? > 0, || {
        "no egress bytes counted for the cgroup".into()
    })?;
    Ok(())
}

/// In the child: join the cgroup, connect to the service and send to it.
fn sock_lb_child() -> TestResult {
    let procs = std::env::var("KILN_CGROUP_PROCS")?;
    std::fs::write(&procs, std::process::id().to_string())?;
    let mut tcp = TcpStream::connect_timeout(&SocketAddr::from((VIP, 80)), EVENT_DEADLINE)?;
    tcp.write_all(b"kiln-lb-tcp")?;
    drop(tcp);
    // Unconnected: the kernel takes sendmsg's own address (sendmsg4 hook).
    let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    udp.send_to(b"kiln-lb-udp", (VIP, 53))?;
    Ok(())
}

// ---- tcpconnect ------------------------------------------------------------

/// Which of tcpconnect's shapes this kernel runs: fexit (trampolines) and
/// kprobes. The host has neither; the VMs have one or both.
fn tcpconnect_shapes() -> R<Vec<&'static str>> {
    let (ebpf, failures) = EbpfLoader::new().load_each(&spec("tool_tcpconnect")?)?;
    let mut shapes = Vec::new();
    // Loading is not enough: arm64 before 6.0 verifies fexit programs but
    // has no trampolines to attach them with (ENOTSUPP). Tools try an attach.
    if let Some(prog) = ebpf.program("connect_fexit")
        && attach_tracing(prog.fd(), prog.kind(), 0).is_ok()
    {
        shapes.push("fexit");
    }
    if std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists()
        && !failures
            .iter()
            .any(|(n, _)| n.starts_with("connect_entry") || n.starts_with("connect_return"))
    {
        shapes.push("kprobe");
    }
    Ok(shapes)
}

fn no_tcpconnect_shape() -> Option<String> {
    match tcpconnect_shapes() {
        Ok(s) if s.is_empty() => {
            Some("kernel has neither kprobes nor fexit trampolines (runs in the VMs)".into())
        }
        _ => None,
    }
}

fn tcpconnect_counts_connects_both_ways() -> TestResult {
    let pid = our_pid() as i32;
    for shape in tcpconnect_shapes()? {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let (skip, attach_names): (&[&str], &[&str]) = match shape {
            "fexit" => (&["connect_entry", "connect_return"], &["connect_fexit"]),
            _ => (&["connect_fexit"], &["connect_entry", "connect_return"]),
        };
        let mut ebpf = load(
            "tool_tcpconnect",
            &[("targ_tgid", &pid.to_ne_bytes())],
            skip,
        )?;
        let _links: Vec<Box<dyn Link>> = attach_names
            .iter()
            .map(|n| -> R<Box<dyn Link>> {
                let prog = ebpf.program(n).ok_or("missing program")?;
                Ok(match shape {
                    "fexit" => Box::new(attach_tracing(prog.fd(), prog.kind(), 0)?),
                    _ => attach(&ebpf, n)?,
                })
            })
            .collect::<R<_>>()?;
        for _ in 0..2 {
            let c = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
            let _ = listener.accept()?;
            drop(c);
        }
        let counts: HashMap<_, u16, u64> = HashMap::new(
            ebpf.map("connects_by_dport")
                .ok_or("no connects_by_dport")?,
        )?;
        check(counts.get(&port)? == Some(2), || {
            format!(
                "{shape}: {:?} connects to {port}, want 2",
                counts.get(&port)
            )
        })?;
        let mut ring = RingBuf::new(ebpf.take_map("events").ok_or("no events")?)?;
        let records = ring_records(&mut ring, |r| r.len() >= 2)?;
        let ours: Vec<&Vec<u8>> = records.iter().filter(|b| u16_at(b, 12) == port).collect();
        check(ours.len() == 2, || {
            format!("{shape}: {} events for port {port}", ours.len())
        })?;
        let lo = Ipv4Addr::LOCALHOST.octets();
        for e in ours {
            check(
                i32_at(e, 0) == pid && e[8..12] == lo && e[4..8] == lo,
                || format!("{shape}: event {e:?}"),
            )?;
        }
    }
    Ok(())
}

fn child_main(role: &str) -> TestResult {
    match role {
        "sock-lb" => sock_lb_child(),
        other => Err(format!("unknown child role {other}").into()),
    }
}

fn main() {
    let needs = [Need::Root, Need::Bpf];
    main_with_children(
        child_main,
        vec![
            test(
                "execsnoop_reports_execs_with_args_and_parent",
                &needs,
                execsnoop_reports_execs_with_args_and_parent,
            ),
            test(
                "execsnoop_failed_exec_follows_its_knob",
                &needs,
                execsnoop_failed_exec_follows_its_knob,
            ),
            test(
                "opensnoop_reports_this_process_opens",
                &needs,
                opensnoop_reports_this_process_opens,
            ),
            test(
                "runqlat_tp_btf_histograms_wakeups",
                &needs,
                runqlat_tp_btf_histograms_wakeups,
            ),
            test(
                "runqlat_raw_tp_histograms_wakeups",
                &needs,
                runqlat_raw_tp_histograms_wakeups,
            ),
            test(
                "tcpstates_follows_a_connection",
                &needs,
                tcpstates_follows_a_connection,
            ),
            test(
                "xdp_port_filter_drops_blocked_ports",
                &needs,
                xdp_port_filter_drops_blocked_ports,
            ),
            test(
                "sock_lb_rewrites_connect_and_sendmsg",
                &[Need::Root, Need::Bpf, Need::Probe("cgroup2", no_cgroup2)],
                sock_lb_rewrites_connect_and_sendmsg,
            ),
            test(
                "tcpconnect_counts_connects_both_ways",
                &[
                    Need::Root,
                    Need::Bpf,
                    Need::Probe("kprobes or fexit", no_tcpconnect_shape),
                ],
                tcpconnect_counts_connects_both_ways,
            ),
        ],
    );
}
