//! Selftest of the VM runner (`cargo xtask test --selftest`): sets the
//! kernel's TAINT_WARN flag (bit 9) without any console line, so the runner
//! must notice it from the taint value `KILN-DONE` reports.

fn main() {
    println!("\nrunning 1 test");
    // Writing to kernel.tainted ORs the given flags in.
    match std::fs::write("/proc/sys/kernel/tainted", "512") {
        Ok(()) => println!("test selftest_taint ... ok"),
        Err(e) => {
            println!("test selftest_taint ... FAILED");
            eprintln!("cannot write /proc/sys/kernel/tainted: {e}");
            std::process::exit(101);
        }
    }
}
