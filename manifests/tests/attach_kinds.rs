//! Each attach kind a manifest can declare, through the whole cycle: apply,
//! status all as declared, re-apply is a no-op (the kernel's link info
//! matches the declared target), destroy leaves nothing. Programs come from
//! kiln-obj's `sections.bpf.c` fixture (one trivial program per section).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use kiln_manifest::Deployment;
use kiln_manifest::apply::ApplyOptions;
use kiln_testkit::{Need, TestResult};

mod common;
use common::cgroup2_root;
// The loader's attach tests create netkit pairs and send raw frames; the
// same helpers serve here.
#[path = "../../loader/tests/attach_util/mod.rs"]
mod attach_util;

fn cycle(program: &str, attach: &str, netns: bool) -> TestResult {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "kiln-kind-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    if netns {
        // SAFETY: unshare takes flags only; it affects this thread.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!("unshare: {}", std::io::Error::last_os_error()).into());
        }
    }
    let obj = kiln_testkit::bpf_object("sections.bpf.o")?;
    let root = PathBuf::from("/sys/fs/bpf").join(&name);
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("manifest.toml");
    std::fs::write(
        &path,
        format!(
            "[deployment]\nname = \"{name}\"\npin_root = \"{}\"\nallow_outside = true\n\n[objects.sections]\npath = \"{}\"\n\n[programs.{program}]\nobject = \"sections\"\nattach = {attach}\n",
            root.display(),
            obj.display()
        ),
    )?;
    let result = (|| -> TestResult {
        let d = Deployment::load(&path, &BTreeMap::new()).map_err(|e| e.to_string())?;
        let out = d.apply(&ApplyOptions::default())?;
        assert!(!out.plan.is_noop());
        let status = d.status()?;
        assert!(status.all_ok(), "{status}");
        let again = d.plan()?;
        assert!(again.is_noop(), "re-apply would change things:\n{again}");
        d.destroy()?;
        assert!(!root.exists(), "pin root left behind");
        Ok(())
    })();
    common::remove_deployment(&name, &root, &dir);
    result
}

/// A deployment of one program of one object, its pin root and temporary
/// directory removed on drop.
struct OneProgram {
    name: String,
    root: PathBuf,
    dir: PathBuf,
    object: PathBuf,
}

impl OneProgram {
    fn new(
        tag: &str,
        object: &str,
    ) -> Result<OneProgram, Box<dyn std::error::Error + Send + Sync>> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "kiln-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir)?;
        Ok(OneProgram {
            root: PathBuf::from("/sys/fs/bpf").join(&name),
            object: kiln_testkit::bpf_object(object)?,
            name,
            dir,
        })
    }

    /// Writes the manifest of program `program` (function `function`)
    /// attached as `attach`, with `maps` (TOML tables) after it, and loads it.
    fn load(
        &self,
        (program, function): (&str, &str),
        attach: &str,
        maps: &str,
    ) -> Result<Deployment, String> {
        let path = self.dir.join("manifest.toml");
        std::fs::write(
            &path,
            format!(
                "[deployment]\nname = \"{}\"\npin_root = \"{}\"\nallow_outside = true\n\n[objects.obj]\npath = \"{}\"\n\n[programs.{program}]\nobject = \"obj\"\nfunction = \"{function}\"\nattach = {attach}\n{maps}",
                self.name,
                self.root.display(),
                self.object.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        Deployment::load(&path, &BTreeMap::new()).map_err(|e| e.to_string())
    }
}

impl Drop for OneProgram {
    fn drop(&mut self) {
        common::remove_deployment(&self.name, &self.root, &self.dir);
    }
}

/// An iterator declared in a manifest: its pinned link yields the output,
/// an upgrade to another function switches the link in place, destroy
/// removes the pin.
fn iter_pinned_output_upgrades_in_place() -> TestResult {
    let t = OneProgram::new("iter", "attach_iter.bpf.o")?;
    let (name, root) = (&t.name, &t.root);
    let load = |function: &str| {
        t.load(
            ("maps", function),
            "{ iter = { target = \"bpf_map\" } }",
            "",
        )
    };
    (|| -> TestResult {
        let d = load("dump_maps")?;
        d.apply(&ApplyOptions::default())?;
        let pin = root.join("links/maps");
        // Reading the pin runs the iterator: one `map ID` line per BPF map
        // of the kernel, among them one this test pins for the purpose.
        let probe_pin = PathBuf::from("/sys/fs/bpf").join(format!("{name}-map"));
        common::pin_foreign_map(&probe_pin, 1, 1)?;
        let probe_id = kiln_manifest::live::map_at(&probe_pin).map(|m| m.id);
        let out = std::fs::read_to_string(&pin);
        let _ = std::fs::remove_file(&probe_pin);
        let (out, id) = (out?, probe_id.ok_or("probe map not pinned")?);
        assert!(
            out.lines().any(|l| l == format!("map {id}")),
            "map {id} missing from the iterator's output:\n{out}"
        );
        let status = d.status()?;
        assert!(status.all_ok(), "{status}");
        assert!(status.to_string().contains("iter bpf_map"), "{status}");
        assert!(load("dump_maps")?.plan()?.is_noop());

        let v2 = load("dump_maps_v2")?;
        let plan = v2.plan()?;
        assert!(plan.to_string().contains("link update"), "{plan}");
        let link_id = kiln_manifest::live::link_at(&pin).ok_or("no link")?.id;
        v2.apply(&ApplyOptions::default())?;
        assert_eq!(
            kiln_manifest::live::link_at(&pin).ok_or("no link")?.id,
            link_id,
            "the link was replaced, not updated"
        );
        let out = std::fs::read_to_string(&pin)?;
        assert!(out.starts_with("v2 map "), "{out}");
        assert!(v2.plan()?.is_noop());

        v2.destroy()?;
        assert!(!root.exists(), "pin root left behind");
        Ok(())
    })()
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Sends `n` UDP datagrams from namespace `from` to `to` (port 9).
fn send_from(from: &str, to: &str, n: u32) -> Result<(), String> {
    let ns = std::fs::File::open(format!("/run/netns/{from}")).map_err(|e| e.to_string())?;
    let to = format!("{to}:9");
    std::thread::scope(|s| {
        s.spawn(|| -> Result<(), String> {
            use std::os::fd::AsRawFd;
            // SAFETY: setns on a namespace fd we hold; it moves this thread only.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!("setns: {}", std::io::Error::last_os_error()));
            }
            let sock = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
            for _ in 0..n {
                // Nothing listens: ICMP errors come back and are ignored.
                let _ = sock.send_to(b"x", &to);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Ok(())
        })
        .join()
        .map_err(|_| "sender panicked".to_string())?
    })
}

/// The flow dissector of a namespace, declared in a manifest: packets
/// arriving over a veth (with RPS, so the kernel hashes and dissects each)
/// run it; an upgrade to another function switches the link in place.
fn flow_dissector_counts_received_packets() -> TestResult {
    const DISSECT: u32 = 5;
    const DISSECT_V2: u32 = 6;
    let pid = std::process::id();
    let (a, b) = (format!("kfd-{pid}-a"), format!("kfd-{pid}-b"));
    let t = OneProgram::new("fd", "attach_sock.bpf.o")?;
    let root = &t.root;
    let result = (|| -> TestResult {
        ip(&["netns", "add", &a])?;
        ip(&["netns", "add", &b])?;
        ip(&[
            "link", "add", "va", "netns", &a, "type", "veth", "peer", "name", "vb", "netns", &b,
        ])?;
        for (ns, dev, addr) in [(&a, "va", "10.203.0.1/24"), (&b, "vb", "10.203.0.2/24")] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        // Receive packet steering makes the kernel hash every packet vb receives.
        ip(&[
            "netns",
            "exec",
            &b,
            "sh",
            "-c",
            "echo 1 > /sys/class/net/vb/queues/rx-0/rps_cpus",
        ])?;
        let attach = format!("{{ flow_dissector = {{ netns = \"/run/netns/{b}\" }} }}");
        let load = |function: &str| t.load(("dissect", function), &attach, "");
        let count = |slot: u32| common::pinned_value(&root.join("maps/counts"), slot);
        let d = load("dissect")?;
        d.apply(&ApplyOptions::default())?;
        send_from(&a, "10.203.0.2", 5)?;
        assert!(
            count(DISSECT)?.unwrap_or(0) >= 1,
            "the dissector did not run"
        );
        let status = d.status()?;
        assert!(status.all_ok(), "{status}");
        assert!(
            status.to_string().contains("flow_dissector in /run/netns/"),
            "{status}"
        );
        assert!(load("dissect")?.plan()?.is_noop());

        let v2 = load("dissect_v2")?;
        let plan = v2.plan()?;
        assert!(plan.to_string().contains("link update"), "{plan}");
        v2.apply(&ApplyOptions::default())?;
        let before = count(DISSECT)?;
        send_from(&a, "10.203.0.2", 5)?;
        assert!(
            count(DISSECT_V2)?.unwrap_or(0) >= 1,
            "the upgrade did not run"
        );
        assert_eq!(count(DISSECT)?, before, "the old program still runs");
        assert!(v2.plan()?.is_noop());
        v2.destroy()?;
        assert!(!root.exists(), "pin root left behind");
        Ok(())
    })();
    drop(t);
    let _ = ip(&["netns", "del", &a]);
    let _ = ip(&["netns", "del", &b]);
    result
}

/// The value at u64 key `key` of the u64 -> u64 hash map pinned at `path`.
fn hash_u64(path: &std::path::Path, key: u64) -> Result<u64, String> {
    let map = kiln_loader::Map::from_pin(path, kiln_loader::OpenFlags::ReadOnly)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(map
        .lookup_bytes(&key.to_ne_bytes(), kiln_loader::maps::UpdateFlags::ANY)
        .map_err(|e| e.to_string())?
        .and_then(|v| Some(u64::from_ne_bytes(v.get(..8)?.try_into().ok()?)))
        .unwrap_or(0))
}

/// A uprobe on a library named as libbpf takes it (`libc.so.6`, found in
/// the system's library directories): calls through it run the program; an
/// upgrade (a migrated map reloads the program) attaches the new one before
/// detaching the old, as perf-event links cannot be updated.
fn uprobe_on_a_library_by_name() -> TestResult {
    let pid = std::process::id();
    let t = OneProgram::new("uprobe", "attach_cookie.bpf.o")?;
    let root = &t.root;
    let attach =
        format!("{{ uprobe = {{ path = \"libc.so.6\", symbol = \"getppid\", pid = {pid} }} }}");
    let load = |max: u32| {
        let maps = format!(
            "\n[maps.cookies]\nobject = \"obj\"\nmax_entries = {max}\non_upgrade = \"migrate\"\n"
        );
        t.load(("uprobe_cookie", "uprobe_cookie"), &attach, &maps)
    };
    (|| -> TestResult {
        let d = load(64)?;
        d.apply(&ApplyOptions::default())?;
        let status = d.status()?;
        assert!(status.all_ok(), "{status}");
        let resolved = kiln_loader::links::uprobe::resolve_library("libc.so.6".as_ref());
        assert!(
            status
                .to_string()
                .contains(&format!("uprobe {}:getppid", resolved.display())),
            "{status}"
        );
        let cookies = root.join("maps/cookies");
        let before = hash_u64(&cookies, 0)?;
        // SAFETY: getppid has no preconditions.
        let _ = unsafe { libc::getppid() };
        assert!(hash_u64(&cookies, 0)? > before, "the uprobe did not run");
        assert!(load(64)?.plan()?.is_noop());

        upgrade_then_destroy(&load(128)?, root, 0, &|| {
            // SAFETY: as above.
            let _ = unsafe { libc::getppid() };
        })
    })()
}

/// Upgrades a perf-event-like attachment whose `cookies` map grew (the
/// program reloads): the plan attaches the new one before detaching the
/// old; `trigger` then counts under `cookie`; destroy leaves nothing.
fn upgrade_then_destroy(
    bigger: &Deployment,
    root: &std::path::Path,
    cookie: u64,
    trigger: &dyn Fn(),
) -> TestResult {
    let plan = bigger.plan()?;
    assert!(
        plan.to_string().contains("attach new, then detach old"),
        "{plan}"
    );
    bigger.apply(&ApplyOptions::default())?;
    let cookies = root.join("maps/cookies");
    let before = hash_u64(&cookies, cookie)?;
    trigger();
    assert!(
        hash_u64(&cookies, cookie)? > before,
        "the upgraded program did not run"
    );
    assert!(bigger.plan()?.is_noop());
    bigger.destroy()?;
    assert!(!root.exists(), "pin root left behind");
    Ok(())
}

/// An sk_msg program on a sockmap the manifest declares: a TCP socket put
/// in the map runs it on every send; an upgrade to another function
/// switches the sockmap link in place.
fn sockmap_msg_verdict_runs_on_sends() -> TestResult {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    const MSG_V1: u32 = 0;
    const MSG_V2: u32 = 1;
    common::private_netns()?;
    let t = OneProgram::new("sockmap", "attach_sock.bpf.o")?;
    let root = &t.root;
    let load = |function: &str| {
        t.load(
            ("msg", function),
            "{ sockmap = { map = \"socks\" } }",
            "\n[maps.socks]\nobject = \"obj\"\n",
        )
    };
    (|| -> TestResult {
        let d = load("msg_v1")?;
        d.apply(&ApplyOptions::default())?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let mut client = std::net::TcpStream::connect(listener.local_addr()?)?;
        let (mut server, _) = listener.accept()?;
        let socks = kiln_loader::Map::from_pin(
            &root.join("maps/socks"),
            kiln_loader::OpenFlags::ReadWrite,
        )?;
        socks.update_bytes(
            &0u32.to_ne_bytes(),
            &(client.as_raw_fd() as u64).to_ne_bytes(),
            kiln_loader::maps::UpdateFlags::ANY,
        )?;
        let count = |slot: u32| common::pinned_value(&root.join("maps/counts"), slot);
        let mut buf = [0u8; 5];
        client.write_all(b"hello")?;
        server.read_exact(&mut buf)?;
        assert_eq!(&buf, b"hello");
        assert!(count(MSG_V1)?.unwrap_or(0) >= 1, "sk_msg did not run");
        let status = d.status()?;
        assert!(status.all_ok(), "{status}");
        assert!(status.to_string().contains("sk_msg on"), "{status}");
        assert!(load("msg_v1")?.plan()?.is_noop());

        let v2 = load("msg_v2")?;
        let plan = v2.plan()?;
        assert!(plan.to_string().contains("link update"), "{plan}");
        v2.apply(&ApplyOptions::default())?;
        // A socket takes the map's programs when it enters the map: a new
        // connection shows the upgraded program.
        let mut client = std::net::TcpStream::connect(listener.local_addr()?)?;
        let (mut server, _) = listener.accept()?;
        socks.update_bytes(
            &1u32.to_ne_bytes(),
            &(client.as_raw_fd() as u64).to_ne_bytes(),
            kiln_loader::maps::UpdateFlags::ANY,
        )?;
        let before = count(MSG_V1)?;
        client.write_all(b"again")?;
        server.read_exact(&mut buf)?;
        assert!(count(MSG_V2)?.unwrap_or(0) >= 1, "the upgrade did not run");
        assert_eq!(count(MSG_V1)?, before, "the old program still runs");
        assert!(v2.plan()?.is_noop());
        drop((client, server));
        v2.destroy()?;
        assert!(!root.exists(), "pin root left behind");
        Ok(())
    })()
}

/// One `uprobe.multi` link on two libc symbols, each with its cookie: a
/// call through each counts under its cookie; an upgrade (a migrated map
/// reloads the program) attaches the new link before detaching the old.
fn uprobe_multi_cookies_per_symbol() -> TestResult {
    let pid = std::process::id();
    let t = OneProgram::new("umulti", "attach_cookie.bpf.o")?;
    let root = &t.root;
    let attach = format!(
        "{{ uprobe_multi = {{ path = \"libc.so.6\", symbols = [\"getppid\", \"getpgrp\"], pid = {pid}, cookies = [11, 22] }} }}"
    );
    let load = |max: u32| {
        let maps = format!(
            "\n[maps.cookies]\nobject = \"obj\"\nmax_entries = {max}\non_upgrade = \"migrate\"\n"
        );
        t.load(("umulti_cookie", "umulti_cookie"), &attach, &maps)
    };
    let cookies = root.join("maps/cookies");
    let calls = || {
        // SAFETY: getppid and getpgrp have no preconditions.
        unsafe {
            libc::getppid();
            libc::getpgrp();
        }
    };
    let d = load(64)?;
    d.apply(&ApplyOptions::default())?;
    let status = d.status()?;
    assert!(status.all_ok(), "{status}");
    assert!(status.to_string().contains("uprobe.multi "), "{status}");
    calls();
    assert!(hash_u64(&cookies, 11)? >= 1, "getppid's cookie");
    assert!(hash_u64(&cookies, 22)? >= 1, "getpgrp's cookie");
    assert!(load(64)?.plan()?.is_noop());

    upgrade_then_destroy(&load(128)?, root, 22, &calls)
}

/// One `kprobe.multi` link on the getppid syscall's functions (a glob):
/// a getppid call runs it (cookie 0: no cookies given).
fn kprobe_multi_glob() -> TestResult {
    let t = OneProgram::new("kmulti", "attach_cookie.bpf.o")?;
    let d = t.load(
        ("kmulti_cookie", "kmulti_cookie"),
        "{ kprobe_multi = { functions = [\"*sys_getppid\"] } }",
        "\n[maps.cookies]\nobject = \"obj\"\n",
    )?;
    d.apply(&ApplyOptions::default())?;
    let status = d.status()?;
    assert!(status.all_ok(), "{status}");
    // SAFETY: getppid has no preconditions.
    let _ = unsafe { libc::getppid() };
    assert!(
        hash_u64(&t.root.join("maps/cookies"), 0)? >= 1,
        "did not run"
    );
    assert!(d.plan()?.is_noop());
    d.destroy()?;
    assert!(!t.root.exists(), "pin root left behind");
    Ok(())
}

/// A netkit program declared on the primary device of a pair the test
/// creates: frames sent out of the primary run it; re-apply is a no-op;
/// an upgrade (a migrated map reloads the program) updates the netkit link
/// in place; destroy detaches it.
fn netkit_primary_counts_frames() -> TestResult {
    use attach_util::{create_netkit_pair, frame, send_raw};
    const PRIMARY: u32 = 0;
    common::private_netns()?;
    create_netkit_pair("nkm0", "nkm1")?;
    let nk = common::ifindex("nkm0")?;
    let t = OneProgram::new("netkit", "attach_netkit.bpf.o")?;
    let root = &t.root;
    let load = |max: u32| {
        let maps = format!(
            "\n[maps.counts]\nobject = \"obj\"\nmax_entries = {max}\non_upgrade = \"migrate\"\n"
        );
        t.load(
            ("on_primary", "on_primary"),
            "{ netkit = { interface = \"nkm0\", side = \"primary\" } }",
            &maps,
        )
    };
    // The count once it reaches `want`, or after a few seconds.
    let count = |slot: u32, want: u64| -> Result<Option<u64>, String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            let n = common::pinned_value(&root.join("maps/counts"), slot)?;
            if n >= Some(want) || std::time::Instant::now() > deadline {
                return Ok(n);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let send = |n: u32| -> TestResult {
        for _ in 0..n {
            send_raw(nk, &frame(b"kiln netkit"))?;
        }
        Ok(())
    };
    let d = load(2)?;
    d.apply(&ApplyOptions::default())?;
    send(3)?;
    assert_eq!(count(PRIMARY, 3)?, Some(3), "the primary program's count");
    let status = d.status()?;
    assert!(status.all_ok(), "{status}");
    assert!(
        status.to_string().contains("netkit nkm0 primary"),
        "{status}"
    );
    assert!(load(2)?.plan()?.is_noop());

    let pin = root.join("links/on_primary");
    let link = kiln_manifest::live::link_at(&pin).ok_or("no link")?;
    let bigger = load(4)?;
    let plan = bigger.plan()?;
    assert!(plan.to_string().contains("link update"), "{plan}");
    bigger.apply(&ApplyOptions::default())?;
    let upgraded = kiln_manifest::live::link_at(&pin).ok_or("no link")?;
    assert_eq!(upgraded.id, link.id, "the link was replaced, not updated");
    assert_ne!(
        upgraded.prog_id, link.prog_id,
        "the program was not replaced"
    );
    send(2)?;
    assert_eq!(
        count(PRIMARY, 5)?,
        Some(5),
        "the upgraded program's count (migrated from 3)"
    );
    assert!(bigger.plan()?.is_noop());
    bigger.destroy()?;
    assert!(!root.exists(), "pin root left behind");
    Ok(())
}

/// An fmod_ret program on the LSM check of getpgid(): getpgid(own pid)
/// fails with the errno the manifest's `fake_ret` global sets; changing
/// the global reloads the program, attached new before the old is detached
/// (tracing links cannot be updated); destroy lets getpgid succeed again.
fn fmod_ret_denies_getpgid() -> TestResult {
    let tgid = std::process::id();
    let t = OneProgram::new("fmodret", "attach_fmod_ret.bpf.o")?;
    let load = |errno: i32| {
        t.load(
            ("fake_denial", "fake_denial"),
            "{ fmod_ret = { function = \"security_task_getpgid\" } }",
            &format!(
                "globals = {{ target_tgid = {tgid}, fake_ret = {} }}\n",
                -errno
            ),
        )
    };
    // getpgid(own pid), as the result or the errno of its failure.
    let getpgid = || -> Result<i32, i32> {
        // SAFETY: getpgid has no preconditions.
        match unsafe { libc::getpgid(tgid as i32) } {
            -1 => Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)),
            g => Ok(g),
        }
    };
    let real = getpgid();
    assert!(real.is_ok(), "getpgid fails before the test: {real:?}");
    let d = load(libc::EBADFD)?;
    d.apply(&ApplyOptions::default())?;
    assert_eq!(getpgid(), Err(libc::EBADFD), "getpgid was not modified");
    let status = d.status()?;
    assert!(status.all_ok(), "{status}");
    assert!(
        status
            .to_string()
            .contains("fmod_ret security_task_getpgid"),
        "{status}"
    );
    assert!(load(libc::EBADFD)?.plan()?.is_noop());

    let v2 = load(libc::EREMCHG)?;
    let plan = v2.plan()?;
    assert!(
        plan.to_string().contains("attach new, then detach old"),
        "{plan}"
    );
    v2.apply(&ApplyOptions::default())?;
    assert_eq!(getpgid(), Err(libc::EREMCHG), "the upgrade does not run");
    assert!(v2.plan()?.is_noop());
    v2.destroy()?;
    assert!(!t.root.exists(), "pin root left behind");
    // The kernel frees a link whose last pin is gone from a workqueue, a
    // moment after the unlink: the trampoline stays until then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while getpgid() != real && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(getpgid(), real, "getpgid still modified after destroy");
    Ok(())
}

/// A static test binary (the VMs') calls no libc.so.6.
fn uses_libc() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    (!maps.contains("/libc.so.6")).then(|| "this test binary does not use libc.so.6".into())
}

fn feature(name: &'static str) -> impl Fn() -> Option<String> {
    move || {
        let f = kiln_loader::probe::features();
        let ok = kiln_manifest::features::has(f, name).unwrap_or(false);
        (!ok).then(|| format!("the kernel lacks {name}"))
    }
}

macro_rules! need_feature {
    ($name:literal) => {
        Need::Probe($name, || feature($name)())
    };
}

fn main() {
    let base = [Need::Root, Need::Bpf];
    let with = |extra: &[Need]| -> Vec<Need> {
        base.iter().copied().chain(extra.iter().copied()).collect()
    };
    kiln_testkit::run(vec![
        kiln_testkit::test(
            "auto_tracepoint",
            &with(&[need_feature!("perf_link")]),
            || cycle("tp_switch", "\"auto\"", false),
        ),
        kiln_testkit::test(
            "tracepoint_explicit",
            &with(&[need_feature!("perf_link")]),
            || {
                cycle(
                    "tp_openat",
                    "{ tracepoint = { category = \"syscalls\", name = \"sys_enter_openat\" } }",
                    false,
                )
            },
        ),
        kiln_testkit::test("raw_tracepoint", &with(&[]), || {
            cycle(
                "rawtp",
                "{ raw_tracepoint = { name = \"sched_switch\" } }",
                false,
            )
        }),
        kiln_testkit::test("tp_btf", &with(&[need_feature!("tracing")]), || {
            cycle("tpbtf", "{ tp_btf = { name = \"sched_switch\" } }", false)
        }),
        kiln_testkit::test("tcx", &with(&[Need::NetNs, need_feature!("tcx")]), || {
            cycle(
                "tcx_in",
                "{ tcx = { interface = \"lo\", direction = \"ingress\" } }",
                true,
            )
        }),
        kiln_testkit::test("xdp_auto_mode", &with(&[Need::NetNs]), || {
            cycle("xdp_a", "{ xdp = { interface = \"lo\" } }", true)
        }),
        kiln_testkit::test(
            "cgroup_skb",
            &with(&[Need::Probe("cgroup2", || {
                cgroup2_root().is_none().then(|| "no cgroup2 mount".into())
            })]),
            || {
                let root = cgroup2_root().ok_or("no cgroup2")?;
                cycle(
                    "cg_in",
                    &format!("{{ cgroup = {{ path = \"{root}\" }} }}"),
                    false,
                )
            },
        ),
        kiln_testkit::test(
            "sk_lookup",
            &with(&[Need::NetNs, need_feature!("sk_lookup")]),
            || {
                cycle(
                    "sklookup",
                    "{ sk_lookup = { netns = \"/proc/thread-self/ns/net\" } }",
                    true,
                )
            },
        ),
        kiln_testkit::test(
            "netfilter",
            &with(&[Need::NetNs, need_feature!("netfilter")]),
            || {
                cycle(
                    "nf",
                    "{ netfilter = { family = \"ipv4\", hook = \"input\", priority = -128 } }",
                    true,
                )
            },
        ),
        kiln_testkit::test("socket_filter_load_only", &with(&[]), || {
            cycle("sock", "\"none\"", false)
        }),
        kiln_testkit::test(
            "flow_dissector_counts_received_packets",
            &with(&[Need::NetNs, Need::HelpersOf("attach_sock.bpf.o")]),
            flow_dissector_counts_received_packets,
        ),
        kiln_testkit::test(
            "uprobe_on_a_library_by_name",
            &with(&[
                common::perf_links(),
                Need::Probe("uprobe PMU", || {
                    (!std::path::Path::new("/sys/bus/event_source/devices/uprobe").exists())
                        .then(|| "the kernel has no uprobe PMU".into())
                }),
                Need::Probe("libc.so.6 in use", uses_libc),
            ]),
            uprobe_on_a_library_by_name,
        ),
        kiln_testkit::test(
            "sockmap_msg_verdict_runs_on_sends",
            &with(&[
                Need::NetNs,
                Need::HelpersOf("attach_sock.bpf.o"),
                Need::Probe("sockmap links", || {
                    (kiln_loader::probe::feature("sockmap_link") != Some(true))
                        .then(|| "the kernel has no sockmap links (6.10+)".into())
                }),
            ]),
            sockmap_msg_verdict_runs_on_sends,
        ),
        kiln_testkit::test(
            "uprobe_multi_cookies_per_symbol",
            &with(&[
                Need::HelpersOf("attach_cookie.bpf.o"),
                // The kernel's BTF has the link's struct where it has the link.
                Need::Probe("uprobe.multi links", || {
                    let has = std::fs::read("/sys/kernel/btf/vmlinux")
                        .ok()
                        .and_then(|bytes| kiln_obj::btf::Btf::parse(&bytes).ok())
                        .is_some_and(|b| {
                            b.find_by_name(kiln_obj::btf::Kind::Struct, "bpf_uprobe_multi_link")
                                .is_some()
                        });
                    (!has).then(|| "the kernel has no uprobe.multi links (6.6+)".into())
                }),
                Need::Probe("libc.so.6 in use", uses_libc),
            ]),
            uprobe_multi_cookies_per_symbol,
        ),
        kiln_testkit::test(
            "kprobe_multi_glob",
            &with(&[
                Need::HelpersOf("attach_cookie.bpf.o"),
                Need::Probe("kprobe.multi links", || {
                    let f = kiln_loader::probe::features();
                    (f.link_kinds.get("kprobe_multi") != Some(&true))
                        .then(|| "the kernel has no kprobe.multi links (5.18+ with fprobe)".into())
                }),
            ]),
            kprobe_multi_glob,
        ),
        kiln_testkit::test(
            "iter_pinned_output_upgrades_in_place",
            // Iterators are 5.8+: every kernel of the matrix; the
            // helpers (bpf_seq_printf) are probed.
            &with(&[Need::HelpersOf("attach_iter.bpf.o")]),
            iter_pinned_output_upgrades_in_place,
        ),
        kiln_testkit::test(
            "netkit_primary_counts_frames",
            &with(&[
                Need::NetNs,
                Need::Probe("netkit links", || {
                    let f = kiln_loader::probe::features();
                    (f.link_kinds.get("netkit") != Some(&true))
                        .then(|| "the kernel has no netkit links (6.7+ with CONFIG_NETKIT)".into())
                }),
            ]),
            netkit_primary_counts_frames,
        ),
        kiln_testkit::test(
            "fmod_ret_denies_getpgid",
            &with(&[
                need_feature!("tracing"),
                // fmod_ret rides the same trampoline as fentry: where a
                // kernel cannot attach one (arm64 before 6.4), neither.
                Need::Probe("fentry trampolines", attach_util::no_fentry),
                Need::HelpersOf("attach_fmod_ret.bpf.o"),
            ]),
            fmod_ret_denies_getpgid,
        ),
    ]);
}
