//! CO-RE: parse an object, then relocate it against a small target BTF
//! (a `struct task` shaped differently from the one in core.bpf.c, an enum,
//! a union, a typedef and an array), with every relocation kind reachable.
#![no_main]

use std::sync::OnceLock;

use kiln_obj::ObjectSpec;
use kiln_obj::btf::Btf;
use libfuzzer_sys::fuzz_target;

#[path = "../../obj/tests/support/core_target.rs"]
mod core_target;

fn target() -> &'static Btf {
    static T: OnceLock<Btf> = OnceLock::new();
    T.get_or_init(core_target::core_target)
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut obj) = ObjectSpec::parse(data) else {
        return;
    };
    let _ = obj.relocate_core(target());
});
