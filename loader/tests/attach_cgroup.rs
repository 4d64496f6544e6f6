//! cgroup/connect4 on a cgroup we create: a process inside it connects a UDP
//! socket, the program counts; link and BPF_PROG_ATTACH forms.

mod attach_util;

use attach_util::*;
use kiln_loader::AttachFlags;
use kiln_loader::links::cgroup;
use kiln_loader::links::{Link, LinkTarget, LinkType};
use kiln_obj::{AttachType, ProgramKind, ProgramType};
use kiln_testkit::{Need, test};
use std::path::Path;

const CONNECT4: ProgramKind = ProgramKind::Cgroup {
    program_type: ProgramType::CGROUP_SOCK_ADDR,
    attach_type: AttachType::CGROUP_INET4_CONNECT,
};

fn in_cgroup(path: &Path) -> String {
    path.display().to_string()
}

fn cgroup_link_counts_updates_detaches() -> TestResult {
    let cg = TestCgroup::new("link")?;
    let map = counters("cg_counts")?;
    let p0 = counter_prog(CONNECT4, map.fd(), 0, 1)?;
    let p1 = counter_prog(CONNECT4, map.fd(), 1, 1)?;
    let fd = cgroup::open_cgroup(&cg.0)?;
    let mut link = cgroup::attach_cgroup_link(
        p0.fd(),
        std::os::fd::AsFd::as_fd(&fd),
        AttachType::CGROUP_INET4_CONNECT,
    )?;
    let info = link.info()?;
    check(info.link_type == LinkType::Cgroup, || format!("{info:?}"))?;
    check(
        matches!(
            info.target,
            LinkTarget::Cgroup {
                attach_type: 10,
                ..
            }
        ),
        || format!("{info:?}"),
    )?;
    let q = cgroup::query_cgroup(
        std::os::fd::AsFd::as_fd(&fd),
        AttachType::CGROUP_INET4_CONNECT,
    )?;
    check(q.prog_ids == vec![p0.id()], || {
        format!("query {q:?} in {}", in_cgroup(&cg.0))
    })?;
    counts_updates_detaches(&mut link, &map, (&p0, &p1), Update::Checked, 3, &|| {
        cg.connect(3)
    })
}

fn cgroup_prog_attach_counts_updates_detaches() -> TestResult {
    let cg = TestCgroup::new("legacy")?;
    let map = counters("cg_counts")?;
    let p0 = counter_prog(CONNECT4, map.fd(), 0, 1)?;
    let p1 = counter_prog(CONNECT4, map.fd(), 1, 1)?;
    let fd = cgroup::open_cgroup(&cg.0)?;
    let cgfd = std::os::fd::AsFd::as_fd(&fd);
    let mut link = cgroup::attach_cgroup_legacy(
        p0.fd(),
        cgfd,
        AttachType::CGROUP_INET4_CONNECT,
        AttachFlags::ALLOW_MULTI,
    )?;
    counts_updates_detaches(&mut link, &map, (&p0, &p1), Update::Checked, 3, &|| {
        cg.connect(3)
    })?;
    let q = cgroup::query_cgroup(cgfd, AttachType::CGROUP_INET4_CONNECT)?;
    check(q.prog_ids.is_empty(), || format!("still attached: {q:?}"))
}

fn main() {
    let needs = [Need::Root, Need::Bpf, Need::Probe("cgroup2", no_cgroup2)];
    kiln_testkit::run(vec![
        test(
            "cgroup_link_counts_updates_detaches",
            &needs,
            cgroup_link_counts_updates_detaches,
        ),
        test(
            "cgroup_prog_attach_counts_updates_detaches",
            &needs,
            cgroup_prog_attach_counts_updates_detaches,
        ),
    ]);
}
