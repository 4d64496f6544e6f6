//! Selftest of the VM runner (`cargo xtask test --selftest`): crashes the
//! kernel through sysrq, so the runner must report a kernel panic.

fn main() {
    println!("\nrunning 1 test");
    println!("test selftest_kernel_panic ... ");
    let _ = std::fs::write("/proc/sys/kernel/sysrq", "1");
    if let Err(e) = std::fs::write("/proc/sysrq-trigger", "c") {
        eprintln!("cannot write /proc/sysrq-trigger: {e}");
        std::process::exit(2);
    }
}
