//! Hash maps and the LPM trie: keyed lookups, inserts and deletes.

use super::{Counter, delete, lookup, map_struct, update};
use crate::bindings::{BPF_ANY, BPF_F_NO_PREALLOC, BPF_NOEXIST, map_type::*};

/// The typed operations every keyed map shares.
macro_rules! keyed_ops {
    ($name:ident) => {
        impl<K, V, const M: usize, const F: usize, const P: usize> $name<K, V, M, F, P> {
            /// A reference to the value for `key`.
            ///
            /// # Safety
            /// Other CPUs and userspace may change the value while the
            /// reference lives; only use it for plain data where a torn read
            /// is acceptable.
            #[inline(always)]
            pub unsafe fn get(&self, key: &K) -> Option<&V> {
                // SAFETY: the kernel returned a pointer to a live value of the map's value size.
                lookup::<K, V>(self.as_ptr(), key).map(|p| unsafe { &*p })
            }

            /// A copy of the value for `key`.
            #[inline(always)]
            pub fn get_copy(&self, key: &K) -> Option<V>
            where
                V: Copy,
            {
                // SAFETY: the kernel returned a pointer to a live value of the map's value size.
                lookup::<K, V>(self.as_ptr(), key).map(|p| unsafe { core::ptr::read_volatile(p) })
            }

            /// A raw pointer to the value for `key`, for in-place updates.
            #[inline(always)]
            pub fn get_ptr_mut(&self, key: &K) -> Option<*mut V> {
                lookup::<K, V>(self.as_ptr(), key)
            }

            /// Inserts or replaces (`flags`: `BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`).
            #[inline(always)]
            pub fn insert(&self, key: &K, value: &V, flags: u64) -> Result<(), i64> {
                update(self.as_ptr(), key, value, flags)
            }

            /// Removes `key`.
            #[inline(always)]
            pub fn remove(&self, key: &K) -> Result<(), i64> {
                delete(self.as_ptr(), key)
            }

            /// Adds `by` to the value for `key`, creating it when absent.
            /// Safe against concurrent updates from other CPUs.
            #[inline(always)]
            pub fn increment(&self, key: &K, by: V)
            where
                V: Counter,
            {
                if let Some(p) = self.get_ptr_mut(key) {
                    // SAFETY: `p` points at a live, aligned value of the map.
                    unsafe { V::atomic_add(p, by) };
                    return;
                }
                // Another CPU may create it between our lookup and insert:
                // NOEXIST fails then, and we add to its entry instead.
                if self.insert(key, &by, BPF_NOEXIST).is_err() {
                    if let Some(p) = self.get_ptr_mut(key) {
                        // SAFETY: as above.
                        unsafe { V::atomic_add(p, by) };
                    }
                }
            }

            /// Sets `key` to `value` whether or not it exists.
            #[inline(always)]
            pub fn set(&self, key: &K, value: &V) -> Result<(), i64> {
                self.insert(key, value, BPF_ANY)
            }
        }
    };
}

map_struct! {
    /// `BPF_MAP_TYPE_HASH`.
    ///
    /// Minimum kernel version: 3.19.
    HashMap [K, V] type = BPF_MAP_TYPE_HASH,
    fields { key: *const K, value: *const V }
    flags_default = 0
}
keyed_ops!(HashMap);

map_struct! {
    /// `BPF_MAP_TYPE_LRU_HASH`: evicts the least recently used entry when full.
    ///
    /// Minimum kernel version: 4.10.
    LruHashMap [K, V] type = BPF_MAP_TYPE_LRU_HASH,
    fields { key: *const K, value: *const V }
    flags_default = 0
}
keyed_ops!(LruHashMap);

map_struct! {
    /// `BPF_MAP_TYPE_PERCPU_HASH`: one value per CPU; lookups see this CPU's.
    ///
    /// Minimum kernel version: 4.6.
    PerCpuHashMap [K, V] type = BPF_MAP_TYPE_PERCPU_HASH,
    fields { key: *const K, value: *const V }
    flags_default = 0
}
keyed_ops!(PerCpuHashMap);

map_struct! {
    /// `BPF_MAP_TYPE_LRU_PERCPU_HASH`.
    ///
    /// Minimum kernel version: 4.10.
    LruPerCpuHashMap [K, V] type = BPF_MAP_TYPE_LRU_PERCPU_HASH,
    fields { key: *const K, value: *const V }
    flags_default = 0
}
keyed_ops!(LruPerCpuHashMap);

map_struct! {
    /// `BPF_MAP_TYPE_LPM_TRIE`: longest-prefix match. Keys are
    /// [`LpmKey<N>`](crate::bindings::LpmKey) (prefix length in bits, then
    /// the data); `BPF_F_NO_PREALLOC` is required and set by default.
    ///
    /// The kernel stores a value right after its key's data bytes, so with
    /// `LpmKey<4>` (IPv4) a value is only 4-aligned: a 64-bit atomic add
    /// on it (`increment` of a u64) is an alignment fault on arm64, a kernel
    /// panic in softirq. Count in u32s there, or keep counters elsewhere.
    ///
    /// Minimum kernel version: 4.11.
    LpmTrie [K, V] type = BPF_MAP_TYPE_LPM_TRIE,
    fields { key: *const K, value: *const V }
    flags_default = BPF_F_NO_PREALLOC
}
keyed_ops!(LpmTrie);
