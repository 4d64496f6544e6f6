//! XDP redirect targets: `DEVMAP`, `DEVMAP_HASH`, `CPUMAP`, `XSKMAP`.

use std::borrow::Borrow;
use std::os::fd::{AsRawFd, BorrowedFd};

use kiln_obj::MapType;

use super::{Map, MapError, Pod, UpdateFlags};

/// `struct bpf_devmap_val` / `struct bpf_cpumap_val`: a u32 and an optional program fd (ids on read).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct PairVal {
    first: u32,
    prog: i32,
}
// SAFETY: two 4-byte integers, no padding.
unsafe impl Pod for PairVal {}

fn set_pair<K: Pod>(
    map: &Map,
    key: &K,
    first: u32,
    prog: Option<BorrowedFd<'_>>,
    flags: UpdateFlags,
) -> Result<(), MapError> {
    if map.value_size() == 4 {
        if prog.is_some() {
            return Err(MapError::Unsuited {
                name: map.name().to_owned(),
                reason: super::Unsuited::NoProgramSlot,
            });
        }
        return map.insert(key, &first, flags);
    }
    let prog = prog.map_or(-1, |p| p.as_raw_fd());
    map.insert(key, &PairVal { first, prog }, flags)
}

fn get_pair<K: Pod>(map: &Map, key: &K) -> Result<Option<(u32, Option<u32>)>, MapError> {
    if map.value_size() == 4 {
        return Ok(map.get::<K, u32>(key, UpdateFlags::ANY)?.map(|v| (v, None)));
    }
    Ok(map
        .get::<K, PairVal>(key, UpdateFlags::ANY)?
        .map(|v| (v.first, (v.prog > 0).then_some(v.prog as u32))))
}

/// Index → network interface (and an optional program run on redirect).
///
/// Minimum kernel version: 4.14 (program values: 5.8).
pub struct DevMap<M> {
    map: M,
}

impl<M: Borrow<Map>> DevMap<M> {
    /// Wraps `map`, checking its type and its key and value sizes against the Rust types.
    pub fn new(map: M) -> Result<Self, MapError> {
        map.borrow().check(&[MapType::DEVMAP], Some(4), None)?;
        Ok(DevMap { map })
    }
    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map.borrow()
    }
    /// Redirects to interface `ifindex` at `index`, with `program` run on each redirected frame (5.8).
    pub fn set(
        &self,
        index: u32,
        ifindex: u32,
        program: Option<BorrowedFd<'_>>,
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        set_pair(self.map(), &index, ifindex, program, flags)
    }
    /// The interface index and the id of the program, if any.
    pub fn get(&self, index: u32) -> Result<Option<(u32, Option<u32>)>, MapError> {
        get_pair(self.map(), &index)
    }
    /// Removes the entry at `index`; returns whether there was one.
    pub fn clear(&self, index: u32) -> Result<bool, MapError> {
        self.map().remove(&index)
    }
}

/// Key (often the ifindex) → network interface.
///
/// Minimum kernel version: 5.4.
pub struct DevMapHash<M> {
    map: M,
}

impl<M: Borrow<Map>> DevMapHash<M> {
    /// Wraps `map`, checking its type and its key and value sizes against the Rust types.
    pub fn new(map: M) -> Result<Self, MapError> {
        map.borrow().check(&[MapType::DEVMAP_HASH], Some(4), None)?;
        Ok(DevMapHash { map })
    }
    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map.borrow()
    }
    /// Redirects to interface `ifindex` at `key`, with `program` run on each redirected frame (5.8).
    pub fn insert(
        &self,
        key: u32,
        ifindex: u32,
        program: Option<BorrowedFd<'_>>,
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        set_pair(self.map(), &key, ifindex, program, flags)
    }
    /// The interface index and program id at `key`.
    pub fn get(&self, key: u32) -> Result<Option<(u32, Option<u32>)>, MapError> {
        get_pair(self.map(), &key)
    }
    /// Deletes the entry at `key`; returns whether there was one.
    pub fn remove(&self, key: u32) -> Result<bool, MapError> {
        self.map().remove(&key)
    }
}

/// CPU → queue size (and an optional program run on the target CPU).
///
/// Minimum kernel version: 4.15 (program values: 5.9).
pub struct CpuMap<M> {
    map: M,
}

impl<M: Borrow<Map>> CpuMap<M> {
    /// Wraps `map`, checking its type and its key and value sizes against the Rust types.
    pub fn new(map: M) -> Result<Self, MapError> {
        map.borrow().check(&[MapType::CPUMAP], Some(4), None)?;
        Ok(CpuMap { map })
    }
    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map.borrow()
    }
    /// Redirects to `cpu` through a queue of `queue_size` frames, with `program` run there (5.9).
    pub fn set(
        &self,
        cpu: u32,
        queue_size: u32,
        program: Option<BorrowedFd<'_>>,
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        set_pair(self.map(), &cpu, queue_size, program, flags)
    }
    /// The queue size and the id of the program, if any.
    pub fn get(&self, cpu: u32) -> Result<Option<(u32, Option<u32>)>, MapError> {
        get_pair(self.map(), &cpu)
    }
    /// Removes the CPU's entry (its kthread stops); false when it had none.
    pub fn clear(&self, cpu: u32) -> Result<bool, MapError> {
        self.map().remove(&cpu)
    }
}

/// Queue index → AF_XDP socket. Values are socket fds on update; the kernel
/// refuses lookups from user space (EOPNOTSUPP), so there is no `get`.
///
/// Minimum kernel version: 4.18.
pub struct XskMap<M> {
    map: M,
}

impl<M: Borrow<Map>> XskMap<M> {
    /// Wraps `map`, checking its type and its key and value sizes against the Rust types.
    pub fn new(map: M) -> Result<Self, MapError> {
        map.borrow().check(&[MapType::XSKMAP], Some(4), Some(4))?;
        Ok(XskMap { map })
    }
    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map.borrow()
    }
    /// Stores AF_XDP `socket` for receive queue `queue`.
    pub fn set(
        &self,
        queue: u32,
        socket: BorrowedFd<'_>,
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        self.map()
            .insert(&queue, &(socket.as_raw_fd() as u32), flags)
    }
    /// Empties the queue's slot. The kernel does not say whether it held a
    /// socket, so this answers true for an empty slot too.
    pub fn clear(&self, queue: u32) -> Result<bool, MapError> {
        self.map().remove(&queue)
    }
}
