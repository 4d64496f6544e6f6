//! The C shim (`shim/kiln_shim.c`), linked as bitcode for the BPF target.
//!
//! On the host there is no BPF atomic to call, so the same names are plain
//! Rust atomics: unit tests and `cargo check` see identical signatures.

#[cfg(target_arch = "bpf")]
unsafe extern "C" {
    pub fn kiln_atomic_add_u64(p: *mut u64, v: u64);
    pub fn kiln_atomic_add_u32(p: *mut u32, v: u32);
}

#[cfg(not(target_arch = "bpf"))]
pub unsafe fn kiln_atomic_add_u64(p: *mut u64, v: u64) {
    // SAFETY: the caller passes a valid, aligned pointer.
    unsafe { core::sync::atomic::AtomicU64::from_ptr(p) }
        .fetch_add(v, core::sync::atomic::Ordering::Relaxed);
}

#[cfg(not(target_arch = "bpf"))]
pub unsafe fn kiln_atomic_add_u32(p: *mut u32, v: u32) {
    // SAFETY: the caller passes a valid, aligned pointer.
    unsafe { core::sync::atomic::AtomicU32::from_ptr(p) }
        .fetch_add(v, core::sync::atomic::Ordering::Relaxed);
}
