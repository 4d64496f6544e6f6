//! perf_event_open(2) and the ioctls that hang BPF programs on perf events
//! (tracepoints, kprobes, uprobes, software/hardware counters).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `PERF_TYPE_*`: the built-in PMUs. Dynamic PMUs (kprobe, uprobe) have their
/// type number in `/sys/bus/event_source/devices/NAME/type`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PerfType(pub u32);

impl PerfType {
    /// `PERF_TYPE_HARDWARE`: CPU counters ([`hw`]).
    pub const HARDWARE: Self = Self(0);
    /// `PERF_TYPE_SOFTWARE`: kernel counters ([`sw`]).
    pub const SOFTWARE: Self = Self(1);
    /// `PERF_TYPE_TRACEPOINT`: a tracepoint, `config` its id.
    pub const TRACEPOINT: Self = Self(2);
    /// `PERF_TYPE_HW_CACHE`: CPU cache counters.
    pub const HW_CACHE: Self = Self(3);
    /// `PERF_TYPE_RAW`: a model-specific CPU event.
    pub const RAW: Self = Self(4);
    /// `PERF_TYPE_BREAKPOINT`: a hardware breakpoint.
    pub const BREAKPOINT: Self = Self(5);
}

/// `PERF_COUNT_SW_*`.
pub mod sw {
    /// `PERF_COUNT_SW_CPU_CLOCK`: CPU time, per CPU.
    pub const CPU_CLOCK: u64 = 0;
    /// `PERF_COUNT_SW_TASK_CLOCK`: CPU time of the task.
    pub const TASK_CLOCK: u64 = 1;
    /// `PERF_COUNT_SW_PAGE_FAULTS`: Page faults.
    pub const PAGE_FAULTS: u64 = 2;
    /// `PERF_COUNT_SW_CONTEXT_SWITCHES`: Context switches.
    pub const CONTEXT_SWITCHES: u64 = 3;
    /// `PERF_COUNT_SW_CPU_MIGRATIONS`: Migrations to another CPU.
    pub const CPU_MIGRATIONS: u64 = 4;
    /// `PERF_COUNT_SW_BPF_OUTPUT`: The event `bpf_perf_event_output` writes to (perf buffers).
    pub const BPF_OUTPUT: u64 = 10;
}

/// `PERF_COUNT_HW_*`.
pub mod hw {
    /// `PERF_COUNT_HW_CPU_CYCLES`: CPU cycles.
    pub const CPU_CYCLES: u64 = 0;
    /// `PERF_COUNT_HW_INSTRUCTIONS`: Retired instructions.
    pub const INSTRUCTIONS: u64 = 1;
    /// `PERF_COUNT_HW_CACHE_REFERENCES`: Last-level cache accesses.
    pub const CACHE_REFERENCES: u64 = 2;
    /// `PERF_COUNT_HW_CACHE_MISSES`: Last-level cache misses.
    pub const CACHE_MISSES: u64 = 3;
}

/// `struct perf_event_attr` up to `config3` (`PERF_ATTR_SIZE_VER8`). Older
/// kernels accept it as long as the fields they do not know are zero.
#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct PerfEventAttr {
    /// The PMU ([`PerfType`]).
    pub type_: u32,
    /// The struct's size (set by [`PerfEventAttr::new`]).
    pub size: u32,
    /// The event within the PMU.
    pub config: u64,
    /// `sample_period` or `sample_freq` (with [`PerfEventAttr::FLAG_FREQ`]).
    pub sample_period: u64,
    /// `PERF_SAMPLE_*`: what each sample records.
    pub sample_type: u64,
    /// `PERF_FORMAT_*`: what read(2) returns.
    pub read_format: u64,
    /// The bitfield word: `disabled`, `inherit`, ..., `freq`, ...
    pub flags: u64,
    /// Wake the reader after this many events (or bytes, with `watermark`).
    pub wakeup_events: u32,
    /// Breakpoint type (`HW_BREAKPOINT_*`).
    pub bp_type: u32,
    /// `config1`: `kprobe_func` / `uprobe_path` pointer.
    pub config1: u64,
    /// `config2`: `kprobe_addr` / `probe_offset`.
    pub config2: u64,
    /// `PERF_SAMPLE_BRANCH_*`.
    pub branch_sample_type: u64,
    /// User registers to sample.
    pub sample_regs_user: u64,
    /// Bytes of user stack to sample.
    pub sample_stack_user: u32,
    /// The clock of timestamps (with `use_clockid`).
    pub clockid: i32,
    /// Registers to sample at interrupt.
    pub sample_regs_intr: u64,
    /// AUX area wakeup watermark.
    pub aux_watermark: u32,
    /// Maximum callchain depth.
    pub sample_max_stack: u16,
    /// Reserved: zero.
    pub reserved2: u16,
    /// AUX data per sample.
    pub aux_sample_size: u32,
    /// Reserved: zero.
    pub reserved3: u32,
    /// Data for `SIGTRAP` (with `sigtrap`).
    pub sig_data: u64,
    /// Extension of `config2`.
    pub config3: u64,
}

const _: () = assert!(size_of::<PerfEventAttr>() == 136);

impl PerfEventAttr {
    /// `disabled`: the event starts off (enable it with [`enable`]).
    pub const FLAG_DISABLED: u64 = 1 << 0;
    /// `freq`: `sample_period` is a frequency in Hz.
    pub const FLAG_FREQ: u64 = 1 << 10;

    /// An attribute for event `config` of PMU `type_`, with the size set and everything else zero.
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

/// `PERF_EVENT_IOC_ENABLE`: starts counting.
pub fn enable(perf: BorrowedFd<'_>) -> io::Result<()> {
    ioctl(perf, PERF_EVENT_IOC_ENABLE, 0)
}

/// `PERF_EVENT_IOC_DISABLE`: stops counting.
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
