//! Wrappers over the map commands of bpf(2).
//!
//! The kernel reads and writes as many bytes as the map's own definition
//! says, whatever buffer it is handed. The element calls therefore take the
//! map's [`ElemSizes`] and check every slice against them, and are `unsafe`:
//! the sizes must be the map's real ones, which only the caller (a `Map`,
//! whose sizes come from the map's creation or the kernel's info) can promise.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::attr::{Attr, BPF_F_TOKEN_FD, MapBatchAttr, MapCreateAttr, MapElemAttr};
use super::{Cmd, SysError, bpf, bpf_fd};

/// Creates a map.
/// With a token in scope ([`super::token::with_token`]), the map is created through it.
pub fn map_create(mut attr: MapCreateAttr) -> Result<OwnedFd, SysError> {
    if let Some(token) = super::token::in_scope()
        && attr.map_flags & BPF_F_TOKEN_FD == 0
    {
        attr.map_token_fd = token;
        attr.map_flags |= BPF_F_TOKEN_FD;
    }
    let mut attr = Attr::new(attr);
    // SAFETY: MAP_CREATE only reads integers from the attribute block.
    unsafe { bpf_fd(Cmd::MapCreate, &mut attr) }
}

/// Sizes of one element's buffers, as the kernel will read and write them.
/// Only trustworthy when taken from the map's definition (see the `# Safety`
/// sections below).
#[derive(Clone, Copy, Debug)]
pub struct ElemSizes {
    pub key: usize,
    /// For per-CPU maps: the rounded value size times the number of possible CPUs.
    pub value: usize,
}

fn short(cmd: Cmd) -> SysError {
    SysError {
        cmd,
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
    }
}

fn check(
    cmd: Cmd,
    sizes: ElemSizes,
    key: Option<usize>,
    value: Option<usize>,
) -> Result<(), SysError> {
    if key.is_some_and(|k| k < sizes.key) || value.is_some_and(|v| v < sizes.value) {
        return Err(short(cmd));
    }
    Ok(())
}

/// One element command with raw key and value addresses.
///
/// # Safety
/// `key` and `value` are 0 or the addresses of live buffers of at least the
/// map's key and value buffer sizes (writable where `cmd` writes them).
unsafe fn elem(
    cmd: Cmd,
    fd: BorrowedFd<'_>,
    key: u64,
    value: u64,
    flags: u64,
) -> Result<i64, SysError> {
    let mut attr = Attr::new(MapElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key,
        value,
        flags,
        ..Default::default()
    });
    // SAFETY: the addresses are this function's contract.
    unsafe { bpf(cmd, &mut attr) }
}

fn ptr(s: Option<&[u8]>) -> u64 {
    s.map_or(0, |s| s.as_ptr() as u64)
}

/// BPF_MAP_LOOKUP_ELEM, or with `and_delete` BPF_MAP_LOOKUP_AND_DELETE_ELEM
/// (queue/stack pop). `Ok(false)` when the key is absent or the map empty.
/// `key` is `None` for keyless maps (queue/stack).
///
/// # Safety
/// `sizes` must be at least the key size and the value buffer size (for
/// per-CPU maps: the value size rounded up to 8, times the possible CPUs)
/// the kernel uses for the map behind `fd`: the slices are checked against
/// `sizes`, the kernel copies by the map's definition.
pub unsafe fn lookup(
    fd: BorrowedFd<'_>,
    sizes: ElemSizes,
    key: Option<&[u8]>,
    value: &mut [u8],
    flags: u64,
    and_delete: bool,
) -> Result<bool, SysError> {
    let cmd = if and_delete {
        Cmd::MapLookupAndDeleteElem
    } else {
        Cmd::MapLookupElem
    };
    check(cmd, sizes, key.map(<[u8]>::len), Some(value.len()))?;
    // SAFETY: the slices were checked against `sizes`, which the caller promises are the map's.
    not_found_is_false(unsafe { elem(cmd, fd, ptr(key), value.as_mut_ptr() as u64, flags) })
}

/// BPF_MAP_UPDATE_ELEM. `key` is `None` for keyless maps (queue/stack push, bloom filter).
///
/// # Safety
/// `sizes` must be at least the key size and the value buffer size (for
/// per-CPU maps: the value size rounded up to 8, times the possible CPUs)
/// the kernel uses for the map behind `fd`: the slices are checked against
/// `sizes`, the kernel copies by the map's definition.
pub unsafe fn update(
    fd: BorrowedFd<'_>,
    sizes: ElemSizes,
    key: Option<&[u8]>,
    value: &[u8],
    flags: u64,
) -> Result<(), SysError> {
    let cmd = Cmd::MapUpdateElem;
    check(cmd, sizes, key.map(<[u8]>::len), Some(value.len()))?;
    // SAFETY: the slices were checked against `sizes`, which the caller promises are the map's.
    unsafe { elem(cmd, fd, ptr(key), value.as_ptr() as u64, flags) }.map(drop)
}

/// BPF_MAP_DELETE_ELEM. `Ok(false)` when the key was absent.
///
/// # Safety
/// `sizes` must be at least the key size and the value buffer size (for
/// per-CPU maps: the value size rounded up to 8, times the possible CPUs)
/// the kernel uses for the map behind `fd`: the slices are checked against
/// `sizes`, the kernel copies by the map's definition.
pub unsafe fn delete(fd: BorrowedFd<'_>, sizes: ElemSizes, key: &[u8]) -> Result<bool, SysError> {
    let cmd = Cmd::MapDeleteElem;
    check(cmd, sizes, Some(key.len()), None)?;
    // SAFETY: the slices were checked against `sizes`, which the caller promises are the map's.
    not_found_is_false(unsafe { elem(cmd, fd, key.as_ptr() as u64, 0, 0) })
}

/// BPF_MAP_GET_NEXT_KEY: the key after `key` (the first key for `None`).
/// `Ok(false)` at the end.
///
/// # Safety
/// `sizes` must be at least the key size and the value buffer size (for
/// per-CPU maps: the value size rounded up to 8, times the possible CPUs)
/// the kernel uses for the map behind `fd`: the slices are checked against
/// `sizes`, the kernel copies by the map's definition.
pub unsafe fn next_key(
    fd: BorrowedFd<'_>,
    sizes: ElemSizes,
    key: Option<&[u8]>,
    next: &mut [u8],
) -> Result<bool, SysError> {
    let cmd = Cmd::MapGetNextKey;
    if key.is_some_and(|k| k.len() < sizes.key) || next.len() < sizes.key {
        return Err(short(cmd));
    }
    // SAFETY: the slices were checked against `sizes`, which the caller promises are the map's.
    not_found_is_false(unsafe { elem(cmd, fd, ptr(key), next.as_mut_ptr() as u64, 0) })
}

/// BPF_MAP_FREEZE: no more writes from user space.
pub fn freeze(fd: BorrowedFd<'_>) -> Result<(), SysError> {
    // SAFETY: no key or value address.
    unsafe { elem(Cmd::MapFreeze, fd, 0, 0, 0) }.map(drop)
}

fn not_found_is_false(r: Result<i64, SysError>) -> Result<bool, SysError> {
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.errno() == libc::ENOENT => Ok(false),
        Err(e) => Err(e),
    }
}

/// Buffers of one batch call. `keys`/`values` hold `count` elements; the
/// batch tokens are `key_size` bytes (hash maps) or 4 bytes (arrays): callers
/// pass buffers of the key size, which is at least that.
pub struct Batch<'a> {
    pub in_batch: Option<&'a [u8]>,
    pub out_batch: Option<&'a mut [u8]>,
    pub keys: &'a mut [u8],
    pub values: &'a mut [u8],
    pub count: u32,
    pub elem_flags: u64,
}

/// BPF_MAP_{LOOKUP,LOOKUP_AND_DELETE,UPDATE,DELETE}_BATCH. Returns the number
/// of elements processed and whether the map is exhausted (ENOENT).
///
/// # Safety
/// `sizes` must be at least the key size and the value buffer size (for
/// per-CPU maps: the value size rounded up to 8, times the possible CPUs)
/// the kernel uses for the map behind `fd`: the slices are checked against
/// `sizes`, the kernel copies by the map's definition.
pub unsafe fn batch(
    cmd: Cmd,
    fd: BorrowedFd<'_>,
    sizes: ElemSizes,
    b: Batch<'_>,
) -> Result<(u32, bool), SysError> {
    let n = b.count as usize;
    let token_ok = |t: Option<usize>| t.is_none_or(|len| len >= sizes.key.max(4));
    let needs_values = cmd != Cmd::MapDeleteBatch;
    if b.keys.len() < n * sizes.key
        || (needs_values && b.values.len() < n * sizes.value)
        || !token_ok(b.in_batch.map(<[u8]>::len))
        || !token_ok(b.out_batch.as_deref().map(<[u8]>::len))
    {
        return Err(short(cmd));
    }
    let mut attr = Attr::new(MapBatchAttr {
        in_batch: ptr(b.in_batch),
        out_batch: b.out_batch.map_or(0, |s| s.as_mut_ptr() as u64),
        keys: b.keys.as_mut_ptr() as u64,
        values: if needs_values {
            b.values.as_mut_ptr() as u64
        } else {
            0
        },
        count: b.count,
        map_fd: fd.as_raw_fd() as u32,
        elem_flags: b.elem_flags,
        flags: 0,
    });
    // SAFETY: the buffers were checked above to hold `count` keys and values
    // and a full batch token each; the kernel writes `count` back.
    match unsafe { bpf(cmd, &mut attr) } {
        Ok(_) => Ok((attr.get().count, false)),
        Err(e) if e.errno() == libc::ENOENT => Ok((attr.get().count, true)),
        Err(e) => Err(e),
    }
}
