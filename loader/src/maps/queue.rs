//! `BPF_MAP_TYPE_QUEUE` (FIFO) and `BPF_MAP_TYPE_STACK` (LIFO): keyless maps.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::os::fd::AsFd;

use kiln_obj::MapType;

use super::{Map, MapError, Pod, UpdateFlags, bytes_of, from_bytes};
use crate::sys::map as sysmap;

struct Keyless<M, V> {
    map: M,
    _types: PhantomData<V>,
}

impl<M: Borrow<Map>, V: Pod> Keyless<M, V> {
    fn new(map: M, t: MapType) -> Result<Self, MapError> {
        map.borrow()
            .check(&[t], Some(0), Some(std::mem::size_of::<V>()))?;
        Ok(Keyless {
            map,
            _types: PhantomData,
        })
    }
    fn push(&self, value: &V, flags: UpdateFlags) -> Result<(), MapError> {
        let m = self.map.borrow();
        let sizes = m.sizes()?;
        // SAFETY: `sizes` are the map's own; `new` checked `V` has its value size.
        unsafe { sysmap::update(m.as_fd(), sizes, None, bytes_of(value), flags.bits()) }
            .map_err(|e| m.sys("push", e))
    }
    fn take(&self, delete: bool) -> Result<Option<V>, MapError> {
        let m = self.map.borrow();
        let mut buf = vec![0u8; m.value_size() as usize];
        let sizes = m.sizes()?;
        // SAFETY: `sizes` are the map's own; `buf` has its value size.
        let found = unsafe { sysmap::lookup(m.as_fd(), sizes, None, &mut buf, 0, delete) }
            .map_err(|e| m.sys(if delete { "pop" } else { "peek" }, e))?;
        Ok(if found { from_bytes(&buf) } else { None })
    }
}

macro_rules! keyless_map {
    ($(#[$doc:meta])* $name:ident, $t:expr) => {
        $(#[$doc])*
        pub struct $name<M, V>(Keyless<M, V>);

        impl<M: Borrow<Map>, V: Pod> $name<M, V> {
            /// Wraps `map`, checking its type and value size against the Rust type.
            pub fn new(map: M) -> Result<Self, MapError> {
                Keyless::new(map, $t).map($name)
            }
            /// The underlying map.
            pub fn map(&self) -> &Map {
                self.0.map.borrow()
            }
            /// Adds a value; with `UpdateFlags::EXIST` a full map drops its oldest element instead of failing.
            pub fn push(&self, value: &V, flags: UpdateFlags) -> Result<(), MapError> {
                self.0.push(value, flags)
            }
            /// Removes and returns the next value; `None` when empty.
            pub fn pop(&self) -> Result<Option<V>, MapError> {
                self.0.take(true)
            }
            /// Returns the next value without removing it.
            pub fn peek(&self) -> Result<Option<V>, MapError> {
                self.0.take(false)
            }
        }
    };
}

keyless_map!(
    /// A FIFO queue of `V`. Minimum kernel version: 4.20.
    Queue,
    MapType::QUEUE
);
keyless_map!(
    /// A LIFO stack of `V`. Minimum kernel version: 4.20.
    Stack,
    MapType::STACK
);
