//! `BPF_MAP_TYPE_RINGBUF` consumer: the kernel's shared ring mapped into this
//! process, records read in place (no allocation per record).
//!
//! Layout (kernel/bpf/ringbuf.c): page 0 is the consumer position (ours to
//! write), page 1 the producer position, then the data area mapped twice in a
//! row so a record that wraps is still contiguous. Each record starts with an
//! 8-byte header whose first word is the length with BUSY (bit 31) and
//! DISCARD (bit 30) flags.

use std::borrow::Borrow;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use kiln_obj::MapType;

use super::{Map, MapError};

const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;
const HDR: usize = 8;

/// A ring buffer consumer.
///
/// Minimum kernel version: 5.8.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use kiln_loader::maps::RingBuf;
///
/// let mut ebpf = kiln_loader::load_file("target/bpf/loader_maps.bpf.o")?;
/// // Owning the map lets the ring move to a thread of its own.
/// let mut ring = RingBuf::new(ebpf.take_map("events").ok_or("no map events")?)?;
/// loop {
///     ring.wait(Some(Duration::from_millis(100)))?;
///     // Each record is handed back to the kernel when dropped.
///     while let Some(record) = ring.next() {
///         println!("{} bytes: {:02x?}", record.len(), &record[..]);
///     }
/// #   break;
/// }
/// # Ok(())
/// # }
/// ```
pub struct RingBuf<M> {
    map: M,
    consumer: *mut u8,
    producer: *mut u8,
    data_size: usize,
    page: usize,
}

// SAFETY: the mappings are owned by this value; positions are accessed atomically.
unsafe impl<M: Send> Send for RingBuf<M> {}
// SAFETY: through `&RingBuf` a thread can only poll the map fd (`wait`),
// read `map()` (shared only when `M: Sync`) and load the positions
// atomically; records are read and the consumer position is written only by
// `next` and `drain`, which take `&mut self`, so no two threads ever consume
// at once and the raw pointers are never written through a shared reference.
unsafe impl<M: Sync> Sync for RingBuf<M> {}

fn mmap(map: &Map, len: usize, prot: i32, offset: usize) -> Result<*mut u8, MapError> {
    // SAFETY: a fresh shared mapping of the ring buffer fd; the kernel validates length, protection and offset.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED,
            map.as_fd().as_raw_fd(),
            offset as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(map.io(std::io::Error::last_os_error()));
    }
    Ok(p as *mut u8)
}

impl<M: Borrow<Map>> RingBuf<M> {
    /// Maps the ring buffer's consumer and data pages (the map is kept open as `M`).
    ///
    /// Minimum kernel version: 5.8.
    pub fn new(map: M) -> Result<Self, MapError> {
        let m = map.borrow();
        m.check(&[MapType::RINGBUF], Some(0), Some(0))?;
        let page = crate::util::page_size();
        let data_size = m.max_entries() as usize;
        // The data pages are mapped twice, back to back, so records that
        // wrap read contiguously.
        let producer_len = m.mmap_len(
            data_size.checked_mul(2).and_then(|d| d.checked_add(page)),
            &format!("a ring of {data_size} bytes mapped twice"),
        )?;
        let consumer = mmap(m, page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer = match mmap(m, producer_len, libc::PROT_READ, page) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: unmapping the consumer page mapped just above.
                unsafe { libc::munmap(consumer as *mut libc::c_void, page) };
                return Err(e);
            }
        };
        Ok(RingBuf {
            map,
            consumer,
            producer,
            data_size,
            page,
        })
    }

    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map.borrow()
    }

    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: the consumer page is mapped read-write, 8-aligned, for the life of self.
        unsafe { &*(self.consumer as *const AtomicU64) }
    }

    fn producer_pos(&self) -> &AtomicU64 {
        // SAFETY: the producer page is mapped read-only, 8-aligned, for the life of self; only loaded.
        unsafe { &*(self.producer as *const AtomicU64) }
    }

    fn data(&self) -> *const u8 {
        // SAFETY: the data area starts one page into the producer mapping.
        unsafe { self.producer.add(self.page) }
    }

    /// The next committed record, borrowed from the ring; the space is handed
    /// back to the kernel when the record is dropped. `None` when the ring is
    /// empty or the next record is still being written.
    #[expect(
        clippy::should_implement_trait,
        reason = "the record borrows the ring (a lending iterator), which Iterator cannot express"
    )]
    pub fn next(&mut self) -> Option<RingBufRecord<'_, M>> {
        let mask = self.data_size as u64 - 1;
        let mut cons = self.consumer_pos().load(Ordering::Acquire);
        loop {
            let prod = self.producer_pos().load(Ordering::Acquire);
            if cons >= prod {
                return None;
            }
            let off = (cons & mask) as usize;
            // SAFETY: off < data_size and the data area is mapped twice, so the header is inside the mapping;
            // the kernel publishes it with a release store, read here with acquire.
            let hdr =
                unsafe { &*(self.data().add(off) as *const AtomicU32) }.load(Ordering::Acquire);
            if hdr & BUSY != 0 {
                return None;
            }
            let len = (hdr & !(BUSY | DISCARD)) as usize;
            let next = cons + (len + HDR).next_multiple_of(8) as u64;
            if hdr & DISCARD != 0 {
                self.consumer_pos().store(next, Ordering::Release);
                cons = next;
                continue;
            }
            // SAFETY: the record (header + len bytes, len < data_size) lies within the double mapping.
            let data = unsafe { std::slice::from_raw_parts(self.data().add(off + HDR), len) };
            return Some(RingBufRecord {
                ring: self,
                data,
                next,
            });
        }
    }

    /// Hands every available record to `f`; returns how many there were.
    ///
    /// Faster than a loop over [`RingBuf::next`]: the producer position is
    /// read once per pass over what is committed, and the consumer position
    /// (a cache line the kernel's producers read) is written once per pass,
    /// or after a quarter of the ring, rather than after every record. If `f`
    /// panics, the records of the current pass stay in the ring.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mask = self.data_size as u64 - 1;
        let flush_every = (self.data_size / 4) as u64;
        let mut n = 0;
        let mut cons = self.consumer_pos().load(Ordering::Acquire);
        let mut flush_at = cons + flush_every;
        loop {
            let prod = self.producer_pos().load(Ordering::Acquire);
            if cons >= prod {
                break;
            }
            while cons < prod {
                let off = (cons & mask) as usize;
                // SAFETY: as in `next`: off < data_size, the header lies in the
                // double mapping, published by the kernel with a release store.
                let hdr =
                    unsafe { &*(self.data().add(off) as *const AtomicU32) }.load(Ordering::Acquire);
                if hdr & BUSY != 0 {
                    self.consumer_pos().store(cons, Ordering::Release);
                    return n;
                }
                let len = (hdr & !(BUSY | DISCARD)) as usize;
                if hdr & DISCARD == 0 {
                    // SAFETY: as in `next`: the record lies within the double mapping.
                    f(unsafe { std::slice::from_raw_parts(self.data().add(off + HDR), len) });
                    n += 1;
                }
                // Rounded up to 8 with a mask: next_multiple_of divides, five
                // instructions of the ~25 a record costs here.
                cons += ((len + HDR + 7) & !7) as u64;
                if cons >= flush_at {
                    self.consumer_pos().store(cons, Ordering::Release);
                    flush_at = cons + flush_every;
                }
            }
            self.consumer_pos().store(cons, Ordering::Release);
            flush_at = cons + flush_every;
        }
        n
    }

    /// Waits until the ring has data or `timeout` passes (poll(2) on the map fd).
    /// Returns whether data is ready.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, MapError> {
        poll_readable(self.map(), self.map().as_fd(), timeout)
    }
}

/// poll(2) for readability of `fd`; errors name `map`.
pub(crate) fn poll_readable(
    map: &Map,
    fd: BorrowedFd<'_>,
    timeout: Option<Duration>,
) -> Result<bool, MapError> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
    // SAFETY: one valid pollfd for the duration of the call.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(map.io(e));
    }
    Ok(r > 0)
}

impl<M> Drop for RingBuf<M> {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the two regions `new` mapped; records borrow `self`, so none is alive.
        unsafe {
            libc::munmap(self.consumer as *mut libc::c_void, self.page);
            libc::munmap(
                self.producer as *mut libc::c_void,
                self.page + 2 * self.data_size,
            );
        }
    }
}

impl<M: Borrow<Map>> AsFd for RingBuf<M> {
    /// The map fd: readable (epoll/poll/AsyncFd) when records are available.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.map.borrow().as_fd()
    }
}

impl<M: Borrow<Map>> AsRawFd for RingBuf<M> {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.map.borrow().as_fd().as_raw_fd()
    }
}

/// One record, borrowed from the ring until dropped.
pub struct RingBufRecord<'a, M: Borrow<Map>> {
    ring: &'a RingBuf<M>,
    data: &'a [u8],
    next: u64,
}

impl<M: Borrow<Map>> std::ops::Deref for RingBufRecord<'_, M> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.data
    }
}

impl<M: Borrow<Map>> Drop for RingBufRecord<'_, M> {
    fn drop(&mut self) {
        self.ring.consumer_pos().store(self.next, Ordering::Release);
    }
}
