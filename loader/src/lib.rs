//! `kiln-loader`: the userspace library over bpf(2).

pub mod sys;
