//! Shared pieces of the attach tests: a counting program for any program
//! type, its counter map, bpffs, network namespaces with a veth pair.
#![allow(
    dead_code,
    reason = "each attach_* test binary uses a different subset"
)]

use kiln_loader::programs::LoadOptions;
use kiln_loader::{Map, Program};
use kiln_obj::{Insn, MapOrigin, MapSpec, MapType, Pinning, ProgramKind};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

pub type TestResult = kiln_testkit::TestResult;

fn i(code: u8, regs: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs,
        off,
        imm,
    }
}

/// An array map of 8 u64 counters.
pub fn counters(name: &str) -> Result<Map, Box<dyn std::error::Error + Send + Sync>> {
    Ok(create_map(name, MapType::ARRAY, 4, 8, 8, 0)?)
}

/// A map created from a bare definition (no BTF, no pin).
pub fn create_map(
    name: &str,
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
) -> Result<Map, kiln_loader::MapError> {
    let spec = MapSpec {
        name: name.into(),
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags,
        numa_node: None,
        map_extra: 0,
        pinning: Pinning::None,
        origin: MapOrigin::BtfMaps,
        initial_data: None,
        btf_key_type_id: None,
        btf_value_type_id: None,
        inner: None,
        variables: vec![],
    };
    Map::create(&spec, None, None)
}

pub fn count(map: &Map, key: u32) -> u64 {
    let v = map
        .lookup_bytes(&key.to_ne_bytes(), Default::default())
        .expect("lookup in the counter map")
        .expect("array slot exists");
    u64::from_ne_bytes(v[..8].try_into().unwrap())
}

/// `counts[key] += 1; return ret;` as a program of `kind`. Hand-assembled so
/// the attach tests do not depend on the object parser.
pub fn counter_prog(
    kind: ProgramKind,
    map: BorrowedFd<'_>,
    key: u32,
    ret: i32,
) -> Result<Program, Box<dyn std::error::Error + Send + Sync>> {
    let opts = LoadOptions {
        license: "GPL",
        ..Default::default()
    };
    counter_prog_with(kind, map, key, ret, &opts)
}

/// [`counter_prog`] with explicit load options (attach BTF id, ...).
pub fn counter_prog_with(
    kind: ProgramKind,
    map: BorrowedFd<'_>,
    key: u32,
    ret: i32,
    opts: &LoadOptions<'_>,
) -> Result<Program, Box<dyn std::error::Error + Send + Sync>> {
    let insns = vec![
        i(0x62, 0x0a, -4, key as i32),     // *(u32 *)(r10 - 4) = key
        i(0xbf, 0xa2, 0, 0),               // r2 = r10
        i(0x07, 2, 0, -4),                 // r2 += -4
        i(0x18, 0x11, 0, map.as_raw_fd()), // r1 = map (BPF_PSEUDO_MAP_FD)
        i(0, 0, 0, 0),
        i(0x85, 0, 0, 1),    // call bpf_map_lookup_elem
        i(0x15, 0, 2, 0),    // if r0 == 0 goto +2
        i(0xb7, 1, 0, 1),    // r1 = 1
        i(0xdb, 0x10, 0, 0), // lock *(u64 *)(r0 + 0) += r1
        i(0xb7, 0, 0, ret),  // r0 = ret
        i(0x95, 0, 0, 0),    // exit
    ];
    Ok(Program::load(&format!("count{key}"), kind, &insns, opts)?)
}

/// A bpffs directory for this test's pins (mounts bpffs at /sys/fs/bpf if needed).
pub struct PinDir(pub PathBuf);

impl PinDir {
    pub fn new(test: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let root = Path::new("/sys/fs/bpf");
        // Tests run in parallel threads and processes: mount once, under a lock.
        static MOUNT: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = MOUNT.lock().unwrap_or_else(|e| e.into_inner());
        let lock = File::create("/tmp/kiln-test-bpffs.lock")?;
        // SAFETY: flock on a file we hold open; released when it closes.
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        if !kiln_loader::pin::is_on_bpffs(root)? {
            std::fs::create_dir_all(root)?;
            let st = Command::new("mount")
                .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
                .status()?;
            if !st.success() {
                return Err("cannot mount bpffs at /sys/fs/bpf".into());
            }
        }
        let dir = root.join(format!("kiln-test-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(PinDir(dir))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a command; its stderr is the error when it fails.
pub fn sh(args: &[&str]) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}

/// Two network namespaces joined by a veth pair: `va` (10.201.N.1) in `a`,
/// `vb` (10.201.N.2) in `b`. Deleted on drop.
pub struct VethPair {
    pub a: String,
    pub b: String,
    pub subnet: u8,
}

impl VethPair {
    pub fn new(tag: &str, subnet: u8) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let pid = std::process::id();
        let pair = VethPair {
            a: format!("kiln-{tag}-{pid}-a"),
            b: format!("kiln-{tag}-{pid}-b"),
            subnet,
        };
        sh(&["ip", "netns", "add", &pair.a])?;
        sh(&["ip", "netns", "add", &pair.b])?;
        sh(&[
            "ip", "link", "add", "va", "netns", &pair.a, "type", "veth", "peer", "name", "vb",
            "netns", &pair.b,
        ])?;
        for (ns, dev, host) in [(&pair.a, "va", 1), (&pair.b, "vb", 2)] {
            let addr = format!("10.201.{subnet}.{host}/24");
            sh(&["ip", "-n", ns, "addr", "add", &addr, "dev", dev])?;
            sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(pair)
    }

    /// Sends `n` UDP datagrams from `a` to `vb`'s address: they cross the
    /// veth into `b` (the first also triggers ARP, which crosses it too).
    /// Waits until the kernel has had time to deliver them.
    pub fn ping(&self, n: u32) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let sock = {
            // The socket belongs to the namespace it is created in.
            let _ns = InNetns::enter(&self.a)?;
            std::net::UdpSocket::bind("0.0.0.0:0")?
        };
        let dst = format!("10.201.{}.2:9", self.subnet);
        for _ in 0..n {
            // Port 9 has no listener; the ICMP errors coming back make later
            // sends fail with ECONNREFUSED on a connected socket, not on send_to.
            let _ = sock.send_to(b"kiln", &dst);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        Ok(())
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.a]);
        let _ = sh(&["ip", "netns", "del", &self.b]);
    }
}

/// Moves the calling thread into a named network namespace until dropped.
pub struct InNetns {
    home: File,
}

impl InNetns {
    pub fn enter(name: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let home = File::open("/proc/thread-self/ns/net")?;
        let target = File::open(format!("/run/netns/{name}"))?;
        setns(target.as_fd())?;
        Ok(InNetns { home })
    }
}

fn setns(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    // SAFETY: setns(2) with a namespace fd we hold open; affects this thread only.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for InNetns {
    fn drop(&mut self) {
        setns(self.home.as_fd()).expect("return to the original network namespace");
    }
}

/// Runs this test binary again as a child that performs `role` (see each
/// test's `child_main`), with `args` in the environment; fails if it fails.
pub fn run_child(role: &str, args: &[(&str, &str)]) -> TestResult {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.env("KILN_ATTACH_CHILD", role);
    for (k, v) in args {
        cmd.env(k, v);
    }
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!(
            "child {role} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

/// The counter at `key` once it reaches `n`, or its value after a deadline.
/// Packets and events may land a little after the trigger returns on a loaded
/// machine (ARP resolution in a fresh namespace, softirq backlog), so the
/// check waits up to 3 s rather than guessing a fixed sleep.
pub fn count_at_least(map: &Map, key: u32, n: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let c = count(map, key);
        if c >= n || std::time::Instant::now() >= deadline {
            return c;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Asserts with a message naming what was observed.
pub fn check(cond: bool, what: impl FnOnce() -> String) -> TestResult {
    if cond { Ok(()) } else { Err(what().into()) }
}

/// How a mechanism's update behaves, for [`counts_updates_detaches`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// Atomic, and refuses a wrong expected old program.
    Checked,
    /// Atomic, but cannot check the old program (pass `None`).
    Unchecked,
    /// The kernel cannot swap the program (perf-event links): must fail.
    Refused,
}

/// The story every attach test tells: traffic runs `p0` (counter 0); the
/// update to `p1` (counter 1) takes effect and `p0` stops; after detach
/// nothing runs. `trigger` makes the hook fire at least `n` times.
pub fn counts_updates_detaches(
    link: &mut dyn kiln_loader::links::Link,
    map: &Map,
    (p0, p1): (&Program, &Program),
    update: Update,
    n: u64,
    trigger: &dyn Fn() -> TestResult,
) -> TestResult {
    trigger()?;
    let c0 = count_at_least(map, 0, n);
    check(c0 >= n, || {
        format!("{}: counter 0 = {c0} after trigger", link.target())
    })?;
    match update {
        Update::Refused => {
            check(link.update(p1.fd(), None).is_err(), || {
                "update of a link that cannot update succeeded".into()
            })?;
        }
        Update::Checked | Update::Unchecked => {
            if update == Update::Checked {
                let stale = link.update(p1.fd(), Some(p1.fd()));
                check(stale.is_err(), || {
                    "update with a wrong old program succeeded".into()
                })?;
                link.update(p1.fd(), Some(p0.fd()))?;
            } else {
                link.update(p1.fd(), None)?;
            }
            let before = count(map, 0);
            trigger()?;
            let c1 = count_at_least(map, 1, n);
            check(c1 >= n, || format!("counter 1 = {c1} after update"))?;
            check(count(map, 0) == before, || {
                "old program still runs after update".into()
            })?;
        }
    }
    link.detach()?;
    let after = (count(map, 0), count(map, 1));
    trigger()?;
    let now = (count(map, 0), count(map, 1));
    check(now == after, || {
        format!("programs run after detach: {after:?} -> {now:?}")
    })
}

/// `main` of an attach test binary: runs `child` when started by
/// [`run_child`], the tests otherwise.
pub fn main_with_children(child: fn(&str) -> TestResult, tests: Vec<kiln_testkit::Test>) -> ! {
    if let Ok(role) = std::env::var("KILN_ATTACH_CHILD") {
        if let Err(e) = child(&role) {
            eprintln!("child {role}: {e}");
            std::process::exit(1);
        }
        std::process::exit(0);
    }
    kiln_testkit::run(tests)
}

/// In a child started by [`run_child`]: the namespace it was given (if any),
/// and a fresh counter map pinned as `counts` in its pin directory.
pub fn child_setup(
    map_name: &str,
) -> Result<(Option<String>, PathBuf, Map), Box<dyn std::error::Error + Send + Sync>> {
    let ns = std::env::var("KILN_NETNS").ok();
    let dir = PathBuf::from(std::env::var("KILN_PIN_DIR")?);
    let map = counters(map_name)?;
    map.pin(&dir.join("counts"))?;
    Ok((ns, dir, map))
}

/// Loads `target/bpf/<stem>.bpf.o` with the default loader.
pub fn load_object(
    stem: &str,
) -> Result<(kiln_obj::ObjectSpec, kiln_loader::Ebpf), Box<dyn std::error::Error + Send + Sync>> {
    let path = kiln_testkit::bpf_object(&format!("{stem}.bpf.o"))?;
    let spec = kiln_obj::ObjectSpec::parse(&std::fs::read(&path)?)?;
    let ebpf = kiln_loader::EbpfLoader::new().load(&spec)?;
    Ok((spec, ebpf))
}

/// A program of a loaded object, or an error naming it.
pub fn prog<'a>(
    ebpf: &'a kiln_loader::Ebpf,
    name: &str,
) -> Result<&'a Program, Box<dyn std::error::Error + Send + Sync>> {
    ebpf.program(name)
        .ok_or_else(|| format!("object has no program {name}").into())
}

/// A map of a loaded object, or an error naming it.
pub fn map<'a>(
    ebpf: &'a kiln_loader::Ebpf,
    name: &str,
) -> Result<&'a Map, Box<dyn std::error::Error + Send + Sync>> {
    ebpf.map(name)
        .ok_or_else(|| format!("object has no map {name}").into())
}

/// The u64 value under a u64 key of a hash map (0 when absent).
pub fn hash_count(map: &Map, key: u64) -> u64 {
    map.lookup_bytes(&key.to_ne_bytes(), Default::default())
        .ok()
        .flatten()
        .map_or(0, |v| u64::from_ne_bytes(v[..8].try_into().unwrap()))
}

/// A fresh named network namespace with `lo` up; deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let name = format!("kiln-{tag}-{}", std::process::id());
        let _ = sh(&["ip", "netns", "del", &name]);
        sh(&["ip", "netns", "add", &name])?;
        let ns = Netns(name);
        sh(&["ip", "-n", &ns.0, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn enter(&self) -> Result<InNetns, Box<dyn std::error::Error + Send + Sync>> {
        InNetns::enter(&self.0)
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.0))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.0]);
    }
}

/// Where cgroup v2 is mounted.
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| PathBuf::from(f[1]))
}

pub fn no_cgroup2() -> Option<String> {
    cgroup2_root()
        .is_none()
        .then(|| "no cgroup2 mount in /proc/self/mounts".into())
}

/// A cgroup created for one test, removed on drop.
pub struct TestCgroup(pub PathBuf);

impl TestCgroup {
    pub fn new(tag: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let root = cgroup2_root().ok_or("no cgroup2 mount")?;
        let dir = root.join(format!("kiln-test-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(TestCgroup(dir))
    }

    /// Runs a bash `script` in a shell that first moves itself into this cgroup.
    pub fn run(&self, script: &str) -> TestResult {
        let procs = self.0.join("cgroup.procs");
        let script = format!("echo $$ > {} && {script}", procs.display());
        let st = Command::new("bash").args(["-c", &script]).status()?;
        check(st.success(), || format!("script in cgroup failed: {st}"))
    }

    /// Runs `n` UDP connects from inside this cgroup.
    pub fn connect(&self, n: u32) -> TestResult {
        self.run(&format!(
            "for i in $(seq {n}); do exec 3<>/dev/udp/127.0.0.1/9; exec 3>&-; done"
        ))
    }

    /// Opens `n` TCP connections to `127.0.0.1:port` from inside this cgroup.
    pub fn tcp_connect(&self, port: u16, n: u32) -> TestResult {
        self.run(&format!(
            "for i in $(seq {n}); do exec 3<>/dev/tcp/127.0.0.1/{port}; exec 3>&-; done"
        ))
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // The shells have exited, so the cgroup is empty and can go.
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A 64-byte broadcast Ethernet frame of EtherType 0x88b5 (IEEE local
/// experimental, which test programs filter on) carrying `payload`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[..6].fill(0xff);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14..14 + payload.len()].copy_from_slice(payload);
    f
}

/// Sends one raw Ethernet frame out of `ifindex` (AF_PACKET).
pub fn send_raw(
    ifindex: u32,
    frame: &[u8],
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(format!("socket(AF_PACKET): {}", std::io::Error::last_os_error()).into());
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter are set below.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_ifindex = ifindex as i32;
    to.sll_halen = 6;
    // SAFETY: `frame` is readable for its length and `to` is a complete sockaddr_ll.
    let r = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&to as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r < 0 {
        return Err(format!("sendto AF_PACKET: {}", std::io::Error::last_os_error()).into());
    }
    Ok(())
}

/// Whether the kernel lets an extension (freplace) load here (the host
/// refuses tracing programs with EPERM; the VMs allow them) and attach:
/// arm64 kernels before 6.0 have no BPF trampolines and answer ENOTSUPP
/// (524) to the attachment; any other attach error is the test's to report.
pub fn no_freplace() -> Option<String> {
    use kiln_loader::links::freplace::{attach_freplace, load_extension, target_func_btf_id};
    let (_, target) = load_object("attach_freplace_target").ok()?;
    let (spec, ext) = load_object("attach_freplace").ok()?;
    let t = prog(&target, "xdp_entry").ok()?;
    let e = match load_extension(&spec, &ext, "drop_all", t.fd(), None) {
        Ok(e) => e,
        Err(e) => return Some(format!("kernel refuses freplace programs: {e}")),
    };
    let btf_id = target_func_btf_id(t.fd(), "kiln_decide").ok()?;
    match attach_freplace(e.fd(), t.fd(), btf_id) {
        Err(e) if kiln_loader::error_chain(&e).contains("os error 524") => Some(format!(
            "kernel cannot attach freplace programs (no BPF trampoline on this arch before 6.0): {e}"
        )),
        _ => None,
    }
}

/// `bpf_get_attach_cookie` (5.15+): the attach_cookie programs call it.
pub fn no_bpf_cookie() -> Option<String> {
    (!kiln_loader::probe::features().bpf_cookie)
        .then(|| "kernel has no bpf_get_attach_cookie (needs 5.15)".into())
}

/// perf-event links (5.15+): without them a tracepoint, kprobe or uprobe
/// attachment cannot be pinned.
pub fn no_perf_link() -> Option<String> {
    let f = kiln_loader::probe::features();
    (!f.link_kinds.get("perf_event").copied().unwrap_or(false))
        .then(|| "kernel has no perf-event links, so no pinned tracepoint (needs 5.15)".into())
}

const RTM_NEWLINK: u16 = 16;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_NETKIT_PEER_INFO: u16 = 1;
const IFLA_NETKIT_MODE: u16 = 5;
const NETKIT_L2: u32 = 0;

/// `struct ifinfomsg` for a new device, up.
fn ifinfomsg_up() -> [u8; 16] {
    let mut m = [0u8; 16];
    m[8..12].copy_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
    m[12..16].copy_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
    m
}

/// Creates an L2 netkit pair `primary`/`peer`, both up, in the calling
/// thread's network namespace.
pub fn create_netkit_pair(
    primary: &str,
    peer: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // IFLA_NETKIT_PEER_INFO: an ifinfomsg followed by the peer's attributes.
    let mut peer_info = ifinfomsg_up().to_vec();
    let mut name = peer.as_bytes().to_vec();
    name.push(0);
    peer_info.extend_from_slice(&((4 + name.len()) as u16).to_ne_bytes());
    peer_info.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
    peer_info.extend_from_slice(&name);
    peer_info.resize(peer_info.len().next_multiple_of(4), 0);

    let mut m = kiln_loader::netlink::Message::new(
        RTM_NEWLINK,
        kiln_loader::netlink::NLM_F_ACK
            | kiln_loader::netlink::NLM_F_CREATE
            | kiln_loader::netlink::NLM_F_EXCL,
    );
    m.push(&ifinfomsg_up());
    m.attr_str(IFLA_IFNAME, primary);
    let info = m.begin_nest(IFLA_LINKINFO);
    m.attr_str(IFLA_INFO_KIND, "netkit");
    let data = m.begin_nest(IFLA_INFO_DATA);
    m.attr(IFLA_NETKIT_PEER_INFO, &peer_info);
    m.attr_u32(IFLA_NETKIT_MODE, NETKIT_L2);
    m.end_nest(data);
    m.end_nest(info);
    let mut sock =
        kiln_loader::netlink::RouteSocket::open().map_err(|e| format!("open rtnetlink: {e}"))?;
    sock.request(&mut m)
        .map_err(|e| format!("create netkit pair {primary}/{peer}: {e}"))?;
    // The new devices come up down whatever the request's flags: set IFF_UP.
    for name in [primary, peer] {
        let mut up =
            kiln_loader::netlink::Message::new(RTM_NEWLINK, kiln_loader::netlink::NLM_F_ACK);
        let mut ifi = ifinfomsg_up();
        ifi[4..8].copy_from_slice(&(kiln_loader::netlink::ifindex(name)? as i32).to_ne_bytes());
        up.push(&ifi);
        sock.request(&mut up)
            .map_err(|e| format!("set {name} up: {e}"))?;
    }
    Ok(())
}

/// Whether the kernel loads an fentry program at all (the host's refuses
/// with EPERM): `return 0` on vmlinux's `bpf_fentry_test1`.
pub fn no_fentry() -> Option<String> {
    let kind = kiln_obj::ProgramKind::Tracing {
        attach_type: kiln_obj::AttachType::TRACE_FENTRY,
        target: Some("bpf_fentry_test1".into()),
    };
    let attach_btf_id = match kiln_loader::links::tracing::vmlinux_attach_btf_id(&kind, None) {
        Ok(id) => id,
        Err(e) => return Some(format!("no fentry target: {e}")),
    };
    let insns = [
        kiln_obj::Insn {
            code: 0xb7, // r0 = 0
            regs: 0,
            off: 0,
            imm: 0,
        },
        kiln_obj::Insn {
            code: 0x95, // exit
            regs: 0,
            off: 0,
            imm: 0,
        },
    ];
    let opts = kiln_loader::programs::LoadOptions {
        license: "GPL",
        attach_btf_id,
        ..Default::default()
    };
    let prog = match kiln_loader::programs::Program::load("probe_fentry", kind, &insns, &opts) {
        Ok(prog) => prog,
        Err(e) => return Some(format!("kernel refuses fentry programs: {e}")),
    };
    // Loading is not attaching: arm64 kernels before 6.4 load fentry
    // programs but cannot attach a trampoline to a kernel function
    // (no ftrace direct calls there), and say ENOTSUPP.
    kiln_loader::links::tracing::attach_tracing(prog.fd(), prog.kind(), 0)
        .err()
        .map(|e| {
            format!(
                "kernel attaches no fentry trampoline: {}",
                kiln_loader::error_chain(&e)
            )
        })
}
