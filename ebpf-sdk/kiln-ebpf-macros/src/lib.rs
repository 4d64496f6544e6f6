//! Attribute macros for `kiln-ebpf`.
