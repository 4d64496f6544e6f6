//! Errors of `kiln-obj`. Each variant names what was malformed and where:
//! the section, the symbol, the instruction offset or the BTF type id.

use crate::btf::BtfError;

/// Why an object could not be parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The bytes are not an ELF file the `object` crate can read.
    #[error("not a readable ELF file")]
    Elf(#[from] object::read::Error),
    /// An ELF file for another machine than eBPF.
    #[error("not an eBPF object: ELF machine {machine}, expected EM_BPF (247)")]
    NotBpf {
        /// The ELF header's `e_machine`.
        machine: u16,
    },
    /// A 32-bit ELF file: eBPF objects are ELF64 of either byte order.
    #[error("32-bit ELF: eBPF objects are 64-bit ELF files (bpfel or bpfeb)")]
    UnsupportedFormat,
    /// A section is malformed.
    #[error("section '{section}': {reason}")]
    Section {
        /// The section's name.
        section: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A symbol is malformed or points outside its section.
    #[error("symbol '{symbol}': {reason}")]
    Symbol {
        /// The symbol's name.
        symbol: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An instruction cannot be relocated or decoded.
    #[error("section '{section}', instruction {insn_index} (byte offset {}): {reason}", insn_index * 8)]
    Insn {
        /// The section holding it.
        section: String,
        /// Its index in the section, in instructions.
        insn_index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A program cannot be assembled (subprogram calls, relocations).
    #[error("program '{program}': {reason}")]
    Program {
        /// The program's name.
        program: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A map definition is malformed.
    #[error("map '{map}': {reason}")]
    Map {
        /// The map's name.
        map: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `.BTF` section is malformed.
    #[error(".BTF")]
    Btf(#[from] BtfError),
    /// The `.BTF.ext` section is malformed.
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
