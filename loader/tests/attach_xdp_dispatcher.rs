//! Several XDP programs on one veth through the libxdp dispatcher protocol:
//! run order by priority, a drop ending the chain (or not, as its
//! chain-call actions say), detach one and the others keep running, detach
//! the last and nothing (program or pin) is left; and sharing the interface
//! with `xdp-loader` when it is installed.

mod attach_util;

use attach_util::*;
use kiln_loader::links::xdp;
use kiln_loader::links::xdp_dispatcher::{Component, RunConfig, XDP_DROP, XDP_PASS, XdpDispatcher};
use kiln_loader::netlink;
use kiln_loader::{Ebpf, Map};
use kiln_obj::ObjectSpec;
use kiln_testkit::{Need, test};
use std::path::PathBuf;
use std::process::Command;

const OBJ: &str = "attach_xdp_dispatcher";
const OBJ_FILE: &str = "attach_xdp_dispatcher.bpf.o";
const FIRST: u32 = 0;
const SECOND: u32 = 1;
const IN_ORDER: u32 = 2;
const DROPPER: u32 = 3;
const LIBXDP: u32 = 4;
const META: u32 = 5;

/// The counters after `pair` carried a few packets; `keys` must all grow.
fn traffic(
    pair: &VethPair,
    counts: &Map,
    keys: &[u32],
) -> Result<Vec<u64>, Box<dyn std::error::Error + Send + Sync>> {
    let before: Vec<u64> = (0..8).map(|k| count(counts, k)).collect();
    pair.ping(3)?;
    for &k in keys {
        let c = count_at_least(counts, k, before[k as usize] + 3);
        check(c >= before[k as usize] + 3, || {
            format!(
                "counter {k} went {} -> {c} with traffic",
                before[k as usize]
            )
        })?;
    }
    Ok((0..8)
        .map(|k| count(counts, k) - before[k as usize])
        .collect())
}

fn names(list: &[Component]) -> Vec<(String, u32)> {
    list.iter()
        .map(|c| (c.name.clone(), c.run.priority))
        .collect()
}

fn pin_dir(ifindex: u32, dispatcher: u32) -> PathBuf {
    PathBuf::from(format!("/sys/fs/bpf/xdp/dispatch-{ifindex}-{dispatcher}"))
}

/// The dispatcher on `ifindex` now, and that its pins are there.
fn dispatcher_id(
    ifindex: u32,
    slots: usize,
) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    let (id, _) = xdp::query_xdp(ifindex)?.ok_or("no XDP program on the interface")?;
    let dir = pin_dir(ifindex, id);
    for n in 0..slots {
        for kind in ["prog", "link"] {
            let p = dir.join(format!("prog{n}-{kind}"));
            check(p.exists(), || format!("{} missing", p.display()))?;
        }
    }
    Ok(id)
}

fn setup(
    tag: &str,
    subnet: u8,
) -> Result<(VethPair, PinDir, ObjectSpec, Ebpf), Box<dyn std::error::Error + Send + Sync>> {
    // Mounts bpffs at /sys/fs/bpf where it is missing (the VMs).
    let pins = PinDir::new(tag)?;
    let pair = VethPair::new(tag, subnet)?;
    let (spec, ebpf) = load_object(OBJ)?;
    Ok((pair, pins, spec, ebpf))
}

fn programs_run_in_priority_order_until_one_drops() -> TestResult {
    let (pair, _pins, spec, ebpf) = setup("xdpd-order", 41)?;
    let counts = map(&ebpf, "counts")?;
    let _ns = InNetns::enter(&pair.b)?;
    let ifindex = netlink::ifindex("vb")?;
    let d = XdpDispatcher::new(ifindex);

    // Attached in the wrong order: the dispatcher sorts by priority.
    let second = d.attach(&spec, &ebpf, "xdp_second", None)?;
    let d1 = dispatcher_id(ifindex, 1)?;
    let first = d.attach(&spec, &ebpf, "xdp_first", None)?;
    let d2 = dispatcher_id(ifindex, 2)?;
    check(!pin_dir(ifindex, d1).exists(), || {
        "first dispatcher's pins left".into()
    })?;
    let list = d.list()?;
    check(
        names(&list) == [("xdp_first".into(), 10), ("xdp_second".into(), 50)],
        || format!("{list:?}"),
    )?;
    check(
        list[0].prog_id == first && list[1].prog_id == second,
        || format!("{list:?}"),
    )?;
    check(
        list.iter()
            .all(|c| c.run.chains_on(XDP_PASS) && !c.run.chains_on(XDP_DROP)),
        || format!("{list:?}"),
    )?;
    let seen = traffic(&pair, counts, &[FIRST, SECOND])?;
    check(seen[IN_ORDER as usize] == seen[SECOND as usize], || {
        format!(
            "xdp_second ran {} times, after xdp_first {} times",
            seen[1], seen[2]
        )
    })?;

    // Priority 20, chains on XDP_PASS only: its XDP_DROP ends the chain.
    let dropper = d.attach(&spec, &ebpf, "xdp_dropper", None)?;
    let d3 = dispatcher_id(ifindex, 3)?;
    check(!pin_dir(ifindex, d2).exists(), || {
        "replaced dispatcher's pins left".into()
    })?;
    let list = d.list()?;
    check(
        list[1].prog_id == dropper && list[1].run.priority == 20,
        || format!("{list:?}"),
    )?;
    let seen = traffic(&pair, counts, &[FIRST, DROPPER])?;
    check(seen[SECOND as usize] == 0, || {
        format!("xdp_second ran {} times after a drop", seen[1])
    })?;

    // Without the dropper, the chain reaches xdp_second again.
    d.detach(dropper)?;
    let d4 = dispatcher_id(ifindex, 2)?;
    check(!pin_dir(ifindex, d3).exists(), || {
        "pins left after detach".into()
    })?;
    let seen = traffic(&pair, counts, &[FIRST, SECOND])?;
    check(seen[DROPPER as usize] == 0, || {
        "detached program still runs".into()
    })?;

    // Detach one: the other keeps running alone.
    d.detach(first)?;
    let d5 = dispatcher_id(ifindex, 1)?;
    check(!pin_dir(ifindex, d4).exists(), || {
        "pins left after detach".into()
    })?;
    check(names(&d.list()?) == [("xdp_second".into(), 50)], || {
        "list after detach".into()
    })?;
    let seen = traffic(&pair, counts, &[SECOND])?;
    check(
        seen[FIRST as usize] == 0 && seen[IN_ORDER as usize] == 0,
        || format!("detached xdp_first still runs: {seen:?}"),
    )?;

    // Detach the last: no XDP program, no pins.
    d.detach(second)?;
    check(xdp::query_xdp(ifindex)?.is_none(), || {
        "XDP program left on the interface".into()
    })?;
    check(!pin_dir(ifindex, d5).exists(), || {
        "pins left after the last detach".into()
    })?;
    check(d.list()?.is_empty(), || "list not empty".into())?;
    let seen = traffic(&pair, counts, &[])?;
    check(seen.iter().all(|&c| c == 0), || {
        format!("programs run after detach: {seen:?}")
    })
}

/// A run config given at attach overrides the object's: with XDP_DROP as a
/// chain-call action, the dropper's verdict no longer ends the chain.
fn chain_call_actions_decide_whether_a_drop_ends_the_chain() -> TestResult {
    let (pair, _pins, spec, ebpf) = setup("xdpd-chain", 42)?;
    let counts = map(&ebpf, "counts")?;
    let _ns = InNetns::enter(&pair.b)?;
    let ifindex = netlink::ifindex("vb")?;
    let d = XdpDispatcher::new(ifindex);
    let run = RunConfig {
        priority: 20,
        chain_call_actions: (1 << XDP_PASS) | (1 << XDP_DROP),
    };
    let dropper = d.attach(&spec, &ebpf, "xdp_dropper", Some(run))?;
    let second = d.attach(&spec, &ebpf, "xdp_second", None)?;
    // A program that changes packet data can take a slot as well.
    let meta = d.attach(&spec, &ebpf, "xdp_meta", None)?;
    let list = d.list()?;
    check(list[0].run == run && list[0].prog_id == dropper, || {
        format!("{list:?}")
    })?;
    traffic(&pair, counts, &[DROPPER, SECOND, META])?;
    d.detach(dropper)?;
    d.detach(meta)?;
    d.detach(second)?;
    check(xdp::query_xdp(ifindex)?.is_none(), || {
        "XDP program left".into()
    })
}

/// Errors name the interface and the program; a foreign XDP program is left alone.
fn errors_name_interface_and_program() -> TestResult {
    let (pair, _pins, spec, ebpf) = setup("xdpd-err", 43)?;
    let _ns = InNetns::enter(&pair.b)?;
    let ifindex = netlink::ifindex("vb")?;
    let d = XdpDispatcher::new(ifindex);
    let e = d
        .attach(&spec, &ebpf, "no_such_prog", None)
        .unwrap_err()
        .to_string();
    check(
        e.contains("no_such_prog") && e.contains(&format!("interface index {ifindex}")),
        || e.clone(),
    )?;
    let e = d.detach(12345).unwrap_err().to_string();
    check(e.contains("12345") && e.contains("no XDP program"), || {
        e.clone()
    })?;

    let plain = prog(&ebpf, "xdp_first")?;
    let mut link = xdp::attach_xdp_netlink(plain.fd(), ifindex, Default::default(), None)?;
    let e = d
        .attach(&spec, &ebpf, "xdp_second", None)
        .unwrap_err()
        .to_string();
    check(
        e.contains("not an XDP dispatcher") && e.contains("xdp_first"),
        || e.clone(),
    )?;
    check(
        xdp::query_xdp(ifindex)?.map(|q| q.0) == Some(plain.id()),
        || "the foreign program was replaced".into(),
    )?;
    check(d.list().is_err(), || {
        "list of a foreign program succeeded".into()
    })?;
    kiln_loader::links::Link::detach(&mut link)?;
    Ok(())
}

/// Whether the kernel takes `BPF_F_XDP_HAS_FRAGS` (5.18+).
fn no_frags() -> Option<String> {
    let go = || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let m = counters("frags_probe")?;
        let opts = kiln_loader::programs::LoadOptions {
            license: "GPL",
            flags: kiln_loader::programs::ProgramFlags::XDP_HAS_FRAGS,
            ..Default::default()
        };
        let kind = kiln_obj::ProgramKind::Xdp {
            frags: true,
            attach_type: None,
        };
        counter_prog_with(kind, m.fd(), 0, XDP_PASS as i32, &opts)?;
        Ok(())
    };
    go().err()
        .map(|e| format!("kernel refuses XDP programs with frags: {e}"))
}

/// A veth whose MTU needs frags takes a dispatcher of frags programs; a
/// program without frags cannot join (the kernel refuses the rebuilt
/// dispatcher) and the old one keeps running.
fn frags_dispatcher_takes_a_large_mtu() -> TestResult {
    let (pair, _pins, spec, ebpf) = setup("xdpd-frags", 45)?;
    let (fspec, febpf) = load_object("attach_xdp_dispatcher_frags")?;
    let frag_counts = map(&febpf, "frag_counts")?;
    let ip = |ns: &str, dev: &str| {
        Command::new("ip")
            .args(["-n", ns, "link", "set", dev, "mtu", "9000"])
            .status()
    };
    check(
        ip(&pair.a, "va")?.success() && ip(&pair.b, "vb")?.success(),
        || "cannot set MTU 9000".into(),
    )?;
    let _ns = InNetns::enter(&pair.b)?;
    let ifindex = netlink::ifindex("vb")?;
    let d = XdpDispatcher::new(ifindex);
    let frags = d.attach(&fspec, &febpf, "xdp_frags", None)?;
    let list = d.list()?;
    check(list.len() == 1 && list[0].frags, || format!("{list:?}"))?;
    let before = count(frag_counts, 0);
    pair.ping(3)?;
    check(
        count_at_least(frag_counts, 0, before + 3) >= before + 3,
        || "the frags program does not run".into(),
    )?;
    let e = d.attach(&spec, &ebpf, "xdp_second", None);
    check(e.is_err(), || {
        "a program without frags joined a dispatcher on MTU 9000".into()
    })?;
    let list = d.list()?;
    check(list.len() == 1 && list[0].prog_id == frags, || {
        format!("{list:?}")
    })?;
    let before = count(frag_counts, 0);
    pair.ping(3)?;
    check(
        count_at_least(frag_counts, 0, before + 3) >= before + 3,
        || "the frags program stopped after the refused attach".into(),
    )?;
    d.detach(frags)?;
    check(xdp::query_xdp(ifindex)?.is_none(), || {
        "XDP program left".into()
    })
}

fn no_xdp_loader() -> Option<String> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("xdp-loader").is_file()))
        .unwrap_or(false);
    (!found).then(|| "xdp-loader (Debian package xdp-tools) is not installed".into())
}

fn xdp_loader(
    netns: &str,
    args: &[&str],
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    // nsenter, not `ip netns exec`: that remounts /sys and would hide bpffs.
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{netns}"))
        .arg("xdp-loader")
        .args(args)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(format!("xdp-loader {}: {text}", args.join(" ")).into());
    }
    Ok(text)
}

/// The counter `key` of the `counts` map of the program with id `prog_id`.
fn count_of_program(
    prog_id: u32,
    key: u32,
) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    let info = kiln_loader::Program::from_id(prog_id)?.info()?;
    for id in info.map_ids {
        let m = Map::from_id(id)?;
        if m.name() == "counts" {
            return Ok(count(&m, key));
        }
    }
    Err(format!("program {prog_id} has no counts map").into())
}

fn xdp_loader_and_kiln_share_an_interface() -> TestResult {
    let (pair, _pins, spec, ebpf) = setup("xdpd-libxdp", 44)?;
    let counts = map(&ebpf, "counts")?;
    let obj = kiln_testkit::bpf_object(&format!("{OBJ}.bpf.o"))?;
    let obj = obj.to_str().ok_or("object path")?;
    let ifindex = {
        let _ns = InNetns::enter(&pair.b)?;
        netlink::ifindex("vb")?
    };
    let d = XdpDispatcher::new(ifindex);
    let ours = {
        let _ns = InNetns::enter(&pair.b)?;
        d.attach(&spec, &ebpf, "xdp_first", None)?
    };
    xdp_loader(
        &pair.b,
        &["load", "-m", "native", "-n", "xdp_libxdp", "vb", obj],
    )?;
    let status = xdp_loader(&pair.b, &["status", "vb"])?;
    check(
        status.contains("xdp_first") && status.contains("xdp_libxdp"),
        || format!("xdp-loader status does not list both:\n{status}"),
    )?;
    let list = {
        let _ns = InNetns::enter(&pair.b)?;
        d.list()?
    };
    check(
        names(&list) == [("xdp_first".into(), 10), ("xdp_libxdp".into(), 30)],
        || format!("{list:?}"),
    )?;
    let theirs = list[1].prog_id;
    let before = count_of_program(theirs, LIBXDP)?;
    traffic(&pair, counts, &[FIRST])?;
    let after = count_of_program(theirs, LIBXDP)?;
    check(after >= before + 3, || {
        format!("the xdp-loader program ran {} times", after - before)
    })?;

    // Kiln detaches its program; xdp-loader's keeps running, then goes.
    {
        let _ns = InNetns::enter(&pair.b)?;
        d.detach(ours)?;
    }
    let status = xdp_loader(&pair.b, &["status", "vb"])?;
    check(
        !status.contains("xdp_first") && status.contains("xdp_libxdp"),
        || format!("after kiln's detach:\n{status}"),
    )?;
    let theirs = {
        let _ns = InNetns::enter(&pair.b)?;
        d.list()?[0].prog_id
    };
    let before = count_of_program(theirs, LIBXDP)?;
    pair.ping(3)?;
    check(count_of_program(theirs, LIBXDP)? >= before + 3, || {
        "xdp-loader's program stopped".into()
    })?;

    // Kiln adds a program to the dispatcher xdp-loader built.
    let list = {
        let _ns = InNetns::enter(&pair.b)?;
        d.attach(&spec, &ebpf, "xdp_second", None)?;
        d.list()?
    };
    check(
        names(&list) == [("xdp_libxdp".into(), 30), ("xdp_second".into(), 50)],
        || format!("{list:?}"),
    )?;
    let before = count_of_program(list[0].prog_id, LIBXDP)?;
    traffic(&pair, counts, &[SECOND])?;
    check(
        count_of_program(list[0].prog_id, LIBXDP)? >= before + 3,
        || "xdp-loader's program stopped after kiln's attach".into(),
    )?;
    let status = xdp_loader(&pair.b, &["status", "vb"])?;
    check(
        status.contains("xdp_second") && status.contains("xdp_libxdp"),
        || format!("after kiln's second attach:\n{status}"),
    )?;
    // xdp-loader removes the whole dispatcher, Kiln's program included.
    xdp_loader(&pair.b, &["unload", "--all", "vb"])?;
    let _ns = InNetns::enter(&pair.b)?;
    check(xdp::query_xdp(ifindex)?.is_none(), || {
        "XDP program left".into()
    })?;
    check(d.list()?.is_empty(), || {
        "list not empty after unload".into()
    })
}

fn main() {
    let freplace = Need::Probe("freplace", no_freplace);
    // Every test loads the whole object, xdp_meta's bpf_xdp_adjust_meta included.
    let helpers = Need::HelpersOf(OBJ_FILE);
    kiln_testkit::run(vec![
        test(
            "programs_run_in_priority_order_until_one_drops",
            &[Need::Root, Need::Bpf, Need::NetNs, helpers, freplace],
            programs_run_in_priority_order_until_one_drops,
        ),
        test(
            "chain_call_actions_decide_whether_a_drop_ends_the_chain",
            &[Need::Root, Need::Bpf, Need::NetNs, helpers, freplace],
            chain_call_actions_decide_whether_a_drop_ends_the_chain,
        ),
        test(
            "frags_dispatcher_takes_a_large_mtu",
            &[
                Need::Root,
                Need::Bpf,
                Need::NetNs,
                helpers,
                freplace,
                Need::Probe("xdp.frags", no_frags),
            ],
            frags_dispatcher_takes_a_large_mtu,
        ),
        test(
            "errors_name_interface_and_program",
            &[Need::Root, Need::Bpf, Need::NetNs, helpers],
            errors_name_interface_and_program,
        ),
        test(
            "xdp_loader_and_kiln_share_an_interface",
            &[
                Need::Root,
                Need::Bpf,
                Need::NetNs,
                helpers,
                freplace,
                Need::Probe("xdp-loader", no_xdp_loader),
            ],
            xdp_loader_and_kiln_share_an_interface,
        ),
    ]);
}
