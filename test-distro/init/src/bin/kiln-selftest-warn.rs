//! Selftest of the VM runner (`cargo xtask test --selftest`): the test itself
//! passes, but the kernel logs a `WARNING:` line, which must fail the run.
//!
//! Debian's cloud kernels have no lkdtm to provoke a real WARN, so this writes
//! a warning-level record through /dev/kmsg: it reaches the console exactly as
//! a kernel WARN's first line does, which is what the runner watches.

fn main() {
    println!("\nrunning 1 test");
    let r = std::fs::write(
        "/dev/kmsg",
        "<4>WARNING: CPU: 0 PID: 1 at kiln-selftest-warn: deliberate warning from the runner selftest\n",
    );
    match r {
        Ok(()) => println!("test selftest_warn ... ok"),
        Err(e) => {
            println!("test selftest_warn ... FAILED");
            eprintln!("cannot write /dev/kmsg: {e}");
            std::process::exit(101);
        }
    }
}
