//! BTF, the BPF Type Format, cut by concern:
//! [`types`] (the records), [`read`] (parsing, lazy indexing), [`write`]
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
    #[error("header: {0}")]
    Header(String),
    #[error("type id {type_id}: {reason}")]
    Type { type_id: TypeId, reason: String },
    #[error("string offset {offset}: {reason}")]
    String { offset: u32, reason: &'static str },
}
