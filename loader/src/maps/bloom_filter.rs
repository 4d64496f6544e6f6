//! `BPF_MAP_TYPE_BLOOM_FILTER`: set membership with false positives, no deletion.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::os::fd::AsFd;

use kiln_obj::MapType;

use super::{Map, MapError, Pod, UpdateFlags, bytes_of};
use crate::sys::map as sysmap;

/// A bloom filter of `V` values.
///
/// Minimum kernel version: 5.16.
pub struct BloomFilter<M, V> {
    map: M,
    _types: PhantomData<V>,
}

impl<M: Borrow<Map>, V: Pod> BloomFilter<M, V> {
    /// Wraps `map`, checking its type and its key and value sizes against the Rust types.
    pub fn new(map: M) -> Result<Self, MapError> {
        map.borrow().check(
            &[MapType::BLOOM_FILTER],
            Some(0),
            Some(std::mem::size_of::<V>()),
        )?;
        Ok(BloomFilter {
            map,
            _types: PhantomData,
        })
    }
    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map.borrow()
    }
    /// Adds `value` to the filter.
    pub fn insert(&self, value: &V) -> Result<(), MapError> {
        let m = self.map();
        let sizes = m.sizes()?;
        // SAFETY: `sizes` are the map's own; `new` checked `V` has its value size.
        unsafe {
            sysmap::update(
                m.as_fd(),
                sizes,
                None,
                bytes_of(value),
                UpdateFlags::ANY.bits(),
            )
        }
        .map_err(|e| m.sys("insert", e))
    }
    /// False: certainly absent. True: probably present.
    pub fn contains(&self, value: &V) -> Result<bool, MapError> {
        let m = self.map();
        // The kernel reads the value to test from the value pointer.
        let mut buf = bytes_of(value).to_vec();
        let sizes = m.sizes()?;
        // SAFETY: `sizes` are the map's own; `buf` has its value size.
        unsafe { sysmap::lookup(m.as_fd(), sizes, None, &mut buf, 0, false) }
            .map_err(|e| m.sys("contains", e))
    }
}
