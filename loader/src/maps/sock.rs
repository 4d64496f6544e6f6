//! `SOCKMAP` and `SOCKHASH`: sockets for sk_msg/sk_skb redirection;
//! `REUSEPORT_SOCKARRAY`: sockets an sk_reuseport program selects from.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd};

use kiln_obj::MapType;

use super::{Map, MapError, Pod, UpdateFlags};

/// Index → socket. Values are socket fds on update (the kernel keeps a reference).
///
/// Minimum kernel version: 4.14.
pub struct SockMap<M> {
    map: M,
}

impl<M: Borrow<Map>> SockMap<M> {
    /// Wraps `map`, checking its type and its key and value sizes against the Rust types.
    pub fn new(map: M) -> Result<Self, MapError> {
        map.borrow().check(&[MapType::SOCKMAP], Some(4), None)?;
        Ok(SockMap { map })
    }
    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map.borrow()
    }
    /// Stores `socket` at `index`.
    pub fn set(
        &self,
        index: u32,
        socket: BorrowedFd<'_>,
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        set_sock(self.map(), &index, socket, flags)
    }
    /// Removes the socket at `index`; returns whether there was one.
    pub fn clear(&self, index: u32) -> Result<bool, MapError> {
        self.map().remove(&index)
    }
}

fn set_sock<K: Pod>(
    map: &Map,
    key: &K,
    socket: BorrowedFd<'_>,
    flags: UpdateFlags,
) -> Result<(), MapError> {
    // The value is a u32 fd, or a u64 (fd) where the map was created with an 8-byte value for cookies.
    let fd = socket.as_raw_fd() as u32;
    if map.value_size() == 8 {
        map.insert(key, &u64::from(fd), flags)
    } else {
        map.insert(key, &fd, flags)
    }
}

/// `K` → socket.
///
/// Minimum kernel version: 4.18.
pub struct SockHash<M, K> {
    map: M,
    _types: PhantomData<K>,
}

impl<M: Borrow<Map>, K: Pod> SockHash<M, K> {
    /// Wraps `map`, checking its type and its key and value sizes against the Rust types.
    pub fn new(map: M) -> Result<Self, MapError> {
        map.borrow()
            .check(&[MapType::SOCKHASH], Some(std::mem::size_of::<K>()), None)?;
        Ok(SockHash {
            map,
            _types: PhantomData,
        })
    }
    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map.borrow()
    }
    /// Stores `socket` at `key`.
    pub fn insert(
        &self,
        key: &K,
        socket: BorrowedFd<'_>,
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        set_sock(self.map(), key, socket, flags)
    }
    /// Deletes the entry at `key`; returns whether there was one.
    pub fn remove(&self, key: &K) -> Result<bool, MapError> {
        self.map().remove(key)
    }
    /// Every key, in the kernel's order (`BPF_MAP_GET_NEXT_KEY`). Entries changed meanwhile may be missed or repeated.
    pub fn keys(&self) -> impl Iterator<Item = Result<K, MapError>> + '_ {
        self.map().keys()
    }
}

/// Index → socket of one reuseport group, for `bpf_sk_select_reuseport` in
/// an sk_reuseport program. Values are socket fds on update (u32 or u64 by
/// the map's value size); lookups answer the socket's cookie (8-byte values).
///
/// Minimum kernel version: 4.19.
pub struct ReusePortSockArray<M> {
    map: M,
}

impl<M: Borrow<Map>> ReusePortSockArray<M> {
    /// Wraps `map`, checking its type and its key and value sizes against the Rust types.
    pub fn new(map: M) -> Result<Self, MapError> {
        map.borrow()
            .check(&[MapType::REUSEPORT_SOCKARRAY], Some(4), None)?;
        Ok(ReusePortSockArray { map })
    }
    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map.borrow()
    }
    /// Stores `socket` (bound, with `SO_REUSEPORT`) at `index`.
    pub fn set(
        &self,
        index: u32,
        socket: BorrowedFd<'_>,
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        set_sock(self.map(), &index, socket, flags)
    }
    /// The cookie of the socket at `index` (`SO_COOKIE`), if any. Needs 8-byte values.
    pub fn cookie(&self, index: u32) -> Result<Option<u64>, MapError> {
        if self.map().value_size() != 8 {
            return Err(MapError::Unsuited {
                name: self.map().name().to_owned(),
                reason: super::Unsuited::NoCookie,
            });
        }
        self.map().get(&index, UpdateFlags::ANY)
    }
    /// Removes the socket at `index`; returns whether there was one.
    pub fn clear(&self, index: u32) -> Result<bool, MapError> {
        self.map().remove(&index)
    }
}
