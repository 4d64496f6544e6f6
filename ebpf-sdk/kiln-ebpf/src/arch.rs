//! What differs between the kernel architectures a probe runs on: the
//! layout of the registers a kprobe or uprobe receives (`pt_regs`), which
//! of them hold arguments, the return value, the stack and frame pointers
//! and the instruction pointer, and how a syscall's arguments reach a probe
//! on its entry point.
//!
//! BPF bytecode is the same on every architecture of one byte order; these
//! layouts are not. The architecture is chosen when the program is built:
//! `cargo xtask build-ebpf --arch ARCH` passes `--cfg bpf_target_arch="ARCH"`
//! (x86_64 without it). One of x86_64, aarch64, arm (32-bit), riscv64,
//! powerpc64, s390x, mips (64-bit) and loongarch64. The layouts are the
//! kernel's `bpf_user_pt_regs_t`, as libbpf's `bpf_tracing.h` reads them.

pub use layout::pt_regs;

/// The architecture this program was built for (`bpf_target_arch`).
pub const NAME: &str = layout::NAME;

/// Bytes in one register slot of [`crate::bindings::pt_regs`]: 4 on 32-bit
/// arm, 8 elsewhere.
pub const REG_SIZE: usize = layout::REG_SIZE;

/// The prefix of the kernel's syscall entry points on this architecture,
/// before the syscall's name (`__x64_sys_` + `openat`). Kernels before 4.17
/// on x86_64 (5.0 on arm64) and architectures without syscall wrappers name
/// them `sys_NAME`.
pub const SYSCALL_PREFIX: &str = layout::SYSCALL_PREFIX;

/// True where syscall entry points are wrappers whose one argument is a
/// pointer to the caller's `struct pt_regs` (x86_64, aarch64, riscv64,
/// powerpc64, s390x): a probe on them finds the syscall's arguments behind
/// that pointer rather than in its own registers.
pub const SYSCALL_WRAPPER: bool = layout::SYSCALL_WRAPPER;

/// Byte offsets in [`crate::bindings::pt_regs`] of the registers that carry a
/// function's arguments, first argument first.
pub const ARG_OFFSETS: &[usize] = layout::ARG_OFFSETS;

/// Byte offsets, in the kernel's `struct pt_regs`, of a syscall's
/// arguments. The first differs from [`ARG_OFFSETS`] where the return value
/// overwrites the first argument register (`orig_x0`, `orig_gpr2`, ...).
pub const SYSCALL_ARG_OFFSETS: &[usize] = layout::SYSCALL_ARG_OFFSETS;

/// Byte offset of the register that holds a function's return value.
pub const RC_OFFSET: usize = layout::RC_OFFSET;
/// Byte offset of the stack pointer.
pub const SP_OFFSET: usize = layout::SP_OFFSET;
/// Byte offset of the frame pointer, where the architecture has one that
/// kernels keep (`None` on powerpc64).
pub const FP_OFFSET: Option<usize> = layout::FP_OFFSET;
/// Byte offset of the instruction pointer.
pub const IP_OFFSET: usize = layout::IP_OFFSET;
/// Byte offset of the register holding the return address (the link
/// register), where calls keep it in one (`None` on x86_64, which pushes it).
pub const RET_ADDR_OFFSET: Option<usize> = layout::RET_ADDR_OFFSET;

#[cfg(not(any(
    bpf_target_arch = "aarch64",
    bpf_target_arch = "arm",
    bpf_target_arch = "riscv64",
    bpf_target_arch = "powerpc64",
    bpf_target_arch = "s390x",
    bpf_target_arch = "mips",
    bpf_target_arch = "loongarch64",
)))]
#[allow(
    missing_docs,
    reason = "the kernel's UAPI register structs: each field is the register the kernel names"
)]
mod layout {
    use core::mem::offset_of;

    /// The kernel's `struct pt_regs` for x86_64 (`bpf_user_pt_regs_t`).
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct pt_regs {
        pub r15: u64,
        pub r14: u64,
        pub r13: u64,
        pub r12: u64,
        pub bp: u64,
        pub bx: u64,
        pub r11: u64,
        pub r10: u64,
        pub r9: u64,
        pub r8: u64,
        pub ax: u64,
        pub cx: u64,
        pub dx: u64,
        pub si: u64,
        pub di: u64,
        pub orig_ax: u64,
        pub ip: u64,
        pub cs: u64,
        pub flags: u64,
        pub sp: u64,
        pub ss: u64,
    }

    pub const NAME: &str = "x86_64";
    pub const REG_SIZE: usize = 8;
    pub const SYSCALL_PREFIX: &str = "__x64_sys_";
    pub const SYSCALL_WRAPPER: bool = true;
    pub const ARG_OFFSETS: &[usize] = &[
        offset_of!(pt_regs, di),
        offset_of!(pt_regs, si),
        offset_of!(pt_regs, dx),
        offset_of!(pt_regs, cx),
        offset_of!(pt_regs, r8),
        offset_of!(pt_regs, r9),
    ];
    // The syscall ABI passes the fourth argument in r10, not cx.
    pub const SYSCALL_ARG_OFFSETS: &[usize] = &[
        ARG_OFFSETS[0],
        ARG_OFFSETS[1],
        ARG_OFFSETS[2],
        offset_of!(pt_regs, r10),
        ARG_OFFSETS[4],
        ARG_OFFSETS[5],
    ];
    pub const RC_OFFSET: usize = offset_of!(pt_regs, ax);
    pub const SP_OFFSET: usize = offset_of!(pt_regs, sp);
    pub const FP_OFFSET: Option<usize> = Some(offset_of!(pt_regs, bp));
    pub const IP_OFFSET: usize = offset_of!(pt_regs, ip);
    pub const RET_ADDR_OFFSET: Option<usize> = None;
}

/// Register slot `i` of a 64-bit register array starting at `base`.
#[allow(dead_code, reason = "not every architecture's layout uses it")]
const fn slot(base: usize, i: usize) -> usize {
    base + i * 8
}

#[cfg(bpf_target_arch = "aarch64")]
#[allow(
    missing_docs,
    reason = "the kernel's UAPI register structs: each field is the register the kernel names"
)]
mod layout {
    use super::slot;
    use core::mem::offset_of;

    /// The kernel's `struct user_pt_regs` for aarch64 (the start of its `pt_regs`).
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct pt_regs {
        pub regs: [u64; 31],
        pub sp: u64,
        pub pc: u64,
        pub pstate: u64,
    }

    const fn x(i: usize) -> usize {
        slot(offset_of!(pt_regs, regs), i)
    }
    pub const NAME: &str = "aarch64";
    pub const REG_SIZE: usize = 8;
    pub const SYSCALL_PREFIX: &str = "__arm64_sys_";
    pub const SYSCALL_WRAPPER: bool = true;
    pub const ARG_OFFSETS: &[usize] = &[x(0), x(1), x(2), x(3), x(4), x(5), x(6), x(7)];
    // The kernel's `orig_x0` follows `user_pt_regs`.
    pub const SYSCALL_ARG_OFFSETS: &[usize] = &[size_of::<pt_regs>(), x(1), x(2), x(3), x(4), x(5)];
    pub const RC_OFFSET: usize = x(0);
    pub const SP_OFFSET: usize = offset_of!(pt_regs, sp);
    pub const FP_OFFSET: Option<usize> = Some(x(29));
    pub const IP_OFFSET: usize = offset_of!(pt_regs, pc);
    pub const RET_ADDR_OFFSET: Option<usize> = Some(x(30));
}

#[cfg(bpf_target_arch = "arm")]
#[allow(
    missing_docs,
    reason = "the kernel's UAPI register structs: each field is the register the kernel names"
)]
mod layout {
    use core::mem::offset_of;

    /// 32-bit arm's `struct pt_regs`: r0-r15, cpsr and `ORIG_r0`, 32 bits each.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct pt_regs {
        pub uregs: [u32; 18],
    }

    const fn u(i: usize) -> usize {
        offset_of!(pt_regs, uregs) + i * 4
    }
    pub const NAME: &str = "arm";
    pub const REG_SIZE: usize = 4;
    // No syscall wrappers on 32-bit arm: entry points are `sys_NAME` and
    // take their arguments in registers.
    pub const SYSCALL_PREFIX: &str = "sys_";
    pub const SYSCALL_WRAPPER: bool = false;
    pub const ARG_OFFSETS: &[usize] = &[u(0), u(1), u(2), u(3)];
    pub const SYSCALL_ARG_OFFSETS: &[usize] = &[u(0), u(1), u(2), u(3), u(4), u(5), u(6)];
    pub const RC_OFFSET: usize = u(0);
    pub const SP_OFFSET: usize = u(13);
    pub const FP_OFFSET: Option<usize> = Some(u(11));
    pub const IP_OFFSET: usize = u(15);
    pub const RET_ADDR_OFFSET: Option<usize> = Some(u(14));
}

#[cfg(bpf_target_arch = "riscv64")]
#[allow(
    missing_docs,
    reason = "the kernel's UAPI register structs: each field is the register the kernel names"
)]
mod layout {
    use core::mem::offset_of;

    /// riscv64's `struct user_regs_struct`: pc, then x1-x31 by ABI name.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct pt_regs {
        pub pc: u64,
        pub ra: u64,
        pub sp: u64,
        pub gp: u64,
        pub tp: u64,
        pub t: [u64; 3],
        pub s0: u64,
        pub s1: u64,
        pub a: [u64; 8],
        pub s2_11: [u64; 10],
        pub t3_6: [u64; 4],
    }

    const fn a(i: usize) -> usize {
        super::slot(offset_of!(pt_regs, a), i)
    }
    pub const NAME: &str = "riscv64";
    pub const REG_SIZE: usize = 8;
    pub const SYSCALL_PREFIX: &str = "__riscv_sys_";
    pub const SYSCALL_WRAPPER: bool = true;
    pub const ARG_OFFSETS: &[usize] = &[a(0), a(1), a(2), a(3), a(4), a(5), a(6), a(7)];
    // The kernel's `orig_a0` follows these registers, status, badaddr, cause.
    pub const SYSCALL_ARG_OFFSETS: &[usize] =
        &[size_of::<pt_regs>() + 3 * 8, a(1), a(2), a(3), a(4), a(5)];
    pub const RC_OFFSET: usize = a(0);
    pub const SP_OFFSET: usize = offset_of!(pt_regs, sp);
    pub const FP_OFFSET: Option<usize> = Some(offset_of!(pt_regs, s0));
    pub const IP_OFFSET: usize = offset_of!(pt_regs, pc);
    pub const RET_ADDR_OFFSET: Option<usize> = Some(offset_of!(pt_regs, ra));
}

#[cfg(bpf_target_arch = "powerpc64")]
#[allow(
    missing_docs,
    reason = "the kernel's UAPI register structs: each field is the register the kernel names"
)]
mod layout {
    use core::mem::offset_of;

    /// powerpc64's `struct user_pt_regs`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct pt_regs {
        pub gpr: [u64; 32],
        pub nip: u64,
        pub msr: u64,
        pub orig_gpr3: u64,
        pub ctr: u64,
        pub link: u64,
        pub xer: u64,
        pub ccr: u64,
        pub softe: u64,
        pub trap: u64,
        pub dar: u64,
        pub dsisr: u64,
        pub result: u64,
    }

    const fn gpr(i: usize) -> usize {
        super::slot(offset_of!(pt_regs, gpr), i)
    }
    pub const NAME: &str = "powerpc64";
    pub const REG_SIZE: usize = 8;
    pub const SYSCALL_PREFIX: &str = "__powerpc_sys_";
    pub const SYSCALL_WRAPPER: bool = true;
    pub const ARG_OFFSETS: &[usize] = &[
        gpr(3),
        gpr(4),
        gpr(5),
        gpr(6),
        gpr(7),
        gpr(8),
        gpr(9),
        gpr(10),
    ];
    pub const SYSCALL_ARG_OFFSETS: &[usize] = &[
        offset_of!(pt_regs, orig_gpr3),
        gpr(4),
        gpr(5),
        gpr(6),
        gpr(7),
        gpr(8),
    ];
    pub const RC_OFFSET: usize = gpr(3);
    pub const SP_OFFSET: usize = gpr(1);
    pub const FP_OFFSET: Option<usize> = None;
    pub const IP_OFFSET: usize = offset_of!(pt_regs, nip);
    pub const RET_ADDR_OFFSET: Option<usize> = Some(offset_of!(pt_regs, link));
}

#[cfg(bpf_target_arch = "s390x")]
#[allow(
    missing_docs,
    reason = "the kernel's UAPI register structs: each field is the register the kernel names"
)]
mod layout {
    use core::mem::offset_of;

    /// s390x's `user_pt_regs`: one argument slot, the PSW (mask and
    /// address) and the 16 general registers.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct pt_regs {
        pub args: [u64; 1],
        pub psw_mask: u64,
        pub psw_addr: u64,
        pub gprs: [u64; 16],
    }

    const fn g(i: usize) -> usize {
        super::slot(offset_of!(pt_regs, gprs), i)
    }
    pub const NAME: &str = "s390x";
    pub const REG_SIZE: usize = 8;
    pub const SYSCALL_PREFIX: &str = "__s390x_sys_";
    pub const SYSCALL_WRAPPER: bool = true;
    pub const ARG_OFFSETS: &[usize] = &[g(2), g(3), g(4), g(5), g(6)];
    // The kernel's `orig_gpr2` follows `user_pt_regs`.
    pub const SYSCALL_ARG_OFFSETS: &[usize] = &[size_of::<pt_regs>(), g(3), g(4), g(5), g(6), g(7)];
    pub const RC_OFFSET: usize = g(2);
    pub const SP_OFFSET: usize = g(15);
    pub const FP_OFFSET: Option<usize> = Some(g(11));
    pub const IP_OFFSET: usize = offset_of!(pt_regs, psw_addr);
    pub const RET_ADDR_OFFSET: Option<usize> = Some(g(14));
}

#[cfg(bpf_target_arch = "mips")]
#[allow(
    missing_docs,
    reason = "the kernel's UAPI register structs: each field is the register the kernel names"
)]
mod layout {
    use core::mem::offset_of;

    /// 64-bit mips' `struct pt_regs` up to `cp0_epc`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct pt_regs {
        pub regs: [u64; 32],
        pub cp0_status: u64,
        pub hi: u64,
        pub lo: u64,
        pub cp0_badvaddr: u64,
        pub cp0_cause: u64,
        pub cp0_epc: u64,
    }

    const fn r(i: usize) -> usize {
        super::slot(offset_of!(pt_regs, regs), i)
    }
    pub const NAME: &str = "mips";
    pub const REG_SIZE: usize = 8;
    // mips has no syscall wrappers: `sys_NAME` with arguments in registers.
    pub const SYSCALL_PREFIX: &str = "sys_";
    pub const SYSCALL_WRAPPER: bool = false;
    // n64: a0-a7 are regs[4..12].
    pub const ARG_OFFSETS: &[usize] = &[r(4), r(5), r(6), r(7), r(8), r(9), r(10), r(11)];
    pub const SYSCALL_ARG_OFFSETS: &[usize] = &[r(4), r(5), r(6), r(7), r(8), r(9)];
    pub const RC_OFFSET: usize = r(2);
    pub const SP_OFFSET: usize = r(29);
    pub const FP_OFFSET: Option<usize> = Some(r(30));
    pub const IP_OFFSET: usize = offset_of!(pt_regs, cp0_epc);
    pub const RET_ADDR_OFFSET: Option<usize> = Some(r(31));
}

#[cfg(bpf_target_arch = "loongarch64")]
#[allow(
    missing_docs,
    reason = "the kernel's UAPI register structs: each field is the register the kernel names"
)]
mod layout {
    use core::mem::offset_of;

    /// loongarch64's `struct user_pt_regs`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct pt_regs {
        pub regs: [u64; 32],
        pub orig_a0: u64,
        pub csr_era: u64,
        pub csr_badv: u64,
        pub reserved: [u64; 10],
    }

    const fn r(i: usize) -> usize {
        super::slot(offset_of!(pt_regs, regs), i)
    }
    pub const NAME: &str = "loongarch64";
    pub const REG_SIZE: usize = 8;
    // Generic syscall entry, no wrappers.
    pub const SYSCALL_PREFIX: &str = "sys_";
    pub const SYSCALL_WRAPPER: bool = false;
    pub const ARG_OFFSETS: &[usize] = &[r(4), r(5), r(6), r(7), r(8), r(9), r(10), r(11)];
    pub const SYSCALL_ARG_OFFSETS: &[usize] =
        &[offset_of!(pt_regs, orig_a0), r(5), r(6), r(7), r(8), r(9)];
    pub const RC_OFFSET: usize = r(4);
    pub const SP_OFFSET: usize = r(3);
    pub const FP_OFFSET: Option<usize> = Some(r(22));
    pub const IP_OFFSET: usize = offset_of!(pt_regs, csr_era);
    pub const RET_ADDR_OFFSET: Option<usize> = Some(r(1));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::pt_regs;
    use core::mem::size_of;

    /// Every register the accessors read lies inside the context struct the
    /// verifier bounds reads by; the syscall offsets lie in the kernel's
    /// larger `struct pt_regs`, read through a pointer.
    #[test]
    fn offsets_fit_the_context() {
        let size = size_of::<pt_regs>();
        let inside = |o: usize| o % REG_SIZE == 0 && o + REG_SIZE <= size;
        assert!(ARG_OFFSETS.iter().all(|&o| inside(o)));
        assert!([RC_OFFSET, SP_OFFSET, IP_OFFSET].iter().all(|&o| inside(o)));
        assert!(FP_OFFSET.is_none_or(inside));
        assert!(RET_ADDR_OFFSET.is_none_or(inside));
        assert!(SYSCALL_ARG_OFFSETS.len() >= 4);
        assert!(SYSCALL_PREFIX.ends_with("sys_"));
    }

    /// Offsets as the kernels define them (`offsetof` in each arch's
    /// `struct pt_regs`): first argument, first syscall argument, return value.
    #[test]
    fn kernel_offsets() {
        let got = (ARG_OFFSETS[0], SYSCALL_ARG_OFFSETS[0], RC_OFFSET);
        let want = match NAME {
            "x86_64" => (112, 112, 80),
            "aarch64" => (0, 272, 0),
            "arm" => (0, 0, 0),
            "riscv64" => (80, 280, 80),
            "powerpc64" => (24, 272, 24),
            "s390x" => (40, 152, 40),
            "mips" => (32, 32, 16),
            "loongarch64" => (32, 256, 32),
            other => panic!("no offsets for {other}"),
        };
        assert_eq!(got, want, "{NAME}");
    }
}
