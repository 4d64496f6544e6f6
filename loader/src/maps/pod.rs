//! Plain-old-data: the types that may be copied to and from map keys and values.

/// A type whose bytes can be handed to the kernel and read back: `#[repr(C)]`
/// (or a primitive), no padding bytes, no pointers or references, and every
/// bit pattern a valid value.
///
/// # Safety
/// Implement only for types meeting all of the above: the loader reads values
/// back from kernel-written bytes with no validation.
pub unsafe trait Pod: Copy + 'static {}

macro_rules! pod {
    ($($t:ty),*) => { $(
        // SAFETY: primitive integers accept every bit pattern and have no padding.
        unsafe impl Pod for $t {}
    )* };
}
pod!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize
);

// SAFETY: an array of Pod has no padding between elements and accepts every bit pattern.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// The bytes of a Pod value.
pub fn bytes_of<T: Pod>(v: &T) -> &[u8] {
    // SAFETY: `T: Pod` has no padding, so all `size_of::<T>()` bytes are initialised.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) }
}

/// The bytes of a Pod value, writable: any bytes written leave a valid `T`.
pub(crate) fn bytes_of_mut<T: Pod>(v: &mut T) -> &mut [u8] {
    // SAFETY: `T: Pod` has no padding and accepts every bit pattern, so the
    // bytes are initialised and whatever is written to them is a valid `T`.
    unsafe { std::slice::from_raw_parts_mut(v as *mut T as *mut u8, std::mem::size_of::<T>()) }
}

/// A `T` of all zero bytes.
pub(crate) fn zeroed<T: Pod>() -> T {
    // SAFETY: `T: Pod` accepts every bit pattern, all zeros included.
    unsafe { std::mem::zeroed() }
}

/// Reads a Pod value from the front of `bytes` (unaligned). `None` when too short.
pub fn from_bytes<T: Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: length checked above; `T: Pod` accepts any bit pattern; read_unaligned has no alignment need.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const T) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let v: [u32; 2] = [1, 0xdead_beef];
        assert_eq!(from_bytes::<[u32; 2]>(bytes_of(&v)), Some(v));
        assert_eq!(from_bytes::<u64>(&[1, 2, 3]), None);
    }
}
