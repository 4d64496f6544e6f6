//! The hand-built target BTF that CO-RE is relocated against in
//! obj/tests/core.rs and in the `core_relocate` fuzz target (included by
//! both with `#[path]`): a `struct task` shaped differently from the one in
//! core.bpf.c (fields moved, a bitfield moved and grew, a union added), an
//! enum whose value changed, a union, a typedef and a pointer.

use kiln_obj::btf::strings::StringTable;
use kiln_obj::btf::{Btf, EnumValue, INT_CHAR, INT_SIGNED, Member, Type, write};

/// Type ids: 1 int, 2 long, 3 char, 4 unsigned int, 5 char[16],
/// 6 struct task, 7 enum state, 8 union un, 9 typedef task_t, 10 task *.
pub fn core_target() -> Btf {
    Btf::from_bytes(core_target_bytes()).expect("valid target BTF")
}

/// [`core_target`]'s blob, in this machine's byte order.
pub fn core_target_bytes() -> Vec<u8> {
    let mut s = StringTable::new(vec![0]);
    let int = |name_off, size, encoding| Type::Int {
        name_off,
        size,
        encoding,
        bit_offset: 0,
        bits: (size * 8) as u8,
    };
    let mut m = |name: &str, type_id, offset| Member {
        name_off: s.add(name),
        type_id,
        offset,
    };
    let members = vec![
        m("flags", 2, 0),
        m("pid", 1, 64),
        m("tgid", 1, 128),
        m("comm", 5, 192),
        m("bits", 4, (3 << 24) | 320),
        m("more", 4, (7 << 24) | 330),
        m("u", 8, 384),
    ];
    let umembers = vec![m("a", 1, 0), m("b", 2, 0)];
    let types = vec![
        Type::Void,
        int(s.add("int"), 4, INT_SIGNED),             // 1
        int(s.add("long"), 8, INT_SIGNED),            // 2
        int(s.add("char"), 1, INT_SIGNED | INT_CHAR), // 3
        int(s.add("unsigned int"), 4, 0),             // 4
        Type::Array {
            name_off: 0,
            elem: 3,
            index: 1,
            nelems: 16,
        }, // 5
        Type::Struct {
            name_off: s.add("task"),
            size: 64,
            kind_flag: true,
            members,
        }, // 6
        Type::Enum {
            name_off: s.add("state"),
            size: 4,
            signed: false,
            values: vec![
                EnumValue {
                    name_off: s.add("RUNNING"),
                    value: 0,
                },
                EnumValue {
                    name_off: s.add("SLEEPING"),
                    value: 2,
                },
            ],
        }, // 7
        Type::Union {
            name_off: s.add("un"),
            size: 8,
            kind_flag: false,
            members: umembers,
        }, // 8
        Type::Typedef {
            name_off: s.add("task_t"),
            target: 6,
        }, // 9
        Type::Ptr {
            name_off: 0,
            target: 6,
        }, // 10
        // 11: a forward declaration of the same name, as some kernels' BTF
        // (5.10's pt_regs) keeps beside the full struct: never a candidate
        // for a struct's relocations.
        Type::Fwd {
            name_off: s.add("task"),
            union: false,
        },
    ];
    write::encode(&types, s.as_bytes())
}
