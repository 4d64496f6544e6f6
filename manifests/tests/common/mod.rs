//! Helpers shared by the kernel-facing manifest tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use kiln_manifest::Deployment;

use kiln_loader::Map;
use kiln_loader::OpenFlags;
use kiln_loader::maps::UpdateFlags;
use kiln_testkit::Need;

/// Moves this test thread into a new network namespace with `lo` up.
pub fn private_netns() -> Result<(), String> {
    // SAFETY: unshare takes flags only; it affects the calling thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: plain socket creation.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: an all-zero ifreq is valid; we fill the name and flags.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    req.ifr_ifru.ifru_flags =
        (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads a valid ifreq we own.
    let r = unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &mut req) };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the socket we opened.
    unsafe { libc::close(sock) };
    if r != 0 {
        return Err(format!("bring lo up: {err}"));
    }
    Ok(())
}

pub fn counter(root: &Path, key: u32) -> Result<u64, String> {
    let map = Map::from_pin(&root.join("maps/COUNTERS"), OpenFlags::ReadOnly)
        .map_err(|e| e.to_string())?;
    Ok(map
        .lookup_bytes(&key.to_ne_bytes(), UpdateFlags::ANY)
        .map_err(|e| e.to_string())?
        .map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap()))
        .unwrap_or(0))
}

pub fn exec_true() -> Result<(), String> {
    std::process::Command::new("/bin/true")
        .status()
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Sends one UDP packet over `lo` and returns once the kernel has received it.
///
/// Nothing listens on port 9, so the kernel answers with an ICMP
/// port-unreachable that a connected UDP socket reports as ECONNREFUSED; by
/// then the packet has gone through the receive path (generic XDP included),
/// and counters read afterwards see it. Without that wait a read right after
/// the send can beat the softirq that delivers the packet (seen as a flake on
/// a loaded machine). ICMP can be rate-limited, so a timeout is not an error:
/// the 3 s wait is then all the margin we give.
pub fn send_udp() -> Result<(), String> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    s.connect("127.0.0.1:9").map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    s.send(b"kiln").map_err(|e| e.to_string())?;
    let mut reply = [0u8; 16];
    match s.recv(&mut reply) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(format!("waiting for the reply to a UDP packet on lo: {e}")),
    }
}

/// The two-program counter deployment (tracepoint + XDP on `lo`, shared map
/// COUNTERS with an initial entry 7 = 70) over `object`, as TOML.
pub fn counter_manifest(
    name: &str,
    root: &Path,
    object: &Path,
    map_extra: &str,
    exec_extra: &str,
) -> String {
    format!(
        r#"[deployment]
name = "{name}"
pin_root = "{root}"
allow_outside = true
requires = ["tracepoint", "xdp"]

[objects.counter]
path = "{obj}"

[programs.count_exec]
object = "counter"
attach = {{ tracepoint = {{ category = "sched", name = "sched_process_exec" }} }}
{exec_extra}

[programs.count_packets]
object = "counter"
attach = {{ xdp = {{ interface = "lo", mode = "generic" }} }}

[maps.COUNTERS]
object = "counter"
entries = [ {{ key = 7, value = 70 }} ]
{map_extra}
"#,
        root = root.display(),
        obj = object.display(),
    )
}

/// Removes whatever a test deployment left: its pins (`destroy`, which
/// detaches), its temporary directory and its lock file. For `Drop`s and
/// cleanup paths, so it reports nothing.
pub fn remove_deployment(name: &str, root: &Path, dir: &Path) {
    let _ = kiln_manifest::apply::destroy(name, root);
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(kiln_manifest::lock::lock_dir().join(format!("{name}.lock")));
}

/// Where cgroup2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified`
/// on a hybrid hierarchy), if it is.
pub fn cgroup2_root() -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| f[1].to_string())
    })
}

/// Why tracepoint attachments cannot be pinned here (before perf-event
/// links, 5.15), or `None`; as `Need::Probe` takes it.
pub fn no_perf_link() -> Option<String> {
    let ok = kiln_manifest::features::probe("perf_link").unwrap_or(false);
    (!ok).then(|| "tracepoint attachments cannot be pinned before perf-event links (5.15)".into())
}

/// A test deployment of the counter manifest: its own name, pin root
/// (`/sys/fs/bpf/kiln-test-<pid>-<n>`), temporary directory and network
/// namespace, removed on drop.
pub struct Fixture {
    pub name: String,
    pub dir: PathBuf,
    pub root: PathBuf,
    pub v1: PathBuf,
    pub v2: PathBuf,
}

impl Fixture {
    pub fn new() -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let name = format!("kiln-test-{pid}-{n}");
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir)?;
        private_netns()?;
        Ok(Fixture {
            root: PathBuf::from("/sys/fs/bpf").join(&name),
            name,
            dir,
            v1: kiln_testkit::bpf_object("manifest_counter.bpf.o")?,
            v2: kiln_testkit::bpf_object("manifest_counter_v2.bpf.o")?,
        })
    }

    /// Writes the manifest (with `extra` appended to `[maps.COUNTERS]`) and loads it with `object`.
    pub fn deployment(
        &self,
        object: &Path,
        map_extra: &str,
        exec_extra: &str,
    ) -> Result<Deployment, String> {
        self.load(&counter_manifest(
            &self.name, &self.root, object, map_extra, exec_extra,
        ))
    }

    /// Writes `text` as the fixture's manifest and loads it.
    pub fn load(&self, text: &str) -> Result<Deployment, String> {
        let path = self.manifest_path();
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        Deployment::load(&path, &BTreeMap::new()).map_err(|d| d.to_string())
    }

    /// Where [`Fixture::load`] writes the manifest.
    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join("manifest.toml")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        remove_deployment(&self.name, &self.root, &self.dir);
    }
}

/// What the counter deployment needs: root, bpf(2), a network namespace for
/// its XDP program on `lo`, and perf-event links to pin its tracepoint.
pub fn counter_needs() -> [kiln_testkit::Need; 4] {
    use kiln_testkit::Need;
    [
        Need::Root,
        Need::Bpf,
        Need::NetNs,
        Need::Probe("perf_link", no_perf_link),
    ]
}

/// The `kiln` binary under test (`$KILN_BIN` in the VMs).
pub fn kiln_bin() -> PathBuf {
    std::env::var_os("KILN_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kiln")), PathBuf::from)
}

/// The index of network interface `name` in this thread's namespace.
pub fn ifindex(name: &str) -> Result<u32, String> {
    let c = std::ffi::CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: `c` is a NUL-terminated string alive for the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(format!("no interface {name}")),
        i => Ok(i),
    }
}

/// Pins, at `path`, a map of another tool (as `bpftool map create` would
/// make it: a hash u32 -> u64) holding `key` = `value`, with kiln-loader's
/// raw calls so that it works in the test VMs too.
pub fn pin_foreign_map(path: &Path, key: u32, value: u64) -> Result<(), String> {
    let spec = kiln_obj::MapSpec {
        name: "foreign".into(),
        map_type: kiln_obj::MapType::HASH,
        key_size: 4,
        value_size: 8,
        max_entries: 16,
        map_flags: 0,
        numa_node: None,
        map_extra: 0,
        pinning: kiln_obj::Pinning::None,
        origin: kiln_obj::MapOrigin::BtfMaps,
        initial_data: None,
        btf_key_type_id: None,
        btf_value_type_id: None,
        inner: None,
        variables: vec![],
    };
    let map = Map::create(&spec, None, None).map_err(|e| e.to_string())?;
    map.update_bytes(&key.to_ne_bytes(), &value.to_ne_bytes(), UpdateFlags::ANY)
        .map_err(|e| e.to_string())?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    map.pin(path).map_err(|e| e.to_string())
}

/// The value at `key` of the u32 -> u64 map pinned at `path`.
pub fn pinned_value(path: &Path, key: u32) -> Result<Option<u64>, String> {
    let map =
        Map::from_pin(path, OpenFlags::ReadOnly).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(map
        .lookup_bytes(&key.to_ne_bytes(), UpdateFlags::ANY)
        .map_err(|e| e.to_string())?
        .map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap_or_default())))
}

/// Tracepoint attachments are pinned as perf-event links, which came in 5.15.
pub fn perf_links() -> Need {
    Need::Probe("perf_link", no_perf_link)
}

/// The text of `manifests/examples/<example>/manifest.toml` made unique for a
/// test run: the deployment renamed `name` with its pin root at `root` (the
/// example's own pin root, if it names one, gives way), then each of
/// `substitutions` applied; each must occur, so an edited example cannot
/// silently run against the real interface or cgroup.
pub fn example_manifest(
    example: &str,
    name: &str,
    root: &Path,
    substitutions: &[(&str, &str)],
) -> Result<String, String> {
    let src = kiln_testkit::repo_dir()
        .join("manifests/examples")
        .join(example)
        .join("manifest.toml");
    let text =
        std::fs::read_to_string(&src).map_err(|e| format!("reading {}: {e}", src.display()))?;
    let mut text: String = text
        .lines()
        .filter(|l| !l.starts_with("pin_root = "))
        .map(|l| format!("{l}\n"))
        .collect();
    let deployment = format!("[deployment]\nname = \"{example}\"\n");
    let renamed = format!(
        "[deployment]\nname = \"{name}\"\npin_root = \"{}\"\n",
        root.display()
    );
    for (from, to) in [(deployment.as_str(), renamed.as_str())]
        .into_iter()
        .chain(substitutions.iter().copied())
    {
        if !text.contains(from) {
            return Err(format!("{}: no `{from}` to replace", src.display()));
        }
        text = text.replace(from, to);
    }
    Ok(text)
}
