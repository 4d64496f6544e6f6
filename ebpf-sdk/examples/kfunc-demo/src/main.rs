//! kfuncs called from Rust. `kfunc_task_tgid` (a syscall program, run with
//! BPF_PROG_TEST_RUN) takes a pid from its context, acquires the task with
//! `bpf_task_from_pid`, reads its tgid with CO-RE, releases it, sums 0..n
//! with the `bpf_iter_num` open-coded iterator, and returns what the context
//! asks for.
#![no_std]
#![no_main]

use core::ffi::c_void;

use kiln_ebpf::programs::SyscallContext;
use kiln_ebpf::syscall;

kiln_ebpf::license!("Dual MIT/GPL");

mod kernel {
    include!(concat!(env!("OUT_DIR"), "/kiln_core.rs"));
}
use kernel::Task;

/// The context the test passes in.
#[repr(C)]
pub struct Args {
    pub pid: i32,
    pub n: i32,
    /// What to return: 0 the tgid of `pid`'s task (0 when there is none),
    /// 1 the sum 0 + 1 + ... + (n - 1), 2 whether the made-up weak kfunc
    /// exists (never).
    pub what: i32,
}

/// `struct bpf_iter_num`: the iterator's state, on the stack.
#[repr(C)]
struct IterNum {
    opaque: [u64; 1],
}

#[syscall]
fn kfunc_task_tgid(ctx: SyscallContext) -> i32 {
    let args = ctx.data.cast::<Args>();
    // SAFETY: the test passes a whole `Args` as the context.
    let (pid, n, what) = unsafe { ((*args).pid, (*args).n, (*args).what) };
    // SAFETY: bpf_task_from_pid takes any pid; a non-null result is released below.
    let task = unsafe { kernel::bpf_task_from_pid(pid) };
    let tgid = if task.is_null() {
        0
    } else {
        let tgid = Task::from_ptr(task).tgid() as i32;
        // SAFETY: `task` is the reference bpf_task_from_pid returned.
        unsafe { kernel::bpf_task_release(task) };
        tgid
    };
    let mut it = IterNum { opaque: [0] };
    let it_ptr = (&raw mut it).cast::<c_void>();
    let mut sum = 0i32;
    // SAFETY: `it` lives on this stack frame for the whole iteration and is
    // destroyed after it, as the verifier requires.
    unsafe {
        kernel::bpf_iter_num_new(it_ptr, 0, n);
        loop {
            let v = kernel::bpf_iter_num_next(it_ptr);
            if v.is_null() {
                break;
            }
            sum += *v;
        }
        kernel::bpf_iter_num_destroy(it_ptr);
    }
    match what {
        0 => tgid,
        1 => sum,
        _ => kernel::bpf_kiln_no_such_kfunc_exists() as i32,
    }
}
