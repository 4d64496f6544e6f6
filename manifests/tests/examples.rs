//! The manifests of `manifests/examples/`, as shipped, against the kernel:
//! each one applies, re-applies as a no-op, does its job where a user would
//! see it (packets dropped or delivered, bytes counted, exec records read,
//! a latency histogram filled), `kiln export` of what runs applies as a
//! no-op, and `destroy` leaves nothing pinned.
//!
//! A test reads the example's manifest.toml and changes only what must be
//! unique to run beside other tests: the deployment name, the pin root
//! (`/sys/fs/bpf/kiln-ex-<example>-<pid>`), and the interface or cgroup the
//! example names; each substitution must match, so an edited example cannot
//! silently run against the real thing. Objects come from `target/bpf`
//! (`cargo xtask build-ebpf`) through `--object`-style overrides.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kiln_loader::OpenFlags;
use kiln_loader::maps::{RingBuf, UpdateFlags};
use kiln_loader::{Map, Program};
use kiln_manifest::Deployment;
use kiln_manifest::apply::ApplyOptions;
use kiln_testkit::{Need, TestResult};

mod common;
use common::{cgroup2_root, counter, exec_true, private_netns, send_udp};

#[path = "../examples/exec-tracer/event.rs"]
mod event;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// One example's manifest, made unique for this test run.
struct Example {
    name: String,
    dir: PathBuf,
    root: PathBuf,
    manifest: PathBuf,
    objects: BTreeMap<String, PathBuf>,
}

impl Example {
    /// Reads `manifests/examples/<example>/manifest.toml`, renames the
    /// deployment, gives it its own pin root, applies `substitutions`
    /// (each must occur), and maps each object to `target/bpf/<file>`.
    fn new(
        example: &str,
        substitutions: &[(&str, &str)],
        objects: &[(&str, &str)],
    ) -> Result<Example, Error> {
        let name = format!("kiln-ex-{example}-{}", std::process::id());
        let root = PathBuf::from("/sys/fs/bpf").join(&name);
        let text = common::example_manifest(example, &name, &root, substitutions)?;
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir)?;
        let manifest = dir.join("manifest.toml");
        std::fs::write(&manifest, text)?;
        let objects = objects
            .iter()
            .map(|(obj, file)| Ok((obj.to_string(), kiln_testkit::bpf_object(file)?)))
            .collect::<Result<_, String>>()?;
        Ok(Example {
            name,
            dir,
            root,
            manifest,
            objects,
        })
    }

    fn deployment(&self) -> Result<Deployment, Error> {
        Deployment::load(&self.manifest, &self.objects).map_err(|d| d.to_string().into())
    }

    /// Applies from nothing, then checks that a second apply would change
    /// nothing and that status sees everything as declared.
    fn apply(&self) -> Result<Deployment, Error> {
        let d = self.deployment()?;
        let out = d.apply(&ApplyOptions::default())?;
        assert!(!out.plan.is_noop(), "the first apply did nothing");
        let again = self.deployment()?.apply(&ApplyOptions::default())?;
        assert!(
            again.plan.is_noop(),
            "re-apply is not a no-op:\n{}",
            again.plan
        );
        let status = d.status()?;
        assert!(status.all_ok(), "{status}");
        self.export_round_trips()?;
        Ok(d)
    }

    /// `kiln export` of the running deployment, applied with the example's
    /// object, is a no-op: the export says everything that runs.
    fn export_round_trips(&self) -> TestResult {
        let text = kiln_manifest::export::export(&self.name, &self.root)?;
        let path = self.dir.join("exported.toml");
        std::fs::write(&path, &text)?;
        let [(_, object)] = self.objects.iter().collect::<Vec<_>>()[..] else {
            return Err("the export round trip expects one object per example".into());
        };
        let objects = BTreeMap::from([("main".to_string(), object.clone())]);
        let plan = Deployment::load(&path, &objects)
            .map_err(|d| d.to_string())?
            .plan()?;
        assert!(
            plan.is_noop(),
            "export does not round-trip:\n{plan}\n{text}"
        );
        Ok(())
    }

    /// Destroys the deployment and checks that the pin root is gone.
    fn destroy(&self, d: &Deployment) -> TestResult {
        d.destroy()?;
        assert!(!self.root.exists(), "{} left behind", self.root.display());
        Ok(())
    }

    fn map(&self, name: &str) -> Result<Map, Error> {
        Ok(Map::from_pin(
            &self.root.join("maps").join(name),
            OpenFlags::ReadOnly,
        )?)
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        common::remove_deployment(&self.name, &self.root, &self.dir);
    }
}

/// The u64 at `key` of `map` (0 when absent); for arrays and hashes whose
/// value is one u64.
fn u64_at(map: &Map, key: &[u8]) -> Result<u64, Error> {
    Ok(map
        .lookup_bytes(key, UpdateFlags::ANY)?
        .map_or(0, |v| u64::from_ne_bytes(v[..8].try_into().unwrap())))
}

fn run(cmd: &str, args: &[&str]) -> Result<(), Error> {
    let out = Command::new(cmd).args(args).output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}

type Job = Box<dyn FnOnce() -> Result<(), String> + Send>;
/// A job and where its result goes.
type Request = (Job, mpsc::Sender<Result<(), String>>);

/// A thread in a network namespace of its own: the far end of a veth pair.
/// Commands it runs (`ip ...`) inherit its namespace.
struct Peer {
    tid: i32,
    jobs: Option<mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Peer {
    fn new() -> Result<Peer, Error> {
        let (jobs, inbox) = mpsc::channel::<Request>();
        let (ready, tid) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            // SAFETY: unshare takes flags only; it affects this thread.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                let _ = ready.send(Err(std::io::Error::last_os_error().to_string()));
                return;
            }
            // SAFETY: gettid has no arguments and cannot fail.
            let _ = ready.send(Ok(unsafe { libc::gettid() }));
            for (job, reply) in inbox {
                let _ = reply.send(job());
            }
        });
        let tid = tid
            .recv()?
            .map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
        Ok(Peer {
            tid,
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `job` in the peer's namespace and waits for it.
    fn run(&self, job: impl FnOnce() -> Result<(), String> + Send + 'static) -> Result<(), Error> {
        let (reply, answer) = mpsc::channel();
        self.jobs
            .as_ref()
            .expect("open until drop")
            .send((Box::new(job), reply))
            .map_err(|_| "the peer thread ended")?;
        Ok(answer.recv()??)
    }

    /// Sends `text` over UDP from `from` (an address of the peer) to `to`.
    fn send_udp(&self, from: Ipv4Addr, to: SocketAddrV4, text: &'static str) -> TestResult {
        self.run(move || {
            let s = UdpSocket::bind((from, 0)).map_err(|e| format!("bind {from}: {e}"))?;
            s.send_to(text.as_bytes(), to)
                .map_err(|e| format!("send to {to}: {e}"))?;
            Ok(())
        })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Closing the channel ends the thread, and with it the namespace and
        // the veth end in it (which takes the other end along).
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A veth pair: `near` in this thread's namespace with `near_addrs`, `far`
/// in `peer`'s with `far_addrs` (all /24), both up.
fn veth(
    near: &str,
    far: &str,
    peer: &Peer,
    near_addrs: &[&str],
    far_addrs: &[&'static str],
) -> TestResult {
    let tid = peer.tid.to_string();
    run(
        "ip",
        &[
            "link", "add", near, "type", "veth", "peer", "name", far, "netns", &tid,
        ],
    )?;
    for a in near_addrs {
        run("ip", &["addr", "add", &format!("{a}/24"), "dev", near])?;
    }
    run("ip", &["link", "set", near, "up"])?;
    let far = far.to_string();
    let far_addrs = far_addrs.to_vec();
    peer.run(move || {
        let ip = |args: &[&str]| run("ip", args).map_err(|e| e.to_string());
        for a in far_addrs {
            ip(&["addr", "add", &format!("{a}/24"), "dev", &far])?;
        }
        ip(&["link", "set", &far, "up"])?;
        ip(&["link", "set", "lo", "up"])
    })
}

/// A UDP socket on every address of this namespace, at `port`.
fn receiver(port: u16) -> Result<UdpSocket, Error> {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))?;
    s.set_read_timeout(Some(Duration::from_millis(1500)))?;
    Ok(s)
}

/// What `s` received next, or None when nothing came in time.
fn received(s: &UdpSocket) -> Result<Option<String>, Error> {
    let mut buf = [0u8; 64];
    match s.recv(&mut buf) {
        Ok(n) => Ok(Some(String::from_utf8_lossy(&buf[..n]).into_owned())),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// An interface name of at most 15 bytes, unique to this process.
fn ifname(prefix: &str, end: &str) -> String {
    format!("{prefix}{}{end}", std::process::id() % 100_000)
}

/// An LPM trie key for an IPv4 prefix: prefix length, then the address.
fn lpm_key(prefix_len: u32, addr: [u8; 4]) -> Vec<u8> {
    let mut k = prefix_len.to_ne_bytes().to_vec();
    k.extend_from_slice(&addr);
    k
}

fn xdp_firewall() -> TestResult {
    private_netns()?;
    let peer = Peer::new()?;
    let (near, far) = (ifname("kxfw", "a"), ifname("kxfw", "b"));
    // 198.51.100.0/24 is in the example's blocklist; 172.30.0.0/24 is not.
    veth(
        &near,
        &far,
        &peer,
        &["172.30.0.1", "198.51.100.1"],
        &["172.30.0.2", "198.51.100.2"],
    )?;
    let ex = Example::new(
        "xdp-firewall",
        &[("interface = \"fw0\"", &format!("interface = \"{near}\""))],
        &[("firewall", "firewall.bpf.o")],
    )?;
    let d = ex.apply()?;
    let rx = receiver(5555)?;
    let allowed_to = SocketAddrV4::new(Ipv4Addr::new(172, 30, 0, 1), 5555);
    let blocked_to = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 5555);
    peer.send_udp(Ipv4Addr::new(172, 30, 0, 2), allowed_to, "allowed")?;
    assert_eq!(received(&rx)?.as_deref(), Some("allowed"));
    peer.send_udp(Ipv4Addr::new(198, 51, 100, 2), blocked_to, "blocked")?;
    assert_eq!(received(&rx)?, None, "a blocklisted source got through");

    let stats = ex.map("STATS")?;
    let (dropped, passed) = (
        u64_at(&stats, &1u32.to_ne_bytes())?,
        u64_at(&stats, &2u32.to_ne_bytes())?,
    );
    assert!(dropped >= 1, "STATS[XDP_DROP] = {dropped}");
    assert!(passed >= 1, "STATS[XDP_PASS] = {passed}");
    let blocklist = ex.map("BLOCKLIST")?;
    // The rules count in u32s (see the program for why).
    let rule = |key: Vec<u8>| -> Result<u64, Error> {
        Ok(blocklist
            .lookup_bytes(&key, UpdateFlags::ANY)?
            .map_or(0, |v| u32::from_ne_bytes(v[..4].try_into().unwrap()).into()))
    };
    let hits = rule(lpm_key(24, [198, 51, 100, 0]))?;
    assert_eq!(
        hits, dropped,
        "the /24 rule counted {hits} of {dropped} drops"
    );
    let other = rule(lpm_key(32, [203, 0, 113, 7]))?;
    assert_eq!(other, 0, "a rule nobody matched counted {other}");

    ex.destroy(&d)?;
    // Without the firewall the same packet arrives.
    peer.send_udp(Ipv4Addr::new(198, 51, 100, 2), blocked_to, "unblocked")?;
    assert_eq!(received(&rx)?.as_deref(), Some("unblocked"));
    Ok(())
}

fn tc_classifier() -> TestResult {
    private_netns()?;
    let peer = Peer::new()?;
    let (near, far) = (ifname("kxtc", "a"), ifname("kxtc", "b"));
    veth(&near, &far, &peer, &["172.31.0.1"], &["172.31.0.2"])?;
    let ex = Example::new(
        "tc-classifier",
        &[("interface = \"tc0\"", &format!("interface = \"{near}\""))],
        &[("portfilter", "portfilter.bpf.o")],
    )?;
    let d = ex.apply()?;
    // 7001 is in the example's drop_ports, 7002 is not.
    let (rx_dropped, rx_passed) = (receiver(7001)?, receiver(7002)?);
    let src = Ipv4Addr::new(172, 31, 0, 2);
    let to = |port| SocketAddrV4::new(Ipv4Addr::new(172, 31, 0, 1), port);
    peer.send_udp(src, to(7002), "passed")?;
    assert_eq!(received(&rx_passed)?.as_deref(), Some("passed"));
    peer.send_udp(src, to(7001), "dropped")?;
    assert_eq!(received(&rx_dropped)?, None, "port 7001 got through");

    let hits = u64_at(&ex.map("drop_ports")?, &7001u16.to_ne_bytes())?;
    assert_eq!(hits, 1, "drop_ports[7001]");
    let stats = ex.map("stats")?;
    assert_eq!(u64_at(&stats, &1u32.to_ne_bytes())?, 1, "stats[dropped]");
    let passed = u64_at(&stats, &0u32.to_ne_bytes())?;
    assert!(passed >= 1, "stats[passed] = {passed}");

    ex.destroy(&d)?;
    peer.send_udp(src, to(7001), "after")?;
    assert_eq!(received(&rx_dropped)?.as_deref(), Some("after"));
    Ok(())
}

fn cgroup_egress() -> TestResult {
    private_netns()?;
    let cg = PathBuf::from(cgroup2_root().ok_or("no cgroup2 mount")?)
        .join(format!("kiln-ex-egress-{}", std::process::id()));
    std::fs::create_dir(&cg).map_err(|e| format!("mkdir {}: {e}", cg.display()))?;
    let result = (|| -> TestResult {
        let ex = Example::new(
            "cgroup-egress",
            &[(
                "path = \"/sys/fs/cgroup/kiln-egress\"",
                &format!("path = \"{}\"", cg.display()),
            )],
            &[("egress", "egress_counter.bpf.o")],
        )?;
        let d = ex.apply()?;
        // A process in the cgroup sends one UDP datagram with a 5-byte
        // payload: 20 (IP) + 8 (UDP) + 5 = 33 bytes at egress.
        let script = format!(
            "echo $$ > {}/cgroup.procs && echo -n hello > /dev/udp/127.0.0.1/9",
            cg.display()
        );
        run("bash", &["-c", &script])?;
        let id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&cg)?);
        let usage = ex
            .map("EGRESS")?
            .lookup_bytes(&id.to_ne_bytes(), UpdateFlags::ANY)?
            .ok_or_else(|| format!("no entry for cgroup {id} ({})", cg.display()))?;
        let field = |i: usize| u64::from_ne_bytes(usage[i * 8..i * 8 + 8].try_into().unwrap());
        assert_eq!((field(0), field(1)), (1, 33), "(packets, bytes) sent");
        ex.destroy(&d)
    })();
    // The cgroup empties when the shell exits, a moment later at most.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::remove_dir(&cg).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    result
}

fn exec_tracer() -> TestResult {
    let ex = Example::new("exec-tracer", &[], &[("exectrace", "exectrace.bpf.o")])?;
    let d = ex.apply()?;
    let pin = ex.root.join("maps/events");
    let mut ring = RingBuf::new(Map::from_pin(&pin, OpenFlags::ReadWrite)?)?;
    let child = Command::new("/bin/true").spawn()?;
    let pid = child.id();
    let status = child.wait_with_output()?.status;
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    let found = 'wait: loop {
        while let Some(record) = ring.next() {
            let e = event::ExecEvent::parse(&record)
                .ok_or_else(|| format!("a {}-byte record", record.len()))?;
            if e.pid == pid {
                break 'wait e;
            }
            seen.push(e);
        }
        if Instant::now() > deadline {
            return Err(format!("no record for pid {pid} in {seen:?}").into());
        }
        ring.wait(Some(Duration::from_millis(200)))?;
    };
    assert_eq!(found.filename, "/bin/true", "{found:?}");
    assert_eq!(found.comm, "true", "{found:?}");
    drop(ring);
    ex.destroy(&d)
}

fn kprobe_latency() -> TestResult {
    let ex = Example::new("kprobe-latency", &[], &[("vfslat", "vfslat.bpf.o")])?;
    let d = ex.apply()?;
    let latency = ex.map("latency")?;
    let total =
        |m: &Map| -> Result<u64, Error> { (0..64u32).map(|i| u64_at(m, &i.to_ne_bytes())).sum() };
    let before = total(&latency)?;
    // Each read(2) of a file is one vfs_read call.
    let mut f = std::fs::File::open("/proc/self/stat")?;
    for _ in 0..100 {
        use std::io::{Read, Seek};
        let mut buf = [0u8; 64];
        f.seek(std::io::SeekFrom::Start(0))?;
        let _ = f.read(&mut buf)?;
    }
    let after = total(&latency)?;
    assert!(
        after >= before + 100,
        "100 reads, histogram went from {before} to {after}"
    );
    let buckets: Vec<u64> = (0..64u32)
        .map(|i| u64_at(&latency, &i.to_ne_bytes()))
        .collect::<Result<_, _>>()?;
    // What a user looks at: the non-empty buckets.
    for (i, n) in buckets.iter().enumerate().filter(|(_, n)| **n > 0) {
        eprintln!(
            "kprobe_latency: [{:>8} ns, {:>8} ns) {n}",
            1u64 << i,
            1u64 << (i + 1)
        );
    }
    // No call is faster than 2 ns or slower than 2^40 ns (18 minutes).
    assert_eq!(buckets[0], 0, "{buckets:?}");
    assert!(buckets[40..].iter().all(|&n| n == 0), "{buckets:?}");
    ex.destroy(&d)
}

fn quickstart() -> TestResult {
    private_netns()?;
    let ex = Example::new("quickstart", &[], &[("counter", "counter.bpf.o")])?;
    let d = ex.apply()?;
    let (execs, packets) = (counter(&ex.root, 0)?, counter(&ex.root, 1)?);
    exec_true()?;
    send_udp()?;
    assert!(counter(&ex.root, 0)? > execs, "count_exec missed /bin/true");
    assert!(
        counter(&ex.root, 1)? > packets,
        "count_packets missed a packet on lo"
    );
    ex.destroy(&d)
}

/// An AF_PACKET socket on `lo` seeing every packet, Ethernet header first
/// (what `count_protocols` expects), with the program pinned at `prog`.
fn packet_socket_with(prog: &std::path::Path) -> Result<std::os::fd::OwnedFd, Error> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let all = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket creation.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(all),
        )
    };
    if fd < 0 {
        return Err(format!("socket(AF_PACKET): {}", std::io::Error::last_os_error()).into());
    }
    // SAFETY: fd was just returned by socket(2) and is ours.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero sockaddr_ll is valid; we fill family, protocol, ifindex.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = all;
    // SAFETY: a NUL-terminated name.
    addr.sll_ifindex = unsafe { libc::if_nametoindex(c"lo".as_ptr()) } as i32;
    // SAFETY: addr is a valid sockaddr_ll of the size given.
    let r = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r != 0 {
        return Err(format!("bind AF_PACKET to lo: {}", std::io::Error::last_os_error()).into());
    }
    let program = Program::from_pin(prog, None)?;
    let prog_fd = program.fd().as_raw_fd();
    // SAFETY: SO_ATTACH_BPF reads one int, the program's fd, valid while `program` lives.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_BPF,
            (&raw const prog_fd).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
    if r != 0 {
        return Err(format!("SO_ATTACH_BPF: {}", std::io::Error::last_os_error()).into());
    }
    Ok(sock)
}

fn socket_filter() -> TestResult {
    private_netns()?;
    let ex = Example::new("socket-filter", &[], &[("sockfilter", "sockfilter.bpf.o")])?;
    let d = ex.apply()?;
    // The manifest pins count_protocols; a process attaches it to its socket.
    let sock = packet_socket_with(&ex.root.join("progs/count_protocols"))?;
    send_udp()?;
    let udp = u64_at(&ex.map("proto_packets")?, &17u32.to_ne_bytes())?;
    assert!(udp >= 1, "proto_packets[UDP] = {udp}");
    let bytes = u64_at(&ex.map("tc_bytes")?, &0u32.to_ne_bytes())?;
    // The 4-byte datagram alone is 32 bytes at the IP layer.
    assert!(bytes >= 32, "tc_bytes[0] = {bytes}");
    drop(sock);
    ex.destroy(&d)
}

fn feature(name: &'static str) -> Option<String> {
    let ok = kiln_manifest::features::has(kiln_loader::probe::features(), name).unwrap_or(false);
    (!ok).then(|| format!("the kernel lacks {name}"))
}

fn main() {
    // Kernels before 5.11 charge maps to RLIMIT_MEMLOCK, as `kiln` knows.
    let _ = kiln_loader::caps::raise_memlock();
    let base = [Need::Root, Need::Bpf];
    let with = |extra: &[Need]| -> Vec<Need> { base.iter().chain(extra).copied().collect() };
    let perf_link = Need::Probe("perf_link", || feature("perf_link"));
    kiln_testkit::run(vec![
        kiln_testkit::test("quickstart", &with(&[Need::NetNs, perf_link]), quickstart),
        kiln_testkit::test(
            "socket_filter",
            &with(&[Need::NetNs, Need::Probe("tcx", || feature("tcx"))]),
            socket_filter,
        ),
        kiln_testkit::test("xdp_firewall", &with(&[Need::NetNs]), xdp_firewall),
        // tcx where the kernel has it, clsact below: runs on every kernel.
        kiln_testkit::test("tc_classifier", &with(&[Need::NetNs]), tc_classifier),
        kiln_testkit::test(
            "cgroup_egress",
            &with(&[
                Need::NetNs,
                Need::Probe("cgroup2", || {
                    cgroup2_root().is_none().then(|| "no cgroup2 mount".into())
                }),
            ]),
            cgroup_egress,
        ),
        kiln_testkit::test(
            "exec_tracer",
            &with(&[perf_link, Need::Probe("ringbuf", || feature("ringbuf"))]),
            exec_tracer,
        ),
        kiln_testkit::test(
            "kprobe_latency",
            &with(&[Need::Kprobes, perf_link]),
            kprobe_latency,
        ),
    ]);
}
