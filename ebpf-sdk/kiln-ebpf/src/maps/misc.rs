//! Maps that are not key/value stores: ring buffer, perf event array, program
//! array (tail calls), queue, stack, bloom filter.

use core::ffi::c_void;
use core::marker::PhantomData;
use core::mem::MaybeUninit;

use super::map_struct;
use crate::bindings::{BPF_F_CURRENT_CPU, map_type::*};
use crate::helpers;
use crate::programs::EbpfContext;

map_struct! {
    /// `BPF_MAP_TYPE_RINGBUF`: a multi-producer, single-consumer ring shared
    /// by all CPUs. `MAX_ENTRIES` is its size in bytes: a power of two and a
    /// multiple of the page size.
    ///
    /// Minimum kernel version: 5.8.
    RingBuf [] type = BPF_MAP_TYPE_RINGBUF,
    fields {}
    flags_default = 0
}

impl<const M: usize, const F: usize, const P: usize> RingBuf<M, F, P> {
    /// Reserves room for a `T`; fill it, then [`RingBufEntry::submit`] it.
    /// Dropping the entry discards it (the verifier insists that every
    /// reservation is submitted or discarded).
    #[inline(always)]
    pub fn reserve<T>(&self) -> Option<RingBufEntry<T>> {
        // SAFETY: `self` is a ring buffer map; size is the reservation's size.
        let p = unsafe { helpers::bpf_ringbuf_reserve(self.as_ptr(), size_of::<T>() as u64, 0) };
        if p.is_null() {
            None
        } else {
            Some(RingBufEntry {
                ptr: p.cast(),
                _t: PhantomData,
            })
        }
    }

    /// Copies `data` into the ring in one call (`bpf_ringbuf_output`).
    #[inline(always)]
    pub fn output<T>(&self, data: &T, flags: u64) -> Result<(), i64> {
        // SAFETY: `data` is readable for size_of::<T>() bytes.
        let ret = unsafe {
            helpers::bpf_ringbuf_output(
                self.as_ptr(),
                (data as *const T).cast_mut().cast(),
                size_of::<T>() as u64,
                flags,
            )
        };
        if ret < 0 { Err(ret) } else { Ok(()) }
    }
}

/// A reservation in a [`RingBuf`].
pub struct RingBufEntry<T> {
    ptr: *mut T,
    _t: PhantomData<T>,
}

impl<T> RingBufEntry<T> {
    /// Writes the whole record.
    #[inline(always)]
    pub fn write(&mut self, value: T) {
        // SAFETY: the reservation is size_of::<T>() writable bytes, 8-byte aligned.
        unsafe { self.ptr.write(value) }
    }

    /// The reserved memory, for filling field by field.
    #[inline(always)]
    pub fn as_mut_ptr(&mut self) -> *mut MaybeUninit<T> {
        self.ptr.cast()
    }

    /// Publishes the record (`bpf_ringbuf_submit`).
    #[inline(always)]
    pub fn submit(self, flags: u64) {
        // SAFETY: `ptr` came from bpf_ringbuf_reserve and is submitted once:
        // `forget` below keeps Drop from discarding it as well.
        unsafe { helpers::bpf_ringbuf_submit(self.ptr.cast(), flags) };
        core::mem::forget(self);
    }

    /// Drops the record without publishing it (`bpf_ringbuf_discard`).
    #[inline(always)]
    pub fn discard(self, flags: u64) {
        // SAFETY: as `submit`.
        unsafe { helpers::bpf_ringbuf_discard(self.ptr.cast(), flags) };
        core::mem::forget(self);
    }
}

impl<T> Drop for RingBufEntry<T> {
    fn drop(&mut self) {
        // SAFETY: an entry not submitted yet still owns its reservation.
        unsafe { helpers::bpf_ringbuf_discard(self.ptr.cast(), 0) };
    }
}

map_struct! {
    /// `BPF_MAP_TYPE_PERF_EVENT_ARRAY`: per-CPU perf rings. With
    /// `MAX_ENTRIES = 0` the loader sizes it to the number of CPUs.
    ///
    /// Minimum kernel version: 4.3.
    PerfEventArray [] type = BPF_MAP_TYPE_PERF_EVENT_ARRAY,
    fields { key_size: *const [i32; 4], value_size: *const [i32; 4] }
    flags_default = 0
}

impl<const M: usize, const F: usize, const P: usize> PerfEventArray<M, F, P> {
    /// Sends `data` to this CPU's ring (`bpf_perf_event_output`).
    #[inline(always)]
    pub fn output<C: EbpfContext, T>(&self, ctx: &C, data: &T) -> Result<(), i64> {
        // SAFETY: `ctx` is the program's own context and `self` a perf event array.
        let ret = unsafe {
            helpers::perf_event_output(ctx.as_ptr(), self.as_ptr(), BPF_F_CURRENT_CPU, data)
        };
        if ret < 0 { Err(ret) } else { Ok(()) }
    }
}

map_struct! {
    /// `BPF_MAP_TYPE_PROG_ARRAY`: programs to tail-call into.
    ///
    /// Minimum kernel version: 4.2.
    ProgramArray [] type = BPF_MAP_TYPE_PROG_ARRAY,
    fields { key_size: *const [i32; 4], value_size: *const [i32; 4] }
    flags_default = 0
}

impl<const M: usize, const F: usize, const P: usize> ProgramArray<M, F, P> {
    /// Jumps to the program at `index` (`bpf_tail_call`). Returns only when
    /// there is none (or the tail-call limit is reached), with the error.
    #[inline(always)]
    pub fn tail_call<C: EbpfContext>(&self, ctx: &C, index: u32) -> i64 {
        // SAFETY: `ctx` is the program's own context and `self` a program array;
        // a successful tail call never returns, like an early exit.
        unsafe { helpers::bpf_tail_call(ctx.as_ptr(), self.as_ptr(), index) }
    }
}

/// Push/pop/peek shared by the value-only maps.
macro_rules! value_ops {
    ($name:ident) => {
        impl<V, const M: usize, const F: usize, const P: usize> $name<V, M, F, P> {
            /// Adds `value` (`bpf_map_push_elem`; flags `BPF_EXIST` overwrites the oldest when full).
            #[inline(always)]
            pub fn push(&self, value: &V, flags: u64) -> Result<(), i64> {
                // SAFETY: `value` is readable for the map's value size.
                let ret = unsafe {
                    helpers::bpf_map_push_elem(self.as_ptr(), (value as *const V).cast(), flags)
                };
                if ret < 0 { Err(ret) } else { Ok(()) }
            }

            /// Takes the next value out (`bpf_map_pop_elem`).
            #[inline(always)]
            pub fn pop(&self) -> Option<V> {
                let mut v = MaybeUninit::<V>::uninit();
                // SAFETY: `v` is writable for the map's value size.
                let ret =
                    unsafe { helpers::bpf_map_pop_elem(self.as_ptr(), v.as_mut_ptr().cast()) };
                // SAFETY: on success the helper filled `v`.
                (ret == 0).then(|| unsafe { v.assume_init() })
            }

            /// Reads the next value without removing it (`bpf_map_peek_elem`).
            #[inline(always)]
            pub fn peek(&self) -> Option<V> {
                let mut v = MaybeUninit::<V>::uninit();
                // SAFETY: `v` is writable for the map's value size.
                let ret =
                    unsafe { helpers::bpf_map_peek_elem(self.as_ptr(), v.as_mut_ptr().cast()) };
                // SAFETY: on success the helper filled `v`.
                (ret == 0).then(|| unsafe { v.assume_init() })
            }
        }
    };
}

map_struct! {
    /// `BPF_MAP_TYPE_QUEUE`: FIFO of values.
    ///
    /// Minimum kernel version: 4.20.
    Queue [V] type = BPF_MAP_TYPE_QUEUE,
    fields { value: *const V }
    flags_default = 0
}
value_ops!(Queue);

map_struct! {
    /// `BPF_MAP_TYPE_STACK`: LIFO of values.
    ///
    /// Minimum kernel version: 4.20.
    Stack [V] type = BPF_MAP_TYPE_STACK,
    fields { value: *const V }
    flags_default = 0
}
value_ops!(Stack);

map_struct! {
    /// `BPF_MAP_TYPE_BLOOM_FILTER`: set membership with false positives.
    ///
    /// Minimum kernel version: 5.16.
    BloomFilter [V] type = BPF_MAP_TYPE_BLOOM_FILTER,
    fields { value: *const V }
    flags_default = 0
}

impl<V, const M: usize, const F: usize, const P: usize> BloomFilter<V, M, F, P> {
    /// Adds `value` to the set.
    #[inline(always)]
    pub fn insert(&self, value: &V) -> Result<(), i64> {
        // SAFETY: `value` is readable for the map's value size.
        let ret =
            unsafe { helpers::bpf_map_push_elem(self.as_ptr(), (value as *const V).cast(), 0) };
        if ret < 0 { Err(ret) } else { Ok(()) }
    }

    /// `false`: certainly absent; `true`: probably present.
    #[inline(always)]
    pub fn contains(&self, value: &V) -> bool {
        // SAFETY: for a bloom filter, peek reads `value` (it is the query).
        let ret = unsafe {
            helpers::bpf_map_peek_elem(
                self.as_ptr(),
                (value as *const V).cast_mut().cast::<c_void>(),
            )
        };
        ret == 0
    }
}
