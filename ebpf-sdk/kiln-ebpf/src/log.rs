//! Logging from eBPF programs: `info!("pid {} opened {}", pid, name)`.
//!
//! Nothing is formatted in the kernel. Each call site stores its format
//! string once, at compile time, in the object's `.kiln_log` ELF section
//! (never loaded into the kernel: no code refers to it), keyed by a 32-bit id
//! hashed from the call site. At run time the program writes only the id, the
//! level and the arguments, as tagged little-endian values, into the ring
//! buffer map `KILN_LOGS`. The `kiln-log` crate reads the section from the
//! same object file and turns each record back into text.
//!
//! Verifier-friendly by construction: a record's size is a constant of the
//! call site (the sum of its argument types' sizes), so the reservation and
//! every write use constant offsets; strings read from kernel or user memory
//! ([`KernelStr`], [`UserStr`]) occupy a fixed-capacity slot whose valid
//! length is recorded beside it.
//!
//! Record layout (all little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | format id |
//! | 4 | level ([`Level`]) |
//! | 5 | number of arguments |
//! | 6..8 | record length in bytes |
//! | 8.. | per argument: a tag byte ([`tag`]), then its payload |
//!
//! Each entry sits in its own `.kiln_log.<hash>` section (see
//! `kiln_ebpf_macros::__log_section` for why). Entry layout: `b"KLG1"`, id `u32`, line `u32`, level `u8`,
//! nargs `u8`, then the lengths (`u16` each) of target (module path), file
//! and format string, then those three strings.
//!
//! Minimum kernel version: 5.8 (ring buffer).

use core::ffi::c_void;

use crate::helpers;
#[cfg(feature = "log")]
use crate::maps::RingBuf;

/// Size of the ring buffer the log records go through.
pub const LOG_RING_BYTES: usize = 1 << 16;

/// The ring buffer every log record goes to. Userspace finds it by this name
/// (`kiln_log::LOG_MAP`).
///
/// Behind the `log` feature: an exported map is kept by the linker even when
/// unused, and a program that does not log should not carry an empty ring.
#[cfg(feature = "log")]
#[unsafe(link_section = ".maps")]
#[unsafe(export_name = "KILN_LOGS")]
pub static KILN_LOGS: RingBuf<LOG_RING_BYTES> = RingBuf::new();

/// The most verbose level recorded (`Level as u8`; default: everything).
/// Userspace sets it before load (`kiln_log::LEVEL_GLOBAL`); it lives in
/// `.rodata`, which the loader freezes, so the verifier knows its value and
/// drops the code of the filtered-out call sites altogether.
#[cfg(feature = "log")]
#[unsafe(no_mangle)]
pub static KILN_LOG_LEVEL: crate::Global<u8> = crate::Global::new(Level::Trace as u8);

/// Log levels, numbered like the `log` crate's.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum Level {
    /// Errors: something failed.
    Error = 1,
    /// Warnings: something looks wrong.
    Warn = 2,
    /// Information: what the program is doing.
    Info = 3,
    /// Details for debugging.
    Debug = 4,
    /// The most verbose: every step.
    Trace = 5,
}

impl Level {
    /// The level a record's byte names (for decoders).
    pub const fn from_u8(v: u8) -> Option<Level> {
        Some(match v {
            1 => Level::Error,
            2 => Level::Warn,
            3 => Level::Info,
            4 => Level::Debug,
            5 => Level::Trace,
            _ => return None,
        })
    }

    /// The level's name, upper case (`INFO`), as the `log` crate prints it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }
}

impl core::fmt::Display for Level {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Argument type tags, as written before each argument's payload.
pub mod tag {
    /// `u8`: 1 byte.
    pub const U8: u8 = 1;
    /// `u16`: 2 bytes.
    pub const U16: u8 = 2;
    /// `u32`: 4 bytes.
    pub const U32: u8 = 3;
    /// `u64` (and `usize`): 8 bytes.
    pub const U64: u8 = 4;
    /// `i8`: 1 byte.
    pub const I8: u8 = 5;
    /// `i16`: 2 bytes.
    pub const I16: u8 = 6;
    /// `i32`: 4 bytes.
    pub const I32: u8 = 7;
    /// `i64` (and `isize`): 8 bytes.
    pub const I64: u8 = 8;
    /// `bool`: 1 byte, 0 or 1.
    pub const BOOL: u8 = 9;
    /// `u16` length, then that many bytes (a byte array of fixed size).
    pub const BYTES: u8 = 10;
    /// `u16` valid length, `u16` capacity, then `capacity` bytes of which the
    /// first `length` are a string read from kernel or user memory.
    pub const STR: u8 = 11;
}

/// Size of the record header.
pub const HEADER: usize = 8;
/// Size of a `.kiln_log` entry's fixed part.
pub const ENTRY_HEADER: usize = 20;
/// Magic bytes that start each `.kiln_log` entry.
pub const ENTRY_MAGIC: [u8; 4] = *b"KLG1";

/// A value that can be logged: a fixed-size encoding.
pub trait LogArg {
    /// Bytes written, tag included.
    const SIZE: usize;
    /// Writes the tag and payload at `dst`.
    ///
    /// # Safety
    /// `dst` must be writable for [`LogArg::SIZE`] bytes (any alignment).
    unsafe fn write(&self, dst: *mut u8);
}

macro_rules! int_arg {
    ($($t:ty => $tag:ident),*) => {$(
        impl LogArg for $t {
            const SIZE: usize = 1 + size_of::<$t>();
            #[inline(always)]
            unsafe fn write(&self, dst: *mut u8) {
                // SAFETY: the caller guarantees SIZE writable bytes at dst.
                unsafe {
                    dst.write(tag::$tag);
                    dst.add(1).cast::<[u8; size_of::<$t>()]>().write_unaligned(self.to_le_bytes());
                }
            }
        }
    )*};
}
int_arg!(u8 => U8, u16 => U16, u32 => U32, u64 => U64, i8 => I8, i16 => I16, i32 => I32, i64 => I64);

impl LogArg for usize {
    const SIZE: usize = <u64 as LogArg>::SIZE;
    #[inline(always)]
    unsafe fn write(&self, dst: *mut u8) {
        // SAFETY: forwarded with the same contract.
        unsafe { (*self as u64).write(dst) }
    }
}

impl LogArg for isize {
    const SIZE: usize = <i64 as LogArg>::SIZE;
    #[inline(always)]
    unsafe fn write(&self, dst: *mut u8) {
        // SAFETY: forwarded with the same contract.
        unsafe { (*self as i64).write(dst) }
    }
}

impl LogArg for bool {
    const SIZE: usize = 2;
    #[inline(always)]
    unsafe fn write(&self, dst: *mut u8) {
        // SAFETY: the caller guarantees 2 writable bytes.
        unsafe {
            dst.write(tag::BOOL);
            dst.add(1).write(*self as u8);
        }
    }
}

/// Byte arrays (a `comm`, an address): shown as text when they are UTF-8
/// (trailing NULs dropped), else as hex; `{:x}` always shows hex.
impl<const N: usize> LogArg for [u8; N] {
    const SIZE: usize = 3 + N;
    #[inline(always)]
    unsafe fn write(&self, dst: *mut u8) {
        // SAFETY: the caller guarantees 3 + N writable bytes.
        unsafe {
            dst.write(tag::BYTES);
            dst.add(1)
                .cast::<[u8; 2]>()
                .write_unaligned((N as u16).to_le_bytes());
            dst.add(3).cast::<[u8; N]>().write_unaligned(*self);
        }
    }
}

impl<T: LogArg + ?Sized> LogArg for &T {
    const SIZE: usize = T::SIZE;
    #[inline(always)]
    unsafe fn write(&self, dst: *mut u8) {
        // SAFETY: forwarded with the same contract.
        unsafe { (**self).write(dst) }
    }
}

/// A NUL-terminated string in kernel memory, copied (at most `N - 1` bytes)
/// with `bpf_probe_read_kernel_str` straight into the record.
///
/// Minimum kernel version: 5.5.
#[derive(Clone, Copy)]
pub struct KernelStr<const N: usize>(pub *const u8);

/// A NUL-terminated string in user memory (`bpf_probe_read_user_str`).
///
/// Minimum kernel version: 5.5.
#[derive(Clone, Copy)]
pub struct UserStr<const N: usize>(pub *const u8);

/// Writes a STR argument: the header, then lets `read` fill the slot and
/// records how many bytes it produced (without the NUL).
#[inline(always)]
unsafe fn write_str<const N: usize>(dst: *mut u8, read: impl FnOnce(*mut c_void) -> i64) {
    // SAFETY: the caller guarantees 5 + N writable bytes.
    unsafe {
        dst.write(tag::STR);
        let ret = read(dst.add(5).cast());
        // `ret` counts the NUL; a failed read records an empty string.
        let len = if ret > 0 { (ret - 1) as u16 } else { 0 };
        dst.add(1)
            .cast::<[u8; 2]>()
            .write_unaligned(len.to_le_bytes());
        dst.add(3)
            .cast::<[u8; 2]>()
            .write_unaligned((N as u16).to_le_bytes());
    }
}

impl<const N: usize> LogArg for KernelStr<N> {
    const SIZE: usize = 5 + N;
    #[inline(always)]
    unsafe fn write(&self, dst: *mut u8) {
        let src = self.0;
        // SAFETY: the slot is N writable bytes; the helper never faults on `src`.
        unsafe {
            write_str::<N>(dst, |slot| {
                helpers::bpf_probe_read_kernel_str(slot, N as u32, src.cast())
            })
        }
    }
}

impl<const N: usize> LogArg for UserStr<N> {
    const SIZE: usize = 5 + N;
    #[inline(always)]
    unsafe fn write(&self, dst: *mut u8) {
        let src = self.0;
        // SAFETY: as KernelStr.
        unsafe {
            write_str::<N>(dst, |slot| {
                helpers::bpf_probe_read_user_str(slot, N as u32, src.cast())
            })
        }
    }
}

/// A call site's arguments, as a tuple of references.
pub trait LogArgs {
    /// Bytes the encoded arguments take (tags included).
    const SIZE: usize;
    /// How many arguments there are.
    const COUNT: u8;
    /// # Safety
    /// `dst` must be writable for [`LogArgs::SIZE`] bytes.
    unsafe fn write(&self, dst: *mut u8);
}

macro_rules! tuple_args {
    ($n:expr; $($t:ident $i:tt),*) => {
        impl<$($t: LogArg),*> LogArgs for ($($t,)*) {
            const SIZE: usize = 0 $(+ $t::SIZE)*;
            const COUNT: u8 = $n;
            #[inline(always)]
            #[allow(unused_assignments, unused_mut, unused_variables)]
            unsafe fn write(&self, dst: *mut u8) {
                let mut off = 0;
                // SAFETY: the offsets add up to SIZE, which the caller provides.
                $( unsafe { self.$i.write(dst.add(off)) }; off += $t::SIZE; )*
            }
        }
    };
}
tuple_args!(0;);
tuple_args!(1; A 0);
tuple_args!(2; A 0, B 1);
tuple_args!(3; A 0, B 1, C 2);
tuple_args!(4; A 0, B 1, C 2, D 3);
tuple_args!(5; A 0, B 1, C 2, D 3, E 4);
tuple_args!(6; A 0, B 1, C 2, D 3, E 4, F 5);
tuple_args!(7; A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_args!(8; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

/// Reserves a record of the call site's constant size in [`KILN_LOGS`],
/// fills it and submits it. A full ring drops the record.
#[cfg(feature = "log")]
#[doc(hidden)]
#[inline(always)]
pub fn __emit<A: LogArgs>(id: u32, level: Level, args: A) {
    if level as u8 > KILN_LOG_LEVEL.get() {
        return;
    }
    let size = HEADER + A::SIZE;
    // SAFETY: KILN_LOGS is a ring buffer map; the size is a constant.
    let p = unsafe { helpers::bpf_ringbuf_reserve(KILN_LOGS.as_ptr(), size as u64, 0) };
    if p.is_null() {
        return;
    }
    let p = p.cast::<u8>();
    // SAFETY: the reservation is `size` writable bytes, 8-byte aligned; it is
    // submitted exactly once below.
    unsafe {
        p.cast::<[u8; 4]>().write(id.to_le_bytes());
        p.add(4).write(level as u8);
        p.add(5).write(A::COUNT);
        p.add(6)
            .cast::<[u8; 2]>()
            .write((size as u16).to_le_bytes());
        args.write(p.add(HEADER));
        helpers::bpf_ringbuf_submit(p.cast(), 0);
    }
}

/// FNV-1a over the call site and format string: the record's format id.
#[doc(hidden)]
pub const fn __id(target: &str, file: &str, line: u32, column: u32, fmt: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    h = fnv(h, target.as_bytes());
    h = fnv(h, file.as_bytes());
    h = fnv(h, &line.to_le_bytes());
    h = fnv(h, &column.to_le_bytes());
    fnv(h, fmt.as_bytes())
}

const fn fnv(mut h: u32, bytes: &[u8]) -> u32 {
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u32;
        h = h.wrapping_mul(0x0100_0193);
        i += 1;
    }
    h
}

/// The number of `{...}` placeholders in a format string (`{{` and `}}` are
/// escapes), checked against the argument count at compile time.
#[doc(hidden)]
pub const fn __placeholders(fmt: &str) -> usize {
    let b = fmt.as_bytes();
    let mut i = 0;
    let mut n = 0;
    while i < b.len() {
        if b[i] == b'{' {
            if i + 1 < b.len() && b[i + 1] == b'{' {
                i += 2;
                continue;
            }
            n += 1;
        }
        i += 1;
    }
    n
}

/// Builds a call site's `.kiln_log` entry.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub const fn __entry<const N: usize>(
    id: u32,
    line: u32,
    level: Level,
    nargs: usize,
    target: &str,
    file: &str,
    fmt: &str,
) -> [u8; N] {
    let mut out = [0u8; N];
    let mut at = 0;
    at = put(&mut out, at, &ENTRY_MAGIC);
    at = put(&mut out, at, &id.to_le_bytes());
    at = put(&mut out, at, &line.to_le_bytes());
    at = put(&mut out, at, &[level as u8, nargs as u8]);
    at = put(&mut out, at, &(target.len() as u16).to_le_bytes());
    at = put(&mut out, at, &(file.len() as u16).to_le_bytes());
    at = put(&mut out, at, &(fmt.len() as u16).to_le_bytes());
    at = put(&mut out, at, target.as_bytes());
    at = put(&mut out, at, file.as_bytes());
    put(&mut out, at, fmt.as_bytes());
    out
}

const fn put<const N: usize>(out: &mut [u8; N], mut at: usize, bytes: &[u8]) -> usize {
    let mut i = 0;
    while i < bytes.len() {
        out[at] = bytes[i];
        at += 1;
        i += 1;
    }
    at
}

/// Counts macro arguments.
#[doc(hidden)]
#[macro_export]
macro_rules! __log_count {
    () => { 0usize };
    ($head:expr $(, $tail:expr)*) => { 1usize + $crate::__log_count!($($tail),*) };
}

/// Without the `log` feature, logging is a compile error that says what to do.
#[cfg(not(feature = "log"))]
#[macro_export]
macro_rules! log {
    ($($t:tt)*) => {
        ::core::compile_error!(
            "kiln-ebpf: logging needs the `log` feature: kiln-ebpf = { ..., features = [\"log\"] }"
        )
    };
}

/// Logs at an explicit [`Level`](crate::log::Level):
/// `log!(Level::Info, "x = {}", x)`. A leading context argument
/// (`log!(Level::Info, ctx, "...")`) is accepted for aya-log compatibility
/// and not needed: ring buffers work from every program type.
///
/// Needs kiln-ebpf's `log` feature (it adds the [`KILN_LOGS`](crate::log::KILN_LOGS) map).
#[cfg(feature = "log")]
#[macro_export]
macro_rules! log {
    ($level:expr, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        const __KILN_FMT: &str = $fmt;
        const __KILN_NARGS: usize = $crate::__log_count!($($arg),*);
        const _: () = assert!(
            $crate::log::__placeholders(__KILN_FMT) == __KILN_NARGS,
            "kiln-ebpf log: the number of {{}} placeholders differs from the number of arguments"
        );
        const _: () = assert!(__KILN_NARGS <= 8, "kiln-ebpf log: at most 8 arguments");
        const __KILN_ID: u32 = $crate::log::__id(
            ::core::module_path!(), ::core::file!(), ::core::line!(), ::core::column!(), __KILN_FMT);
        const __KILN_LEN: usize = $crate::log::ENTRY_HEADER
            + ::core::module_path!().len() + ::core::file!().len() + __KILN_FMT.len();
        $crate::__log_section!($fmt;
            #[used]
            static __KILN_ENTRY: [u8; __KILN_LEN] = $crate::log::__entry::<__KILN_LEN>(
                __KILN_ID, ::core::line!(), $level, __KILN_NARGS,
                ::core::module_path!(), ::core::file!(), __KILN_FMT);
        );
        $crate::log::__emit(__KILN_ID, $level, ($(&$arg,)*));
    }};
    ($level:expr, $ctx:expr, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        let _ = &$ctx;
        $crate::log!($level, $fmt $(, $arg)*)
    }};
}

/// `error!("...", args)`: see [`log!`](crate::log!).
#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { $crate::log!($crate::log::Level::Error, $($t)*) };
}

/// `warn!("...", args)`: see [`log!`](crate::log!).
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log!($crate::log::Level::Warn, $($t)*) };
}

/// `info!("...", args)`: see [`log!`](crate::log!).
#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log!($crate::log::Level::Info, $($t)*) };
}

/// `debug!("...", args)`: see [`log!`](crate::log!).
#[macro_export]
macro_rules! debug {
    ($($t:tt)*) => { $crate::log!($crate::log::Level::Debug, $($t)*) };
}

/// `trace!("...", args)`: see [`log!`](crate::log!).
#[macro_export]
macro_rules! trace {
    ($($t:tt)*) => { $crate::log!($crate::log::Level::Trace, $($t)*) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_skip_escapes() {
        assert_eq!(__placeholders("pid {} opened {:x} {{literal}}"), 2);
        assert_eq!(__placeholders("none"), 0);
    }

    #[test]
    fn entry_layout() {
        const LEN: usize = ENTRY_HEADER + 1 + 2 + 4;
        let e: [u8; LEN] = __entry(7, 42, Level::Warn, 1, "t", "f.", "x={}");
        assert_eq!(&e[..4], b"KLG1");
        assert_eq!(u32::from_le_bytes(e[4..8].try_into().unwrap()), 7);
        assert_eq!(u32::from_le_bytes(e[8..12].try_into().unwrap()), 42);
        assert_eq!(e[12], 2);
        assert_eq!(e[13], 1);
        assert_eq!(&e[ENTRY_HEADER..], b"tf.x={}");
    }

    #[test]
    fn arg_encoding() {
        let mut buf = [0u8; 32];
        let args = (&0x1234u16, &-1i32, b"ab");
        assert_eq!(<(&u16, &i32, &[u8; 2]) as LogArgs>::SIZE, 3 + 5 + 5);
        // SAFETY: buf holds 32 bytes, more than SIZE.
        unsafe { args.write(buf.as_mut_ptr()) };
        assert_eq!(
            &buf[..13],
            &[
                tag::U16,
                0x34,
                0x12,
                tag::I32,
                0xff,
                0xff,
                0xff,
                0xff,
                tag::BYTES,
                2,
                0,
                b'a',
                b'b'
            ]
        );
    }
}
