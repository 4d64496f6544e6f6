//! TC on a veth in a network namespace: tcx links and cls_bpf filters over
//! netlink; update in place, detach, and a filter left by a process that
//! exited, found and removed by (ifindex, direction, priority, handle).

mod attach_util;

use attach_util::*;
use kiln_loader::links::tc::{self, ClsBpfOptions, TcxAnchor};
use kiln_loader::links::{Link, LinkTarget, LinkType};
use kiln_loader::netlink;
use kiln_loader::programs::{QueryTarget, query_attached};
use kiln_loader::{Map, Program};
use kiln_obj::AttachType;
use kiln_obj::{Direction, ProgramKind};
use kiln_testkit::{Need, test};

const TC_ACT_OK: i32 = 0;

fn progs(
    map: &Map,
    kind: ProgramKind,
) -> Result<(Program, Program), Box<dyn std::error::Error + Send + Sync>> {
    Ok((
        counter_prog(kind.clone(), map.fd(), 0, TC_ACT_OK)?,
        counter_prog(kind, map.fd(), 1, TC_ACT_OK)?,
    ))
}

fn tcx_link_counts_updates_detaches() -> TestResult {
    let pair = VethPair::new("tcx", 11)?;
    let map = counters("tc_counts")?;
    let ingress = Direction::Ingress;
    let (p0, p1) = progs(&map, ProgramKind::Tcx { direction: ingress })?;
    let _ns = InNetns::enter(&pair.b)?;
    let ifindex = netlink::ifindex("vb")?;

    let mut link = tc::attach_tcx(p0.fd(), ifindex, ingress, TcxAnchor::Last)?;
    let info = link.info()?;
    check(info.link_type == LinkType::Tcx, || format!("{info:?}"))?;
    check(
        matches!(info.target, LinkTarget::Device { ifindex: i, .. } if i == ifindex),
        || format!("{info:?}"),
    )?;
    counts_updates_detaches(&mut link, &map, (&p0, &p1), Update::Checked, 3, &|| {
        pair.ping(3)
    })
}

/// tcx anchors place programs before/after others; with TCX_NEXT every
/// program runs, in the order the kernel reports.
fn tcx_anchors_order_programs() -> TestResult {
    const TCX_NEXT: i32 = -1;
    let pair = VethPair::new("tcxa", 12)?;
    let map = counters("tcx_order")?;
    let kind = ProgramKind::Tcx {
        direction: Direction::Ingress,
    };
    let p: Vec<Program> = (0..4)
        .map(|k| counter_prog(kind.clone(), map.fd(), k, TCX_NEXT))
        .collect::<Result<_, _>>()?;
    let _ns = InNetns::enter(&pair.b)?;
    let ifindex = netlink::ifindex("vb")?;
    let ingress = Direction::Ingress;
    let l0 = tc::attach_tcx(p[0].fd(), ifindex, ingress, TcxAnchor::Last)?;
    let l1 = tc::attach_tcx(p[1].fd(), ifindex, ingress, TcxAnchor::First)?;
    let l2 = tc::attach_tcx(
        p[2].fd(),
        ifindex,
        ingress,
        TcxAnchor::AfterProgram(p[1].fd()),
    )?;
    let l0fd = l0.fd().ok_or("tcx link without fd")?;
    let mut l3 = tc::attach_tcx(p[3].fd(), ifindex, ingress, TcxAnchor::BeforeLink(l0fd))?;
    let q = query_attached(QueryTarget::Ifindex(ifindex), AttachType::TCX_INGRESS)?;
    let want: Vec<u32> = [1, 2, 3, 0].iter().map(|&i| p[i].id()).collect();
    check(q.prog_ids == want, || {
        format!("order {:?}, expected {want:?}", q.prog_ids)
    })?;
    pair.ping(3)?;
    for k in 0..4 {
        check(count(&map, k) >= 3, || {
            format!("program {k} ran {} times", count(&map, k))
        })?;
    }
    l3.detach()?;
    let q = query_attached(QueryTarget::Ifindex(ifindex), AttachType::TCX_INGRESS)?;
    check(q.prog_ids.len() == 3, || format!("after detach: {q:?}"))?;
    drop((l0, l1, l2));
    let q = query_attached(QueryTarget::Ifindex(ifindex), AttachType::TCX_INGRESS)?;
    check(q.prog_ids.is_empty(), || format!("after drop: {q:?}"))
}

fn cls_bpf_counts_updates_detaches() -> TestResult {
    let pair = VethPair::new("clsb", 12)?;
    let map = counters("tc_counts")?;
    let (p0, p1) = progs(&map, ProgramKind::SchedCls)?;
    let _ns = InNetns::enter(&pair.b)?;
    let ifindex = netlink::ifindex("vb")?;

    let opts = ClsBpfOptions::default();
    let mut link = tc::attach_cls_bpf(p0.fd(), ifindex, Direction::Ingress, &opts)?;
    let f = link.filter().clone();
    check(f.priority != 0 && f.prog_id == p0.id(), || format!("{f:?}"))?;
    let listed = tc::list_cls_bpf(ifindex, Direction::Ingress)?;
    check(listed == vec![f.clone()], || format!("listed {listed:?}"))?;
    counts_updates_detaches(&mut link, &map, (&p0, &p1), Update::Checked, 3, &|| {
        pair.ping(3)
    })?;
    let left = tc::list_cls_bpf(ifindex, Direction::Ingress)?;
    check(left.is_empty(), || format!("filters left: {left:?}"))?;
    Ok(tc::remove_clsact(ifindex)?)
}

fn cls_bpf_filter_found_after_its_process_exits() -> TestResult {
    let pair = VethPair::new("clsp", 13)?;
    let pins = PinDir::new("tc")?;
    let dir = pins.0.to_str().unwrap();
    run_child(
        "cls-keep",
        &[("KILN_NETNS", &pair.b), ("KILN_PIN_DIR", dir)],
    )?;
    let map = Map::from_pin(&pins.path("counts"), Default::default())?;
    pair.ping(3)?;
    check(count(&map, 0) >= 3, || {
        format!("counter 0 = {}", count(&map, 0))
    })?;

    let _ns = InNetns::enter(&pair.b)?;
    let ifindex = netlink::ifindex("vb")?;
    let wrong_side = tc::find_cls_bpf(ifindex, Direction::Egress, 7, 1)?;
    check(wrong_side.is_none(), || "found on the wrong side".into())?;
    let found = tc::find_cls_bpf(ifindex, Direction::Ingress, 7, 1)?;
    let filter = found.ok_or("filter prio 7 handle 1 not found")?;
    check(filter.name == "kiln_child", || format!("{filter:?}"))?;
    let mut link = tc::ClsBpfLink::adopt(filter);
    link.detach()?;
    let left = tc::list_cls_bpf(ifindex, Direction::Ingress)?;
    check(left.is_empty(), || format!("filters left: {left:?}"))?;
    let after = count(&map, 0);
    pair.ping(2)?;
    check(count(&map, 0) == after, || {
        "program runs after removal".into()
    })
}

fn child_main(role: &str) -> TestResult {
    match role {
        "cls-keep" => {
            let (ns, _dir, map) = child_setup("tc_counts")?;
            let ns = ns.ok_or("no namespace given")?;
            let p = counter_prog(ProgramKind::SchedCls, map.fd(), 0, TC_ACT_OK)?;
            let opts = ClsBpfOptions {
                priority: 7,
                handle: 1,
                name: "kiln_child".into(),
            };
            let _ns = InNetns::enter(&ns)?;
            let ifindex = netlink::ifindex("vb")?;
            let mut link = tc::attach_cls_bpf(p.fd(), ifindex, Direction::Ingress, &opts)?;
            link.keep()?;
            Ok(())
        }
        other => Err(format!("unknown child role {other}").into()),
    }
}

/// tcx links (BPF_TCX_INGRESS/EGRESS) arrived in 6.6: older kernels answer EINVAL.
fn no_tcx() -> Option<String> {
    (!kiln_loader::probe::features().tcx).then(|| "kernel has no tcx links (needs 6.6)".into())
}

fn main() {
    let needs = [Need::Root, Need::Bpf, Need::NetNs];
    let tcx_needs = [
        Need::Root,
        Need::Bpf,
        Need::NetNs,
        Need::Probe("tcx", no_tcx),
    ];
    main_with_children(
        child_main,
        vec![
            test(
                "tcx_link_counts_updates_detaches",
                &tcx_needs,
                tcx_link_counts_updates_detaches,
            ),
            test(
                "tcx_anchors_order_programs",
                &tcx_needs,
                tcx_anchors_order_programs,
            ),
            test(
                "cls_bpf_counts_updates_detaches",
                &needs,
                cls_bpf_counts_updates_detaches,
            ),
            test(
                "cls_bpf_filter_found_after_its_process_exits",
                &needs,
                cls_bpf_filter_found_after_its_process_exits,
            ),
        ],
    );
}
