//! Program contexts: what each program type receives, with typed, verifier-
//! friendly accessors. The program macros (`#[xdp]`, `#[tracepoint]`, ...)
//! wrap the raw context pointer in the matching type.

use core::ffi::c_void;

mod hooks;
mod packet;
mod sock;
mod trace;

pub use hooks::{
    DeviceContext, IterContext, NetfilterContext, SkReuseportContext, SockoptContext,
    SyscallContext, SysctlContext,
};

pub use packet::{SkBuffContext, TcContext, XdpContext};
pub use sock::{SkLookupContext, SkMsgContext, SockAddrContext, SockContext, SockOpsContext};
pub use trace::{
    BtfContext, PerfEventContext, ProbeContext, RawTracePointContext, TracePointContext,
};

/// Every context: the raw pointer the kernel passed, for helpers that take it.
pub trait EbpfContext {
    /// The context pointer (`ctx` in C).
    fn as_ptr(&self) -> *mut c_void;

    /// `bpf_get_current_pid_tgid()` for convenience in tracing programs.
    #[inline(always)]
    fn pid_tgid(&self) -> u64 {
        crate::helpers::get_current_pid_tgid()
    }
}

/// Defines a context type wrapping `*mut $raw` in field `$field`.
macro_rules! context {
    ($(#[$doc:meta])* $name:ident, $field:ident: $raw:ty) => {
        $(#[$doc])*
        pub struct $name {
            /// The raw context.
            pub $field: *mut $raw,
        }

        impl $name {
            /// Wraps the pointer the kernel passed to the program.
            #[inline(always)]
            pub fn new(ctx: *mut core::ffi::c_void) -> Self {
                Self { $field: ctx.cast() }
            }
        }

        impl $crate::programs::EbpfContext for $name {
            #[inline(always)]
            fn as_ptr(&self) -> *mut core::ffi::c_void {
                self.$field.cast()
            }
        }
    };
}
pub(crate) use context;

/// Reads field `$f` of the raw context `$p` with a volatile load, so the
/// compiler keeps the exact width and offset the verifier checks.
macro_rules! ctx_field {
    ($p:expr, $f:ident) => {
        // SAFETY: `$p` is the context pointer the kernel passed; the field is
        // part of the UAPI struct and readable for this program type.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*$p).$f)) }
    };
}
pub(crate) use ctx_field;
