//! `kiln-loader`: the userspace library over bpf(2).
//!
//! - [`load`] / [`load_file`] load an object's bytes (from `include_bytes!` or
//!   `kiln_build::include_object!`, at any alignment) or file with defaults;
//!   [`EbpfLoader`] takes options and turns an [`ObjectSpec`] (re-exported
//!   from `kiln_obj`, as [`obj`]) into live maps and programs ([`Ebpf`]).
//! - [`maps`]: [`Map`] owns a map fd; typed views per map family over [`Pod`] keys and values.
//! - [`programs`]: [`Program`] owns a program fd; verifier logs, test runs, info, pins.
//! - [`pin`]: bpffs pinning and the compatibility check before reusing a pinned map.
//! - [`ids`]: walk the ids of every program, map, BTF object or link in the kernel.
//! - [`caps`]: the capabilities bpf(2) needs and which this process holds.
//!
//! The bpf(2) call site and its attribute structs stay private to the crate:
//! every public function sizes the buffers the kernel writes from the
//! object's own definition, so no safe call can make it write past one.
//! - [`probe`]: kernel features found by trying, cached per process.
//! - [`externs`]: values for `__kconfig` / `__ksym` externs; the kernel's BTF.
//!
//! ```no_run
//! use kiln_loader::EbpfLoader;
//! use kiln_loader::maps::{HashMap, RingBuf, UpdateFlags};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut ebpf = EbpfLoader::new()
//!     .set_global("increment", &2u64.to_ne_bytes())
//!     .map_pin_path("/sys/fs/bpf/myapp")
//!     .load_file("target/bpf/loader_maps.bpf.o")?; // a verifier rejection prints the log's tail and the source line
//! let hash: HashMap<_, u32, u64> = HashMap::new(ebpf.map("hash").unwrap())?;
//! hash.insert(&1, &10, UpdateFlags::ANY)?;
//! let mut ring = RingBuf::new(ebpf.take_map("events").unwrap())?;
//! while let Some(record) = ring.next() {
//!     println!("{} bytes", record.len());
//! }
//! let prog = ebpf.take_program("count").unwrap(); // attach with `links` from prog.fd()
//! # let _ = prog;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod btf;
pub mod caps;
pub mod externs;
pub mod ids;
pub mod links;
pub mod loader;
pub mod maps;
pub mod module_btf;
pub mod netlink;
pub mod perf_event;
pub mod pin;
pub mod probe;
mod probe_cache;
pub mod programs;
pub(crate) mod sys;
pub mod token;
pub mod util;

pub use btf::Btf;
/// The object model the loader takes ([`ObjectSpec`] and its parts), so a
/// user needs no second dependency to edit a spec before loading it.
pub use kiln_obj as obj;
pub use kiln_obj::{
    AttachType, MapSpec, MapType, ObjectSpec, ParseError, ProgramKind, ProgramSpec, ProgramType,
};
pub use loader::{Ebpf, EbpfError, EbpfLoader, GlobalProblem, MapSpecProblem, load, load_file};
pub use maps::{Map, MapError, MapInfo, Pod};
pub use pin::OpenFlags;
pub use programs::{LoadError, Program, ProgramInfo};
/// The bpf(2) command a [`SysError`] names.
pub use sys::Cmd as BpfCommand;
/// A failed bpf(2) call, as the `source` of the loader's errors.
pub use sys::SysError;
/// Flags of `BPF_PROG_ATTACH` and of the mprog (tcx, netkit) links.
pub use sys::link_attr::AttachFlags;
pub use sys::permission_denied;
pub use token::{Token, TokenError};
pub use util::error_chain;

/// Compile-time check: the handles a program shares between threads (a ring
/// or perf buffer drained by one thread and polled by another, links kept in
/// a shared registry) are `Send + Sync`, as aya's are. `RingBuf` and
/// `PerfBuffer` state why in their `unsafe impl`s; the async wrappers are
/// tokio `AsyncFd`s over them and inherit it; every `Link` holds only owned
/// fds and plain data, and the trait now requires `Send + Sync` of new ones.
const _: () = {
    const fn send_sync<T: Send + Sync + ?Sized>() {}
    send_sync::<Ebpf>();
    send_sync::<Map>();
    send_sync::<Program>();
    send_sync::<maps::RingBuf<Map>>();
    send_sync::<maps::RingBuf<&Map>>();
    send_sync::<maps::PerfBuffers>();
    send_sync::<Box<dyn links::Link>>();
    #[cfg(feature = "tokio")]
    send_sync::<maps::AsyncRingBuf<Map>>();
    #[cfg(feature = "tokio")]
    send_sync::<maps::AsyncPerfBuffers>();
};
