//! The kernel side of the exec tracer (`../tracer.rs` is the userspace side).
//!
//! On every exec (`sched/sched_process_exec`) of a child of `PARENT_TGID`
//! (every exec when it is 0), reads the new task's pid, uid, parent and
//! `comm` with CO-RE, sends them through the `EVENTS` ring buffer, counts
//! execs per pid in `EXECS`, and logs the exec with `info!`.
#![no_std]
#![no_main]

use kiln_ebpf::core_read::Task;
use kiln_ebpf::maps::{HashMap, RingBuf};
use kiln_ebpf::programs::TracePointContext;
use kiln_ebpf::{Global, debug, info, map, tracepoint, warn};

kiln_ebpf::license!("Dual MIT/GPL");

/// One exec, as userspace reads it from `EVENTS` (`ExecEvent` in tracer.rs
/// has the same layout).
#[repr(C)]
pub struct ExecEvent {
    pub pid: u32,
    pub uid: u32,
    pub parent_pid: u32,
    pub _pad: u32,
    pub comm: [u8; 16],
}

/// Only children of this process are traced (0: every exec). Set by
/// userspace before load.
#[unsafe(no_mangle)]
static PARENT_TGID: Global<u32> = Global::new(0);

#[map]
static EVENTS: RingBuf<{ 64 * 1024 }> = RingBuf::new();

/// Execs per pid (a pid that execs twice counts 2).
#[map]
static EXECS: HashMap<u32, u64, 4096> = HashMap::new();

#[tracepoint("sched", "sched_process_exec")]
fn trace_exec(ctx: TracePointContext) -> u32 {
    let task = Task::current();
    let parent_pid = task.real_parent().tgid();
    let wanted = PARENT_TGID.get();
    if wanted != 0 && parent_pid != wanted {
        return 0;
    }
    let pid = task.tgid();
    let uid = task.cred().uid();
    let comm = task.comm();
    EXECS.increment(&pid, 1);
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>() else {
        warn!("ring full, exec of pid {} not sent", pid);
        return 0;
    };
    entry.write(ExecEvent {
        pid,
        uid,
        parent_pid,
        _pad: 0,
        comm,
    });
    entry.submit(0);
    info!(ctx, "exec pid {} uid {} comm {}", pid, uid, comm);
    debug!("pid {} has parent {}", pid, parent_pid);
    0
}
