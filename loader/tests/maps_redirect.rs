//! XDP redirect maps end to end (loader/tests/bpf/maps_redirect.bpf.c): the
//! kernel really redirects, and the program stored in the map's value runs.
//!
//! * DevMap: a frame injected with BPF_PROG_TEST_RUN's live-frames mode is
//!   redirected to a veth; the entry's BPF_XDP_DEVMAP program sees it with
//!   the veth as egress device, and the XDP program on the veth's peer sees
//!   it arrive.
//! * CpuMap: the entry's BPF_XDP_CPUMAP program runs on the map's kthread.
//! * XskMap: a bound AF_XDP socket (copy mode, on a veth) receives a frame an
//!   XDP program redirected to it through the map.

mod attach_util;

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use attach_util::*;
use kiln_loader::links::xdp::{self, XdpFlags};
use kiln_loader::maps::{CpuMap, DevMap, UpdateFlags, XskMap};
use kiln_loader::programs::TestRun;
use kiln_loader::{Ebpf, EbpfLoader, netlink};
use kiln_obj::ObjectSpec;
use kiln_testkit::{Need, test};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Slots of the object's `seen` counters.
const DEV_RUNS: u32 = 0;
const DEV_EGRESS: u32 = 1;
const CPU_RUNS: u32 = 2;
const PEER_SEEN: u32 = 3;
/// `BPF_F_TEST_XDP_LIVE_FRAMES`.
const LIVE_FRAMES: u32 = 1 << 1;

fn load() -> Result<Ebpf, Error> {
    let path = kiln_testkit::bpf_object("maps_redirect.bpf.o")?;
    Ok(EbpfLoader::new().load(&ObjectSpec::parse(&std::fs::read(&path)?)?)?)
}

/// Injects `n` frames through `prog` as if received (BPF_F_TEST_XDP_LIVE_FRAMES):
/// redirects are carried out, unlike a plain test run.
fn inject(ebpf: &Ebpf, prog: &str, n: u32) -> Result<(), Error> {
    let p = ebpf.program(prog).ok_or(format!("no program {prog}"))?;
    p.test_run(TestRun {
        data_in: Some(&frame(b"kiln")),
        repeat: n,
        flags: LIVE_FRAMES,
        ..Default::default()
    })?;
    Ok(())
}

/// Skips where the object cannot load (program values need 5.8/5.9) or the
/// kernel lacks live-frames test runs (5.18). Kernels before 5.18 ignore the
/// flags of XDP test runs, so besides a live run succeeding, an unknown flag
/// must be refused.
fn live_frames_reason() -> Option<String> {
    let ebpf = match load() {
        Ok(e) => e,
        Err(e) => return Some(format!("maps_redirect.bpf.o does not load: {e}")),
    };
    let p = ebpf.program("peer")?;
    let run = |flags| {
        p.test_run(TestRun {
            data_in: Some(&frame(b"")),
            flags,
            ..Default::default()
        })
    };
    match (run(LIVE_FRAMES), run(LIVE_FRAMES | 1 << 31)) {
        (Ok(_), Err(_)) => None,
        (live, unknown) => Some(format!(
            "no BPF_F_TEST_XDP_LIVE_FRAMES test runs (5.18+): a live run gave {live:?}, one with an unknown flag {unknown:?}"
        )),
    }
}

fn devmap_program_runs_and_frame_reaches_peer() -> TestResult {
    let ebpf = load()?;
    let seen = ebpf.map("seen").ok_or("no seen")?;
    let pair = VethPair::new("dvmp", 41)?;
    // The peer's XDP program gives the veth its XDP receive path (veth
    // refuses redirected frames without one) and counts what arrives.
    let peer = ebpf.program("peer").ok_or("no peer")?;
    let _peer_link = {
        let _ns = InNetns::enter(&pair.b)?;
        xdp::attach_xdp(peer.fd(), netlink::ifindex("vb")?, XdpFlags::DRV_MODE)?
    };
    let _ns = InNetns::enter(&pair.a)?;
    let va = netlink::ifindex("va")?;
    let devs = DevMap::new(ebpf.map("devs").ok_or("no devs")?)?;
    let on_dev = ebpf.program("on_dev").ok_or("no on_dev")?;
    devs.set(0, va, Some(on_dev.fd()), UpdateFlags::ANY)?;
    assert_eq!(
        devs.get(0)?,
        Some((va, Some(on_dev.id()))),
        "lookup answers the ifindex and the program's id"
    );
    inject(&ebpf, "to_dev", 5)?;
    check(count_at_least(seen, DEV_RUNS, 5) == 5, || {
        format!(
            "devmap program ran {} times, 5 expected",
            count(seen, DEV_RUNS)
        )
    })?;
    check(count(seen, DEV_EGRESS) == u64::from(va), || {
        format!(
            "egress_ifindex {} is not va ({va})",
            count(seen, DEV_EGRESS)
        )
    })?;
    check(count_at_least(seen, PEER_SEEN, 5) == 5, || {
        format!("{} frames reached vb, 5 expected", count(seen, PEER_SEEN))
    })?;
    assert!(devs.clear(0)?);
    Ok(())
}

fn cpumap_program_runs_on_the_kthread() -> TestResult {
    let ebpf = load()?;
    let seen = ebpf.map("seen").ok_or("no seen")?;
    let cpus = CpuMap::new(ebpf.map("cpus").ok_or("no cpus")?)?;
    let on_cpu = ebpf.program("on_cpu").ok_or("no on_cpu")?;
    cpus.set(0, 256, Some(on_cpu.fd()), UpdateFlags::ANY)?;
    assert_eq!(cpus.get(0)?, Some((256, Some(on_cpu.id()))));
    inject(&ebpf, "to_cpu", 4)?;
    check(count_at_least(seen, CPU_RUNS, 4) == 4, || {
        format!(
            "cpumap program ran {} times, 4 expected",
            count(seen, CPU_RUNS)
        )
    })?;
    assert!(cpus.clear(0)?);
    assert_eq!(cpus.get(0)?, None);
    Ok(())
}

// --- AF_XDP: just enough of a socket to receive one frame in copy mode. ---

const SOL_XDP: libc::c_int = 283;
const XDP_MMAP_OFFSETS: libc::c_int = 1;
const XDP_RX_RING: libc::c_int = 2;
const XDP_UMEM_REG: libc::c_int = 4;
const XDP_UMEM_FILL_RING: libc::c_int = 5;
const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
const XDP_COPY: u16 = 1 << 1;
const XDP_PGOFF_RX_RING: i64 = 0;
const XDP_UMEM_PGOFF_FILL_RING: i64 = 0x1_0000_0000;
const RING: u32 = 4;
const CHUNK: u32 = 2048;

#[repr(C)]
#[derive(Default)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct RingOffset {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default, Debug)]
struct MmapOffsets {
    rx: RingOffset,
    tx: RingOffset,
    fr: RingOffset,
    cr: RingOffset,
}

#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct XdpDesc {
    addr: u64,
    len: u32,
    options: u32,
}

/// An anonymous or socket mapping, unmapped on drop.
struct Mmap {
    ptr: *mut u8,
    len: usize,
}

impl Mmap {
    fn new(len: usize, fd: Option<(i32, i64)>) -> std::io::Result<Mmap> {
        let (flags, fd, off) = match fd {
            Some((fd, off)) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd, off),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0),
        };
        // SAFETY: a fresh mapping chosen by the kernel; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                off,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mmap {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The u32 at byte `off`, as an atomic shared with the kernel.
    fn atomic_u32(&self, off: u64) -> &std::sync::atomic::AtomicU32 {
        assert!(off as usize + 4 <= self.len);
        // SAFETY: in bounds (checked), 4-aligned (ring offsets are), and the
        // mapping lives as long as `self`.
        unsafe { &*self.ptr.add(off as usize).cast() }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

fn setsockopt<T>(fd: &OwnedFd, name: libc::c_int, value: &T) -> std::io::Result<()> {
    // SAFETY: `value` is a live T and its size is passed with it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_XDP,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as u32,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// An AF_XDP socket bound to `ifindex` queue 0 in copy mode with a UMEM of
/// [`RING`] chunks, all offered to the kernel on the fill ring.
struct XskSocket {
    fd: OwnedFd,
    umem: Mmap,
    rx: Mmap,
    _fill: Mmap,
    off: MmapOffsets,
}

impl XskSocket {
    fn bind(ifindex: u32) -> Result<XskSocket, Error> {
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(format!("socket(AF_XDP): {}", std::io::Error::last_os_error()).into());
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem = Mmap::new((RING * CHUNK) as usize, None)?;
        let reg = UmemReg {
            addr: umem.ptr as u64,
            len: u64::from(RING * CHUNK),
            chunk_size: CHUNK,
            headroom: 0,
        };
        setsockopt(&fd, XDP_UMEM_REG, &reg).map_err(|e| format!("XDP_UMEM_REG: {e}"))?;
        for opt in [XDP_UMEM_FILL_RING, XDP_UMEM_COMPLETION_RING, XDP_RX_RING] {
            setsockopt(&fd, opt, &RING).map_err(|e| format!("ring size {opt}: {e}"))?;
        }
        let mut off = MmapOffsets::default();
        let mut len = std::mem::size_of::<MmapOffsets>() as u32;
        // SAFETY: `off` is writable for `len` bytes; the kernel writes at most that.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                SOL_XDP,
                XDP_MMAP_OFFSETS,
                (&mut off as *mut MmapOffsets).cast(),
                &mut len,
            )
        };
        if r < 0 || len != std::mem::size_of::<MmapOffsets>() as u32 {
            return Err(format!(
                "XDP_MMAP_OFFSETS: {} (len {len})",
                std::io::Error::last_os_error()
            )
            .into());
        }
        let fill = Mmap::new(
            (off.fr.desc + u64::from(RING) * 8) as usize,
            Some((fd.as_raw_fd(), XDP_UMEM_PGOFF_FILL_RING)),
        )?;
        let rx = Mmap::new(
            (off.rx.desc + u64::from(RING) * 16) as usize,
            Some((fd.as_raw_fd(), XDP_PGOFF_RX_RING)),
        )?;
        // Offer every chunk for reception.
        for i in 0..RING {
            let slot = off.fr.desc + u64::from(i) * 8;
            // SAFETY: slot i of the fill ring, inside the mapping (sized for RING slots).
            unsafe {
                fill.ptr
                    .add(slot as usize)
                    .cast::<u64>()
                    .write(u64::from(i * CHUNK))
            };
        }
        fill.atomic_u32(off.fr.producer)
            .store(RING, std::sync::atomic::Ordering::Release);
        let sa = SockaddrXdp {
            family: libc::AF_XDP as u16,
            flags: XDP_COPY,
            ifindex,
            queue_id: 0,
            shared_umem_fd: 0,
        };
        // SAFETY: `sa` is a complete sockaddr_xdp and its size goes with it.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const SockaddrXdp).cast(),
                std::mem::size_of::<SockaddrXdp>() as u32,
            )
        };
        if r < 0 {
            return Err(format!("bind AF_XDP: {}", std::io::Error::last_os_error()).into());
        }
        Ok(XskSocket {
            fd,
            umem,
            rx,
            _fill: fill,
            off,
        })
    }

    /// The frames received so far (waits up to 3 s for the first).
    fn received(&self) -> Vec<Vec<u8>> {
        use std::sync::atomic::Ordering;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let producer = self.rx.atomic_u32(self.off.rx.producer);
        while producer.load(Ordering::Acquire) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let n = producer.load(Ordering::Acquire).min(RING);
        (0..n)
            .map(|i| {
                let at = self.off.rx.desc as usize + i as usize * 16;
                // SAFETY: descriptor i of the rx ring, published by the producer index above.
                let d: XdpDesc = unsafe { self.rx.ptr.add(at).cast::<XdpDesc>().read() };
                assert!(d.addr as usize + d.len as usize <= self.umem.len);
                // SAFETY: the descriptor's bytes lie in the UMEM (asserted above).
                unsafe {
                    std::slice::from_raw_parts(self.umem.ptr.add(d.addr as usize), d.len as usize)
                }
                .to_vec()
            })
            .collect()
    }
}

fn xskmap_socket_receives_redirected_frame() -> TestResult {
    let ebpf = load()?;
    let pair = VethPair::new("xskm", 42)?;
    let xsks = XskMap::new(ebpf.map("xsks").ok_or("no xsks")?)?;
    let sock;
    let _link = {
        let _ns = InNetns::enter(&pair.b)?;
        let vb = netlink::ifindex("vb")?;
        sock = XskSocket::bind(vb)?;
        // The kernel answers XSKMAP lookups from user space with EOPNOTSUPP:
        // the frame arriving on the socket is what shows the entry is there.
        xsks.set(0, sock.fd.as_fd(), UpdateFlags::ANY)?;
        let to_xsk = ebpf.program("to_xsk").ok_or("no to_xsk")?;
        xdp::attach_xdp(to_xsk.fd(), vb, XdpFlags::DRV_MODE)?
    };
    {
        let _ns = InNetns::enter(&pair.a)?;
        send_raw(netlink::ifindex("va")?, &frame(b"to the socket"))?;
    }
    let got = sock.received();
    check(got.len() == 1, || {
        format!("{} frames on the rx ring, 1 expected", got.len())
    })?;
    check(got[0].starts_with(&frame(b"to the socket")[..27]), || {
        format!("received {:02x?}", got[0])
    })?;
    // Once the slot is cleared the program's redirect falls back to XDP_PASS:
    // nothing more reaches the socket.
    xsks.clear(0)?;
    {
        let _ns = InNetns::enter(&pair.a)?;
        send_raw(netlink::ifindex("va")?, &frame(b"to the stack"))?;
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let got = sock.received();
    check(got.len() == 1, || {
        format!(
            "{} frames on the rx ring after clear, still 1 expected",
            got.len()
        )
    })?;
    Ok(())
}

fn main() {
    let live = Need::Probe("xdp live frames", live_frames_reason);
    kiln_testkit::run(vec![
        test(
            "devmap_program_runs_and_frame_reaches_peer",
            &[Need::Bpf, Need::NetNs, live],
            devmap_program_runs_and_frame_reaches_peer,
        ),
        test(
            "cpumap_program_runs_on_the_kthread",
            &[Need::Bpf, live],
            cpumap_program_runs_on_the_kthread,
        ),
        test(
            "xskmap_socket_receives_redirected_frame",
            &[Need::Bpf, Need::NetNs],
            xskmap_socket_receives_redirected_frame,
        ),
    ]);
}
