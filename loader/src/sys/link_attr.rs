//! Attribute blocks of the attach commands: `BPF_LINK_CREATE`, `BPF_LINK_UPDATE`,
//! `BPF_LINK_DETACH`, `BPF_PROG_ATTACH`/`DETACH`/`QUERY`, `BPF_RAW_TRACEPOINT_OPEN`,
//! `BPF_ITER_CREATE`, plus the pin/get/info commands links need, and the
//! `struct bpf_link_info` reply.
//!
//! Every struct is `#[repr(C)]` with its padding as named fields, and goes to
//! the kernel inside an [`Attr`] (zero tail up to `ATTR_SIZE`), like the
//! structs of `attr.rs`. Field offsets follow `union bpf_attr` in
//! `include/uapi/linux/bpf.h`.

use super::attr::{Attr, AttrFields, ProgInfo};
use super::object::info_by_fd;
use super::{Cmd, SysError, bpf, bpf_fd};
use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// `BPF_F_ALLOW_OVERRIDE`, `BPF_F_ALLOW_MULTI`, ... for `BPF_PROG_ATTACH` and
/// the mprog (tcx, netkit) forms of `BPF_LINK_CREATE`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct AttachFlags(u32);

bitflags::bitflags! {
    impl AttachFlags: u32 {
        /// Minimum kernel version: 4.10.
        const ALLOW_OVERRIDE = 1 << 0;
        /// Minimum kernel version: 4.15.
        const ALLOW_MULTI = 1 << 1;
        /// Replace `replace_bpf_fd` atomically. Minimum kernel version: 5.6.
        const REPLACE = 1 << 2;
        /// mprog anchors (tcx, netkit). Minimum kernel version: 6.6.
        const BEFORE = 1 << 3;
        const AFTER = 1 << 4;
        /// `relative_fd` is an id, not an fd.
        const ID = 1 << 5;
        /// `relative_fd` names a link, not a program.
        const LINK = 1 << 13;
    }
}

/// `BPF_LINK_CREATE`'s target-specific tail (the anonymous union at offset 16).
/// Every variant spells out its padding, so writing one leaves no
/// uninitialised bytes in the block handed to the kernel.
#[derive(Clone, Copy)]
#[repr(C)]
pub union LinkCreateExtra {
    pub target_btf_id: u32,
    pub iter: IterExtra,
    pub perf_event: PerfEventExtra,
    pub kprobe_multi: KprobeMultiExtra,
    pub tracing: TracingExtra,
    pub netfilter: NetfilterExtra,
    pub mprog: MprogExtra,
    pub uprobe_multi: UprobeMultiExtra,
    raw: [u64; 6],
}

impl Default for LinkCreateExtra {
    fn default() -> Self {
        LinkCreateExtra { raw: [0; 6] }
    }
}

#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct IterExtra {
    pub iter_info: u64,
    pub iter_info_len: u32,
    pub _pad0: u32,
}

#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct PerfEventExtra {
    pub bpf_cookie: u64,
}

#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct KprobeMultiExtra {
    pub flags: u32,
    pub cnt: u32,
    pub syms: u64,
    pub addrs: u64,
    pub cookies: u64,
}

#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct TracingExtra {
    pub target_btf_id: u32,
    pub _pad0: u32,
    pub cookie: u64,
}

#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct NetfilterExtra {
    pub pf: u32,
    pub hooknum: u32,
    pub priority: i32,
    pub flags: u32,
}

/// tcx and netkit: `relative_fd`/`relative_id` and `expected_revision`.
#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct MprogExtra {
    pub relative_fd_or_id: u32,
    pub _pad0: u32,
    pub expected_revision: u64,
}

#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct UprobeMultiExtra {
    pub path: u64,
    pub offsets: u64,
    pub ref_ctr_offsets: u64,
    pub cookies: u64,
    pub cnt: u32,
    pub flags: u32,
    pub pid: u32,
    pub _pad0: u32,
}

/// `BPF_LINK_CREATE`.
#[derive(Clone, Copy, Default)]
#[repr(C)]
pub struct LinkCreateAttr {
    /// `prog_fd` (or `map_fd` for struct_ops).
    pub prog_fd: u32,
    /// `target_fd` or `target_ifindex`.
    pub target: u32,
    pub attach_type: u32,
    pub flags: u32,
    pub extra: LinkCreateExtra,
}

/// `BPF_LINK_UPDATE`.
#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct LinkUpdateAttr {
    pub link_fd: u32,
    pub new_prog_fd: u32,
    /// `BPF_F_REPLACE` when `old_prog_fd` must match.
    pub flags: u32,
    pub old_prog_fd: u32,
}

/// `BPF_LINK_DETACH` and `BPF_ITER_CREATE` (`link_fd`, `flags`).
#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct LinkFdAttr {
    pub link_fd: u32,
    pub flags: u32,
}

/// `BPF_PROG_ATTACH` / `BPF_PROG_DETACH`.
#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct ProgAttachAttr {
    /// `target_fd` or `target_ifindex`.
    pub target: u32,
    pub attach_bpf_fd: u32,
    pub attach_type: u32,
    pub attach_flags: u32,
    /// `replace_bpf_fd` or `relative_fd`/`relative_id`.
    pub replace_bpf_fd: u32,
    pub _pad0: u32,
    pub expected_revision: u64,
}

/// `BPF_PROG_QUERY`.
#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct ProgQueryAttr {
    pub target: u32,
    pub attach_type: u32,
    pub query_flags: u32,
    pub attach_flags: u32,
    pub prog_ids: u64,
    pub count: u32,
    pub _pad0: u32,
    pub prog_attach_flags: u64,
    pub link_ids: u64,
    pub link_attach_flags: u64,
    pub revision: u64,
}

/// `BPF_RAW_TRACEPOINT_OPEN`.
#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct RawTracepointOpenAttr {
    pub name: u64,
    pub prog_fd: u32,
    pub _pad0: u32,
    pub cookie: u64,
}

// SAFETY: each struct is #[repr(C)], made of integers (or a union of such
// structs) with every padding byte a named field; the asserts below pin sizes
// and offsets.
unsafe impl AttrFields for LinkCreateAttr {}
// SAFETY: as above.
unsafe impl AttrFields for LinkUpdateAttr {}
// SAFETY: as above.
unsafe impl AttrFields for LinkFdAttr {}
// SAFETY: as above.
unsafe impl AttrFields for ProgAttachAttr {}
// SAFETY: as above.
unsafe impl AttrFields for ProgQueryAttr {}
// SAFETY: as above.
unsafe impl AttrFields for RawTracepointOpenAttr {}

const _: () = {
    use std::mem::offset_of;
    assert!(size_of::<LinkCreateExtra>() == 48);
    assert!(size_of::<LinkCreateAttr>() == 64);
    assert!(offset_of!(LinkCreateAttr, extra) == 16);
    assert!(size_of::<UprobeMultiExtra>() == 48);
    assert!(offset_of!(UprobeMultiExtra, pid) == 40);
    assert!(offset_of!(MprogExtra, expected_revision) == 8);
    assert!(offset_of!(TracingExtra, cookie) == 8);
    assert!(offset_of!(ProgAttachAttr, expected_revision) == 24);
    assert!(offset_of!(ProgQueryAttr, prog_attach_flags) == 32);
    assert!(offset_of!(ProgQueryAttr, revision) == 56);
    assert!(offset_of!(RawTracepointOpenAttr, cookie) == 16);
};

pub(crate) fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    fd.as_raw_fd() as u32
}

/// The attach types whose `BPF_LINK_CREATE` extras carry user pointers the
/// kernel dereferences: iterators (`iter_info`), kprobe.multi and
/// kprobe.session (`syms`, `addrs`, `cookies`), uprobe.multi and
/// uprobe.session (`path`, `offsets`, `ref_ctr_offsets`, `cookies`). Every
/// other link kind's extras are integers and fds.
const POINTER_EXTRAS: [u32; 5] = [
    28, // BPF_TRACE_ITER
    42, // BPF_TRACE_KPROBE_MULTI
    48, // BPF_TRACE_UPROBE_MULTI
    56, // BPF_TRACE_KPROBE_SESSION
    57, // BPF_TRACE_UPROBE_SESSION
];

/// `BPF_LINK_CREATE` for the link kinds whose extras are integers only.
/// Minimum kernel version: 5.7.
///
/// Answers EINVAL without a syscall for the attach types whose extras the
/// kernel reads as pointers: those go through [`link_create_with_pointers`].
pub fn link_create(attr: LinkCreateAttr) -> Result<OwnedFd, SysError> {
    if POINTER_EXTRAS.contains(&attr.attach_type) {
        return Err(SysError {
            cmd: Cmd::LinkCreate,
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
        });
    }
    // SAFETY: for these attach types the kernel reads no pointer from `extra`.
    unsafe { link_create_with_pointers(attr) }
}

/// `BPF_LINK_CREATE` with user pointers in `extra` (iterators, kprobe and
/// uprobe multi/session links). Minimum kernel version: 5.7.
///
/// # Safety
/// Every pointer in `attr.extra` must be 0 or address a live buffer of the
/// length written beside it (`iter_info_len`, `cnt` elements of `syms`,
/// `addrs`, `cookies`, `offsets`, `ref_ctr_offsets`; `path` a NUL-terminated
/// string) for the duration of the call.
pub unsafe fn link_create_with_pointers(attr: LinkCreateAttr) -> Result<OwnedFd, SysError> {
    let mut attr = Attr::new(attr);
    // SAFETY: a BPF_LINK_CREATE block; its pointers follow the contract above.
    unsafe { bpf_fd(Cmd::LinkCreate, &mut attr) }
}

/// `BPF_LINK_UPDATE`. Minimum kernel version: 5.7.
pub fn link_update(
    link: BorrowedFd<'_>,
    new_prog: BorrowedFd<'_>,
    old_prog: Option<BorrowedFd<'_>>,
) -> Result<(), SysError> {
    let mut attr = LinkUpdateAttr {
        link_fd: fd_u32(link),
        new_prog_fd: fd_u32(new_prog),
        ..Default::default()
    };
    if let Some(old) = old_prog {
        attr.flags = AttachFlags::REPLACE.bits();
        attr.old_prog_fd = fd_u32(old);
    }
    let mut attr = Attr::new(attr);
    // SAFETY: a BPF_LINK_UPDATE block of plain fds, no pointers.
    unsafe { bpf(Cmd::LinkUpdate, &mut attr) }.map(drop)
}

/// `BPF_LINK_DETACH`. Minimum kernel version: 5.9.
pub fn link_detach(link: BorrowedFd<'_>) -> Result<(), SysError> {
    let mut attr = Attr::new(LinkFdAttr {
        link_fd: fd_u32(link),
        flags: 0,
    });
    // SAFETY: a BPF_LINK_DETACH block of one fd, no pointers.
    unsafe { bpf(Cmd::LinkDetach, &mut attr) }.map(drop)
}

/// `BPF_ITER_CREATE`: a readable fd producing the iterator's output. Minimum kernel version: 5.8.
pub fn iter_create(link: BorrowedFd<'_>) -> Result<OwnedFd, SysError> {
    let mut attr = Attr::new(LinkFdAttr {
        link_fd: fd_u32(link),
        flags: 0,
    });
    // SAFETY: a BPF_ITER_CREATE block of one fd; it returns a new fd.
    unsafe { bpf_fd(Cmd::IterCreate, &mut attr) }
}

/// `BPF_PROG_ATTACH` (`detach == false`) or `BPF_PROG_DETACH`.
pub fn prog_attach(attr: ProgAttachAttr, detach: bool) -> Result<(), SysError> {
    let mut attr = Attr::new(attr);
    let cmd = if detach {
        Cmd::ProgDetach
    } else {
        Cmd::ProgAttach
    };
    // SAFETY: a BPF_PROG_ATTACH/DETACH block of fds and flags, no pointers.
    unsafe { bpf(cmd, &mut attr) }.map(drop)
}

/// What `BPF_PROG_QUERY` reports for one hook.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryResult {
    /// The flags the hook was attached with (`BPF_F_ALLOW_MULTI`, ...).
    pub attach_flags: u32,
    /// The attached programs' ids, in the order they run.
    pub prog_ids: Vec<u32>,
    /// Link ids parallel to `prog_ids` (0 for a non-link attachment); empty on kernels before 6.6.
    pub link_ids: Vec<u32>,
    /// The hook's revision, bumped by every change (tcx, netkit; 0 elsewhere).
    pub revision: u64,
}

/// `BPF_PROG_QUERY` for programs attached at `target` (a cgroup/netns fd or an
/// ifindex) with `attach_type`. Minimum kernel version: 4.15.
pub fn prog_query(target: u32, attach_type: u32) -> Result<QueryResult, SysError> {
    let mut attr = Attr::new(ProgQueryAttr {
        target,
        attach_type,
        ..Default::default()
    });
    // First ask for the count, then for the ids: the set may grow in between,
    // which the kernel reports as ENOSPC; retry a few times.
    // SAFETY: null id buffers with count 0 make the kernel only write `count`.
    unsafe { bpf(Cmd::ProgQuery, &mut attr) }?;
    for _ in 0..4 {
        let n = attr.get().count as usize + 1;
        let mut ids = vec![0u32; n];
        let mut links = vec![0u32; n];
        let fields = ProgQueryAttr {
            target,
            attach_type,
            prog_ids: ids.as_mut_ptr() as u64,
            link_ids: links.as_mut_ptr() as u64,
            count: n as u32,
            ..Default::default()
        };
        let mut q = Attr::new(fields);
        // SAFETY: `ids` and `links` hold `count` u32 each and outlive the call.
        // Kernels that do not know `link_ids` reject the nonzero tail with
        // E2BIG, handled below.
        match unsafe { bpf(Cmd::ProgQuery, &mut q) } {
            Ok(_) => {
                let q = q.get();
                let got = q.count as usize;
                ids.truncate(got);
                links.truncate(got);
                return Ok(QueryResult {
                    attach_flags: q.attach_flags,
                    prog_ids: ids,
                    link_ids: links,
                    revision: q.revision,
                });
            }
            Err(e) if e.errno() == libc::ENOSPC => {
                attr = Attr::new(ProgQueryAttr {
                    count: q.get().count,
                    ..fields
                });
                continue;
            }
            Err(e) if e.errno() == libc::E2BIG || e.errno() == libc::EINVAL => {
                // Older kernel (before 6.6): no link_ids field.
                let mut q = Attr::new(ProgQueryAttr {
                    link_ids: 0,
                    ..fields
                });
                // SAFETY: as above, without the link id buffer.
                unsafe { bpf(Cmd::ProgQuery, &mut q) }?;
                let q = q.get();
                ids.truncate(q.count as usize);
                return Ok(QueryResult {
                    attach_flags: q.attach_flags,
                    prog_ids: ids,
                    link_ids: Vec::new(),
                    revision: 0,
                });
            }
            Err(e) => return Err(e),
        }
    }
    Err(SysError {
        cmd: Cmd::ProgQuery,
        source: std::io::Error::from_raw_os_error(libc::ENOSPC),
    })
}

/// `BPF_RAW_TRACEPOINT_OPEN`; `name` is `None` for tp_btf/fentry/fexit/lsm
/// programs whose target came with the load. Minimum kernel version: 4.17.
pub fn raw_tracepoint_open(
    prog: BorrowedFd<'_>,
    name: Option<&CStr>,
    cookie: u64,
) -> Result<OwnedFd, SysError> {
    let mut attr = Attr::new(RawTracepointOpenAttr {
        name: name.map_or(0, |n| n.as_ptr() as u64),
        prog_fd: fd_u32(prog),
        cookie,
        ..Default::default()
    });
    // SAFETY: `name` is a NUL-terminated string alive across the call.
    unsafe { bpf_fd(Cmd::RawTracepointOpen, &mut attr) }
}

/// The id of a program from its fd.
pub fn prog_id(prog: BorrowedFd<'_>) -> Result<u32, SysError> {
    Ok(info_by_fd::<ProgInfo>(prog)?.id)
}

/// The native-endian u32 at byte `offset` of an info buffer (0 past its end).
pub fn u32_at(buf: &[u64], offset: usize) -> u32 {
    let word = buf.get(offset / 8).copied().unwrap_or(0).to_ne_bytes();
    let i = offset % 8;
    u32::from_ne_bytes([word[i], word[i + 1], word[i + 2], word[i + 3]])
}

/// The u64 at byte `offset` (8-aligned) of an info buffer.
pub fn u64_at(buf: &[u64], offset: usize) -> u64 {
    buf.get(offset / 8).copied().unwrap_or(0)
}

/// Whether this kernel knows `BPF_LINK_CREATE` (5.7): a bad program fd
/// answers EBADF where the command exists, EINVAL where it does not.
pub fn link_create_known() -> bool {
    match link_create(LinkCreateAttr {
        prog_fd: u32::MAX,
        ..Default::default()
    }) {
        Ok(_) => true,
        Err(e) => e.errno() == libc::EBADF,
    }
}

/// Whether this kernel knows `BPF_RAW_TRACEPOINT_OPEN` (4.17): a bad
/// program fd answers EBADF where the command exists.
pub fn raw_tracepoint_open_known() -> bool {
    let mut attr = Attr::new(RawTracepointOpenAttr {
        prog_fd: u32::MAX,
        ..Default::default()
    });
    // SAFETY: integers only (a NULL name); a success would return a new fd,
    // which `bpf_fd` owns and closes.
    match unsafe { bpf_fd(Cmd::RawTracepointOpen, &mut attr) } {
        Ok(_) => true,
        Err(e) => e.errno() == libc::EBADF,
    }
}
