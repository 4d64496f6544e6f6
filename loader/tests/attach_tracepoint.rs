//! Tracepoints and raw tracepoints, triggered by real syscalls.

mod attach_util;

use attach_util::*;
use kiln_loader::Map;
use kiln_loader::links::tracepoint::attach_tracepoint;
use kiln_loader::links::{FdLink, Link, LinkType};
use kiln_obj::ProgramKind;
use kiln_testkit::{Need, test};

fn getpid_n(n: usize) {
    for _ in 0..n {
        // SAFETY: getpid has no preconditions; the raw syscall bypasses any libc caching.
        unsafe { libc::syscall(libc::SYS_getpid) };
    }
}

fn tp_kind() -> ProgramKind {
    ProgramKind::Tracepoint {
        category: Some("syscalls".into()),
        name: Some("sys_enter_getpid".into()),
    }
}

fn tracepoint_counts_getpid_then_detaches() -> TestResult {
    let map = counters("tp_counts")?;
    let p0 = counter_prog(tp_kind(), map.fd(), 0, 0)?;
    let p1 = counter_prog(tp_kind(), map.fd(), 1, 0)?;
    let mut link = attach_tracepoint(p0.fd(), "syscalls", "sys_enter_getpid", 0)?;
    if link.is_bpf_link() {
        let info = link.info()?;
        check(info.link_type == LinkType::PerfEvent, || {
            format!("{info:?}")
        })?;
        check(info.prog_id == p0.id(), || format!("{info:?}"))?;
    }
    // Perf event links cannot swap programs. Other processes may call getpid
    // too, so counts are lower bounds, but nothing may count after detach.
    counts_updates_detaches(&mut link, &map, (&p0, &p1), Update::Refused, 5, &|| {
        getpid_n(5);
        Ok(())
    })
}

fn tracepoint_unknown_target_names_it() -> TestResult {
    let map = counters("tp_counts")?;
    let p0 = counter_prog(tp_kind(), map.fd(), 0, 0)?;
    let err = attach_tracepoint(p0.fd(), "syscalls", "sys_enter_no_such_call", 0)
        .expect_err("attached to a tracepoint that does not exist");
    let msg = err.to_string();
    check(
        msg.contains("tracepoint") && msg.contains("sys_enter_no_such_call"),
        || msg.clone(),
    )
}

/// A child pins a tracepoint link and exits; the parent still sees counts,
/// reopens the link from the pin and removes it.
fn tracepoint_pinned_link_outlives_its_process() -> TestResult {
    let pins = PinDir::new("tp")?;
    run_child("tp-pin", &[("KILN_PIN_DIR", pins.0.to_str().unwrap())])?;
    let map = Map::from_pin(&pins.path("counts"), Default::default())?;
    getpid_n(5);
    check(count(&map, 0) >= 5, || {
        format!("counter 0 = {}", count(&map, 0))
    })?;
    let mut link = FdLink::from_pin(pins.path("link"))?;
    check(link.info()?.link_type == LinkType::PerfEvent, || {
        format!("{link:?}")
    })?;
    FdLink::unpin(pins.path("link"))?;
    link.detach()?;
    drop(link);
    let after = count(&map, 0);
    getpid_n(5);
    check(count(&map, 0) == after, || {
        "program runs after unpin and detach".into()
    })?;
    Ok(())
}

fn child_main(role: &str) -> TestResult {
    match role {
        "tp-pin" => {
            let (_, dir, map) = child_setup("tp_counts")?;
            let p = counter_prog(tp_kind(), map.fd(), 0, 0)?;
            let mut link = attach_tracepoint(p.fd(), "syscalls", "sys_enter_getpid", 0)?;
            link.pin(&dir.join("link"))?;
            Ok(())
        }
        other => Err(format!("unknown child role {other}").into()),
    }
}

fn main() {
    let needs = [Need::Root, Need::Bpf];
    main_with_children(
        child_main,
        vec![
            test(
                "tracepoint_counts_getpid_then_detaches",
                &needs,
                tracepoint_counts_getpid_then_detaches,
            ),
            test(
                "tracepoint_unknown_target_names_it",
                &needs,
                tracepoint_unknown_target_names_it,
            ),
            test(
                "tracepoint_pinned_link_outlives_its_process",
                &needs,
                tracepoint_pinned_link_outlives_its_process,
            ),
        ],
    );
}
