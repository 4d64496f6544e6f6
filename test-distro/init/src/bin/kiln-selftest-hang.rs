//! Selftest of the VM runner (`cargo xtask test --selftest`): never ends, so
//! the per-binary timeout must kill it and report a failure.

fn main() {
    println!("\nrunning 1 test");
    println!("test selftest_hang ... ");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
