//! Tracepoints and raw tracepoints, triggered by real syscalls.

mod attach_util;

use attach_util::*;
use kiln_loader::Map;
use kiln_loader::links::raw_tracepoint::attach_raw_tracepoint;
use kiln_loader::links::tracepoint::attach_tracepoint;
use kiln_loader::links::tracing::{attach_tracing, vmlinux_attach_btf_id};
use kiln_loader::links::{FdLink, Link, LinkType};
use kiln_loader::programs::LoadOptions;
use kiln_obj::{AttachType, ProgramKind};
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

fn trigger_getpid() -> TestResult {
    getpid_n(5);
    Ok(())
}

fn raw_tracepoint_counts_syscalls_then_detaches() -> TestResult {
    let map = counters("rtp_counts")?;
    let kind = ProgramKind::RawTracepoint {
        name: Some("sys_enter".into()),
        writable: false,
    };
    let p0 = counter_prog(kind.clone(), map.fd(), 0, 0)?;
    let p1 = counter_prog(kind, map.fd(), 1, 0)?;
    let mut link = attach_raw_tracepoint(p0.fd(), "sys_enter")?;
    let info = link.info()?;
    check(info.link_type == LinkType::RawTracepoint, || {
        format!("{info:?}")
    })?;
    // Raw tracepoint links cannot swap programs (no update op in the kernel).
    counts_updates_detaches(
        &mut link,
        &map,
        (&p0, &p1),
        Update::Refused,
        5,
        &trigger_getpid,
    )
}

/// tp_btf needs the attach BTF id at load time: resolved from vmlinux BTF.
fn tp_btf_counts_syscalls_then_detaches() -> TestResult {
    let map = counters("tpbtf_counts")?;
    let kind = ProgramKind::Tracing {
        attach_type: AttachType::TRACE_RAW_TP,
        target: Some("sys_enter".into()),
    };
    let btf_id = vmlinux_attach_btf_id(&kind, None)?;
    check(btf_id.is_some(), || "no btf id for tp_btf/sys_enter".into())?;
    let load =
        |key: u32| -> Result<kiln_loader::Program, Box<dyn std::error::Error + Send + Sync>> {
            let opts = LoadOptions {
                license: "GPL",
                attach_btf_id: btf_id,
                ..Default::default()
            };
            counter_prog_with(kind.clone(), map.fd(), key, 0, &opts)
        };
    let (p0, p1) = (load(0)?, load(1)?);
    let mut link = attach_tracing(p0.fd(), &kind, 0)?;
    let info = link.info()?;
    // The kernel reports tp_btf links as raw tracepoint links (fentry: tracing).
    check(info.link_type == LinkType::RawTracepoint, || {
        format!("{info:?}")
    })?;
    check(info.prog_id == p0.id(), || format!("{info:?}"))?;
    // Tracing links swap programs only for freplace targets: tp_btf refuses.
    counts_updates_detaches(
        &mut link,
        &map,
        (&p0, &p1),
        Update::Refused,
        5,
        &trigger_getpid,
    )
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
                "raw_tracepoint_counts_syscalls_then_detaches",
                &needs,
                raw_tracepoint_counts_syscalls_then_detaches,
            ),
            test(
                "tp_btf_counts_syscalls_then_detaches",
                &needs,
                tp_btf_counts_syscalls_then_detaches,
            ),
            test(
                "tracepoint_pinned_link_outlives_its_process",
                &[
                    Need::Root,
                    Need::Bpf,
                    Need::Probe("perf-event links", no_perf_link),
                ],
                tracepoint_pinned_link_outlives_its_process,
            ),
        ],
    );
}
