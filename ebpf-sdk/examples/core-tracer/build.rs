//! Generates this crate's CO-RE accessors from core.toml (see kiln-ebpf-build).

fn main() {
    kiln_ebpf_build::build_or_exit();
}
