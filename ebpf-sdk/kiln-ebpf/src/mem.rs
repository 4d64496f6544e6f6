//! `memset`, `memcpy`, `memmove` and `memcmp` for the BPF target.
//!
//! LLVM lowers small, aligned copies and fills to plain loads and stores but
//! emits calls to these symbols for unaligned or larger ones; the kernel has
//! no such functions, so an object that still references them fails to load
//! ("failed to find BTF for extern 'memset'"). Debian's prebuilt
//! `compiler_builtins` for bpfel does not provide them either. These byte
//! loops are bounded by their length argument, which the verifier (5.3+)
//! accepts; with LTO they are usually inlined.
//!
//! Unlike C's, they return nothing: returning the destination (often a stack
//! address) makes the verifier reject the program ("cannot return stack
//! pointer to the caller"), and compiler-generated calls ignore the result.

#[cfg(target_arch = "bpf")]
mod imp {
    #[unsafe(no_mangle)]
    unsafe extern "C" fn memset(s: *mut u8, c: i32, n: usize) {
        let mut i = 0;
        while i < n {
            // SAFETY: the caller (compiler-generated) guarantees `s..s+n` is writable.
            unsafe { core::ptr::write_volatile(s.add(i), c as u8) };
            i += 1;
        }
    }

    #[unsafe(no_mangle)]
    unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) {
        let mut i = 0;
        while i < n {
            // SAFETY: the caller guarantees both ranges are valid for `n` bytes.
            unsafe { core::ptr::write_volatile(dst.add(i), core::ptr::read_volatile(src.add(i))) };
            i += 1;
        }
    }

    #[unsafe(no_mangle)]
    unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) {
        if (dst as usize) <= (src as usize) {
            // SAFETY: forward copy is correct when dst precedes src.
            unsafe { memcpy(dst, src, n) };
            return;
        }
        let mut i = n;
        while i > 0 {
            i -= 1;
            // SAFETY: the caller guarantees both ranges are valid for `n` bytes.
            unsafe { core::ptr::write_volatile(dst.add(i), core::ptr::read_volatile(src.add(i))) };
        }
    }

    #[unsafe(no_mangle)]
    unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        let mut i = 0;
        while i < n {
            // SAFETY: the caller guarantees both ranges are readable for `n` bytes.
            let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
            if x != y {
                return x as i32 - y as i32;
            }
            i += 1;
        }
        0
    }

    #[unsafe(no_mangle)]
    unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        // SAFETY: same contract as memcmp.
        unsafe { memcmp(a, b, n) }
    }
}
