#![no_std]
//! `kiln-ebpf`: the kernel-side SDK.
