//! Prints what kiln-obj sees in an object: `cargo run -p kiln-obj --example dump -- X.bpf.o`.

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: dump OBJECT.o");
        std::process::exit(2);
    };
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    match kiln_obj::ObjectSpec::parse(&data) {
        Ok(obj) => {
            println!(
                "license {:?} version {:?} btf {:?} bytes",
                obj.license,
                obj.kernel_version,
                obj.btf.as_ref().map(Vec::len)
            );
            for (i, m) in obj.maps.iter().enumerate() {
                println!("map[{i}] {m:?}");
            }
            for e in &obj.externs {
                println!("extern {e:?}");
            }
            for s in &obj.map_slots {
                println!("map slot {s:?}");
            }
            for p in &obj.programs {
                println!(
                    "prog {} section {:?} kind {:?} sleepable {} insns {}",
                    p.name,
                    p.section,
                    p.kind,
                    p.sleepable,
                    p.insns.len()
                );
                for r in &p.relocations {
                    println!("   reloc {r:?}");
                }
                for r in &p.core_relocations {
                    println!("   core {r:?}");
                }
                println!("   func_info {:?}", p.func_info);
                println!("   line_info {} records", p.line_info.len());
                if std::env::var_os("DUMP_INSNS").is_some() {
                    for (i, insn) in p.insns.iter().enumerate() {
                        println!("   {i:4} {insn:?}");
                    }
                }
            }
        }
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    }
}
