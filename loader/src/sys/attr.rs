//! `union bpf_attr`, one `#[repr(C)]` struct per command family, and the
//! `bpf_*_info` structs of BPF_OBJ_GET_INFO_BY_FD.
//!
//! Every struct spells out its padding as named fields, so a value built with
//! `Default` has no uninitialised bytes; [`Attr`] places it at the front of a
//! zeroed [`ATTR_SIZE`] buffer so the kernel's "unknown tail is zero" check holds.
//! Layouts follow `include/uapi/linux/bpf.h`; the unit tests pin the offsets.

use super::ATTR_SIZE;

/// Marker for attribute structs: `#[repr(C)]`, only integer fields (including
/// explicit padding), so every bit pattern is a valid value.
///
/// # Safety
/// Implement only for `#[repr(C)]` structs made solely of integers and integer
/// arrays, with no implicit padding, no larger than [`ATTR_SIZE`].
pub unsafe trait AttrFields: Copy {}

/// An attribute block: `T` followed by zeros up to [`ATTR_SIZE`].
#[repr(C, align(8))]
pub union Attr<T: AttrFields> {
    fields: T,
    bytes: [u8; ATTR_SIZE],
}

impl<T: AttrFields> Attr<T> {
    pub fn new(fields: T) -> Self {
        const { assert!(std::mem::size_of::<T>() <= ATTR_SIZE) };
        let mut attr = Attr {
            bytes: [0; ATTR_SIZE],
        };
        // Writing a union field is safe; the rest of `bytes` stays zero.
        attr.fields = fields;
        attr
    }

    /// The fields, including whatever the kernel wrote back.
    pub fn get(&self) -> T {
        // SAFETY: the buffer was fully initialised in `new` (and the kernel only
        // writes integers into it); `T: AttrFields` accepts any bit pattern.
        unsafe { self.fields }
    }
}

macro_rules! attr_fields {
    ($($t:ty),* $(,)?) => {
        $(
            // SAFETY: each struct below is #[repr(C)], integers only, padding explicit;
            // the layout tests check sizes and offsets.
            unsafe impl AttrFields for $t {}
        )*
    };
}

attr_fields!(
    MapCreateAttr,
    MapElemAttr,
    MapBatchAttr,
    ProgLoadAttr,
    ObjPinAttr,
    InfoByFdAttr,
    GetIdAttr,
    BtfLoadAttr,
    TestRunAttr,
    ProgBindMapAttr,
    TokenCreateAttr,
);

/// `BPF_F_TOKEN_FD`: the token fd field of MAP_CREATE, BTF_LOAD or PROG_LOAD
/// is set (in `map_flags`, `btf_flags`, `prog_flags`). Minimum kernel version: 6.9.
pub const BPF_F_TOKEN_FD: u32 = 1 << 16;

/// Copies `name` into a kernel object name (15 bytes + NUL), keeping only the
/// characters the kernel accepts (alphanumerics, `_`, `.`).
pub fn object_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (slot, b) in out
        .iter_mut()
        .zip(
            name.bytes()
                .filter(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.'),
        )
        .take(15)
    {
        *slot = b;
    }
    out
}

/// BPF_MAP_CREATE.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct MapCreateAttr {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub inner_map_fd: u32,
    pub numa_node: u32,
    pub map_name: [u8; 16],
    pub map_ifindex: u32,
    pub btf_fd: u32,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
    pub btf_vmlinux_value_type_id: u32,
    pub map_extra: u64,
    pub value_type_btf_obj_fd: i32,
    pub map_token_fd: i32,
}

/// BPF_MAP_{LOOKUP,UPDATE,DELETE}_ELEM, GET_NEXT_KEY, LOOKUP_AND_DELETE_ELEM, FREEZE.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct MapElemAttr {
    pub map_fd: u32,
    pub _pad0: u32,
    pub key: u64,
    /// `value` or `next_key`.
    pub value: u64,
    pub flags: u64,
}

/// BPF_MAP_*_BATCH.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct MapBatchAttr {
    pub in_batch: u64,
    pub out_batch: u64,
    pub keys: u64,
    pub values: u64,
    pub count: u32,
    pub map_fd: u32,
    pub elem_flags: u64,
    pub flags: u64,
}

/// BPF_PROG_LOAD.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct ProgLoadAttr {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub prog_name: [u8; 16],
    pub prog_ifindex: u32,
    pub expected_attach_type: u32,
    pub prog_btf_fd: u32,
    pub func_info_rec_size: u32,
    pub func_info: u64,
    pub func_info_cnt: u32,
    pub line_info_rec_size: u32,
    pub line_info: u64,
    pub line_info_cnt: u32,
    pub attach_btf_id: u32,
    /// `attach_prog_fd` or `attach_btf_obj_fd`.
    pub attach_prog_fd: u32,
    pub core_relo_cnt: u32,
    pub fd_array: u64,
    pub core_relos: u64,
    pub core_relo_rec_size: u32,
    pub log_true_size: u32,
    /// With `BPF_F_TOKEN_FD` in `prog_flags` (6.9+).
    pub prog_token_fd: i32,
    pub _pad0: u32,
}

/// BPF_OBJ_PIN, BPF_OBJ_GET.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct ObjPinAttr {
    pub pathname: u64,
    pub bpf_fd: u32,
    pub file_flags: u32,
}

/// BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct InfoByFdAttr {
    pub bpf_fd: u32,
    pub info_len: u32,
    pub info: u64,
}

/// BPF_{PROG,MAP,BTF,LINK}_GET_NEXT_ID and *_GET_FD_BY_ID.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct GetIdAttr {
    /// `start_id`, or `prog_id`/`map_id`/`btf_id`/`link_id`.
    pub id: u32,
    pub next_id: u32,
    pub open_flags: u32,
}

/// BPF_BTF_LOAD.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct BtfLoadAttr {
    pub btf: u64,
    pub btf_log_buf: u64,
    pub btf_size: u32,
    pub btf_log_size: u32,
    pub btf_log_level: u32,
    pub btf_log_true_size: u32,
    /// `BPF_F_TOKEN_FD` when `btf_token_fd` is set (6.9+).
    pub btf_flags: u32,
    pub btf_token_fd: i32,
}

/// BPF_TOKEN_CREATE (6.9+): `bpffs_fd` is the root of a bpffs mounted with
/// `delegate_*` options in the caller's user namespace.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct TokenCreateAttr {
    pub flags: u32,
    pub bpffs_fd: u32,
}

/// BPF_PROG_TEST_RUN.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct TestRunAttr {
    pub prog_fd: u32,
    pub retval: u32,
    pub data_size_in: u32,
    pub data_size_out: u32,
    pub data_in: u64,
    pub data_out: u64,
    pub repeat: u32,
    pub duration: u32,
    pub ctx_size_in: u32,
    pub ctx_size_out: u32,
    pub ctx_in: u64,
    pub ctx_out: u64,
    pub flags: u32,
    pub cpu: u32,
    pub batch_size: u32,
    pub _pad0: u32,
}

/// BPF_PROG_BIND_MAP.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct ProgBindMapAttr {
    pub prog_fd: u32,
    pub map_fd: u32,
    pub flags: u32,
}

/// Marker for `bpf_*_info` structs: integers only, any bit pattern valid.
///
/// # Safety
/// As for [`AttrFields`] (without the size bound).
pub unsafe trait InfoStruct: Copy + Default {}

// SAFETY: the info structs below are #[repr(C)], integers only, padding explicit.
unsafe impl InfoStruct for ProgInfo {}
// SAFETY: as above.
unsafe impl InfoStruct for MapInfoRaw {}
// SAFETY: as above.
unsafe impl InfoStruct for BtfInfoRaw {}
// SAFETY: as above.
unsafe impl InfoStruct for LinkInfoRaw {}

/// `struct bpf_prog_info`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct ProgInfo {
    pub prog_type: u32,
    pub id: u32,
    pub tag: [u8; 8],
    pub jited_prog_len: u32,
    pub xlated_prog_len: u32,
    pub jited_prog_insns: u64,
    pub xlated_prog_insns: u64,
    pub load_time: u64,
    pub created_by_uid: u32,
    pub nr_map_ids: u32,
    pub map_ids: u64,
    pub name: [u8; 16],
    pub ifindex: u32,
    /// Bit 0: `gpl_compatible`.
    pub flags: u32,
    pub netns_dev: u64,
    pub netns_ino: u64,
    pub nr_jited_ksyms: u32,
    pub nr_jited_func_lens: u32,
    pub jited_ksyms: u64,
    pub jited_func_lens: u64,
    pub btf_id: u32,
    pub func_info_rec_size: u32,
    pub func_info: u64,
    pub nr_func_info: u32,
    pub nr_line_info: u32,
    pub line_info: u64,
    pub jited_line_info: u64,
    pub nr_jited_line_info: u32,
    pub line_info_rec_size: u32,
    pub jited_line_info_rec_size: u32,
    pub nr_prog_tags: u32,
    pub prog_tags: u64,
    pub run_time_ns: u64,
    pub run_cnt: u64,
    pub recursion_misses: u64,
    pub verified_insns: u32,
    pub attach_btf_obj_id: u32,
    pub attach_btf_id: u32,
    pub _pad0: u32,
}

/// `struct bpf_map_info`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct MapInfoRaw {
    pub map_type: u32,
    pub id: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub name: [u8; 16],
    pub ifindex: u32,
    pub btf_vmlinux_value_type_id: u32,
    pub netns_dev: u64,
    pub netns_ino: u64,
    pub btf_id: u32,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
    pub btf_vmlinux_id: u32,
    pub map_extra: u64,
}

/// `struct bpf_btf_info`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct BtfInfoRaw {
    pub btf: u64,
    pub btf_size: u32,
    pub id: u32,
    pub name: u64,
    pub name_len: u32,
    pub kernel_btf: u32,
}

/// `struct bpf_link_info`: the common head and the per-type union as raw words
/// (the `links` module decodes the union for its link kinds).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct LinkInfoRaw {
    pub link_type: u32,
    pub id: u32,
    pub prog_id: u32,
    pub _pad0: u32,
    pub data: [u64; 8],
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_uapi() {
        assert_eq!(offset_of!(MapCreateAttr, map_name), 28);
        assert_eq!(offset_of!(MapCreateAttr, btf_fd), 48);
        assert_eq!(offset_of!(MapCreateAttr, map_extra), 64);
        assert_eq!(size_of::<MapCreateAttr>(), 80);
        assert_eq!(offset_of!(MapCreateAttr, map_token_fd), 76);
        assert_eq!(offset_of!(ProgLoadAttr, prog_token_fd), 144);
        assert_eq!(offset_of!(BtfLoadAttr, btf_flags), 32);
        assert_eq!(offset_of!(BtfLoadAttr, btf_token_fd), 36);
        assert_eq!(offset_of!(TokenCreateAttr, bpffs_fd), 4);
        assert_eq!(size_of::<MapElemAttr>(), 32);
        assert_eq!(offset_of!(MapBatchAttr, count), 32);
        assert_eq!(offset_of!(MapBatchAttr, elem_flags), 40);
        assert_eq!(offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(offset_of!(ProgLoadAttr, prog_btf_fd), 72);
        assert_eq!(offset_of!(ProgLoadAttr, func_info), 80);
        assert_eq!(offset_of!(ProgLoadAttr, line_info), 96);
        assert_eq!(offset_of!(ProgLoadAttr, attach_btf_id), 108);
        assert_eq!(offset_of!(ProgLoadAttr, fd_array), 120);
        assert_eq!(offset_of!(ProgLoadAttr, log_true_size), 140);
        assert_eq!(offset_of!(BtfLoadAttr, btf_log_true_size), 28);
        assert_eq!(offset_of!(TestRunAttr, repeat), 32);
        assert_eq!(offset_of!(TestRunAttr, ctx_in), 48);
        assert_eq!(offset_of!(TestRunAttr, flags), 64);
        assert_eq!(offset_of!(ProgInfo, name), 64);
        assert_eq!(offset_of!(ProgInfo, btf_id), 128);
        assert_eq!(offset_of!(ProgInfo, run_time_ns), 192);
        assert_eq!(offset_of!(ProgInfo, attach_btf_id), 224);
        assert_eq!(offset_of!(MapInfoRaw, netns_dev), 48);
        assert_eq!(offset_of!(MapInfoRaw, map_extra), 80);
        assert_eq!(size_of::<BtfInfoRaw>(), 32);
        assert_eq!(size_of::<Attr<ProgLoadAttr>>(), ATTR_SIZE);
    }

    #[test]
    fn object_names_are_truncated_and_filtered() {
        assert_eq!(&object_name("a-b.c")[..4], b"ab.c");
        assert_eq!(object_name("abcdefghijklmnopqrst")[15], 0);
        assert_eq!(object_name("abcdefghijklmnopqrst")[14], b'o');
    }
}
