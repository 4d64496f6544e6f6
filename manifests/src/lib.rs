//! `kiln-manifest`: parse, validate, plan and apply deployment manifests.
//!
//! Data flows one way: [`Manifest`] (parsed, with spans) → validation against
//! the objects and the running kernel → [`plan::Plan`] (a plain list of
//! actions, computed from the manifest and the live kernel) → apply (a
//! transaction that builds the new generation beside the old one).

pub mod diag;
pub mod manifest;
pub mod plan;
pub mod schema;

pub use diag::{Diagnostic, Diagnostics, Source};
pub use manifest::Manifest;
