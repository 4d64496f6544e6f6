//! Errors of `kiln-obj`. Each variant names what was malformed and where:
//! the section, the symbol, the instruction offset or the BTF type id.

use crate::btf::BtfError;

/// Why an object could not be parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("not a readable ELF file: {0}")]
    Elf(#[from] object::read::Error),
    #[error("not an eBPF object: ELF machine {machine}, expected EM_BPF (247)")]
    NotBpf { machine: u16 },
    #[error("32-bit ELF: eBPF objects are 64-bit ELF files (bpfel or bpfeb)")]
    UnsupportedFormat,
    #[error("section '{section}': {reason}")]
    Section { section: String, reason: String },
    #[error("symbol '{symbol}': {reason}")]
    Symbol { symbol: String, reason: String },
    #[error("section '{section}', instruction {insn_index} (byte offset {}): {reason}", insn_index * 8)]
    Insn {
        section: String,
        insn_index: usize,
        reason: String,
    },
    #[error("program '{program}': {reason}")]
    Program { program: String, reason: String },
    #[error("map '{map}': {reason}")]
    Map { map: String, reason: String },
    #[error(".BTF: {0}")]
    Btf(#[from] BtfError),
    #[error(".BTF.ext: {0}")]
    BtfExt(String),
}

impl ParseError {
    pub(crate) fn section(section: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Section {
            section: section.into(),
            reason: reason.into(),
        }
    }
    pub(crate) fn symbol(symbol: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Symbol {
            symbol: symbol.into(),
            reason: reason.into(),
        }
    }
    pub(crate) fn map(map: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Map {
            map: map.into(),
            reason: reason.into(),
        }
    }
}
