//! Measures kernel BTF parsing: `cargo run --release -p kiln-obj --example btf_bench [PATH]`.

use std::time::Instant;

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/sys/kernel/btf/vmlinux".into());
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    for round in 0..3 {
        let t0 = Instant::now();
        let btf = match kiln_obj::btf::Btf::from_bytes(data.clone()) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{path}: {e}");
                std::process::exit(1);
            }
        };
        let t1 = Instant::now();
        let ids = btf.ids_by_essential_name("task_struct");
        let t2 = Instant::now();
        let ids2 = btf.ids_by_essential_name("sk_buff");
        let t3 = Instant::now();
        println!(
            "round {round}: {} types; parse {:?}, first lookup (builds name index) {:?}, next lookup {:?} ({} + {} ids)",
            btf.len(),
            t1 - t0,
            t2 - t1,
            t3 - t2,
            ids.len(),
            ids2.len()
        );
    }
}
