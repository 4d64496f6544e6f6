//! Maps whose values are file descriptors on update and ids on lookup:
//! `PROG_ARRAY` (tail calls), `ARRAY_OF_MAPS` and `HASH_OF_MAPS`.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd};

use kiln_obj::MapType;

use super::{Map, MapError, Pod, UpdateFlags};

fn fd_value(fd: BorrowedFd<'_>) -> u32 {
    fd.as_raw_fd() as u32
}

/// Tail-call targets: index → program.
///
/// Minimum kernel version: 4.2.
pub struct ProgramArray<M> {
    map: M,
}

impl<M: Borrow<Map>> ProgramArray<M> {
    /// Wraps `map`, checking its type and its key and value sizes against the Rust types.
    pub fn new(map: M) -> Result<Self, MapError> {
        map.borrow()
            .check(&[MapType::PROG_ARRAY], Some(4), Some(4))?;
        Ok(ProgramArray { map })
    }
    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map.borrow()
    }
    /// Makes `bpf_tail_call(ctx, map, index)` jump to `program`.
    pub fn set(&self, index: u32, program: BorrowedFd<'_>) -> Result<(), MapError> {
        self.map()
            .insert(&index, &fd_value(program), UpdateFlags::ANY)
    }
    /// Removes the program at `index`; returns whether there was one.
    pub fn clear(&self, index: u32) -> Result<bool, MapError> {
        self.map().remove(&index)
    }
    /// The id of the program at `index`, if any.
    pub fn get_id(&self, index: u32) -> Result<Option<u32>, MapError> {
        self.map().get(&index, UpdateFlags::ANY)
    }
}

/// An array whose elements are maps (all shaped like the inner template).
///
/// Minimum kernel version: 4.12.
pub struct ArrayOfMaps<M> {
    map: M,
}

impl<M: Borrow<Map>> ArrayOfMaps<M> {
    /// Wraps `map`, checking its type and its key and value sizes against the Rust types.
    pub fn new(map: M) -> Result<Self, MapError> {
        map.borrow()
            .check(&[MapType::ARRAY_OF_MAPS], Some(4), Some(4))?;
        Ok(ArrayOfMaps { map })
    }
    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map.borrow()
    }
    /// Stores map `inner` at `index` (its type and sizes must match the inner map definition).
    pub fn set(&self, index: u32, inner: BorrowedFd<'_>) -> Result<(), MapError> {
        self.map()
            .insert(&index, &fd_value(inner), UpdateFlags::ANY)
    }
    /// Removes the map at `index`; returns whether there was one.
    pub fn clear(&self, index: u32) -> Result<bool, MapError> {
        self.map().remove(&index)
    }
    /// The inner map at `index`, opened by its id.
    pub fn get(&self, index: u32) -> Result<Option<Map>, MapError> {
        match self.map().get::<u32, u32>(&index, UpdateFlags::ANY)? {
            Some(id) => Map::from_id(id).map(Some),
            None => Ok(None),
        }
    }
}

/// A hash whose values are maps.
///
/// Minimum kernel version: 4.12.
pub struct HashOfMaps<M, K> {
    map: M,
    _types: PhantomData<K>,
}

impl<M: Borrow<Map>, K: Pod> HashOfMaps<M, K> {
    /// Wraps `map`, checking its type and its key and value sizes against the Rust types.
    pub fn new(map: M) -> Result<Self, MapError> {
        map.borrow().check(
            &[MapType::HASH_OF_MAPS],
            Some(std::mem::size_of::<K>()),
            Some(4),
        )?;
        Ok(HashOfMaps {
            map,
            _types: PhantomData,
        })
    }
    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map.borrow()
    }
    /// Stores map `inner` at `key`.
    pub fn insert(
        &self,
        key: &K,
        inner: BorrowedFd<'_>,
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        self.map().insert(key, &fd_value(inner), flags)
    }
    /// Deletes the entry at `key`; returns whether there was one.
    pub fn remove(&self, key: &K) -> Result<bool, MapError> {
        self.map().remove(key)
    }
    /// The map stored at `key`, opened by its id.
    pub fn get(&self, key: &K) -> Result<Option<Map>, MapError> {
        match self.map().get::<K, u32>(key, UpdateFlags::ANY)? {
            Some(id) => Map::from_id(id).map(Some),
            None => Ok(None),
        }
    }
    /// Every key, in the kernel's order (`BPF_MAP_GET_NEXT_KEY`). Entries changed meanwhile may be missed or repeated.
    pub fn keys(&self) -> impl Iterator<Item = Result<K, MapError>> + '_ {
        self.map().keys()
    }
}
