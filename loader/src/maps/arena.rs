//! `BPF_MAP_TYPE_ARENA`: memory shared by programs and user space at the same
//! addresses, pages allocated on demand.

use std::borrow::Borrow;
use std::os::fd::AsRawFd;

use kiln_obj::MapType;

use super::{Map, MapError, MapFlags, Pod, Unsuited};

/// An arena map, memory-mapped. Programs see the arena's pages at the same
/// addresses user space does (`map_extra` fixes them at creation; otherwise
/// the first mapping picks them), so a pointer a program stores in the arena
/// or in a global is valid here as it is.
///
/// A page a program has not allocated (`bpf_arena_alloc_pages`) is
/// allocated when user space first touches it, unless the map was created
/// with [`MapFlags::SEGV_ON_FAULT`].
///
/// [`crate::EbpfLoader`] maps an object's arenas before loading its
/// programs (the kernel wants the address fixed by then): use
/// [`crate::Ebpf::arena`]. The kernel allows one mapping of an arena per
/// address range, so a second `Arena::new` on the same map fails (EBUSY)
/// while the first lives.
///
/// Minimum kernel version: 6.9 (probe with
/// `probe::probe_map_type(MapType::ARENA)`).
#[derive(Debug)]
pub struct Arena<M> {
    map: M,
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; every access is a volatile
// read or write of Pod values, which any thread may perform.
unsafe impl<M: Send> Send for Arena<M> {}
// SAFETY: as above.
unsafe impl<M: Sync> Sync for Arena<M> {}

impl<M: Borrow<Map>> Arena<M> {
    /// Maps the whole arena (`max_entries` pages) read-write, at its
    /// `map_extra` address when it has one.
    pub fn new(map: M) -> Result<Self, MapError> {
        let m = map.borrow();
        m.check(&[MapType::ARENA], Some(0), Some(0))?;
        if !m.flags().contains(MapFlags::MMAPABLE) {
            return Err(MapError::Unsuited {
                name: m.name().to_owned(),
                reason: Unsuited::NotMmapable,
            });
        }
        let start = m.info()?.map_extra;
        let len = m.mmap_len(
            (m.max_entries() as usize).checked_mul(crate::util::page_size()),
            &format!("an arena of {} pages", m.max_entries()),
        )?;
        // SAFETY: a new shared mapping of the map fd; with a non-zero hint the
        // kernel places it at the arena's address or fails, it never replaces
        // an existing mapping (no MAP_FIXED).
        let ptr = unsafe {
            libc::mmap(
                start as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                m.fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(m.io(std::io::Error::last_os_error()));
        }
        if start != 0 && ptr as u64 != start {
            // SAFETY: unmapping exactly the mapping made above.
            unsafe { libc::munmap(ptr, len) };
            return Err(MapError::ArenaAddress {
                name: m.name().to_owned(),
                mapped: ptr as u64,
                wanted: start,
            });
        }
        Ok(Arena {
            map,
            ptr: ptr.cast(),
            len,
        })
    }

    /// The arena map.
    pub fn map(&self) -> &Map {
        self.map.borrow()
    }

    /// The user-space address of the arena's first byte (what programs' arena pointers point into).
    pub fn addr(&self) -> u64 {
        self.ptr as u64
    }

    /// Bytes mapped: `max_entries` pages.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the arena has no pages.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The byte offset of arena address `addr` (a pointer a program handed over).
    pub fn offset_of(&self, addr: u64) -> Option<usize> {
        let off = addr.checked_sub(self.addr())? as usize;
        (off < self.len).then_some(off)
    }

    fn check_range(&self, offset: usize, len: usize) -> Result<(), MapError> {
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(MapError::OutsideMapping {
                name: self.map().name().to_owned(),
                offset,
                len,
                mapped: self.len,
            });
        }
        Ok(())
    }

    fn at<V>(&self, offset: usize) -> Result<*mut V, MapError> {
        let size = std::mem::size_of::<V>();
        self.check_range(offset, size)?;
        if offset % std::mem::align_of::<V>() != 0 {
            return Err(MapError::Misaligned {
                name: self.map().name().to_owned(),
                offset,
                align: std::mem::align_of::<V>(),
            });
        }
        // SAFETY: offset + size <= len (checked), so the pointer stays inside the mapping.
        Ok(unsafe { self.ptr.add(offset) }.cast())
    }

    /// Reads a `V` at byte `offset`.
    pub fn read<V: Pod>(&self, offset: usize) -> Result<V, MapError> {
        let p = self.at::<V>(offset)?;
        // SAFETY: in bounds and aligned (checked); V is Pod; volatile because programs write concurrently.
        Ok(unsafe { std::ptr::read_volatile(p) })
    }

    /// Copies `bytes` to byte `offset`.
    pub fn write_bytes(&self, offset: usize, bytes: &[u8]) -> Result<(), MapError> {
        self.check_range(offset, bytes.len())?;
        // SAFETY: offset + len <= self.len (checked): inside the writable
        // mapping, which `bytes` (a Rust slice) cannot overlap.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(offset), bytes.len()) };
        Ok(())
    }

    /// Writes a `V` at byte `offset`.
    pub fn write<V: Pod>(&self, offset: usize, value: &V) -> Result<(), MapError> {
        let p = self.at::<V>(offset)?;
        // SAFETY: as in `read`; the mapping is writable.
        unsafe { std::ptr::write_volatile(p, *value) };
        Ok(())
    }
}

impl<M> Drop for Arena<M> {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping `new` made.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}
