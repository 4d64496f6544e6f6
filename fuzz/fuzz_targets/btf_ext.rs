//! `BtfExt::parse` against the BTF it refers to. Input: a little-endian u32
//! length n, then n bytes of `.BTF`, then the `.BTF.ext` bytes (seed.sh
//! builds such inputs from real objects).
#![no_main]

use kiln_obj::btf::Btf;
use kiln_obj::btf::ext::BtfExt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let n = (u32::from_le_bytes(*len) as usize).min(rest.len());
    let (btf, ext) = rest.split_at(n);
    let Ok(btf) = Btf::parse(btf) else {
        return;
    };
    if let Ok(ext) = BtfExt::parse(ext, &btf) {
        for recs in ext.core_relos.values() {
            for r in recs {
                let _ = btf.type_by_id(r.type_id);
            }
        }
    }
});
