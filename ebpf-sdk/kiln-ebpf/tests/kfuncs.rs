//! kfuncs from Rust (kfunc-demo, declared in its core.toml): a syscall
//! program acquires a task with `bpf_task_from_pid`, reads its tgid with
//! CO-RE and releases it, sums with the `bpf_iter_num` open-coded iterator,
//! and sees that a weak kfunc no kernel has is absent.

use kiln_loader::EbpfLoader;
use kiln_loader::programs::TestRun;
use kiln_obj::ObjectSpec;
use kiln_obj::btf::{Btf, Kind};
use kiln_testkit::{Need, TestResult, bpf_object, test};

/// The kfuncs the program calls, looked up in the kernel's BTF (6.2+ for
/// the task ones, 6.4+ for bpf_iter_num), and syscall programs (5.14+).
fn no_kfuncs() -> Option<String> {
    let Ok(bytes) = std::fs::read("/sys/kernel/btf/vmlinux") else {
        return Some("no kernel BTF".into());
    };
    let Ok(btf) = Btf::from_bytes(bytes) else {
        return Some("unreadable kernel BTF".into());
    };
    for f in ["bpf_task_from_pid", "bpf_task_release", "bpf_iter_num_new"] {
        if btf.find_by_name(Kind::Func, f).is_none() {
            return Some(format!("kernel has no kfunc {f}"));
        }
    }
    let syscall = kiln_loader::probe::probe_program_type(kiln_obj::ProgramType::SYSCALL, None);
    (!syscall).then(|| "kernel has no syscall programs (5.14+)".into())
}

fn kfuncs_acquire_iterate_and_release() -> TestResult {
    let spec = ObjectSpec::parse(&std::fs::read(bpf_object("kfunc-demo.bpf.o")?)?)?;
    let ebpf = EbpfLoader::new().load(&spec)?;
    let prog = ebpf
        .program("kfunc_task_tgid")
        .ok_or("no program kfunc_task_tgid")?;
    let run = |pid: i32, n: i32, what: i32| -> Result<i32, kiln_loader::programs::ProgramError> {
        let mut ctx = Vec::new();
        for v in [pid, n, what] {
            ctx.extend_from_slice(&v.to_ne_bytes());
        }
        let out = prog.test_run(TestRun {
            data_in: None,
            data_out: None,
            ctx_in: Some(&ctx),
            ctx_out: None,
            repeat: 0,
            flags: 0,
            cpu: 0,
        })?;
        Ok(out.retval as i32)
    };
    let me = std::process::id() as i32;
    // A live thread of this process: bpf_task_from_pid takes any task's
    // pid, and a thread's task has the process's tgid.
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        let _ = tid_tx.send(unsafe { libc::gettid() });
        let _ = done_rx.recv();
    });
    let tid = tid_rx.recv()?;
    let thread_tgid = run(tid, 0, 0);
    drop(done_tx);
    let _ = thread.join();
    assert_eq!(run(me, 0, 0)?, me, "the task of this pid: its tgid");
    assert_eq!(
        thread_tgid?, me,
        "the task of thread {tid}: the process's tgid"
    );
    assert_eq!(run(-5, 0, 0)?, 0, "no task for a bad pid");
    assert_eq!(run(0, 10, 1)?, 45, "0 + 1 + ... + 9 through bpf_iter_num");
    assert_eq!(run(0, 0, 1)?, 0, "an empty iteration");
    assert_eq!(run(0, 0, 2)?, 0, "a weak kfunc no kernel has");
    Ok(())
}

fn main() {
    kiln_testkit::run(vec![test(
        "kfuncs_acquire_iterate_and_release",
        &[Need::Bpf, Need::Probe("kfuncs", no_kfuncs)],
        kfuncs_acquire_iterate_and_release,
    )]);
}
