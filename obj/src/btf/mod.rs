//! BTF, the BPF Type Format, cut by concern:
//! [`types`] (the records), [`read`] (parsing, lazy indexing), [`write`](mod@write)
//! (marshalling), [`strings`], [`fixup`] (what compilers leave for the
//! loader), [`sanitize`] (rewriting what an older kernel lacks), [`ext`]
//! (`.BTF.ext`: func_info, line_info, CO-RE records) and [`core`] (CO-RE
//! relocation against a target BTF).

pub mod core;
pub mod ext;
pub mod fixup;
pub mod read;
pub mod sanitize;
pub mod strings;
pub mod types;
pub mod write;

pub use read::{Btf, essential_name};
pub use sanitize::BtfFeatures;
pub use types::*;

/// Malformed or unusable BTF.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BtfError {
    /// The BTF header is malformed or its sections lie outside the data.
    #[error("header: {0}")]
    Header(String),
    /// A type record is malformed or refers to a missing type.
    #[error("type id {type_id}: {reason}")]
    Type {
        /// The type's id.
        type_id: TypeId,
        /// What is wrong with it.
        reason: String,
    },
    /// A name offset points outside the string section or into the middle of a string.
    #[error("string offset {offset}: {reason}")]
    String {
        /// The offset.
        offset: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
}
