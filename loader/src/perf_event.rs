//! perf_event_open(2) and the ioctls that hang BPF programs on perf events
//! (tracepoints, kprobes, uprobes, software/hardware counters).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `PERF_TYPE_*`: the built-in PMUs. Dynamic PMUs (kprobe, uprobe) have their
/// type number in `/sys/bus/event_source/devices/NAME/type`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PerfType(pub u32);

impl PerfType {
    pub const HARDWARE: Self = Self(0);
    pub const SOFTWARE: Self = Self(1);
    pub const TRACEPOINT: Self = Self(2);
    pub const HW_CACHE: Self = Self(3);
    pub const RAW: Self = Self(4);
    pub const BREAKPOINT: Self = Self(5);
}

/// `PERF_COUNT_SW_*`.
pub mod sw {
    pub const CPU_CLOCK: u64 = 0;
    pub const TASK_CLOCK: u64 = 1;
    pub const PAGE_FAULTS: u64 = 2;
    pub const CONTEXT_SWITCHES: u64 = 3;
    pub const CPU_MIGRATIONS: u64 = 4;
    pub const BPF_OUTPUT: u64 = 10;
}

/// `PERF_COUNT_HW_*`.
pub mod hw {
    pub const CPU_CYCLES: u64 = 0;
    pub const INSTRUCTIONS: u64 = 1;
    pub const CACHE_REFERENCES: u64 = 2;
    pub const CACHE_MISSES: u64 = 3;
}

/// `struct perf_event_attr` up to `config3` (`PERF_ATTR_SIZE_VER8`). Older
/// kernels accept it as long as the fields they do not know are zero.
#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct PerfEventAttr {
    pub type_: u32,
    pub size: u32,
    pub config: u64,
    /// `sample_period` or `sample_freq` (with [`PerfEventAttr::FLAG_FREQ`]).
    pub sample_period: u64,
    pub sample_type: u64,
    pub read_format: u64,
    /// The bitfield word: `disabled`, `inherit`, ..., `freq`, ...
    pub flags: u64,
    pub wakeup_events: u32,
    pub bp_type: u32,
    /// `config1`: `kprobe_func` / `uprobe_path` pointer.
    pub config1: u64,
    /// `config2`: `kprobe_addr` / `probe_offset`.
    pub config2: u64,
    pub branch_sample_type: u64,
    pub sample_regs_user: u64,
    pub sample_stack_user: u32,
    pub clockid: i32,
    pub sample_regs_intr: u64,
    pub aux_watermark: u32,
    pub sample_max_stack: u16,
    pub reserved2: u16,
    pub aux_sample_size: u32,
    pub reserved3: u32,
    pub sig_data: u64,
    pub config3: u64,
}

const _: () = assert!(size_of::<PerfEventAttr>() == 136);

impl PerfEventAttr {
    pub const FLAG_DISABLED: u64 = 1 << 0;
    pub const FLAG_FREQ: u64 = 1 << 10;

    pub fn new(type_: PerfType, config: u64) -> Self {
        PerfEventAttr {
            type_: type_.0,
            size: size_of::<Self>() as u32,
            config,
            ..Default::default()
        }
    }

    /// A disabled, every-hit event as tracepoints and k/uprobes use: the
    /// program runs on each hit once the event is enabled.
    pub fn probe(type_: PerfType, config: u64) -> Self {
        PerfEventAttr {
            sample_period: 1,
            wakeup_events: 1,
            flags: Self::FLAG_DISABLED,
            ..Self::new(type_, config)
        }
    }
}

/// `PERF_FLAG_FD_CLOEXEC`.
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

/// perf_event_open(2). `pid == -1` with a `cpu` counts every task on that CPU;
/// `pid >= 0` with `cpu == -1` follows one task on any CPU.
pub fn perf_event_open(attr: &PerfEventAttr, pid: i32, cpu: i32) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a live perf_event_attr whose `size` field tells the
    // kernel how much to read; the pointers in config1 (if any) are set by the
    // caller to strings that outlive this call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr as *const PerfEventAttr,
            pid,
            cpu,
            -1i32,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_EVENT_IOC_DISABLE: libc::c_ulong = 0x2401;
/// `_IOW('$', 8, __u32)`.
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;

fn ioctl(fd: BorrowedFd<'_>, req: libc::c_ulong, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the perf ioctls used here take an integer argument, not a pointer.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub fn enable(perf: BorrowedFd<'_>) -> io::Result<()> {
    ioctl(perf, PERF_EVENT_IOC_ENABLE, 0)
}

pub fn disable(perf: BorrowedFd<'_>) -> io::Result<()> {
    ioctl(perf, PERF_EVENT_IOC_DISABLE, 0)
}

/// `PERF_EVENT_IOC_SET_BPF`: the pre-5.15 way to run a program on a perf event.
/// Minimum kernel version: 4.1 (kprobes), 4.7 (tracepoints), 4.9 (perf events).
pub fn set_bpf(perf: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    ioctl(
        perf,
        PERF_EVENT_IOC_SET_BPF,
        prog.as_raw_fd() as libc::c_ulong,
    )
}
