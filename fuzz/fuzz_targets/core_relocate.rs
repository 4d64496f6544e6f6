//! CO-RE: parse an object, then relocate it against a small target BTF
//! (a `struct task` shaped differently from the one in core.bpf.c, an enum,
//! a union, a typedef and an array), with every relocation kind reachable.
#![no_main]

use std::sync::OnceLock;

use kiln_obj::ObjectSpec;
use kiln_obj::btf::strings::StringTable;
use kiln_obj::btf::{Btf, EnumValue, INT_SIGNED, Member, Type, write};
use libfuzzer_sys::fuzz_target;

fn target() -> &'static Btf {
    static T: OnceLock<Btf> = OnceLock::new();
    T.get_or_init(|| {
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
            int(s.add("int"), 4, INT_SIGNED),  // 1
            int(s.add("long"), 8, INT_SIGNED), // 2
            int(s.add("char"), 1, INT_SIGNED), // 3
            int(s.add("unsigned int"), 4, 0),  // 4
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
        ];
        Btf::from_bytes(write::encode(&types, s.as_bytes())).expect("valid target BTF")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut obj) = ObjectSpec::parse(data) else {
        return;
    };
    let _ = obj.relocate_core(target());
});
