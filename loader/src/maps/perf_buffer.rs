//! `BPF_MAP_TYPE_PERF_EVENT_ARRAY` and the per-CPU perf ring buffers that
//! `bpf_perf_event_output` writes into.
//!
//! For each CPU: perf_event_open(PERF_COUNT_SW_BPF_OUTPUT), mmap one metadata
//! page plus a power-of-two number of data pages, store the event fd in the
//! map at the CPU's index, enable. Records are `PERF_RECORD_SAMPLE` (raw data)
//! or `PERF_RECORD_LOST` (how many were dropped because the ring was full).

use std::borrow::Borrow;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kiln_obj::MapType;

use super::{Map, MapError, UpdateFlags};
use crate::perf_event::{PerfEventAttr, PerfType, enable, perf_event_open, sw};

const PERF_SAMPLE_RAW: u64 = 1 << 10;
const PERF_RECORD_LOST: u32 = 2;
const PERF_RECORD_SAMPLE: u32 = 9;
/// Offsets in `struct perf_event_mmap_page`.
const DATA_HEAD: usize = 1024;
const DATA_TAIL: usize = 1032;

/// The map programs write to with `bpf_perf_event_output`.
///
/// Minimum kernel version: 4.4.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use kiln_loader::maps::{PerfEventArray, PerfRecord};
///
/// let ebpf = kiln_loader::load_file("target/bpf/loader_maps.bpf.o")?;
/// let perf = PerfEventArray::new(ebpf.map("perf").ok_or("no map perf")?)?;
/// // One ring of 8 pages per CPU, all waited on together.
/// let mut buffers = perf.open_all(8)?;
/// if buffers.wait(Some(Duration::from_secs(1)))? {
///     buffers.read_events(|cpu, record| match record {
///         PerfRecord::Sample(bytes) => println!("cpu {cpu}: {} bytes", bytes.len()),
///         PerfRecord::Lost(n) => eprintln!("cpu {cpu}: {n} records lost"),
///     });
/// }
/// # Ok(())
/// # }
/// ```
pub struct PerfEventArray<M> {
    map: M,
}

impl<M: Borrow<Map>> PerfEventArray<M> {
    /// Wraps `map`, checking its type and its key and value sizes against the Rust types.
    pub fn new(map: M) -> Result<Self, MapError> {
        map.borrow()
            .check(&[MapType::PERF_EVENT_ARRAY], Some(4), Some(4))?;
        Ok(PerfEventArray { map })
    }
    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map.borrow()
    }

    /// Opens the ring of `cpu` with `page_count` data pages (a power of two)
    /// and registers it in the map.
    pub fn open(&self, cpu: u32, page_count: usize) -> Result<PerfBuffer, MapError> {
        let map = self.map();
        if !page_count.is_power_of_two() {
            return Err(MapError::Unsuited {
                name: map.name().to_owned(),
                reason: super::Unsuited::PerfPages { pages: page_count },
            });
        }
        let mut attr = PerfEventAttr::new(PerfType::SOFTWARE, sw::BPF_OUTPUT);
        attr.sample_type = PERF_SAMPLE_RAW;
        attr.sample_period = 1;
        attr.wakeup_events = 1;
        let fd = perf_event_open(&attr, -1, cpu as i32).map_err(|e| map.io(e))?;
        let page = crate::util::page_size();
        let len = page * (1 + page_count);
        // SAFETY: a fresh shared mapping of the perf event fd (metadata page + data pages).
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(map.io(std::io::Error::last_os_error()));
        }
        let buf = PerfBuffer {
            fd,
            base: base as *mut u8,
            len,
            page,
            data_size: page * page_count,
            cpu,
            scratch: Vec::new(),
        };
        map.insert(&cpu, &(buf.fd.as_raw_fd() as u32), UpdateFlags::ANY)?;
        enable(buf.fd.as_fd()).map_err(|e| map.io(e))?;
        Ok(buf)
    }

    /// Opens a ring on every online CPU, gathered behind one epoll.
    pub fn open_all(&self, page_count: usize) -> Result<PerfBuffers, MapError> {
        let map = self.map();
        let cpus = crate::util::online_cpus().map_err(|e| map.io(e))?;
        // SAFETY: epoll_create1 has no pointer arguments.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(map.io(std::io::Error::last_os_error()));
        }
        // SAFETY: a new descriptor owned by nobody else.
        let epoll = unsafe { OwnedFd::from_raw_fd(ep) };
        let mut buffers = Vec::new();
        for cpu in cpus {
            let b = self.open(cpu, page_count)?;
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: buffers.len() as u64,
            };
            // SAFETY: valid epoll and perf fds; `ev` is a live event struct.
            if unsafe {
                libc::epoll_ctl(
                    epoll.as_raw_fd(),
                    libc::EPOLL_CTL_ADD,
                    b.fd.as_raw_fd(),
                    &mut ev,
                )
            } < 0
            {
                return Err(map.io(std::io::Error::last_os_error()));
            }
            buffers.push(b);
        }
        Ok(PerfBuffers { epoll, buffers })
    }
}

/// One record of a perf ring.
#[derive(Debug, PartialEq, Eq)]
pub enum PerfRecord<'a> {
    /// The bytes a program passed to `bpf_perf_event_output` (padded by the kernel to 8 bytes minus 4).
    Sample(&'a [u8]),
    /// The ring was full: this many records were dropped.
    Lost(u64),
}

/// The perf ring of one CPU.
pub struct PerfBuffer {
    fd: OwnedFd,
    base: *mut u8,
    len: usize,
    page: usize,
    data_size: usize,
    cpu: u32,
    /// Reassembly space for records that wrap around the ring's end (reused).
    scratch: Vec<u8>,
}

// SAFETY: the mapping is owned by this value; head/tail are accessed atomically.
unsafe impl Send for PerfBuffer {}
// SAFETY: through `&PerfBuffer` a thread can only read `cpu()` and use the
// fd; the ring's data and `data_tail` are read and written only by
// `read_events`, which takes `&mut self`, and the scratch buffer likewise, so
// shared references never race on the mapping or the Vec.
unsafe impl Sync for PerfBuffer {}

impl PerfBuffer {
    /// The CPU whose ring this is.
    pub fn cpu(&self) -> u32 {
        self.cpu
    }

    fn head(&self) -> &AtomicU64 {
        // SAFETY: offset 1024 of the metadata page is data_head, 8-aligned, mapped for the life of self.
        unsafe { &*(self.base.add(DATA_HEAD) as *const AtomicU64) }
    }
    fn tail(&self) -> &AtomicU64 {
        // SAFETY: as above for data_tail at 1032 (ours to write).
        unsafe { &*(self.base.add(DATA_TAIL) as *const AtomicU64) }
    }

    fn copy(&self, pos: u64, out: &mut [u8]) {
        let mask = self.data_size as u64 - 1;
        for (i, b) in out.iter_mut().enumerate() {
            let off = ((pos + i as u64) & mask) as usize;
            // SAFETY: off < data_size; the data area starts one page into the mapping.
            *b = unsafe { *self.base.add(self.page + off) };
        }
    }

    /// Hands every pending record to `f`; returns how many there were.
    pub fn read_events(&mut self, mut f: impl FnMut(PerfRecord<'_>)) -> usize {
        let head = self.head().load(Ordering::Acquire);
        let mut tail = self.tail().load(Ordering::Relaxed);
        let mut n = 0;
        let mask = self.data_size as u64 - 1;
        while tail < head {
            let mut h = [0u8; 8];
            self.copy(tail, &mut h);
            let rtype = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]);
            let size = u16::from_ne_bytes([h[6], h[7]]) as usize;
            if size < 8 {
                break;
            }
            let start = (tail & mask) as usize;
            let contiguous = start + size <= self.data_size;
            let mut scratch = std::mem::take(&mut self.scratch);
            let rec: &[u8] = if contiguous {
                // SAFETY: the record lies inside the data area without wrapping.
                unsafe { std::slice::from_raw_parts(self.base.add(self.page + start), size) }
            } else {
                scratch.resize(size, 0);
                self.copy(tail, &mut scratch);
                &scratch
            };
            match rtype {
                PERF_RECORD_SAMPLE if size >= 12 => {
                    let raw = u32::from_ne_bytes([rec[8], rec[9], rec[10], rec[11]]) as usize;
                    f(PerfRecord::Sample(&rec[12..(12 + raw).min(size)]));
                    n += 1;
                }
                PERF_RECORD_LOST if size >= 24 => {
                    let lost = u64::from_ne_bytes(rec[16..24].try_into().expect("8 bytes"));
                    f(PerfRecord::Lost(lost));
                    n += 1;
                }
                _ => {}
            }
            self.scratch = scratch;
            tail += size as u64;
        }
        self.tail().store(tail, Ordering::Release);
        n
    }
}

impl AsFd for PerfBuffer {
    /// The perf event fd: readable when records are pending.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for PerfBuffer {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region `open` mapped.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// The rings of every online CPU behind one epoll fd.
pub struct PerfBuffers {
    epoll: OwnedFd,
    buffers: Vec<PerfBuffer>,
}

impl PerfBuffers {
    /// Every CPU's buffer, to read one at a time.
    pub fn buffers_mut(&mut self) -> &mut [PerfBuffer] {
        &mut self.buffers
    }

    /// Waits up to `timeout` for any ring to have data; returns whether one does.
    pub fn wait(&self, timeout: Option<Duration>) -> std::io::Result<bool> {
        let mut ev = [libc::epoll_event { events: 0, u64: 0 }; 8];
        let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
        // SAFETY: `ev` holds 8 writable events.
        let r = unsafe {
            libc::epoll_wait(self.epoll.as_raw_fd(), ev.as_mut_ptr(), ev.len() as i32, ms)
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        Ok(r > 0)
    }

    /// Reads every ring; `f` gets the CPU and the record.
    pub fn read_events(&mut self, mut f: impl FnMut(u32, PerfRecord<'_>)) -> usize {
        self.buffers
            .iter_mut()
            .map(|b| {
                let cpu = b.cpu;
                b.read_events(|r| f(cpu, r))
            })
            .sum()
    }
}

impl AsFd for PerfBuffers {
    /// The epoll fd: readable when any ring has data.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

impl AsRawFd for PerfBuffers {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.epoll.as_raw_fd()
    }
}
