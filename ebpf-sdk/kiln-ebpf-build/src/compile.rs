//! clang → LLVM bitcode, handed to bpf-linker as one more input of the final link.

use std::path::Path;
use std::process::Command;

use crate::Error;

/// Compiles `c` to bitcode and hands it to the final link. rustc refuses a
/// native static library in a BPF *binary* crate ("linking static libraries
/// is not supported for BPF"; a library crate such as kiln-ebpf bundles it
/// into its rlib instead), so the bitcode goes to bpf-linker as a plain input
/// through `rustc-link-arg`.
pub(crate) fn bitcode(c: &Path, out: &Path, name: &str, big_endian: bool) -> Result<(), Error> {
    let clang = std::env::var("KILN_CLANG").unwrap_or_else(|_| "clang-22".into());
    let what = c.display().to_string();
    let bc = out.join(format!("{name}.bc"));
    let mut cmd = Command::new(&clang);
    cmd.args(["-O2", "-g", "-emit-llvm", "-c", "-mcpu=v3"])
        .arg(if big_endian {
            "--target=bpfeb"
        } else {
            "--target=bpfel"
        })
        // <linux/types.h> only; its asm/ part is the same for every arch.
        .arg("-I/usr/include/x86_64-linux-gnu")
        // Reproducible: no build directory in the debug info.
        .arg(format!("-ffile-prefix-map={}=/kiln-core", out.display()))
        .arg("-fdebug-compilation-dir=/kiln-core")
        .arg(c)
        .arg("-o")
        .arg(&bc);
    run(&mut cmd, &what, &clang)?;
    println!("cargo:rustc-link-arg={}", bc.display());
    Ok(())
}

fn run(cmd: &mut Command, what: &str, tool: &str) -> Result<(), Error> {
    let status = cmd.status().map_err(|source| Error::Tool {
        what: what.to_string(),
        tool: tool.to_string(),
        source,
    })?;
    if !status.success() {
        return Err(Error::ToolFailed {
            what: what.to_string(),
            tool: tool.to_string(),
            status,
        });
    }
    Ok(())
}
