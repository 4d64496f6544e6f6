//! Which privileges bpf(2) needs, which this process holds, and the
//! `RLIMIT_MEMLOCK` charge of kernels before 5.11.
//!
//! ```no_run
//! use kiln_loader::caps::{Capability, missing, raise_memlock};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Kernels before 5.11 charge maps and programs to RLIMIT_MEMLOCK.
//! raise_memlock()?;
//! if !missing(&[Capability::Bpf]).is_empty() {
//!     eprintln!("run as root or grant CAP_BPF");
//! }
//! # Ok(())
//! # }
//! ```

pub use crate::sys::caps::{
    Capability, MemlockError, effective, has, in_child_user_namespace, memlock_limit, missing,
    raise_memlock,
};
