//! The quickstart, as a user runs it: load `counter.bpf.o` (built from
//! manifests/examples/quickstart/counter with kiln-ebpf) with Kiln's loader,
//! attach `count_exec` to `sched/sched_process_exec` and `count_packets` to a
//! loopback in generic XDP mode, run a program and send a packet, and watch
//! `COUNTERS[0]` (execs) and `COUNTERS[1]` (packets) go up.
//!
//! The packets go through the `lo` of a network namespace of this test's own
//! (the thread unshares one) so XDP on the host's `lo` is never touched; a
//! UDP datagram stands in for ping, which needs no tool in the VMs.

use std::net::UdpSocket;
use std::path::PathBuf;

use kiln_loader::EbpfLoader;
use kiln_loader::links::tracepoint::attach_tracepoint;
use kiln_loader::links::xdp::{XdpFlags, attach_xdp};
use kiln_loader::maps::HashMap;
use kiln_obj::ObjectSpec;
use kiln_testkit::{Need, TestResult, bpf_object, test};

const EXECS: u32 = 0;
const PACKETS: u32 = 1;

/// `struct ifreq` for SIOC[GS]IFFLAGS: the name, then the flags (short).
#[repr(C)]
struct IfreqFlags {
    name: [u8; 16],
    flags: i16,
    _pad: [u8; 22],
}

/// Moves this thread into a new network namespace (it ends with the thread)
/// and brings its `lo` up.
fn private_loopback() -> TestResult {
    // SAFETY: unshare takes flags only; CLONE_NEWNET affects this thread alone.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error()).into());
    }
    // SAFETY: a plain datagram socket, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()).into());
    }
    let mut req = IfreqFlags {
        name: [0; 16],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: `req` is a valid ifreq-sized buffer for both ioctls; fd is ours.
    let result = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            req.flags |= libc::IFF_UP as i16;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: fd was opened above and is not used again.
    unsafe { libc::close(fd) };
    result.map_err(|e| format!("bringing lo up: {e}").into())
}

/// Removes the test's pin directory, whatever happens.
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0.join("COUNTERS"));
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn count(map: &HashMap<&kiln_loader::Map, u32, u64>, key: u32) -> Result<u64, String> {
    map.get(&key)
        .map(|v| v.unwrap_or(0))
        .map_err(|e| format!("reading COUNTERS[{key}]: {e}"))
}

/// Something to exec: /bin/true, else this test binary listing its tests.
fn exec_something() -> TestResult {
    let mut cmd = if std::path::Path::new("/bin/true").exists() {
        std::process::Command::new("/bin/true")
    } else {
        let mut c = std::process::Command::new(std::env::current_exe()?);
        c.arg("--list");
        c
    };
    let status = cmd.stdout(std::process::Stdio::null()).status()?;
    if !status.success() {
        return Err(format!("{cmd:?} failed: {status}").into());
    }
    Ok(())
}

fn counts_execs_and_packets() -> TestResult {
    let spec = ObjectSpec::parse(&std::fs::read(bpf_object("counter.bpf.o")?)?)?;
    let pins = PinDir(PathBuf::from(format!(
        "/sys/fs/bpf/kiln-sdk-quickstart-{}",
        std::process::id()
    )));
    std::fs::create_dir_all(&pins.0)?;
    let ebpf = EbpfLoader::new().map_pin_path(&pins.0).load(&spec)?;
    if !pins.0.join("COUNTERS").exists() {
        return Err("COUNTERS is #[map(pinned)] but was not pinned".into());
    }
    let counters: HashMap<_, u32, u64> =
        HashMap::new(ebpf.map("COUNTERS").ok_or("no map COUNTERS")?)?;

    private_loopback()?;
    let exec_prog = ebpf.program("count_exec").ok_or("no program count_exec")?;
    let xdp_prog = ebpf
        .program("count_packets")
        .ok_or("no program count_packets")?;
    let _exec_link = attach_tracepoint(exec_prog.fd(), "sched", "sched_process_exec", 0)?;
    // lo is ifindex 1 in every network namespace.
    let _xdp_link = attach_xdp(xdp_prog.fd(), 1, XdpFlags::SKB_MODE)?;

    let (execs, packets) = (count(&counters, EXECS)?, count(&counters, PACKETS)?);
    exec_something()?;
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let target = UdpSocket::bind("127.0.0.1:0")?;
    socket.send_to(b"kiln quickstart", target.local_addr()?)?;
    let mut buf = [0u8; 64];
    target.recv_from(&mut buf)?;

    let (execs2, packets2) = (count(&counters, EXECS)?, count(&counters, PACKETS)?);
    if execs2 <= execs {
        return Err(format!("COUNTERS[0] (execs) stayed at {execs} after an exec").into());
    }
    if packets2 <= packets {
        return Err(
            format!("COUNTERS[1] (packets) stayed at {packets} after a packet on lo").into(),
        );
    }
    Ok(())
}

fn main() {
    kiln_testkit::run(vec![test(
        "quickstart_counts_execs_and_packets",
        &[Need::Root, Need::Bpf, Need::NetNs],
        counts_execs_and_packets,
    )]);
}
