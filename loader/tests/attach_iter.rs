//! BPF iterators from a C object: `iter/bpf_map` lists the maps (ours among
//! them), is replaced in place by a second program, and stops on detach;
//! `iter/task` lists this process.

mod attach_util;

use attach_util::*;
use kiln_loader::links::iter::IterTarget;
use kiln_loader::links::{Link, LinkType, ProgramAttach};
use kiln_testkit::{Need, test};

fn iter_bpf_map_lists_maps_updates_detaches() -> TestResult {
    let (_, ebpf) = load_object("attach_iter")?;
    let ours = map(&ebpf, "iter_counts")?.info()?.id;
    let (p0, p1) = (prog(&ebpf, "dump_maps")?, prog(&ebpf, "dump_maps_v2")?);
    // Auto-attach knows an `iter/...` section is an iterator.
    let mut probe = p0.auto_attach()?;
    check(probe.info()?.link_type == LinkType::Iter, || {
        format!("{:?}", probe.info())
    })?;
    probe.detach()?;

    let mut link = p0.attach_iter(IterTarget::All)?;
    let out = String::from_utf8(link.read_to_vec()?)?;
    check(out.lines().any(|l| l == format!("map {ours}")), || {
        format!("map {ours} missing from iterator output:\n{out}")
    })?;
    // Two reads are two iterations: the output repeats.
    let again = String::from_utf8(link.read_to_vec()?)?;
    check(again.contains(&format!("map {ours}")), || again.clone())?;

    check(link.update(p1.fd(), Some(p1.fd())).is_err(), || {
        "update with a wrong old program succeeded".into()
    })?;
    link.update(p1.fd(), Some(p0.fd()))?;
    let out = String::from_utf8(link.read_to_vec()?)?;
    check(out.lines().any(|l| l == format!("v2 map {ours}")), || {
        format!("replacement program did not run:\n{out}")
    })?;
    check(!out.lines().any(|l| l.starts_with("map ")), || {
        format!("old program still runs:\n{out}")
    })?;
    link.detach()?;
    check(link.open().is_err(), || {
        "a detached iterator still opens".into()
    })
}

fn iter_task_lists_this_process() -> TestResult {
    let (_, ebpf) = load_object("attach_iter")?;
    let counts = map(&ebpf, "iter_counts")?;
    let link = prog(&ebpf, "list_tasks")?.attach_iter(IterTarget::All)?;
    let out = String::from_utf8(link.read_to_vec()?)?;
    let me = format!("pid {}", std::process::id());
    check(out.lines().any(|l| l == me), || {
        format!(
            "{me} missing from the task iterator's output ({} lines)",
            out.lines().count()
        )
    })?;
    // Every thread is visited, at least as many as the processes printed.
    let printed = out.lines().count() as u64;
    check(count(counts, 0) >= printed, || {
        format!("counted {} tasks, printed {printed}", count(counts, 0))
    })
}

fn main() {
    let needs = [Need::Root, Need::Bpf];
    kiln_testkit::run(vec![
        test(
            "iter_bpf_map_lists_maps_updates_detaches",
            &needs,
            iter_bpf_map_lists_maps_updates_detaches,
        ),
        test(
            "iter_task_lists_this_process",
            &needs,
            iter_task_lists_this_process,
        ),
    ]);
}
