//! Live maps: [`Map`] owns the file descriptor; typed views (one file per map
//! family) borrow or own a [`Map`] and check its type and sizes once.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use kiln_obj::{MapSpec, MapType};

use crate::sys::SysError;
use crate::sys::attr::{MapCreateAttr, MapInfoRaw, object_name};
use crate::sys::map::{self as sysmap, ElemSizes};
use crate::sys::object::{self as sysobj, IdKind, OpenFlags};
use crate::util::{c_name, nr_possible_cpus};

mod pod;
pub use pod::{Pod, bytes_of, from_bytes};

/// `BPF_F_*` map creation flags.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct MapFlags(u32);

bitflags::bitflags! {
    impl MapFlags: u32 {
        /// `BPF_F_NO_PREALLOC`: allocate hash entries on demand.
        const NO_PREALLOC = 1 << 0;
        /// `BPF_F_NO_COMMON_LRU`: one LRU list per CPU.
        const NO_COMMON_LRU = 1 << 1;
        /// `BPF_F_NUMA_NODE`: allocate on the given NUMA node.
        const NUMA_NODE = 1 << 2;
        /// `BPF_F_RDONLY`: read-only for userspace.
        const RDONLY = 1 << 3;
        /// `BPF_F_WRONLY`: write-only for userspace.
        const WRONLY = 1 << 4;
        /// `BPF_F_STACK_BUILD_ID`: stack traces as build id and offset.
        const STACK_BUILD_ID = 1 << 5;
        /// `BPF_F_ZERO_SEED`: hash with seed 0 (testing).
        const ZERO_SEED = 1 << 6;
        /// `BPF_F_RDONLY_PROG`: read-only for programs.
        const RDONLY_PROG = 1 << 7;
        /// `BPF_F_WRONLY_PROG`: write-only for programs.
        const WRONLY_PROG = 1 << 8;
        /// `BPF_F_CLONE`: storage cloned to a new socket.
        const CLONE = 1 << 9;
        /// `BPF_F_MMAPABLE`: array memory can be mmap'd (5.5).
        const MMAPABLE = 1 << 10;
        /// `BPF_F_PRESERVE_ELEMS`: perf event array entries survive their fd (5.10).
        const PRESERVE_ELEMS = 1 << 11;
        /// `BPF_F_INNER_MAP`: an inner map whose replacements may differ in `max_entries` (5.10).
        const INNER_MAP = 1 << 12;
        /// `BPF_F_LINK`: a struct_ops map attached through a bpf_link (6.4).
        const LINK = 1 << 13;
        /// `BPF_F_PATH_FD`: pin paths relative to a directory fd (6.5).
        const PATH_FD = 1 << 14;
        /// `BPF_F_VTYPE_BTF_OBJ_FD`: a struct_ops value type from a module's BTF (6.9).
        const VTYPE_BTF_OBJ_FD = 1 << 15;
        /// `BPF_F_TOKEN_FD`: created with a BPF token (6.9).
        const TOKEN_FD = 1 << 16;
        /// `BPF_F_SEGV_ON_FAULT`: an arena whose unmapped pages fault in userspace (6.9).
        const SEGV_ON_FAULT = 1 << 17;
        /// `BPF_F_NO_USER_CONV`: arena pointers left as kernel addresses (6.9).
        const NO_USER_CONV = 1 << 18;
        // Flags newer than this list survive a round trip through the kernel.
        const _ = !0;
    }
}

/// Flags of element updates (`BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`, `BPF_F_LOCK`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct UpdateFlags(u64);

bitflags::bitflags! {
    impl UpdateFlags: u64 {
        /// Create or replace (`BPF_ANY`, the default: no bits).
        const ANY = 0;
        /// Only create (`BPF_NOEXIST`).
        const NO_EXIST = 1;
        /// Only replace (`BPF_EXIST`).
        const EXIST = 2;
        /// Take the value's `bpf_spin_lock` (`BPF_F_LOCK`).
        const LOCK = 4;
    }
}

/// Errors of map operations; each names the map.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// A bpf(2) call on the map failed.
    #[error("map '{name}': {op} failed")]
    Syscall {
        /// The map's name.
        name: String,
        /// The bpf(2) command (`lookup`, `update`, ...).
        op: &'static str,
        /// The kernel's answer.
        #[source]
        source: SysError,
    },
    /// The map is not of the type the typed view needs.
    #[error("map '{name}' is of type {actual}, expected {expected}")]
    WrongType {
        /// The map's name.
        name: String,
        /// What the map has.
        actual: &'static str,
        /// What the Rust type needs.
        expected: String,
    },
    /// The map's key or value size differs from the Rust type's.
    #[error("map '{name}': {what} is {actual} bytes, but the Rust type has {expected}")]
    WrongSize {
        /// The map's name.
        name: String,
        /// `key` or `value`.
        what: &'static str,
        /// What the map has.
        actual: u32,
        /// What the Rust type needs.
        expected: usize,
    },
    /// A byte buffer handed to a map operation does not have the size the
    /// map's definition gives it (key size, value size, or per-CPU value
    /// buffer: the value size rounded up to 8, times the possible CPUs).
    #[error(
        "map '{name}': {op}: the {what} buffer has {actual} bytes, the map's definition needs {expected}"
    )]
    BufferSize {
        /// The map.
        name: String,
        /// The operation (`lookup`, `update batch`, ...).
        op: &'static str,
        /// Which buffer (`key`, `value`, `keys`, `out_batch`, ...).
        what: &'static str,
        /// The buffer's length.
        actual: usize,
        /// The length the map's definition gives it.
        expected: usize,
    },
    /// An array index at or past `max_entries`.
    #[error("map '{name}': index {index} is out of bounds (max_entries {max_entries})")]
    OutOfBounds {
        /// The map's name.
        name: String,
        /// The index.
        index: u32,
        /// The map's capacity.
        max_entries: u32,
    },
    /// [`Map::insert_per_cpu`] was given a value count other than the number of possible CPUs.
    #[error("map '{name}': {given} per-CPU values given, the system has {possible} possible CPUs")]
    PerCpuCount {
        /// The map.
        name: String,
        /// Values given.
        given: usize,
        /// Possible CPUs of this system.
        possible: usize,
    },
    /// The map's definition does not allow the operation.
    #[error("map '{name}': {reason}")]
    Unsuited {
        /// The map.
        name: String,
        /// What the definition lacks.
        reason: Unsuited,
    },
    /// An array lookup found no element (arrays always have every index
    /// below `max_entries`; a map-in-map's inner template may not).
    #[error("map '{name}': index {index} missing from an array")]
    MissingIndex {
        /// The map.
        name: String,
        /// The index looked up.
        index: u32,
    },
    /// Bytes at `offset` lie outside a memory-mapped map (array or arena).
    #[error("map '{name}': {len} bytes at offset {offset} are outside its {mapped} mapped bytes")]
    OutsideMapping {
        /// The map.
        name: String,
        /// The first byte asked for.
        offset: usize,
        /// Bytes asked for.
        len: usize,
        /// Bytes the mapping holds.
        mapped: usize,
    },
    /// A memory-mapped access at `offset` is not aligned for its type.
    #[error("map '{name}': offset {offset} is not aligned for a {align}-byte-aligned type")]
    Misaligned {
        /// The map.
        name: String,
        /// The offset in the mapping.
        offset: usize,
        /// The type's alignment.
        align: usize,
    },
    /// The kernel mapped an arena elsewhere than its `map_extra` address.
    #[error("map '{name}': mapped at {mapped:#x}, not at its map_extra address {wanted:#x}")]
    ArenaAddress {
        /// The map.
        name: String,
        /// Where the mapping landed.
        mapped: u64,
        /// The arena's address.
        wanted: u64,
    },
    /// A non-bpf(2) system call on the map failed (mmap, poll).
    #[error("map '{name}'")]
    Io {
        /// The map's name.
        name: String,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
}

/// What a map's definition lacks for an operation ([`MapError::Unsuited`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unsuited {
    /// Memory-mapping needs `BPF_F_MMAPABLE` at creation (arrays: 5.5, arenas: 6.9).
    #[error("was not created with BPF_F_MMAPABLE, so it cannot be memory-mapped")]
    NotMmapable,
    /// The mapping is read-only: the map is frozen or was created `BPF_F_RDONLY`.
    #[error("is mapped read-only (frozen or BPF_F_RDONLY)")]
    ReadOnlyMapping,
    /// A devmap or cpumap with 4-byte values holds no program fd.
    #[error("has 4-byte values: it cannot hold a program (needs 8-byte values, kernel 5.8+)")]
    NoProgramSlot,
    /// A sockmap with 4-byte values cannot return socket cookies.
    #[error("has 4-byte values: lookups need 8 (the socket cookie)")]
    NoCookie,
    /// A stack trace map's values are arrays of u64 addresses.
    #[error("value size {value_size} is not a multiple of 8 (u64 addresses)")]
    StackValueSize {
        /// The map's value size.
        value_size: u32,
    },
    /// Perf buffers are a power-of-two number of pages.
    #[error("perf buffer page count {pages} is not a power of two")]
    PerfPages {
        /// The page count asked for.
        pages: usize,
    },
    /// A mapping of the map would be larger than this machine's address
    /// space (a 32-bit host).
    #[error("{what} does not fit this machine's address space")]
    TooLargeToMap {
        /// What would be mapped (`a ring of N bytes mapped twice`, ...).
        what: String,
    },
}

impl MapError {
    /// The errno the kernel answered, when a bpf(2) call failed.
    pub fn errno(&self) -> Option<i32> {
        match self {
            MapError::Syscall { source, .. } => Some(source.errno()),
            _ => None,
        }
    }
}

impl From<sysobj::OpenError> for MapError {
    fn from(e: sysobj::OpenError) -> Self {
        let sysobj::OpenError { name, op, source } = e;
        MapError::Syscall { name, op, source }
    }
}

/// What the kernel reports about a map (`struct bpf_map_info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapInfo {
    /// The map type.
    pub map_type: MapType,
    /// The map's id (`bpftool map show`).
    pub id: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Capacity.
    pub max_entries: u32,
    /// Creation flags.
    pub flags: MapFlags,
    /// The name given at creation (at most 15 bytes).
    pub name: String,
    /// Its BTF object's id (0: none).
    pub btf_id: u32,
    /// The key's BTF type id.
    pub btf_key_type_id: u32,
    /// The value's BTF type id.
    pub btf_value_type_id: u32,
    /// `map_extra` (Bloom filter hashes, arena address; 5.16).
    pub map_extra: u64,
}

impl From<MapInfoRaw> for MapInfo {
    fn from(r: MapInfoRaw) -> Self {
        MapInfo {
            map_type: MapType(r.map_type),
            id: r.id,
            key_size: r.key_size,
            value_size: r.value_size,
            max_entries: r.max_entries,
            flags: MapFlags::from_bits_retain(r.map_flags),
            name: c_name(&r.name),
            btf_id: r.btf_id,
            btf_key_type_id: r.btf_key_type_id,
            btf_value_type_id: r.btf_value_type_id,
            map_extra: r.map_extra,
        }
    }
}

/// Reads the kernel's description of any map fd.
pub fn map_info(fd: BorrowedFd<'_>) -> Result<MapInfo, SysError> {
    sysobj::info_by_fd::<MapInfoRaw>(fd).map(MapInfo::from)
}

/// BTF to create a map with: the object's BTF fd and the key/value type ids.
#[derive(Clone, Copy, Debug)]
pub struct MapBtf<'a> {
    /// The BTF object (loaded with the map's object).
    pub fd: BorrowedFd<'a>,
    /// The key's type in it.
    pub key_type_id: u32,
    /// The value's type in it.
    pub value_type_id: u32,
}

/// A map in the kernel, owned through its file descriptor.
///
/// Minimum kernel version: 3.19 (per map type, see the typed views).
#[derive(Debug)]
pub struct Map {
    fd: OwnedFd,
    name: String,
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: MapFlags,
}

/// Whether values of `t` are stored once per possible CPU.
pub fn is_per_cpu(t: MapType) -> bool {
    matches!(
        t,
        MapType::PERCPU_HASH
            | MapType::PERCPU_ARRAY
            | MapType::LRU_PERCPU_HASH
            | MapType::PERCPU_CGROUP_STORAGE
    )
}

impl Map {
    /// Creates a map as `spec` describes. `inner` is the template fd for
    /// map-in-map types.
    pub fn create(
        spec: &MapSpec,
        btf: Option<MapBtf<'_>>,
        inner: Option<BorrowedFd<'_>>,
    ) -> Result<Map, MapError> {
        Self::create_named(spec, &spec.name, btf, inner)
    }

    /// Like [`Map::create`], with a different kernel-visible name (object-prefixed global data maps).
    pub fn create_named(
        spec: &MapSpec,
        kernel_name: &str,
        btf: Option<MapBtf<'_>>,
        inner: Option<BorrowedFd<'_>>,
    ) -> Result<Map, MapError> {
        use std::os::fd::AsRawFd;
        let attr = MapCreateAttr {
            map_type: spec.map_type.0,
            key_size: spec.key_size,
            value_size: spec.value_size,
            max_entries: spec.max_entries,
            map_flags: spec.map_flags,
            inner_map_fd: inner.map_or(0, |fd| fd.as_raw_fd() as u32),
            numa_node: spec.numa_node.unwrap_or(0),
            map_name: object_name(kernel_name),
            btf_fd: btf.map_or(0, |b| b.fd.as_raw_fd() as u32),
            btf_key_type_id: btf.map_or(0, |b| b.key_type_id),
            btf_value_type_id: btf.map_or(0, |b| b.value_type_id),
            map_extra: spec.map_extra,
            ..Default::default()
        };
        let fd = sysmap::map_create(attr).map_err(|source| MapError::Syscall {
            name: spec.name.clone(),
            op: "create",
            source,
        })?;
        Ok(Map {
            fd,
            name: spec.name.clone(),
            map_type: spec.map_type,
            key_size: spec.key_size,
            value_size: spec.value_size,
            max_entries: spec.max_entries,
            flags: MapFlags::from_bits_retain(spec.map_flags),
        })
    }

    /// Wraps a map fd, reading its type and sizes from the kernel. `name` is
    /// what errors call it (the kernel's name when `None`).
    pub fn from_fd(fd: OwnedFd, name: Option<&str>) -> Result<Map, MapError> {
        let info = map_info(fd.as_fd()).map_err(|source| MapError::Syscall {
            name: name.unwrap_or("?").to_owned(),
            op: "get info",
            source,
        })?;
        Ok(Map {
            fd,
            name: name.map_or(info.name, str::to_owned),
            map_type: info.map_type,
            key_size: info.key_size,
            value_size: info.value_size,
            max_entries: info.max_entries,
            flags: info.flags,
        })
    }

    /// Opens the map pinned at `path`.
    pub fn from_pin(path: &Path, flags: OpenFlags) -> Result<Map, MapError> {
        Map::from_fd(sysobj::open_pinned(path, flags)?, None)
    }

    /// Opens the map with kernel id `id`.
    pub fn from_id(id: u32) -> Result<Map, MapError> {
        Map::from_fd(sysobj::open_id(IdKind::Map, id)?, None)
    }

    /// Pins the map at `path` (on a bpffs).
    pub fn pin(&self, path: &Path) -> Result<(), crate::pin::PinError> {
        crate::pin::pin_fd(self.fd.as_fd(), path, &self.name)
    }

    /// The map's file descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
    /// The map's file descriptor, owned: the map stays alive as long as it is open.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
    /// A second handle on the same kernel map.
    pub fn try_clone(&self) -> Result<Map, MapError> {
        let fd = self.fd.try_clone().map_err(|e| self.io(e))?;
        Ok(Map {
            fd,
            name: self.name.clone(),
            ..*self
        })
    }
    /// The map's name in the object (for errors and pins).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The map's type.
    pub fn map_type(&self) -> MapType {
        self.map_type
    }
    /// Key size in bytes.
    pub fn key_size(&self) -> u32 {
        self.key_size
    }
    /// Value size in bytes (of one CPU's value for per-CPU maps).
    pub fn value_size(&self) -> u32 {
        self.value_size
    }
    /// Capacity in entries (a ring buffer's size in bytes).
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }
    /// Creation flags.
    pub fn flags(&self) -> MapFlags {
        self.flags
    }

    /// The kernel's view of the map (includes the id).
    pub fn info(&self) -> Result<MapInfo, MapError> {
        map_info(self.fd.as_fd()).map_err(|e| self.sys("get info", e))
    }

    /// Forbids further writes from user space (BPF_MAP_FREEZE). Minimum kernel version: 5.2.
    pub fn freeze(&self) -> Result<(), MapError> {
        sysmap::freeze(self.fd.as_fd()).map_err(|e| self.sys("freeze", e))
    }

    pub(crate) fn sys(&self, op: &'static str, source: SysError) -> MapError {
        MapError::Syscall {
            name: self.name.clone(),
            op,
            source,
        }
    }
    pub(crate) fn io(&self, source: std::io::Error) -> MapError {
        MapError::Io {
            name: self.name.clone(),
            source,
        }
    }

    /// Bytes of one value buffer: per-CPU maps hold a slot of the value size
    /// rounded up to 8 for each possible CPU.
    pub fn value_buf_len(&self) -> Result<usize, MapError> {
        if is_per_cpu(self.map_type) {
            Ok(self.value_size.next_multiple_of(8) as usize
                * nr_possible_cpus().map_err(|e| self.io(e))?)
        } else {
            Ok(self.value_size as usize)
        }
    }

    /// `Err(BufferSize)` unless `actual == expected`.
    pub(crate) fn check_buf(
        &self,
        op: &'static str,
        what: &'static str,
        actual: usize,
        expected: usize,
    ) -> Result<(), MapError> {
        if actual == expected {
            return Ok(());
        }
        Err(MapError::BufferSize {
            name: self.name.clone(),
            op,
            what,
            actual,
            expected,
        })
    }

    /// The sizes the kernel reads and writes for one element of this map,
    /// from its definition (as created, or as the kernel reported it).
    pub(crate) fn sizes(&self) -> Result<ElemSizes, MapError> {
        Ok(ElemSizes {
            key: self.key_size as usize,
            value: self.value_buf_len()?,
        })
    }

    /// Checks the map is one of `types` and its key and value sizes fit `K`
    /// and `V` (`None`: not checked). Used by the typed views.
    pub fn check(
        &self,
        types: &[MapType],
        key: Option<usize>,
        value: Option<usize>,
    ) -> Result<(), MapError> {
        if !types.contains(&self.map_type) {
            return Err(MapError::WrongType {
                name: self.name.clone(),
                actual: self.map_type.name(),
                expected: types
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(" or "),
            });
        }
        for (what, actual, expected) in [
            ("key size", self.key_size, key),
            ("value size", self.value_size, value),
        ] {
            if let Some(expected) = expected.filter(|e| *e != actual as usize) {
                return Err(MapError::WrongSize {
                    name: self.name.clone(),
                    what,
                    actual,
                    expected,
                });
            }
        }
        Ok(())
    }

    /// Looks a key up; `None` when absent. Per-CPU maps return every CPU's slot.
    pub fn lookup_bytes(
        &self,
        key: &[u8],
        flags: UpdateFlags,
    ) -> Result<Option<Vec<u8>>, MapError> {
        let mut value = vec![0u8; self.value_buf_len()?];
        let found = self.lookup_into(key, &mut value, flags)?;
        Ok(found.then_some(value))
    }

    /// Looks a key up into `value` (sized by [`Map::value_buf_len`]); false when absent.
    pub fn lookup_into(
        &self,
        key: &[u8],
        value: &mut [u8],
        flags: UpdateFlags,
    ) -> Result<bool, MapError> {
        let sizes = self.sizes()?;
        self.check_buf("lookup", "key", key.len(), sizes.key)?;
        self.check_buf("lookup", "value", value.len(), sizes.value)?;
        // SAFETY: `sizes` are this map's own, and both buffers were checked
        // to hold exactly that many bytes.
        unsafe {
            sysmap::lookup(
                self.fd.as_fd(),
                sizes,
                Some(key),
                value,
                flags.bits(),
                false,
            )
        }
        .map_err(|e| self.sys("lookup", e))
    }

    /// Creates or replaces `key`'s value. `key` has the map's key size and
    /// `value` [`Map::value_buf_len`] bytes.
    pub fn update_bytes(
        &self,
        key: &[u8],
        value: &[u8],
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        let sizes = self.sizes()?;
        self.check_buf("update", "key", key.len(), sizes.key)?;
        self.check_buf("update", "value", value.len(), sizes.value)?;
        // SAFETY: `sizes` are this map's own; both buffers hold exactly that many bytes.
        unsafe { sysmap::update(self.fd.as_fd(), sizes, Some(key), value, flags.bits()) }
            .map_err(|e| self.sys("update", e))
    }

    /// Deletes a key; false when it was absent.
    pub fn delete_bytes(&self, key: &[u8]) -> Result<bool, MapError> {
        let sizes = self.sizes()?;
        self.check_buf("delete", "key", key.len(), sizes.key)?;
        // SAFETY: `sizes` are this map's own; the key holds exactly that many bytes.
        unsafe { sysmap::delete(self.fd.as_fd(), sizes, key) }.map_err(|e| self.sys("delete", e))
    }

    /// The key after `key` (`None`: the first key); `None` at the end.
    pub fn next_key_bytes(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        let mut next = vec![0u8; self.key_size as usize];
        let found = self.next_key_into(key, &mut next)?;
        Ok(found.then_some(next))
    }

    /// BPF_MAP_GET_NEXT_KEY into `next`, both keys checked against the map's key size.
    fn next_key_into(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<bool, MapError> {
        let sizes = self.sizes()?;
        if let Some(key) = key {
            self.check_buf("get next key", "key", key.len(), sizes.key)?;
        }
        self.check_buf("get next key", "next key", next.len(), sizes.key)?;
        // SAFETY: `sizes` are this map's own; both keys hold exactly the key size.
        unsafe { sysmap::next_key(self.fd.as_fd(), sizes, key, next) }
            .map_err(|e| self.sys("get next key", e))
    }

    /// Every key, by BPF_MAP_GET_NEXT_KEY.
    pub fn keys_bytes(&self) -> KeysBytes<'_> {
        KeysBytes {
            map: self,
            prev: None,
            done: false,
        }
    }
}

impl AsFd for Map {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Iterator over a map's keys as bytes. A key deleted concurrently may
/// restart the walk from the first key (the kernel's behaviour for hash maps).
pub struct KeysBytes<'a> {
    map: &'a Map,
    prev: Option<Vec<u8>>,
    done: bool,
}

impl Iterator for KeysBytes<'_> {
    type Item = Result<Vec<u8>, MapError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.map.next_key_bytes(self.prev.as_deref()) {
            Ok(Some(k)) => {
                self.prev = Some(k.clone());
                Some(Ok(k))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

mod arena;
mod array;
#[cfg(feature = "tokio")]
mod async_io;
mod batch;
mod bloom_filter;
mod fd_maps;
mod hash_map;
mod lpm_trie;
pub mod perf_buffer;
mod queue;
pub mod ring_buf;
mod sock;
mod stack_trace;
mod storage;
mod xdp;

pub use arena::Arena;
pub use array::{Array, MmapArray, PerCpuArray};
#[cfg(feature = "tokio")]
pub use async_io::{AsyncPerfBuffers, AsyncRingBuf};
pub use batch::BatchResult;
pub use bloom_filter::BloomFilter;
pub use fd_maps::{ArrayOfMaps, HashOfMaps, ProgramArray};
pub use hash_map::{HashMap, PerCpuHashMap, PerCpuValues};
pub use lpm_trie::{LpmKey, LpmTrie};
pub use perf_buffer::{PerfBuffer, PerfBuffers, PerfEventArray, PerfRecord};
pub use queue::{Queue, Stack};
pub use ring_buf::RingBuf;
pub use sock::{ReusePortSockArray, SockHash, SockMap};
pub use stack_trace::StackTraceMap;
pub use storage::FdStorage;
pub use xdp::{CpuMap, DevMap, DevMapHash, XskMap};

impl Map {
    /// The length of a mapping of this map, from sizes that may not fit a
    /// 32-bit address space: an error naming the map rather than a wrapped
    /// length and a mapping too small for what is read through it.
    pub(crate) fn mmap_len(&self, len: Option<usize>, what: &str) -> Result<usize, MapError> {
        len.ok_or_else(|| MapError::Unsuited {
            name: self.name().to_owned(),
            reason: Unsuited::TooLargeToMap {
                what: what.to_owned(),
            },
        })
    }
}

/// Typed element access shared by the views: keys and values as [`Pod`].
impl Map {
    /// Looks up `key`; `None` when absent.
    pub fn get<K: Pod, V: Pod>(&self, key: &K, flags: UpdateFlags) -> Result<Option<V>, MapError> {
        self.check_pod_sizes::<K, V>()?;
        let len = self.value_buf_len()?;
        // The common case: the kernel writes straight into the `V` returned.
        if len == std::mem::size_of::<V>() {
            let mut value: V = pod::zeroed();
            let found = self.lookup_into(bytes_of(key), pod::bytes_of_mut(&mut value), flags)?;
            return Ok(found.then_some(value));
        }
        // Small values (most maps) go through the stack: no allocation per lookup.
        let mut small = [0u8; 64];
        let mut big = Vec::new();
        let buf: &mut [u8] = if len <= small.len() {
            &mut small[..len]
        } else {
            big.resize(len, 0);
            &mut big
        };
        if !self.lookup_into(bytes_of(key), buf, flags)? {
            return Ok(None);
        }
        Ok(from_bytes(buf))
    }

    /// Writes `value` at `key`; the Rust types' sizes are checked against the map's.
    pub fn insert<K: Pod, V: Pod>(
        &self,
        key: &K,
        value: &V,
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        self.check_pod_sizes::<K, V>()?;
        self.update_bytes(bytes_of(key), bytes_of(value), flags)
    }

    /// Removes `key`; false when it was absent.
    pub fn remove<K: Pod>(&self, key: &K) -> Result<bool, MapError> {
        self.check(&[self.map_type], Some(std::mem::size_of::<K>()), None)?;
        self.delete_bytes(bytes_of(key))
    }

    /// Every key, decoded as `K` (whose size must be the map's key size),
    /// by BPF_MAP_GET_NEXT_KEY into a `K` on the stack: no allocation per key.
    pub fn keys<K: Pod>(&self) -> impl Iterator<Item = Result<K, MapError>> + '_ {
        let mut prev: Option<K> = None;
        let mut done = false;
        std::iter::from_fn(move || {
            if done {
                return None;
            }
            let mut next: K = pod::zeroed();
            let found = self
                .check(&[self.map_type], Some(std::mem::size_of::<K>()), None)
                .and_then(|()| {
                    self.next_key_into(prev.as_ref().map(bytes_of), pod::bytes_of_mut(&mut next))
                });
            match found {
                Ok(true) => {
                    prev = Some(next);
                    Some(Ok(next))
                }
                Ok(false) => {
                    done = true;
                    None
                }
                Err(e) => {
                    done = true;
                    Some(Err(e))
                }
            }
        })
    }

    /// Every (key, value) pair; a key deleted during the walk is skipped.
    pub fn entries<K: Pod, V: Pod>(&self) -> impl Iterator<Item = Result<(K, V), MapError>> + '_ {
        self.keys::<K>().filter_map(move |key| {
            let key = match key {
                Ok(k) => k,
                Err(e) => return Some(Err(e)),
            };
            match self.get::<K, V>(&key, UpdateFlags::ANY) {
                Ok(Some(v)) => Some(Ok((key, v))),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            }
        })
    }

    /// Per-CPU lookup: one value per possible CPU.
    pub fn get_per_cpu<K: Pod, V: Pod>(
        &self,
        key: &K,
    ) -> Result<Option<PerCpuValues<V>>, MapError> {
        self.check_pod_sizes::<K, V>()?;
        let mut buf = vec![0u8; self.value_buf_len()?];
        if !self.lookup_into(bytes_of(key), &mut buf, UpdateFlags::ANY)? {
            return Ok(None);
        }
        Ok(Some(PerCpuValues::from_slots(
            &buf,
            self.value_size as usize,
        )))
    }

    /// Per-CPU update: `values` holds one value per possible CPU.
    pub fn insert_per_cpu<K: Pod, V: Pod>(
        &self,
        key: &K,
        values: &PerCpuValues<V>,
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        self.check_pod_sizes::<K, V>()?;
        let n = crate::util::nr_possible_cpus().map_err(|e| self.io(e))?;
        if values.len() != n {
            return Err(MapError::PerCpuCount {
                name: self.name.clone(),
                given: values.len(),
                possible: n,
            });
        }
        let buf = values.to_slots(self.value_size as usize);
        self.update_bytes(bytes_of(key), &buf, flags)
    }

    /// Checks `K` and `V` have the map's key and value sizes (`WrongSize` otherwise).
    fn check_pod_sizes<K, V>(&self) -> Result<(), MapError> {
        self.check(
            &[self.map_type],
            Some(std::mem::size_of::<K>()),
            Some(std::mem::size_of::<V>()),
        )
    }

    /// Checks the value type's size against the map's (errors name the map).
    pub(crate) fn check_sizes<K, V>(&self, types: &[MapType]) -> Result<(), MapError> {
        self.check(
            types,
            Some(std::mem::size_of::<K>()),
            Some(std::mem::size_of::<V>()),
        )
    }
}
