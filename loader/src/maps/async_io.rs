//! tokio integration: await records from a ring buffer or perf buffers
//! instead of polling (feature `tokio`).

use std::borrow::Borrow;
use std::io;

use tokio::io::unix::AsyncFd;

use super::Map;
use super::perf_buffer::{PerfBuffers, PerfRecord};
use super::ring_buf::RingBuf;

/// A [`RingBuf`] whose readiness comes from tokio's reactor.
///
/// Minimum kernel version: 5.8.
pub struct AsyncRingBuf<M: Borrow<Map>> {
    fd: AsyncFd<RingBuf<M>>,
}

impl<M: Borrow<Map>> AsyncRingBuf<M> {
    /// Registers the ring with the current tokio runtime.
    pub fn new(ring: RingBuf<M>) -> io::Result<Self> {
        // SAFETY: the ring owns (or borrows for its whole life) the map whose fd
        // it returns, and this wrapper never hands out `&mut RingBuf`, so the fd
        // stays open and unchanged while registered.
        let fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }?;
        Ok(AsyncRingBuf { fd })
    }

    /// Waits for records, then hands every available one to `f`; returns how many.
    pub async fn read(&mut self, mut f: impl FnMut(&[u8])) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable_mut().await?;
            let n = guard.get_inner_mut().drain(&mut f);
            // Drained to empty: the next record makes the fd readable again.
            guard.clear_ready();
            if n > 0 {
                return Ok(n);
            }
        }
    }

    /// The ring buffer, to read without waiting.
    pub fn get_ref(&self) -> &RingBuf<M> {
        self.fd.get_ref()
    }

    /// The ring buffer, unregistered from tokio.
    pub fn into_inner(self) -> RingBuf<M> {
        self.fd.into_inner()
    }
}

/// Every CPU's perf ring, awaited through their shared epoll fd.
///
/// Minimum kernel version: 4.4.
pub struct AsyncPerfBuffers {
    fd: AsyncFd<PerfBuffers>,
}

impl AsyncPerfBuffers {
    /// Registers every CPU's buffer with the current tokio runtime (through their epoll fd).
    pub fn new(buffers: PerfBuffers) -> io::Result<Self> {
        // SAFETY: `PerfBuffers` owns its epoll fd for its whole life and this
        // wrapper never hands out `&mut PerfBuffers`, so the fd stays open and unchanged.
        let fd =
            unsafe { AsyncFd::register_with_interest(buffers, tokio::io::Interest::READABLE) }?;
        Ok(AsyncPerfBuffers { fd })
    }

    /// Waits for records on any CPU, then reads them all; `f` gets the CPU and the record.
    pub async fn read(&mut self, mut f: impl FnMut(u32, PerfRecord<'_>)) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable_mut().await?;
            let n = guard.get_inner_mut().read_events(&mut f);
            guard.clear_ready();
            if n > 0 {
                return Ok(n);
            }
        }
    }

    /// The buffers, unregistered from tokio.
    pub fn into_inner(self) -> PerfBuffers {
        self.fd.into_inner()
    }
}
