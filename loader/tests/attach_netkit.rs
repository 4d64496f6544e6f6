//! netkit (loader/tests/bpf/attach_netkit.bpf.c): a netkit pair created
//! over netlink in a private network namespace, one program attached for
//! each side through the primary's ifindex; frames sent out of each device
//! run that side's program only. Kernel 6.7+ with CONFIG_NETKIT: skips
//! loudly elsewhere (the host has no netkit).

mod attach_util;

use attach_util::*;
use kiln_loader::EbpfLoader;
use kiln_loader::links::netkit::{NetkitSide, attach_netkit};
use kiln_loader::links::tc::TcxAnchor;
use kiln_loader::links::{Link, LinkTarget, LinkType};
use kiln_loader::netlink;
use kiln_obj::ObjectSpec;
use kiln_testkit::{Need, test};

fn netkit_sides_run_their_programs() -> TestResult {
    let path = kiln_testkit::bpf_object("attach_netkit.bpf.o")?;
    let ebpf = EbpfLoader::new().load(&ObjectSpec::parse(&std::fs::read(&path)?)?)?;
    let counts = ebpf.map("counts").ok_or("no counts")?;
    let on_primary = ebpf.program("on_primary").ok_or("no on_primary")?;
    let on_peer = ebpf.program("on_peer").ok_or("no on_peer")?;
    let run = || -> TestResult {
        create_netkit_pair("nkp", "nkq")?;
        let (nkp, nkq) = (netlink::ifindex("nkp")?, netlink::ifindex("nkq")?);
        let mut primary_link =
            attach_netkit(on_primary.fd(), nkp, NetkitSide::Primary, TcxAnchor::Last)?;
        let info = primary_link.info()?;
        check(info.link_type == LinkType::Netkit, || format!("{info:?}"))?;
        check(
            matches!(info.target, LinkTarget::Device { ifindex, .. } if ifindex == nkp),
            || format!("{info:?}"),
        )?;
        let _peer_link = attach_netkit(on_peer.fd(), nkp, NetkitSide::Peer, TcxAnchor::Last)?;
        for _ in 0..3 {
            send_raw(nkp, &frame(b"from primary"))?;
        }
        for _ in 0..5 {
            send_raw(nkq, &frame(b"from peer"))?;
        }
        let (p, q) = (count_at_least(counts, 0, 3), count_at_least(counts, 1, 5));
        check((p, q) == (3, 5), || {
            format!(
                "primary program counted {p} (3 sent out of nkp), peer program {q} (5 out of nkq)"
            )
        })?;
        primary_link.detach()?;
        send_raw(nkp, &frame(b"after detach"))?;
        std::thread::sleep(std::time::Duration::from_millis(200));
        check(count(counts, 0) == 3, || {
            "the primary program ran after detach".into()
        })
    };
    kiln_loader::probe::in_private_netns(run).ok_or("cannot create a network namespace")?
}

fn no_netkit() -> Option<String> {
    (!kiln_loader::probe::features()
        .link_kinds
        .get("netkit")
        .copied()
        .unwrap_or(false))
    .then(|| "kernel has no netkit links (6.7+ with CONFIG_NETKIT built in)".into())
}

fn main() {
    kiln_testkit::run(vec![test(
        "netkit_sides_run_their_programs",
        &[Need::Root, Need::Bpf, Need::Probe("netkit", no_netkit)],
        netkit_sides_run_their_programs,
    )]);
}
