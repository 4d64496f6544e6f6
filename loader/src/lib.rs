//! `kiln-loader`: the userspace library over bpf(2).
//!
//! - [`EbpfLoader`] turns a `kiln_obj::ObjectSpec` into live maps and programs ([`Ebpf`]).
//! - [`maps`]: [`Map`] owns a map fd; typed views per map family over [`Pod`] keys and values.
//! - [`programs`]: [`Program`] owns a program fd; verifier logs, test runs, info, pins.
//! - [`pin`]: bpffs pinning and the compatibility check before reusing a pinned map.
//! - [`sys`]: the only bpf(2) call site, with typed attribute structs.

pub mod btf;
pub mod externs;
pub mod links;
pub mod loader;
pub mod maps;
pub mod netlink;
pub mod perf_event;
pub mod pin;
pub mod probe;
pub mod programs;
pub mod sys;
pub mod util;

pub use btf::Btf;
pub use loader::{Ebpf, EbpfError, EbpfLoader};
pub use maps::{Map, MapError, MapInfo, Pod};
pub use programs::{LoadError, Program, ProgramInfo};
