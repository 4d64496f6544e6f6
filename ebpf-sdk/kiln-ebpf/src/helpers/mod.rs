//! BPF helpers: every raw helper (generated from the kernel's UAPI header by
//! `cargo xtask codegen`) and safe wrappers for the common ones.

/// Every helper of the kernel's UAPI header, by its C name, with the
/// header's own description (generated: see `cargo xtask codegen`).
#[rustfmt::skip]
#[allow(missing_docs, reason = "generated from linux/bpf.h; the helpers' documentation is the kernel's")]
pub mod generated;

use core::ffi::c_void;
use core::mem::MaybeUninit;

pub use generated::*;

/// Nanoseconds since boot, without suspend time (`bpf_ktime_get_ns`).
///
/// Minimum kernel version: 4.1.
#[inline(always)]
pub fn ktime_get_ns() -> u64 {
    // SAFETY: takes no arguments.
    unsafe { bpf_ktime_get_ns() }
}

/// `tgid << 32 | pid` of the current task (`bpf_get_current_pid_tgid`).
///
/// Minimum kernel version: 4.2.
#[inline(always)]
pub fn get_current_pid_tgid() -> u64 {
    // SAFETY: takes no arguments.
    unsafe { bpf_get_current_pid_tgid() }
}

/// `gid << 32 | uid` of the current task (`bpf_get_current_uid_gid`).
///
/// Minimum kernel version: 4.2.
#[inline(always)]
pub fn get_current_uid_gid() -> u64 {
    // SAFETY: takes no arguments.
    unsafe { bpf_get_current_uid_gid() }
}

/// The CPU the program runs on (`bpf_get_smp_processor_id`).
///
/// Minimum kernel version: 4.1.
#[inline(always)]
pub fn get_smp_processor_id() -> u32 {
    // SAFETY: takes no arguments.
    unsafe { bpf_get_smp_processor_id() }
}

/// A pseudo-random number (`bpf_get_prandom_u32`).
///
/// Minimum kernel version: 4.1.
#[inline(always)]
pub fn get_prandom_u32() -> u32 {
    // SAFETY: takes no arguments.
    unsafe { bpf_get_prandom_u32() }
}

/// The current task's `comm` (`bpf_get_current_comm`), NUL-padded.
///
/// Minimum kernel version: 4.2.
#[inline(always)]
pub fn get_current_comm() -> Result<[u8; 16], i64> {
    // An 8-byte aligned buffer: LLVM zeroes it with two stores instead of a
    // call to `memset`.
    let mut comm = [0u64; 2];
    // SAFETY: the buffer is 16 writable bytes and we pass its size.
    let ret = unsafe { bpf_get_current_comm(comm.as_mut_ptr().cast(), 16) };
    if ret < 0 {
        return Err(ret);
    }
    // SAFETY: [u64; 2] and [u8; 16] have the same size and any bytes are valid u8s.
    Ok(unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>(comm) })
}

/// Reads a `T` from kernel memory (`bpf_probe_read_kernel`, 5.5+).
///
/// # Safety
/// `src` must be a kernel address; the helper never faults, but the bytes
/// read must be a valid `T`.
///
/// Minimum kernel version: 5.5.
#[inline(always)]
pub unsafe fn probe_read_kernel<T>(src: *const T) -> Result<T, i64> {
    let mut v = MaybeUninit::<T>::uninit();
    // SAFETY: `v` is writable for size_of::<T>() bytes; the caller vouches for `src`.
    let ret =
        unsafe { bpf_probe_read_kernel(v.as_mut_ptr().cast(), size_of::<T>() as u32, src.cast()) };
    if ret < 0 {
        return Err(ret);
    }
    // SAFETY: the helper filled all of `v` (it zeroes it on failure, handled above).
    Ok(unsafe { v.assume_init() })
}

/// Reads a `T` from user memory (`bpf_probe_read_user`, 5.5+).
///
/// # Safety
/// As [`probe_read_kernel`], for a user address.
///
/// Minimum kernel version: 5.5.
#[inline(always)]
pub unsafe fn probe_read_user<T>(src: *const T) -> Result<T, i64> {
    let mut v = MaybeUninit::<T>::uninit();
    // SAFETY: `v` is writable for size_of::<T>() bytes; the caller vouches for `src`.
    let ret =
        unsafe { bpf_probe_read_user(v.as_mut_ptr().cast(), size_of::<T>() as u32, src.cast()) };
    if ret < 0 {
        return Err(ret);
    }
    // SAFETY: the helper filled all of `v`.
    Ok(unsafe { v.assume_init() })
}

/// Copies a NUL-terminated kernel string into `dst`; returns the bytes
/// written including the NUL (`bpf_probe_read_kernel_str`).
///
/// # Safety
/// `src` must be a kernel address.
///
/// Minimum kernel version: 5.5.
#[inline(always)]
pub unsafe fn probe_read_kernel_str(src: *const u8, dst: &mut [u8]) -> Result<usize, i64> {
    // SAFETY: `dst` is writable for its length; the caller vouches for `src`.
    let ret =
        unsafe { bpf_probe_read_kernel_str(dst.as_mut_ptr().cast(), dst.len() as u32, src.cast()) };
    if ret < 0 { Err(ret) } else { Ok(ret as usize) }
}

/// Copies a NUL-terminated user string into `dst` (`bpf_probe_read_user_str`).
///
/// # Safety
/// `src` must be a user address.
///
/// Minimum kernel version: 5.5.
#[inline(always)]
pub unsafe fn probe_read_user_str(src: *const u8, dst: &mut [u8]) -> Result<usize, i64> {
    // SAFETY: `dst` is writable for its length; the caller vouches for `src`.
    let ret =
        unsafe { bpf_probe_read_user_str(dst.as_mut_ptr().cast(), dst.len() as u32, src.cast()) };
    if ret < 0 { Err(ret) } else { Ok(ret as usize) }
}

/// Redirects the packet to interface `ifindex` (`bpf_redirect`); returns the
/// verdict to return from the program.
///
/// Minimum kernel version: 4.4.
#[inline(always)]
pub fn redirect(ifindex: u32, flags: u64) -> i64 {
    // SAFETY: plain integer arguments.
    unsafe { bpf_redirect(ifindex, flags) }
}

/// Writes a formatted line to the trace pipe (`bpf_trace_printk`), with up
/// to three integer arguments. `fmt` must be NUL-terminated.
///
/// ```ignore
/// kiln_ebpf::helpers::trace_printk(b"pid %d\0", &[pid as u64]);
/// ```
///
/// Minimum kernel version: 4.1.
#[inline(always)]
pub fn trace_printk(fmt: &[u8], args: &[u64]) -> i64 {
    let a = |i: usize| args.get(i).copied().unwrap_or(0);
    // SAFETY: `fmt` is readable for its length; the kernel stops at the NUL
    // and rejects a format without one.
    unsafe { bpf_trace_printk(fmt.as_ptr().cast(), fmt.len() as u32, a(0), a(1), a(2)) }
}

/// Emits `data` to a perf event array's ring for this CPU
/// (`bpf_perf_event_output`); used by [`crate::maps::PerfEventArray`].
///
/// # Safety
/// `ctx` must be the program's context pointer and `map` a perf event array.
///
/// Minimum kernel version: 4.4.
#[inline(always)]
pub unsafe fn perf_event_output<T>(
    ctx: *mut c_void,
    map: *const c_void,
    flags: u64,
    data: &T,
) -> i64 {
    // SAFETY: `data` is readable for size_of::<T>() bytes; the caller vouches for ctx and map.
    unsafe {
        bpf_perf_event_output(
            ctx,
            map.cast_mut(),
            flags,
            (data as *const T).cast_mut().cast(),
            size_of::<T>() as u64,
        )
    }
}
