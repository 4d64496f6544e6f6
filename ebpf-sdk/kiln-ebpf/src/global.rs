//! Global variables that userspace sets before load.
//!
//! A `#[unsafe(no_mangle)] static` of type [`Global<T>`] lands in `.rodata`
//! (libbpf and Kiln freeze it after setting it, so the verifier can prune
//! branches on it); [`GlobalMut<T>`] lands in `.data` (or `.bss` when
//! zero) and stays writable from both sides. Reads are volatile: without that
//! the compiler would fold the initial value into the code and userspace's
//! value would never be seen.
//!
//! ```ignore
//! #[unsafe(no_mangle)]
//! static LOG_DROPS: kiln_ebpf::Global<u8> = kiln_ebpf::Global::new(0);
//! if LOG_DROPS.get() != 0 { ... }
//! ```

use core::cell::UnsafeCell;

/// A read-only global (`.rodata`), set by the loader before the program loads.
#[repr(transparent)]
pub struct Global<T>(T);

impl<T: Copy> Global<T> {
    /// The default the object carries when userspace sets nothing.
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// The value, read from the map the loader created for `.rodata`.
    #[inline(always)]
    pub fn get(&self) -> T {
        // SAFETY: `self.0` is a valid, aligned T; volatile keeps the load.
        unsafe { core::ptr::read_volatile(&self.0) }
    }
}

/// A writable global (`.data`/`.bss`), shared with userspace.
#[repr(transparent)]
pub struct GlobalMut<T>(UnsafeCell<T>);

// SAFETY: access goes through volatile loads and stores of `Copy` values; a
// global is, like a map value, shared with other CPUs by design.
unsafe impl<T: Copy> Sync for GlobalMut<T> {}

impl<T: Copy> GlobalMut<T> {
    /// The initial value.
    pub const fn new(value: T) -> Self {
        Self(UnsafeCell::new(value))
    }

    /// The current value.
    #[inline(always)]
    pub fn get(&self) -> T {
        // SAFETY: the cell holds a valid T; volatile keeps the load.
        unsafe { core::ptr::read_volatile(self.0.get()) }
    }

    /// Replaces the value.
    #[inline(always)]
    pub fn set(&self, value: T) {
        // SAFETY: the cell holds a T; a torn write is the documented cost of sharing.
        unsafe { core::ptr::write_volatile(self.0.get(), value) }
    }
}
