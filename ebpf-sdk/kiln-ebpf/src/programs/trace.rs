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
    /// function's registers, in the layout of the kernel architecture the
    /// program was built for ([`crate::arch`]: x86_64 by default, another
    /// with `cargo xtask build-ebpf --arch ARCH`).
    ProbeContext, regs: pt_regs
}

impl ProbeContext {
    /// The register at byte offset `off` of the context, zero-extended.
    #[inline(always)]
    fn reg(&self, off: usize) -> u64 {
        let at = self.regs.cast::<u8>().wrapping_add(off);
        // SAFETY: `off` is one of `crate::arch`'s offsets, all inside the
        // `pt_regs` the kernel passed (its tests check them), and aligned.
        unsafe {
            if crate::arch::REG_SIZE == 4 {
                u64::from(core::ptr::read_volatile(at.cast::<u32>()))
            } else {
                core::ptr::read_volatile(at.cast::<u64>())
            }
        }
    }

    /// Argument `n` (0-based) of the probed function, `None` past the
    /// registers that carry arguments ([`crate::arch::ARG_OFFSETS`]: 6 on
    /// x86_64, 4 on arm, 5 on s390x, 8 elsewhere).
    #[inline(always)]
    pub fn arg(&self, n: usize) -> Option<u64> {
        crate::arch::ARG_OFFSETS.get(n).map(|&off| self.reg(off))
    }

    /// The return value (kretprobe/uretprobe).
    #[inline(always)]
    pub fn ret(&self) -> u64 {
        self.reg(crate::arch::RC_OFFSET)
    }

    /// The stack pointer.
    #[inline(always)]
    pub fn sp(&self) -> u64 {
        self.reg(crate::arch::SP_OFFSET)
    }

    /// The frame pointer, on architectures whose kernels keep one.
    #[inline(always)]
    pub fn fp(&self) -> Option<u64> {
        crate::arch::FP_OFFSET.map(|off| self.reg(off))
    }

    /// The instruction pointer.
    #[inline(always)]
    pub fn ip(&self) -> u64 {
        self.reg(crate::arch::IP_OFFSET)
    }

    /// The return address, on architectures that keep it in a register.
    #[inline(always)]
    pub fn return_address(&self) -> Option<u64> {
        crate::arch::RET_ADDR_OFFSET.map(|off| self.reg(off))
    }

    /// Argument `n` of the syscall whose entry point is probed
    /// (`ksyscall/`, or a kprobe on [`crate::arch::SYSCALL_PREFIX`]`NAME`).
    /// Where entry points are wrappers ([`crate::arch::SYSCALL_WRAPPER`]),
    /// the arguments are read from the user registers the wrapper's one
    /// argument points to; elsewhere from the probe's own registers.
    ///
    /// Minimum kernel version: 5.5 (`bpf_probe_read_kernel`) on
    /// architectures with syscall wrappers.
    #[inline(always)]
    pub fn syscall_arg(&self, n: usize) -> Option<u64> {
        let off = *crate::arch::SYSCALL_ARG_OFFSETS.get(n)?;
        if !crate::arch::SYSCALL_WRAPPER {
            return Some(self.reg(off));
        }
        let user_regs = self.arg(0)? as usize as *const u8;
        // SAFETY: the wrapper's argument is the kernel's `struct pt_regs *`
        // of the calling task; the helper checks the read and fails rather
        // than faulting.
        unsafe { crate::helpers::probe_read_kernel(user_regs.wrapping_add(off).cast::<u64>()).ok() }
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
