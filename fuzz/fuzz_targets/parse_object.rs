//! `ObjectSpec::parse` on arbitrary bytes, then everything a loader derives
//! from the result without a kernel: BTF for an old and a new kernel,
//! func/line info records, source lines, resolved instructions.
#![no_main]

use kiln_obj::ObjectSpec;
use kiln_obj::btf::BtfFeatures;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(obj) = ObjectSpec::parse(data) else {
        return;
    };
    let _ = obj.btf_for_kernel(BtfFeatures::ALL);
    // A 5.0-era kernel: every later kind must be rewritten.
    let _ = obj.btf_for_kernel(BtfFeatures {
        func: true,
        func_global: false,
        datasec: false,
        float: false,
        decl_tag: false,
        type_tag: false,
        enum64: false,
    });
    for p in &obj.programs {
        let _ = p.func_info_bytes();
        let _ = p.line_info_bytes();
        let _ = obj.source_line(&p.name, 0);
        let _ = p.resolved_insns(|i| i as i32 + 3);
    }
});
