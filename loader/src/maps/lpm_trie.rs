//! `BPF_MAP_TYPE_LPM_TRIE`: longest-prefix match (IP routes, CIDR blocklists).

use std::borrow::Borrow;
use std::marker::PhantomData;

use kiln_obj::MapType;

use super::{Map, MapError, Pod, UpdateFlags};

/// `struct bpf_lpm_trie_key`: a prefix length in bits and the data (network byte order for IPs).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct LpmKey<K> {
    /// How many leading bits of `data` the key matches.
    pub prefix_len: u32,
    /// The address (or other data), in network byte order.
    pub data: K,
}

// SAFETY: packed, so no padding; both fields are Pod.
unsafe impl<K: Pod> Pod for LpmKey<K> {}

impl<K> LpmKey<K> {
    /// A key matching the first `prefix_len` bits of `data`.
    pub fn new(prefix_len: u32, data: K) -> Self {
        LpmKey { prefix_len, data }
    }
}

/// A longest-prefix-match trie with `K` data (e.g. `[u8; 4]` for IPv4) and `V` values.
/// The map must be created with `BPF_F_NO_PREALLOC`.
///
/// Minimum kernel version: 4.11.
pub struct LpmTrie<M, K, V> {
    map: M,
    _types: PhantomData<(K, V)>,
}

impl<M: Borrow<Map>, K: Pod, V: Pod> LpmTrie<M, K, V> {
    /// Wraps `map`, checking its type and its key and value sizes against the Rust types.
    pub fn new(map: M) -> Result<Self, MapError> {
        map.borrow()
            .check_sizes::<LpmKey<K>, V>(&[MapType::LPM_TRIE])?;
        Ok(LpmTrie {
            map,
            _types: PhantomData,
        })
    }
    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map.borrow()
    }
    /// The value of the longest stored prefix matching `key` (use the full prefix length to look up an address).
    pub fn get(&self, key: &LpmKey<K>) -> Result<Option<V>, MapError> {
        self.map().get(key, UpdateFlags::ANY)
    }
    /// Writes `value` for the prefix `key`.
    pub fn insert(&self, key: &LpmKey<K>, value: &V, flags: UpdateFlags) -> Result<(), MapError> {
        self.map().insert(key, value, flags)
    }
    /// Removes the exact prefix `key`.
    pub fn remove(&self, key: &LpmKey<K>) -> Result<bool, MapError> {
        self.map().remove(key)
    }
    /// Every key, in the kernel's order (`BPF_MAP_GET_NEXT_KEY`). Entries changed meanwhile may be missed or repeated.
    pub fn keys(&self) -> impl Iterator<Item = Result<LpmKey<K>, MapError>> + '_ {
        self.map().keys()
    }
}
