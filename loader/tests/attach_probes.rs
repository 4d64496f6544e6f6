//! uprobes on a function of this test binary, kprobes/ksyscall (VMs only:
//! the host kernel has no kprobes), and auto-attach from section targets.

mod attach_util;

use attach_util::*;
use kiln_loader::links::uprobe::{attach_uprobe, symbol_file_offset};
use kiln_loader::links::{auto_attach, kprobe};
use kiln_obj::ProgramKind;
use kiln_testkit::{Need, test};

/// The uprobe target: kept out of line and exported so its symbol exists.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn kiln_uprobe_target(x: u64) -> u64 {
    std::hint::black_box(x.wrapping_mul(3))
}

fn call_target(n: u64) -> TestResult {
    for i in 0..n {
        std::hint::black_box(kiln_uprobe_target(std::hint::black_box(i)));
    }
    Ok(())
}

fn uprobe_kind(target: Option<String>) -> ProgramKind {
    ProgramKind::Uprobe {
        target,
        retprobe: false,
    }
}

fn no_uprobe_pmu() -> Option<String> {
    (!std::path::Path::new("/sys/bus/event_source/devices/uprobe").exists())
        .then(|| "kernel has no uprobe PMU (CONFIG_UPROBE_EVENTS off)".into())
}

fn uprobe_counts_calls_then_detaches() -> TestResult {
    let exe = std::env::current_exe()?;
    let off = symbol_file_offset(&exe, "kiln_uprobe_target")?;
    check(off != 0, || "zero file offset".into())?;
    let map = counters("up_counts")?;
    let p0 = counter_prog(uprobe_kind(None), map.fd(), 0, 0)?;
    let p1 = counter_prog(uprobe_kind(None), map.fd(), 1, 0)?;
    let pid = Some(std::process::id() as i32);
    let mut link = attach_uprobe(p0.fd(), &exe, "kiln_uprobe_target", false, pid)?;
    // Perf-event-based: the kernel cannot swap the program in place.
    counts_updates_detaches(&mut link, &map, (&p0, &p1), Update::Refused, 5, &|| {
        call_target(5)
    })
}

fn auto_attach_uprobe_from_section_target() -> TestResult {
    let exe = std::env::current_exe()?;
    let kind = uprobe_kind(Some(format!("{}:kiln_uprobe_target", exe.display())));
    let map = counters("auto_counts")?;
    let p0 = counter_prog(kind.clone(), map.fd(), 0, 0)?;
    let mut link = auto_attach(p0.fd(), &kind)?;
    call_target(4)?;
    check(count(&map, 0) >= 4, || {
        format!("counter 0 = {}", count(&map, 0))
    })?;
    link.detach()?;
    let after = count(&map, 0);
    call_target(4)?;
    check(count(&map, 0) == after, || "runs after detach".into())
}

fn auto_attach_errors_without_target() -> TestResult {
    let map = counters("auto_counts")?;
    let p = counter_prog(ProgramKind::SocketFilter, map.fd(), 0, 0)?;
    let err = match auto_attach(p.fd(), &ProgramKind::SocketFilter) {
        Ok(_) => return Err("auto-attached a socket filter without a socket".into()),
        Err(e) => e.to_string(),
    };
    check(err.contains("socket"), || err.clone())?;
    let kind = ProgramKind::Tracepoint {
        category: None,
        name: None,
    };
    let p = counter_prog(kind.clone(), map.fd(), 0, 0)?;
    let err = auto_attach(p.fd(), &kind)
        .map(drop)
        .expect_err("attached without target");
    check(err.to_string().contains("tracepoint"), || err.to_string())
}

fn ksyscall_counts_getpid_then_detaches() -> TestResult {
    let kind = ProgramKind::Kprobe {
        function: Some("getpid".into()),
        offset: 0,
        retprobe: false,
    };
    let map = counters("kp_counts")?;
    let p0 = counter_prog(kind.clone(), map.fd(), 0, 0)?;
    let p1 = counter_prog(kind, map.fd(), 1, 0)?;
    let mut link = kprobe::attach_ksyscall(p0.fd(), "getpid", false)?;
    counts_updates_detaches(&mut link, &map, (&p0, &p1), Update::Refused, 5, &|| {
        for _ in 0..5 {
            // SAFETY: getpid has no preconditions.
            unsafe { libc::syscall(libc::SYS_getpid) };
        }
        Ok(())
    })
}

fn main() {
    let up = [
        Need::Root,
        Need::Bpf,
        Need::Probe("uprobe PMU", no_uprobe_pmu),
    ];
    kiln_testkit::run(vec![
        test(
            "uprobe_counts_calls_then_detaches",
            &up,
            uprobe_counts_calls_then_detaches,
        ),
        test(
            "auto_attach_uprobe_from_section_target",
            &up,
            auto_attach_uprobe_from_section_target,
        ),
        test(
            "auto_attach_errors_without_target",
            &[Need::Root, Need::Bpf],
            auto_attach_errors_without_target,
        ),
        test(
            "ksyscall_counts_getpid_then_detaches",
            &[Need::Root, Need::Bpf, Need::Kprobes],
            ksyscall_counts_getpid_then_detaches,
        ),
    ]);
}
