//! Test programs built on the host for the guest.
//!
//! The test distro has no C compiler: `cargo xtask test` compiles the C
//! programs a test would build with `cc` (the USDT target) for the guest's
//! arch and ships them in the image; kiln-init names their directory in
//! `$KILN_PREBUILT_DIR`. On the host the variable is unset and tests build
//! what they need themselves.

use std::path::PathBuf;

/// The directory of the prebuilt programs, when this run has one.
pub fn dir() -> Option<PathBuf> {
    std::env::var_os("KILN_PREBUILT_DIR").map(PathBuf::from)
}

/// The prebuilt program `name`, if this run ships it.
pub fn find(name: &str) -> Option<PathBuf> {
    let path = dir()?.join(name);
    path.is_file().then_some(path)
}
