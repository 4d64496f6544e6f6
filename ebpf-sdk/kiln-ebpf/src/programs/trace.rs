//! Tracing contexts: tracepoints, raw/BTF tracepoints, fentry/fexit/LSM,
//! kprobes/uprobes and perf events.

use super::context;
use crate::bindings::{bpf_perf_event_data, pt_regs};

context! {
    /// A `tracepoint/<category>/<name>` program's context: the raw trace
    /// record, whose layout is in
    /// `/sys/kernel/tracing/events/<category>/<name>/format`. The first 8
    /// bytes are the common header.
    TracePointContext, ctx: u8
}

impl TracePointContext {
    /// Reads the field at `offset` of the record.
    ///
    /// # Safety
    /// `offset` and `T` must match the tracepoint's format (the verifier
    /// rejects reads past the record, not reads of the wrong type).
    #[inline(always)]
    pub unsafe fn read_at<T: Copy>(&self, offset: usize) -> T {
        // SAFETY: the caller matches offset and type to the record's format.
        unsafe { core::ptr::read_volatile(self.ctx.add(offset).cast::<T>()) }
    }
}

context! {
    /// `raw_tracepoint/<name>`: the tracepoint's arguments as `u64`s.
    RawTracePointContext, args: u64
}

context! {
    /// `tp_btf/`, `fentry/`, `fexit/` and `lsm/` programs: the traced
    /// function's arguments as `u64`s (for fexit, the return value follows
    /// the arguments).
    BtfContext, args: u64
}

macro_rules! args_access {
    ($name:ident) => {
        impl $name {
            /// Argument `n` as a raw `u64` (pointers included).
            ///
            /// # Safety
            /// `n` must be below the traced function's argument count (the
            /// verifier enforces it for BTF programs).
            #[inline(always)]
            pub unsafe fn arg(&self, n: usize) -> u64 {
                // SAFETY: the caller keeps `n` within the argument array.
                unsafe { core::ptr::read_volatile(self.args.add(n)) }
            }
        }
    };
}
args_access!(RawTracePointContext);
args_access!(BtfContext);

context! {
    /// `kprobe/`, `kretprobe/`, `uprobe/`, `uretprobe/`: the probed
    /// function's registers. Argument registers follow the kernel arch:
    /// x86_64 by default, aarch64 with `--cfg bpf_target_arch="aarch64"`.
    ProbeContext, regs: pt_regs
}

impl ProbeContext {
    /// Argument `n` (0-based, up to 5 on x86_64 and 7 on aarch64).
    #[inline(always)]
    pub fn arg(&self, n: usize) -> Option<u64> {
        // SAFETY: reading a register slot of the context the kernel passed.
        let r = |p: *const u64| unsafe { core::ptr::read_volatile(p) };
        // SAFETY (for the addr_of! projections): `regs` is the context pointer.
        #[cfg(not(bpf_target_arch = "aarch64"))]
        unsafe {
            let g = self.regs;
            Some(match n {
                0 => r(core::ptr::addr_of!((*g).di)),
                1 => r(core::ptr::addr_of!((*g).si)),
                2 => r(core::ptr::addr_of!((*g).dx)),
                3 => r(core::ptr::addr_of!((*g).cx)),
                4 => r(core::ptr::addr_of!((*g).r8)),
                5 => r(core::ptr::addr_of!((*g).r9)),
                _ => return None,
            })
        }
        #[cfg(bpf_target_arch = "aarch64")]
        unsafe {
            if n > 7 {
                return None;
            }
            Some(r(core::ptr::addr_of!((*self.regs).regs[n])))
        }
    }

    /// The return value (kretprobe/uretprobe).
    #[inline(always)]
    pub fn ret(&self) -> u64 {
        // SAFETY: reading a register slot of the context the kernel passed.
        #[cfg(not(bpf_target_arch = "aarch64"))]
        unsafe {
            core::ptr::read_volatile(core::ptr::addr_of!((*self.regs).ax))
        }
        // SAFETY: as above.
        #[cfg(bpf_target_arch = "aarch64")]
        unsafe {
            core::ptr::read_volatile(core::ptr::addr_of!((*self.regs).regs[0]))
        }
    }
}

context! {
    /// `perf_event` programs (`struct bpf_perf_event_data`).
    PerfEventContext, data: bpf_perf_event_data
}

impl PerfEventContext {
    /// The sample period.
    #[inline(always)]
    pub fn sample_period(&self) -> u64 {
        // SAFETY: sample_period is readable in perf_event programs.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*self.data).sample_period)) }
    }
}
