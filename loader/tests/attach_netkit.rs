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
use kiln_loader::netlink::{self, Message, RouteSocket};
use kiln_obj::ObjectSpec;
use kiln_testkit::{Need, test};

type Error = Box<dyn std::error::Error + Send + Sync>;

const RTM_NEWLINK: u16 = 16;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_NETKIT_PEER_INFO: u16 = 1;
const IFLA_NETKIT_MODE: u16 = 5;
const NETKIT_L2: u32 = 0;

/// `struct ifinfomsg` for a new device, up.
fn ifinfomsg_up() -> [u8; 16] {
    let mut m = [0u8; 16];
    m[8..12].copy_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
    m[12..16].copy_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
    m
}

/// Creates an L2 netkit pair `primary`/`peer`, both up, in the calling
/// thread's network namespace.
fn create_netkit_pair(primary: &str, peer: &str) -> Result<(), Error> {
    // IFLA_NETKIT_PEER_INFO: an ifinfomsg followed by the peer's attributes.
    let mut peer_info = ifinfomsg_up().to_vec();
    let mut name = peer.as_bytes().to_vec();
    name.push(0);
    peer_info.extend_from_slice(&((4 + name.len()) as u16).to_ne_bytes());
    peer_info.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
    peer_info.extend_from_slice(&name);
    peer_info.resize(peer_info.len().next_multiple_of(4), 0);

    let mut m = Message::new(
        RTM_NEWLINK,
        netlink::NLM_F_ACK | netlink::NLM_F_CREATE | netlink::NLM_F_EXCL,
    );
    m.push(&ifinfomsg_up());
    m.attr_str(IFLA_IFNAME, primary);
    let info = m.begin_nest(IFLA_LINKINFO);
    m.attr_str(IFLA_INFO_KIND, "netkit");
    let data = m.begin_nest(IFLA_INFO_DATA);
    m.attr(IFLA_NETKIT_PEER_INFO, &peer_info);
    m.attr_u32(IFLA_NETKIT_MODE, NETKIT_L2);
    m.end_nest(data);
    m.end_nest(info);
    let mut sock = RouteSocket::open().map_err(|e| format!("open rtnetlink: {e}"))?;
    sock.request(&mut m)
        .map_err(|e| format!("create netkit pair {primary}/{peer}: {e}"))?;
    // The new devices come up down whatever the request's flags: set IFF_UP.
    for name in [primary, peer] {
        let mut up = Message::new(RTM_NEWLINK, netlink::NLM_F_ACK);
        let mut ifi = ifinfomsg_up();
        ifi[4..8].copy_from_slice(&(netlink::ifindex(name)? as i32).to_ne_bytes());
        up.push(&ifi);
        sock.request(&mut up)
            .map_err(|e| format!("set {name} up: {e}"))?;
    }
    Ok(())
}

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
