//! XDP on a veth in a network namespace: bpf_link and netlink, update in
//! place, detach, and a pinned link that outlives the process that made it.

mod attach_util;

use attach_util::*;
use kiln_loader::links::ProgramAttach;
use kiln_loader::links::xdp::{self, XdpApi, XdpFlags};
use kiln_loader::links::{FdLink, Link, LinkTarget, LinkType, Mechanism};
use kiln_loader::netlink;
use kiln_loader::{Map, Program};
use kiln_obj::ProgramKind;
use kiln_testkit::{Need, test};

const XDP_PASS: i32 = 2;
const XDP: ProgramKind = ProgramKind::Xdp {
    frags: false,
    attach_type: None,
};

fn progs(map: &Map) -> Result<(Program, Program), Box<dyn std::error::Error + Send + Sync>> {
    Ok((
        counter_prog(XDP, map.fd(), 0, XDP_PASS)?,
        counter_prog(XDP, map.fd(), 1, XDP_PASS)?,
    ))
}

fn xdp_link_counts_updates_detaches() -> TestResult {
    let pair = VethPair::new("xdpl", 1)?;
    let map = counters("xdp_counts")?;
    let (p0, p1) = progs(&map)?;
    let _ns = InNetns::enter(&pair.b)?;
    let ifindex = netlink::ifindex("vb")?;

    let mut link = xdp::attach_xdp_link(p0.fd(), ifindex, XdpFlags::empty())?;
    let info = link.info()?;
    check(info.link_type == LinkType::Xdp, || format!("{info:?}"))?;
    check(info.target == LinkTarget::Xdp { ifindex }, || {
        format!("{info:?}")
    })?;
    check(info.prog_id == p0.id(), || {
        format!("{info:?} vs {}", p0.id())
    })?;
    counts_updates_detaches(&mut link, &map, (&p0, &p1), Update::Checked, 3, &|| {
        pair.ping(3)
    })?;
    check(xdp::query_xdp(ifindex)?.is_none(), || {
        "interface still has XDP".into()
    })
}

fn xdp_netlink_counts_updates_detaches() -> TestResult {
    let pair = VethPair::new("xdpn", 2)?;
    let map = counters("xdp_counts")?;
    let (p0, p1) = progs(&map)?;
    let _ns = InNetns::enter(&pair.b)?;
    let ifindex = netlink::ifindex("vb")?;

    let mut link = xdp::attach_xdp_netlink(p0.fd(), ifindex, XdpFlags::SKB_MODE, None)?;
    check(link.mechanism() == Mechanism::Xdp, || "mechanism".into())?;
    let q = xdp::query_xdp(ifindex)?;
    check(q.map(|q| q.0) == Some(p0.id()), || format!("query {q:?}"))?;
    counts_updates_detaches(&mut link, &map, (&p0, &p1), Update::Checked, 3, &|| {
        pair.ping(3)
    })?;
    check(xdp::query_xdp(ifindex)?.is_none(), || {
        "interface still has XDP".into()
    })
}

/// attach_xdp's netlink path, forced as on a kernel without XDP links, and
/// reached through the Program method users call.
fn xdp_forced_netlink_fallback_counts_updates_detaches() -> TestResult {
    let pair = VethPair::new("xdpf", 3)?;
    let map = counters("xdp_counts")?;
    let (p0, p1) = progs(&map)?;
    let _ns = InNetns::enter(&pair.b)?;
    let ifindex = netlink::ifindex("vb")?;

    let mut link = xdp::attach_xdp_with(p0.fd(), ifindex, XdpFlags::SKB_MODE, XdpApi::Netlink)?;
    check(link.fd().is_none(), || {
        "the netlink path returned a bpf_link".into()
    })?;
    let q = xdp::query_xdp(ifindex)?;
    check(q.map(|q| q.0) == Some(p0.id()), || format!("query {q:?}"))?;
    counts_updates_detaches(&mut *link, &map, (&p0, &p1), Update::Checked, 3, &|| {
        pair.ping(3)
    })?;
    check(xdp::query_xdp(ifindex)?.is_none(), || {
        "interface still has XDP".into()
    })?;
    // The default path on this kernel is a bpf_link.
    let mut auto = p0.attach_xdp(ifindex, XdpFlags::empty())?;
    let has_link = auto.fd().is_some();
    auto.detach()?;
    check(has_link, || "attach_xdp did not use a bpf_link".into())
}

/// A child process attaches and pins; the parent finds the link and removes it.
fn xdp_pinned_link_outlives_its_process() -> TestResult {
    let pair = VethPair::new("xdpp", 3)?;
    let pins = PinDir::new("xdp")?;
    let dir = pins.0.to_str().unwrap();
    run_child("xdp-pin", &[("KILN_NETNS", &pair.b), ("KILN_PIN_DIR", dir)])?;
    let map = Map::from_pin(&pins.path("counts"), Default::default())?;
    pair.ping(3)?;
    check(count(&map, 0) >= 3, || {
        format!("counter 0 = {}", count(&map, 0))
    })?;

    let mut link = FdLink::from_pin(pins.path("link"))?;
    check(link.mechanism() == Mechanism::Xdp, || format!("{link:?}"))?;
    link.detach()?;
    FdLink::unpin(pins.path("link"))?;
    let after = count(&map, 0);
    pair.ping(2)?;
    check(count(&map, 0) == after, || {
        "program runs after detach".into()
    })
}

fn child_main(role: &str) -> TestResult {
    match role {
        "xdp-pin" => {
            let (ns, dir, map) = child_setup("xdp_counts")?;
            let ns = ns.ok_or("no namespace given")?;
            let p = counter_prog(XDP, map.fd(), 0, XDP_PASS)?;
            // Only the attach needs the namespace (interface indexes are per namespace).
            let mut link = {
                let _ns = InNetns::enter(&ns)?;
                xdp::attach_xdp(p.fd(), netlink::ifindex("vb")?, XdpFlags::empty())?
            };
            link.pin(&dir.join("link"))?;
            Ok(())
        }
        other => Err(format!("unknown child role {other}").into()),
    }
}

fn main() {
    let needs = [Need::Root, Need::Bpf, Need::NetNs];
    main_with_children(
        child_main,
        vec![
            test(
                "xdp_link_counts_updates_detaches",
                &needs,
                xdp_link_counts_updates_detaches,
            ),
            test(
                "xdp_forced_netlink_fallback_counts_updates_detaches",
                &needs,
                xdp_forced_netlink_fallback_counts_updates_detaches,
            ),
            test(
                "xdp_netlink_counts_updates_detaches",
                &needs,
                xdp_netlink_counts_updates_detaches,
            ),
            test(
                "xdp_pinned_link_outlives_its_process",
                &needs,
                xdp_pinned_link_outlives_its_process,
            ),
        ],
    );
}
