//! `cargo xtask btf-bindgen TYPE... [--btf FILE] [--out FILE]`: `#[repr(C)]`
//! Rust definitions of kernel types from BTF (kiln-ebpf-build's `bindgen`),
//! for types a program passes around whole instead of reading with CO-RE.

use std::path::PathBuf;

use anyhow::Context;
use kiln_obj::btf::Btf;

#[derive(clap::Args)]
pub struct Args {
    /// Struct, union, enum or typedef names.
    #[arg(required = true)]
    types: Vec<String>,
    /// The BTF to read.
    #[arg(long, default_value = "/sys/kernel/btf/vmlinux")]
    btf: PathBuf,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&args.btf).with_context(|| format!("reading {}", args.btf.display()))?;
    let btf = Btf::from_bytes(bytes)
        .map_err(|e| anyhow::anyhow!("parsing {}: {e}", args.btf.display()))?;
    let names: Vec<&str> = args.types.iter().map(String::as_str).collect();
    let rust = kiln_ebpf_build::bindgen::bindgen(&btf, &names)
        .with_context(|| format!("types from {}", args.btf.display()))?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, rust).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{rust}"),
    }
    Ok(())
}
