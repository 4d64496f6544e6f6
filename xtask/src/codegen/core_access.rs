//! `cargo xtask codegen core`: the SDK's CO-RE accessors for the kernel
//! struct fields listed in `ebpf-sdk/kiln-ebpf/core.toml`.
//!
//! The generator is `kiln-ebpf-build`, the same one program crates call from
//! their build scripts for their own `core.toml`; the SDK's output is checked
//! in (so building the SDK needs no kernel BTF) and `--check` keeps it
//! current. When a vmlinux BTF is available every declaration is checked
//! against it, so a typo or a wrong type fails here rather than at load time.

use std::path::Path;

use anyhow::Context;
use kiln_ebpf_build::KernelBtf;

/// The C symbols' prefix: `kiln_core_<struct>_<field>`.
const PREFIX: &str = "kiln_core";

/// The generated files, as `(path relative to the repository, contents)`.
/// Validates against `vmlinux` when it exists.
pub fn generate(root: &Path, vmlinux: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let spec_path = root.join("ebpf-sdk/kiln-ebpf/core.toml");
    let text = std::fs::read_to_string(&spec_path)
        .with_context(|| format!("reading {}", spec_path.display()))?;
    // Relative, so messages and outputs do not depend on the checkout.
    let spec = kiln_ebpf_build::parse(&text, Path::new("ebpf-sdk/kiln-ebpf/core.toml"))?;
    if vmlinux.exists() {
        let kernel = KernelBtf::load(vmlinux, vmlinux.display().to_string())?;
        for warning in kiln_ebpf_build::check(&spec, &kernel)? {
            eprintln!("codegen: {warning}");
        }
    } else {
        eprintln!(
            "codegen: {} is missing; core.toml not checked against a kernel",
            vmlinux.display()
        );
    }
    let generated = kiln_ebpf_build::generate(&spec, PREFIX)?;
    Ok(vec![
        ("ebpf-sdk/kiln-ebpf/shim/kiln_core.c".into(), generated.c),
        (
            "ebpf-sdk/kiln-ebpf/src/core_read/generated.rs".into(),
            generated.rust,
        ),
    ])
}
