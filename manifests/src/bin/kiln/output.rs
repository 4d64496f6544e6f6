//! Writing the report without panicking: `println!` panics when stdout is a
//! closed pipe (`kiln plan | head -3`) or a full disk (`> /dev/full`), which
//! after an apply would hide that the kernel was changed.
//!
//! A closed pipe silences the rest of the output, as `ls | head` does; any
//! other write error is kept and reported once the command has finished.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout can no longer be written: further output is dropped.
static STDOUT_DONE: AtomicBool = AtomicBool::new(false);
/// The first write error other than a closed pipe.
static FAILURE: Mutex<Option<std::io::Error>> = Mutex::new(None);

pub fn write_out(args: std::fmt::Arguments<'_>) {
    if STDOUT_DONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        STDOUT_DONE.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            let mut failure = FAILURE.lock().unwrap_or_else(|p| p.into_inner());
            failure.get_or_insert(e);
        }
    }
}

/// Stderr is where failures are told; if even that fails, nothing is left to tell.
pub fn write_err(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// The write error that lost part of the output, if one did.
pub fn write_failure() -> Option<std::io::Error> {
    FAILURE.lock().unwrap_or_else(|p| p.into_inner()).take()
}
