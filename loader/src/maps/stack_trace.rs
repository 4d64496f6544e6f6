//! `BPF_MAP_TYPE_STACK_TRACE`: stack ids (from `bpf_get_stackid`) → instruction pointers.

use std::borrow::Borrow;

use kiln_obj::MapType;

use super::{Map, MapError, UpdateFlags};

/// Stack traces by id.
///
/// Minimum kernel version: 4.6.
pub struct StackTraceMap<M> {
    map: M,
}

impl<M: Borrow<Map>> StackTraceMap<M> {
    /// Wraps `map`, checking its type and its key and value sizes against the Rust types.
    pub fn new(map: M) -> Result<Self, MapError> {
        let m = map.borrow();
        m.check(&[MapType::STACK_TRACE], Some(4), None)?;
        if m.value_size() % 8 != 0 {
            return Err(MapError::Unsuited {
                name: m.name().to_owned(),
                reason: super::Unsuited::StackValueSize {
                    value_size: m.value_size(),
                },
            });
        }
        Ok(StackTraceMap { map })
    }
    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map.borrow()
    }
    /// The addresses of stack `id`, innermost first, without the zero tail.
    pub fn get(&self, id: u32) -> Result<Option<Vec<u64>>, MapError> {
        let Some(bytes) = self
            .map()
            .lookup_bytes(&id.to_ne_bytes(), UpdateFlags::ANY)?
        else {
            return Ok(None);
        };
        let mut ips: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().expect("8-byte chunks")))
            .collect();
        while ips.last() == Some(&0) {
            ips.pop();
        }
        Ok(Some(ips))
    }
    /// Deletes stack trace `id`; returns whether it existed.
    pub fn remove(&self, id: u32) -> Result<bool, MapError> {
        self.map().remove(&id)
    }
    /// Every stored stack id.
    pub fn ids(&self) -> impl Iterator<Item = Result<u32, MapError>> + '_ {
        self.map().keys()
    }
}
