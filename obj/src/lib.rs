//! `kiln-obj`: turns the bytes of an eBPF ELF object into plain data.
//!
//! No syscalls, no file descriptors: the loader (`kiln-loader`) feeds the
//! result to bpf(2). Everything here is a *spec* (cilium/ebpf's word): data
//! that can be inspected and edited before it becomes a live kernel object.
//!
//! Entry point: [`ObjectSpec::parse`]. Inspect what an object holds, and
//! edit it before handing it to the loader:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use kiln_obj::ObjectSpec;
//!
//! let mut spec = ObjectSpec::parse(&std::fs::read("target/bpf/counter.bpf.o")?)?;
//! println!("license {}", spec.license);
//! for program in &spec.programs {
//!     println!("program {} in {} ({:?})", program.name, program.section, program.kind);
//! }
//! for map in &spec.maps {
//!     println!("map {}: {} of {} entries", map.name, map.map_type.name(), map.max_entries);
//! }
//! // Grow a map before load.
//! if let Some(map) = spec.map_mut("COUNTERS") {
//!     map.max_entries = 1024;
//! }
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod btf;
mod error;
mod ext_api;
pub mod externs;
pub mod insn;
mod link;
mod maps;
pub mod model;
mod names;
mod parse;
pub mod section;

pub use error::ParseError;
pub use ext_api::{FUNC_INFO_REC_SIZE, LINE_INFO_REC_SIZE};
pub use externs::{ExternError, KsymTarget, encode_kconfig};
pub use insn::Insn;
pub use model::*;
pub use names::{BPF_OBJ_NAME_LEN, PinNameCollision, global_data_pin_name, object_name_from_path};
