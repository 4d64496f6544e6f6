//! Local storage maps keyed by an fd: `SK_STORAGE` (socket), `INODE_STORAGE`
//! (file), `TASK_STORAGE` (pidfd), `CGRP_STORAGE` (cgroup directory fd).

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd};

use kiln_obj::MapType;

use super::{Map, MapError, Pod, UpdateFlags};

/// Per-object storage: the value attached to the socket/inode/task/cgroup an fd refers to.
///
/// Minimum kernel version: 5.2 (sk), 5.10 (inode, task), 6.2 (cgroup).
pub struct FdStorage<M, V> {
    map: M,
    _types: PhantomData<V>,
}

impl<M: Borrow<Map>, V: Pod> FdStorage<M, V> {
    /// Wraps `map`, checking its type and its key and value sizes against the Rust types.
    pub fn new(map: M) -> Result<Self, MapError> {
        map.borrow().check(
            &[
                MapType::SK_STORAGE,
                MapType::INODE_STORAGE,
                MapType::TASK_STORAGE,
                MapType::CGRP_STORAGE,
            ],
            Some(4),
            Some(std::mem::size_of::<V>()),
        )?;
        Ok(FdStorage {
            map,
            _types: PhantomData,
        })
    }
    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map.borrow()
    }
    /// The value stored for `owner` (a socket, task pidfd, inode or cgroup fd).
    pub fn get(&self, owner: BorrowedFd<'_>) -> Result<Option<V>, MapError> {
        self.map().get(&owner.as_raw_fd(), UpdateFlags::ANY)
    }
    /// Stores `value` for `owner`.
    pub fn insert(
        &self,
        owner: BorrowedFd<'_>,
        value: &V,
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        self.map().insert(&owner.as_raw_fd(), value, flags)
    }
    /// Deletes the value stored for `owner`; returns whether there was one.
    pub fn remove(&self, owner: BorrowedFd<'_>) -> Result<bool, MapError> {
        self.map().remove(&owner.as_raw_fd())
    }
}
