//! `Btf::parse` on arbitrary bytes, then a walk of every type through every
//! accessor, name lookups, and a decode → encode → parse round trip, in
//! both byte orders, that must give the same types back. The same bytes are
//! also parsed as split BTF (a module's) on the hand-built base of
//! obj/tests/support, and walked
//! the same way across the base and the split part.
#![no_main]

use std::sync::{Arc, OnceLock};

use kiln_obj::ByteOrder;
use kiln_obj::btf::{Btf, write};
use libfuzzer_sys::fuzz_target;

#[path = "../../obj/tests/support/core_target.rs"]
mod core_target;

fn base() -> Arc<Btf> {
    static B: OnceLock<Arc<Btf>> = OnceLock::new();
    B.get_or_init(|| Arc::new(core_target::core_target())).clone()
}

/// Every accessor on every id (and two past the end); each named type must
/// be found by its name and kind.
fn walk(btf: &Btf) {
    for id in 0..btf.len() + 2 {
        let _ = btf.kind_of(id);
        let _ = btf.resolve_size(id);
        let _ = btf.skip_modifiers(id);
        if let Ok(name) = btf.name_of(id) {
            let _ = btf.ids_by_essential_name(name);
            if let Ok(kind) = btf.kind_of(id) {
                let found = btf.find_by_name(kind, name);
                if !name.is_empty() {
                    // The index must find at least this type's name and kind.
                    assert!(found.is_some_and(|f| f <= id), "type {id} '{name}' not found");
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(split) = Btf::from_bytes_split(data.to_vec(), base()) {
        walk(&split);
    }
    let Ok(btf) = Btf::parse(data) else {
        return;
    };
    walk(&btf);
    if let Ok(types) = btf.to_types() {
        let bytes = write::encode(&types, btf.strings());
        let again = Btf::parse(&bytes).expect("re-encoded BTF parses");
        assert_eq!(again.to_types().expect("re-encoded BTF decodes"), types);
        // And in the other byte order: the same types, whichever order.
        let other = write::in_byte_order(&bytes, ByteOrder::native().other());
        let swapped = Btf::parse(&other).expect("byte-swapped BTF parses");
        assert_eq!(swapped.byte_order(), ByteOrder::native().other());
        assert_eq!(swapped.to_types().expect("byte-swapped BTF decodes"), types);
    }
});
