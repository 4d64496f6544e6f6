//! Arrays: preallocated, indexed by `u32`, entries never removed.

use super::{Counter, lookup, map_struct, update};
use crate::bindings::{BPF_ANY, map_type::*};

macro_rules! array_ops {
    ($name:ident) => {
        impl<V, const M: usize, const F: usize, const P: usize> $name<V, M, F, P> {
            /// A reference to entry `index`.
            ///
            /// # Safety
            /// Other CPUs and userspace may change the value while the
            /// reference lives.
            #[inline(always)]
            pub unsafe fn get(&self, index: u32) -> Option<&V> {
                // SAFETY: the kernel returned a pointer to a live value.
                lookup::<u32, V>(self.as_ptr(), &index).map(|p| unsafe { &*p })
            }

            /// A copy of entry `index`.
            #[inline(always)]
            pub fn get_copy(&self, index: u32) -> Option<V>
            where
                V: Copy,
            {
                // SAFETY: the kernel returned a pointer to a live value.
                lookup::<u32, V>(self.as_ptr(), &index)
                    .map(|p| unsafe { core::ptr::read_volatile(p) })
            }

            /// A raw pointer to entry `index`, for in-place updates.
            #[inline(always)]
            pub fn get_ptr_mut(&self, index: u32) -> Option<*mut V> {
                lookup::<u32, V>(self.as_ptr(), &index)
            }

            /// Overwrites entry `index`.
            #[inline(always)]
            pub fn set(&self, index: u32, value: &V) -> Result<(), i64> {
                update(self.as_ptr(), &index, value, BPF_ANY)
            }

            /// Adds `by` to entry `index` atomically.
            #[inline(always)]
            pub fn increment(&self, index: u32, by: V)
            where
                V: Counter,
            {
                if let Some(p) = self.get_ptr_mut(index) {
                    // SAFETY: `p` points at a live, aligned array entry.
                    unsafe { V::atomic_add(p, by) };
                }
            }
        }
    };
}

map_struct! {
    /// `BPF_MAP_TYPE_ARRAY`.
    ///
    /// Minimum kernel version: 3.19.
    Array [V] type = BPF_MAP_TYPE_ARRAY,
    fields { key: *const u32, value: *const V }
    flags_default = 0
}
array_ops!(Array);

map_struct! {
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`: one value per CPU; lookups see this CPU's.
    ///
    /// Minimum kernel version: 4.6.
    PerCpuArray [V] type = BPF_MAP_TYPE_PERCPU_ARRAY,
    fields { key: *const u32, value: *const V }
    flags_default = 0
}
array_ops!(PerCpuArray);
