//! Kiln against libbpf on objects nobody here wrote: each object is loaded by
//! both, and what the kernel holds is compared (loaded or not, translated
//! instructions, func/line info, map definitions, by-name pins).
//!
//! `cargo xtask conformance` builds the corpus and runs the `kiln-conformance`
//! binary over it; the binary takes any directory of objects, so a guest with
//! bpftool can run the same comparison.

pub mod compare;
pub mod report;
