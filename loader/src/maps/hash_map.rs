//! Hash maps: `BPF_MAP_TYPE_HASH`, `LRU_HASH` and their per-CPU variants.

use std::borrow::Borrow;
use std::marker::PhantomData;

use kiln_obj::MapType;

use super::{Map, MapError, Pod, UpdateFlags, bytes_of, from_bytes};

/// A hash (or LRU hash) map with `K` keys and `V` values.
///
/// Minimum kernel version: 3.19 (LRU: 4.10).
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kiln_loader::maps::{HashMap, UpdateFlags};
///
/// let ebpf = kiln_loader::load_file("target/bpf/counter.bpf.o")?;
/// // Key and value types are checked against the map's sizes here.
/// let counters: HashMap<_, u32, u64> = HashMap::new(ebpf.map("COUNTERS").ok_or("no map")?)?;
/// counters.insert(&7, &0, UpdateFlags::ANY)?;
/// if let Some(n) = counters.get(&7)? {
///     println!("key 7: {n}");
/// }
/// for entry in counters.iter() {
///     let (key, value) = entry?;
///     println!("{key}: {value}");
/// }
/// # Ok(())
/// # }
/// ```
pub struct HashMap<M, K, V> {
    map: M,
    _types: PhantomData<(K, V)>,
}

impl<M: Borrow<Map>, K: Pod, V: Pod> HashMap<M, K, V> {
    /// Wraps `map`, checking its type and its key and value sizes against the Rust types.
    pub fn new(map: M) -> Result<Self, MapError> {
        map.borrow()
            .check_sizes::<K, V>(&[MapType::HASH, MapType::LRU_HASH])?;
        Ok(HashMap {
            map,
            _types: PhantomData,
        })
    }
    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map.borrow()
    }
    /// The underlying map, given back.
    pub fn into_inner(self) -> M {
        self.map
    }
    /// The value at `key`, if any.
    pub fn get(&self, key: &K) -> Result<Option<V>, MapError> {
        self.map().get(key, UpdateFlags::ANY)
    }
    /// Writes `value` at `key` (`UpdateFlags::NOEXIST` to only create, `EXIST` to only replace).
    pub fn insert(&self, key: &K, value: &V, flags: UpdateFlags) -> Result<(), MapError> {
        self.map().insert(key, value, flags)
    }
    /// Deletes the entry at `key`; returns whether there was one.
    pub fn remove(&self, key: &K) -> Result<bool, MapError> {
        self.map().remove(key)
    }
    /// Every key, in the kernel's order (`BPF_MAP_GET_NEXT_KEY`). Entries changed meanwhile may be missed or repeated.
    pub fn keys(&self) -> impl Iterator<Item = Result<K, MapError>> + '_ {
        self.map().keys()
    }
    /// Every entry, in the kernel's order. Entries changed meanwhile may be missed or repeated.
    pub fn iter(&self) -> impl Iterator<Item = Result<(K, V), MapError>> + '_ {
        self.map().entries()
    }
    /// Every entry in as few syscalls as the kernel allows (BPF_MAP_LOOKUP_BATCH,
    /// element by element where the kernel has no batch ops).
    pub fn get_all(&self) -> Result<Vec<(K, V)>, MapError> {
        let (keys, values) = self.map().lookup_all_bytes(false)?;
        Ok(decode_pairs(&keys, &values, self.map()))
    }
    /// Like [`HashMap::get_all`], removing what it returns (BPF_MAP_LOOKUP_AND_DELETE_BATCH).
    pub fn drain(&self) -> Result<Vec<(K, V)>, MapError> {
        let (keys, values) = self.map().lookup_all_bytes(true)?;
        Ok(decode_pairs(&keys, &values, self.map()))
    }
    /// Inserts many entries at once (BPF_MAP_UPDATE_BATCH, or one by one).
    pub fn insert_batch(&self, entries: &[(K, V)], flags: UpdateFlags) -> Result<(), MapError> {
        let keys: Vec<u8> = entries
            .iter()
            .flat_map(|(k, _)| bytes_of(k).to_vec())
            .collect();
        let values: Vec<u8> = entries
            .iter()
            .flat_map(|(_, v)| bytes_of(v).to_vec())
            .collect();
        self.map().update_batch_bytes(&keys, &values, flags)
    }
    /// Removes many keys at once (BPF_MAP_DELETE_BATCH, or one by one). Returns how many existed.
    pub fn remove_batch(&self, keys: &[K]) -> Result<u32, MapError> {
        let bytes: Vec<u8> = keys.iter().flat_map(|k| bytes_of(k).to_vec()).collect();
        self.map().delete_batch_bytes(&bytes)
    }
}

fn decode_pairs<K: Pod, V: Pod>(keys: &[u8], values: &[u8], map: &Map) -> Vec<(K, V)> {
    let (ks, vs) = (map.key_size() as usize, map.value_size() as usize);
    keys.chunks_exact(ks.max(1))
        .zip(values.chunks_exact(vs.max(1)))
        .filter_map(|(k, v)| Some((from_bytes(k)?, from_bytes(v)?)))
        .collect()
}

/// One value per possible CPU, indexed by CPU number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerCpuValues<V>(Vec<V>);

impl<V: Pod> PerCpuValues<V> {
    /// `values` must have one entry per possible CPU ([`crate::util::nr_possible_cpus`]).
    pub fn new(values: Vec<V>) -> Self {
        PerCpuValues(values)
    }
    /// The same value on every possible CPU.
    pub fn splat(value: V) -> Result<Self, std::io::Error> {
        Ok(PerCpuValues(vec![value; crate::util::nr_possible_cpus()?]))
    }
    pub(crate) fn from_slots(buf: &[u8], value_size: usize) -> Self {
        let stride = value_size.next_multiple_of(8).max(8);
        PerCpuValues(buf.chunks_exact(stride).filter_map(from_bytes).collect())
    }
    pub(crate) fn to_slots(&self, value_size: usize) -> Vec<u8> {
        let stride = value_size.next_multiple_of(8).max(8);
        let mut buf = vec![0u8; stride * self.0.len()];
        for (slot, v) in buf.chunks_exact_mut(stride).zip(&self.0) {
            let b = bytes_of(v);
            slot[..b.len()].copy_from_slice(b);
        }
        buf
    }
    /// The values, one per possible CPU, in CPU order.
    pub fn into_vec(self) -> Vec<V> {
        self.0
    }
}

impl<V> std::ops::Deref for PerCpuValues<V> {
    type Target = [V];
    fn deref(&self) -> &[V] {
        &self.0
    }
}

/// A per-CPU hash map: every key has one `V` per possible CPU.
///
/// Minimum kernel version: 4.6 (LRU per-CPU: 4.10).
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kiln_loader::maps::PerCpuHashMap;
///
/// let ebpf = kiln_loader::load_file("target/bpf/loader_maps.bpf.o")?;
/// let map: PerCpuHashMap<_, u32, u64> = PerCpuHashMap::new(ebpf.map("pc_hash").ok_or("no map")?)?;
/// if let Some(per_cpu) = map.get(&1)? {
///     // One value per possible CPU: add them up for the total.
///     let total: u64 = per_cpu.iter().sum();
///     println!("key 1: {total}");
/// }
/// # Ok(())
/// # }
/// ```
pub struct PerCpuHashMap<M, K, V> {
    map: M,
    _types: PhantomData<(K, V)>,
}

impl<M: Borrow<Map>, K: Pod, V: Pod> PerCpuHashMap<M, K, V> {
    /// Wraps `map`, checking its type and its key and value sizes against the Rust types.
    pub fn new(map: M) -> Result<Self, MapError> {
        map.borrow()
            .check_sizes::<K, V>(&[MapType::PERCPU_HASH, MapType::LRU_PERCPU_HASH])?;
        Ok(PerCpuHashMap {
            map,
            _types: PhantomData,
        })
    }
    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map.borrow()
    }
    /// Every CPU's value at `key`, if the key exists.
    pub fn get(&self, key: &K) -> Result<Option<PerCpuValues<V>>, MapError> {
        self.map().get_per_cpu(key)
    }
    /// Writes every CPU's value at `key`.
    pub fn insert(
        &self,
        key: &K,
        values: &PerCpuValues<V>,
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        self.map().insert_per_cpu(key, values, flags)
    }
    /// Deletes the entry at `key`; returns whether there was one.
    pub fn remove(&self, key: &K) -> Result<bool, MapError> {
        self.map().remove(key)
    }
    /// Every key, in the kernel's order (`BPF_MAP_GET_NEXT_KEY`). Entries changed meanwhile may be missed or repeated.
    pub fn keys(&self) -> impl Iterator<Item = Result<K, MapError>> + '_ {
        self.map().keys()
    }
    /// Every key with its per-CPU values, batched where the kernel can.
    pub fn get_all(&self) -> Result<Vec<(K, PerCpuValues<V>)>, MapError> {
        let map = self.map();
        let (keys, values) = map.lookup_all_bytes(false)?;
        let stride = map.value_buf_len()?;
        Ok(keys
            .chunks_exact(map.key_size() as usize)
            .zip(values.chunks_exact(stride))
            .filter_map(|(k, v)| {
                Some((
                    from_bytes(k)?,
                    PerCpuValues::from_slots(v, map.value_size() as usize),
                ))
            })
            .collect())
    }
}
