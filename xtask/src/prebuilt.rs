//! C programs the integration tests would compile with `cc` on the host
//! (the USDT target), built here for the guest's arch with the host's cross
//! compiler and shipped in the image at [`GUEST_DIR`]: the guest has no C
//! compiler, and carrying one would cost more than the binaries.
//!
//! kiln-init exports `KILN_PREBUILT_DIR` to the tests, and
//! `kiln_testkit::prebuilt::find(name)` looks there before any test falls
//! back to `cc`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::kernels::repo_root;
use crate::vm::Arch;

/// Where the binaries are in the guest (kiln-init's `KILN_PREBUILT_DIR`).
pub const GUEST_DIR: &str = "/kiln/prebuilt";

/// (guest file name, source in the repository, compiler flags). The flags
/// are the test's own: the USDT test reads the probe's argument once from a
/// register (-O1) and once from the stack frame (-O0).
const PROGRAMS: &[(&str, &str, &[&str])] = &[
    (
        "usdt_target-O0",
        "loader/tests/attach_util/usdt_target.c",
        &["-O0"],
    ),
    (
        "usdt_target-O1",
        "loader/tests/attach_util/usdt_target.c",
        &["-O1"],
    ),
];

/// The C compiler that builds for `arch` on this host.
fn compiler(arch: Arch) -> &'static str {
    if arch == Arch::host() {
        "cc"
    } else {
        match arch {
            Arch::X86_64 => "x86_64-linux-gnu-gcc",
            Arch::Aarch64 => "aarch64-linux-gnu-gcc",
        }
    }
}

/// Builds every program for `arch` (again only when its source is newer)
/// and returns (host path, guest path) pairs. The binaries are dynamic, like
/// the ones the test builds on the host: the guest carries glibc and its
/// loader for `bash` and `ip` already.
pub fn build(arch: Arch) -> Result<Vec<(PathBuf, String)>> {
    let out_dir = crate::cross::target_dir()
        .join("prebuilt")
        .join(arch.as_str());
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let cc = compiler(arch);
    let mut files = Vec::new();
    for (name, source, flags) in PROGRAMS {
        let src = repo_root().join(source);
        let bin = out_dir.join(name);
        if !is_newer(&bin, &src) {
            let out = Command::new(cc)
                .args(*flags)
                .arg("-o")
                .arg(&bin)
                .arg(&src)
                .output()
                .with_context(|| {
                    format!("running {cc} for {source} (`cargo xtask setup` installs it)")
                })?;
            if !out.status.success() {
                bail!(
                    "{cc} {} -o {} {source} failed:\n{}",
                    flags.join(" "),
                    bin.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        files.push((bin, format!("{GUEST_DIR}/{name}")));
    }
    Ok(files)
}

/// Whether `built` exists and is at least as recent as `source`.
fn is_newer(built: &std::path::Path, source: &std::path::Path) -> bool {
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((modified(built), modified(source)), (Some(b), Some(s)) if b >= s)
}
