//! BTF-defined maps in libbpf's layout.
//!
//! A map is a `#[repr(C)]` struct placed in the `.maps` section (by
//! [`#[map]`](crate::map)) whose fields are pointers: the *pointee types*
//! carry the definition, encoded in the object's BTF, exactly like libbpf's
//! `__uint(type, BPF_MAP_TYPE_HASH)` / `__type(key, u32)` macros:
//!
//! | field | Rust type | meaning |
//! |---|---|---|
//! | `type` | `*const [i32; MAP_TYPE]` | map type (array length) |
//! | `key` / `value` | `*const K` / `*const V` | key and value types (sizes from BTF) |
//! | `key_size` / `value_size` | `*const [i32; N]` | sizes, when there is no type |
//! | `max_entries` | `*const [i32; N]` | capacity |
//! | `map_flags` | `*const [i32; F]` | creation flags |
//! | `pinning` | `*const [i32; P]` | `LIBBPF_PIN_BY_NAME` = 1 |
//!
//! Every map type takes its capacity and then two defaulted const parameters,
//! `FLAGS` and `PIN`; `#[map(pinned)]` and `#[map(flags = ...)]` rewrite the
//! declared type through [`MapDef`], so a user writes
//! `static COUNTERS: HashMap<u32, u64, 1024> = HashMap::new();`.
//!
//! Nothing in these structs is ever read or written at run time: the loader
//! replaces each reference to the static with the map's file descriptor.

use core::ffi::c_void;

mod array;
mod hash;
mod misc;
mod redirect;

pub use array::{Array, PerCpuArray};
pub use hash::{HashMap, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuHashMap};
pub use misc::{BloomFilter, PerfEventArray, ProgramArray, Queue, RingBuf, RingBufEntry, Stack};
pub use redirect::{CpuMap, DevMap, DevMapHash, SockHash, SockMap, XskMap};

use crate::helpers;

/// Lets `#[map(pinned)]` and `#[map(flags = ...)]` derive the variant of a
/// declared map type with pinning or flags set.
pub trait MapDef {
    /// The same map pinned by name under the loader's pin directory.
    type Pinned;
    /// The same map with creation flags `F`.
    type WithFlags<const F: usize>;
}

/// A value that [`HashMap::increment`] and friends can add to atomically.
pub trait Counter: Copy {
    /// Adds `by` to `*p` with an atomic add whose result is unused (lowered to
    /// the non-fetching BPF atomic add that 5.10 accepts).
    ///
    /// # Safety
    /// `p` must be valid and aligned for `Self`.
    unsafe fn atomic_add(p: *mut Self, by: Self);
}

macro_rules! counter {
    ($t:ty, $shim:ident, $as:ty) => {
        impl Counter for $t {
            #[inline(always)]
            unsafe fn atomic_add(p: *mut Self, by: Self) {
                // SAFETY: the caller guarantees `p` is valid and aligned; map
                // values are shared with other CPUs, hence atomic.
                unsafe { crate::shim::$shim(p.cast::<$as>(), by as $as) }
            }
        }
    };
}
counter!(u32, kiln_atomic_add_u32, u32);
counter!(u64, kiln_atomic_add_u64, u64);
counter!(i32, kiln_atomic_add_u32, u32);
counter!(i64, kiln_atomic_add_u64, u64);

/// Defines a map struct with the libbpf field layout and its [`MapDef`]
/// plumbing. `key`/`value` are given as types (`key: K`) or sizes
/// (`key_size: 4`); generic parameters come first, capacity and the defaulted
/// `FLAGS`, `PIN` last.
macro_rules! map_struct {
    (
        $(#[$doc:meta])*
        $name:ident [$($g:ident),*] type = $map_type:expr,
        fields { $($field:ident : $fty:ty),* $(,)? }
        flags_default = $fd:expr
    ) => {
        $(#[$doc])*
        #[repr(C)]
        pub struct $name<$($g,)* const MAX_ENTRIES: usize, const FLAGS: usize = { $fd }, const PIN: usize = 0> {
            r#type: *const [i32; $map_type],
            $($field: $fty,)*
            max_entries: *const [i32; MAX_ENTRIES],
            map_flags: *const [i32; FLAGS],
            pinning: *const [i32; PIN],
        }

        // SAFETY: the struct is only a BTF description; the program never
        // reads or writes it, the kernel only sees its address as a map.
        unsafe impl<$($g,)* const M: usize, const F: usize, const P: usize> Sync for $name<$($g,)* M, F, P> {}

        impl<$($g,)* const M: usize, const F: usize, const P: usize> $name<$($g,)* M, F, P> {
            /// The definition; put it in a `#[map]` static.
            pub const fn new() -> Self {
                Self {
                    r#type: core::ptr::null(),
                    $($field: core::ptr::null(),)*
                    max_entries: core::ptr::null(),
                    map_flags: core::ptr::null(),
                    pinning: core::ptr::null(),
                }
            }

            /// The map's address as the helpers take it.
            #[inline(always)]
            pub fn as_ptr(&self) -> *mut core::ffi::c_void {
                (self as *const Self).cast_mut().cast()
            }
        }

        impl<$($g,)* const M: usize, const F: usize> $name<$($g,)* M, F, 1> {
            /// The definition, pinned by name (`pinning = LIBBPF_PIN_BY_NAME`).
            pub const fn pinned() -> Self {
                Self::new()
            }
        }

        impl<$($g,)* const M: usize, const F: usize, const P: usize> Default for $name<$($g,)* M, F, P> {
            fn default() -> Self {
                Self::new()
            }
        }

        impl<$($g,)* const M: usize, const F: usize, const P: usize> $crate::maps::MapDef for $name<$($g,)* M, F, P> {
            type Pinned = $name<$($g,)* M, F, 1>;
            type WithFlags<const F2: usize> = $name<$($g,)* M, F2, P>;
        }
    };
}
pub(crate) use map_struct;

/// `bpf_map_lookup_elem` on any map.
#[inline(always)]
fn lookup<K, V>(map: *mut c_void, key: &K) -> Option<*mut V> {
    // SAFETY: `map` is a map definition's address (rewritten by the loader)
    // and `key` is readable for the key size the map was declared with.
    let p = unsafe { helpers::bpf_map_lookup_elem(map, (key as *const K).cast()) };
    if p.is_null() { None } else { Some(p.cast()) }
}

/// `bpf_map_update_elem` on any map; `Err` carries the negative errno.
#[inline(always)]
fn update<K, V>(map: *mut c_void, key: &K, value: &V, flags: u64) -> Result<(), i64> {
    // SAFETY: as `lookup`, and `value` is readable for the value size.
    let ret = unsafe {
        helpers::bpf_map_update_elem(
            map,
            (key as *const K).cast(),
            (value as *const V).cast(),
            flags,
        )
    };
    if ret < 0 { Err(ret) } else { Ok(()) }
}

/// `bpf_map_delete_elem` on any map.
#[inline(always)]
fn delete<K>(map: *mut c_void, key: &K) -> Result<(), i64> {
    // SAFETY: as `lookup`.
    let ret = unsafe { helpers::bpf_map_delete_elem(map, (key as *const K).cast()) };
    if ret < 0 { Err(ret) } else { Ok(()) }
}
