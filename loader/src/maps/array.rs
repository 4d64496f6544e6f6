//! Arrays: `BPF_MAP_TYPE_ARRAY` (with `BPF_F_MMAPABLE` memory mapping) and `PERCPU_ARRAY`.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::os::fd::AsFd;

use kiln_obj::MapType;

use super::hash_map::PerCpuValues;
use super::{Map, MapError, MapFlags, Pod, Unsuited, UpdateFlags, bytes_of, from_bytes};

/// An array of `V`, indexed by `u32`. Elements always exist (zeroed at creation).
///
/// Minimum kernel version: 3.19 (mmap: 5.5).
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kiln_loader::maps::{Array, UpdateFlags};
///
/// let ebpf = kiln_loader::load_file("target/bpf/loader_maps.bpf.o")?;
/// let array: Array<_, u64> = Array::new(ebpf.map("counters").ok_or("no map")?)?;
/// array.set(0, &42, UpdateFlags::ANY)?;
/// assert_eq!(array.get(0)?, 42);
/// // An index past max_entries is an error, not a kernel write.
/// assert!(array.get(array.len()).is_err());
/// # Ok(())
/// # }
/// ```
pub struct Array<M, V> {
    map: M,
    _types: PhantomData<V>,
}

fn bounds(map: &Map, index: u32) -> Result<(), MapError> {
    if index >= map.max_entries() {
        return Err(MapError::OutOfBounds {
            name: map.name().to_owned(),
            index,
            max_entries: map.max_entries(),
        });
    }
    Ok(())
}

impl<M: Borrow<Map>, V: Pod> Array<M, V> {
    /// Wraps `map`, checking its type and its key and value sizes against the Rust types.
    pub fn new(map: M) -> Result<Self, MapError> {
        map.borrow().check_sizes::<u32, V>(&[MapType::ARRAY])?;
        Ok(Array {
            map,
            _types: PhantomData,
        })
    }
    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map.borrow()
    }
    /// The number of entries (`max_entries`).
    pub fn len(&self) -> u32 {
        self.map().max_entries()
    }
    /// Whether the map has no entries (`max_entries` 0).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The value at `index` (an error past `max_entries`).
    pub fn get(&self, index: u32) -> Result<V, MapError> {
        bounds(self.map(), index)?;
        self.map()
            .get(&index, UpdateFlags::ANY)?
            .ok_or_else(|| MapError::MissingIndex {
                name: self.map().name().to_owned(),
                index,
            })
    }
    /// Writes `value` at `index` (an error past `max_entries`).
    pub fn set(&self, index: u32, value: &V, flags: UpdateFlags) -> Result<(), MapError> {
        bounds(self.map(), index)?;
        self.map().insert(&index, value, flags)
    }
    /// Every element in index order.
    pub fn iter(&self) -> impl Iterator<Item = Result<V, MapError>> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }
    /// Maps the array's memory (needs `BPF_F_MMAPABLE`): reads and writes then
    /// need no syscall.
    pub fn mmap(&self) -> Result<MmapArray, MapError> {
        MmapArray::new(self.map())
    }
}

/// The memory of a `BPF_F_MMAPABLE` array (including global data sections
/// created mmapable), shared with the programs that use it. Frozen maps map read-only.
///
/// Minimum kernel version: 5.5.
pub struct MmapArray {
    ptr: *mut u8,
    len: usize,
    value_size: usize,
    entries: u32,
    writable: bool,
    name: String,
}

// SAFETY: the mapping is plain shared memory; every access goes through
// volatile reads/writes of Pod values, which any thread may perform.
unsafe impl Send for MmapArray {}
// SAFETY: as above.
unsafe impl Sync for MmapArray {}

impl MmapArray {
    /// Maps the memory of an array created with `BPF_F_MMAPABLE` (read-only for a frozen map).
    ///
    /// Minimum kernel version: 5.5.
    pub fn new(map: &Map) -> Result<MmapArray, MapError> {
        map.check(&[MapType::ARRAY], Some(4), None)?;
        if !map.flags().contains(MapFlags::MMAPABLE) {
            return Err(MapError::Unsuited {
                name: map.name().to_owned(),
                reason: Unsuited::NotMmapable,
            });
        }
        let value_size = map.value_size() as usize;
        // The kernel lays elements out at a stride of the value size rounded to 8.
        let stride = value_size.next_multiple_of(8);
        let len = map.mmap_len(
            stride
                .checked_mul(map.max_entries() as usize)
                .and_then(|l| l.checked_next_multiple_of(crate::util::page_size())),
            &format!("{} elements of {stride} bytes", map.max_entries()),
        )?;
        let mut writable = !map.flags().contains(MapFlags::RDONLY);
        let try_map = |prot| {
            // SAFETY: mapping a fresh region (addr NULL) of `len` bytes from a map fd; no existing memory is affected.
            unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    prot,
                    libc::MAP_SHARED,
                    std::os::fd::AsRawFd::as_raw_fd(&map.as_fd()),
                    0,
                )
            }
        };
        let mut ptr = if writable {
            try_map(libc::PROT_READ | libc::PROT_WRITE)
        } else {
            libc::MAP_FAILED
        };
        if ptr == libc::MAP_FAILED {
            // Frozen maps (.rodata) refuse writable mappings.
            writable = false;
            ptr = try_map(libc::PROT_READ);
        }
        if ptr == libc::MAP_FAILED {
            return Err(map.io(std::io::Error::last_os_error()));
        }
        Ok(MmapArray {
            ptr: ptr as *mut u8,
            len,
            value_size: stride,
            entries: map.max_entries(),
            writable,
            name: map.name().to_owned(),
        })
    }

    /// Element `index` as a pointer to a `V`: in bounds, with room for a `V`,
    /// and aligned for it (volatile reads and writes need alignment; elements
    /// sit at 8-byte strides of a page-aligned mapping, so only a `V` aligned
    /// to more than 8 can miss).
    fn at<V>(&self, index: u32) -> Result<*mut V, MapError> {
        if index >= self.entries || std::mem::size_of::<V>() > self.value_size {
            return Err(MapError::OutOfBounds {
                name: self.name.clone(),
                index,
                max_entries: self.entries,
            });
        }
        // SAFETY: index < entries, so the offset stays inside the mapping of `len` bytes.
        let p = unsafe { self.ptr.add(index as usize * self.value_size) };
        if !p.cast::<V>().is_aligned() {
            return Err(MapError::Misaligned {
                name: self.name.clone(),
                offset: index as usize * self.value_size,
                align: std::mem::align_of::<V>(),
            });
        }
        Ok(p.cast())
    }

    /// Reads element `index` (or the `V` at its start).
    pub fn read<V: Pod>(&self, index: u32) -> Result<V, MapError> {
        let p = self.at::<V>(index)?;
        // SAFETY: `p` is inside the mapping, aligned, with room for a V
        // (checked in `at`); V is Pod; read_volatile because programs write
        // concurrently.
        Ok(unsafe { std::ptr::read_volatile(p) })
    }

    /// Reads a `V` at byte `offset` of element 0 (global variables at their section offsets).
    pub fn read_at<V: Pod>(&self, offset: usize) -> Result<V, MapError> {
        let mut buf = vec![0u8; std::mem::size_of::<V>()];
        self.copy_out(offset, &mut buf)?;
        Ok(from_bytes(&buf).expect("sized above"))
    }

    /// Writes `V` at byte `offset` of element 0.
    pub fn write_at<V: Pod>(&self, offset: usize, value: &V) -> Result<(), MapError> {
        self.copy_in(offset, bytes_of(value))
    }

    /// Writes `value` at `index`, straight to the map's memory.
    pub fn write<V: Pod>(&self, index: u32, value: &V) -> Result<(), MapError> {
        let p = self.at::<V>(index)?;
        self.writable_check()?;
        // SAFETY: as in `read`, and the mapping is writable (checked).
        unsafe { std::ptr::write_volatile(p, *value) };
        Ok(())
    }

    fn writable_check(&self) -> Result<(), MapError> {
        if self.writable {
            Ok(())
        } else {
            Err(MapError::Unsuited {
                name: self.name.clone(),
                reason: Unsuited::ReadOnlyMapping,
            })
        }
    }

    fn range(&self, offset: usize, n: usize) -> Result<(), MapError> {
        if offset
            .checked_add(n)
            .is_none_or(|end| end > self.value_size * self.entries as usize)
        {
            return Err(MapError::OutsideMapping {
                name: self.name.clone(),
                offset,
                len: n,
                mapped: self.value_size * self.entries as usize,
            });
        }
        Ok(())
    }

    /// Copies `out.len()` bytes at byte `offset` out of the map's memory.
    pub fn copy_out(&self, offset: usize, out: &mut [u8]) -> Result<(), MapError> {
        self.range(offset, out.len())?;
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: offset + i is inside the mapping (checked by `range`).
            *b = unsafe { std::ptr::read_volatile(self.ptr.add(offset + i)) };
        }
        Ok(())
    }

    /// Copies `data` into the map's memory at byte `offset`.
    pub fn copy_in(&self, offset: usize, data: &[u8]) -> Result<(), MapError> {
        self.range(offset, data.len())?;
        self.writable_check()?;
        for (i, b) in data.iter().enumerate() {
            // SAFETY: offset + i is inside the writable mapping (checked above).
            unsafe { std::ptr::write_volatile(self.ptr.add(offset + i), *b) };
        }
        Ok(())
    }

    /// Whether the mapping is writable (not for frozen `.rodata` maps).
    pub fn is_writable(&self) -> bool {
        self.writable
    }
}

impl Drop for MmapArray {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region `new` mapped; nothing borrows it past `self`.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// A per-CPU array: each index holds one `V` per possible CPU.
///
/// Minimum kernel version: 4.6.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kiln_loader::maps::PerCpuArray;
///
/// let ebpf = kiln_loader::load_file("target/bpf/loader_maps.bpf.o")?;
/// let packets: PerCpuArray<_, u64> = PerCpuArray::new(ebpf.map("pc_array").ok_or("no map")?)?;
/// let per_cpu = packets.get(0)?;
/// println!("{} CPUs, {} in all", per_cpu.len(), per_cpu.iter().sum::<u64>());
/// # Ok(())
/// # }
/// ```
pub struct PerCpuArray<M, V> {
    map: M,
    _types: PhantomData<V>,
}

impl<M: Borrow<Map>, V: Pod> PerCpuArray<M, V> {
    /// Wraps `map`, checking its type and its key and value sizes against the Rust types.
    pub fn new(map: M) -> Result<Self, MapError> {
        map.borrow()
            .check_sizes::<u32, V>(&[MapType::PERCPU_ARRAY])?;
        Ok(PerCpuArray {
            map,
            _types: PhantomData,
        })
    }
    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map.borrow()
    }
    /// The number of entries (`max_entries`).
    pub fn len(&self) -> u32 {
        self.map().max_entries()
    }
    /// Whether the map has no entries (`max_entries` 0).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Every CPU's value at `index`.
    pub fn get(&self, index: u32) -> Result<PerCpuValues<V>, MapError> {
        bounds(self.map(), index)?;
        self.map()
            .get_per_cpu(&index)?
            .ok_or_else(|| MapError::MissingIndex {
                name: self.map().name().to_owned(),
                index,
            })
    }
    /// Writes every CPU's value at `index`.
    pub fn set(
        &self,
        index: u32,
        values: &PerCpuValues<V>,
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        bounds(self.map(), index)?;
        self.map().insert_per_cpu(&index, values, flags)
    }
}
