//! CO-RE from Rust on any kernel: on every syscall of the process userspace
//! names in `TARGET_TGID`, record what `bpf_get_current_pid_tgid()` says next
//! to what the generated CO-RE accessors read from the current `task_struct`
//! (pid, tgid, parent, group leader, credentials, comm). A test compares
//! them; the VM matrix runs the same object on every kernel, where the
//! `task_struct` layouts differ. `core_sock_state` reads `struct sock`'s
//! `sock_common` fields, which sit in anonymous unions: the CO-RE paths a
//! loader has to resolve through unnamed members.
#![no_std]
#![no_main]

use kiln_ebpf::core_read::{Sock, Task};
use kiln_ebpf::maps::Array;
use kiln_ebpf::programs::RawTracePointContext;
use kiln_ebpf::{Global, helpers, map, raw_tracepoint};

kiln_ebpf::license!("Dual MIT/GPL");

/// What one syscall entry saw (layout mirrored by the test).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Seen {
    pub pid_tgid: u64,
    pub pid: u32,
    pub tgid: u32,
    pub parent_tgid: u32,
    pub leader_pid: u32,
    pub uid: u32,
    pub euid: u32,
    pub comm: [u8; 16],
}

/// The process to watch; set by the loader before load.
#[unsafe(no_mangle)]
static TARGET_TGID: Global<u32> = Global::new(0);

#[map]
static SEEN: Array<Seen, 1> = Array::new();

#[raw_tracepoint("sys_enter")]
fn core_sys_enter(_ctx: RawTracePointContext) -> u32 {
    let pid_tgid = helpers::get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 != TARGET_TGID.get() {
        return 0;
    }
    let task = Task::current();
    let cred = task.cred();
    let seen = Seen {
        pid_tgid,
        pid: task.pid(),
        tgid: task.tgid(),
        parent_tgid: task.real_parent().tgid(),
        leader_pid: task.group_leader().pid(),
        uid: cred.uid(),
        euid: cred.euid(),
        comm: task.comm(),
    };
    let _ = SEEN.set(0, &seen);
    0
}

/// A TCP socket of the test's connection as `inet_sock_set_state` saw it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SockSeen {
    pub family: u16,
    pub num: u16,
    pub dport: u16,
    pub _pad: u16,
    pub daddr: u32,
    pub rcv_saddr: u32,
}

/// The listening port of the test's server (host order); set before load.
#[unsafe(no_mangle)]
static TARGET_PORT: Global<u16> = Global::new(0);

#[map]
static SOCK_SEEN: Array<SockSeen, 1> = Array::new();

/// `inet_sock_set_state(const struct sock *sk, int oldstate, int newstate)`:
/// records the client side of the connection to TARGET_PORT.
#[raw_tracepoint("inet_sock_set_state")]
fn core_sock_state(ctx: RawTracePointContext) -> u32 {
    // SAFETY: the tracepoint's first argument is the socket.
    let sk = Sock(unsafe { ctx.arg(0) } as *const core::ffi::c_void);
    let dport = sk.dport();
    if u16::from_be(dport) != TARGET_PORT.get() {
        return 0;
    }
    let seen = SockSeen {
        family: sk.family(),
        num: sk.num(),
        dport,
        _pad: 0,
        daddr: sk.daddr(),
        rcv_saddr: sk.rcv_saddr(),
    };
    let _ = SOCK_SEEN.set(0, &seen);
    0
}
