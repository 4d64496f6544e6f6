//! `Btf::parse` on arbitrary bytes, then a walk of every type through every
//! accessor, name lookups, and a decode → encode → parse round trip that
//! must give the same types back.
#![no_main]

use kiln_obj::btf::{Btf, write};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(btf) = Btf::parse(data) else {
        return;
    };
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
    if let Ok(types) = btf.to_types() {
        let bytes = write::encode(&types, btf.strings());
        let again = Btf::parse(&bytes).expect("re-encoded BTF parses");
        assert_eq!(again.to_types().expect("re-encoded BTF decodes"), types);
    }
});
