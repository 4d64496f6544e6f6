//! Module BTF: an fentry and an fexit on functions of the veth module, and
//! kfuncs of the nf_conntrack module, loaded and run. These need the modules
//! loaded (the VMs load them at boot; the host has none), so without them
//! the tests are skipped.

mod attach_util;

use attach_util::sh;
use kiln_loader::EbpfLoader;
use kiln_loader::links::tracing::attach_tracing;
use kiln_loader::programs::TestRun;
use kiln_obj::ObjectSpec;
use kiln_obj::btf::{Btf, Kind};
use kiln_testkit::{Need, TestResult, bpf_object, test};
use std::sync::Arc;

/// `Some(reason)` unless module `module` is loaded with BTF in which every
/// function of `funcs` is defined. Read from sysfs with kiln-obj alone, not
/// with the loader's module search under test.
fn module_lacks(module: &str, funcs: &[&str]) -> Option<String> {
    let read = |p: &str| std::fs::read(p).ok();
    let Some(vmlinux) = read("/sys/kernel/btf/vmlinux").and_then(|b| Btf::from_bytes(b).ok())
    else {
        return Some("no kernel BTF".into());
    };
    let Some(bytes) = read(&format!("/sys/kernel/btf/{module}")) else {
        return Some(format!(
            "{module} is not a loaded module with BTF here (built in, not loaded, or before 5.11)"
        ));
    };
    let Ok(btf) = Btf::from_bytes_split(bytes, Arc::new(vmlinux)) else {
        return Some(format!("the BTF of {module} does not parse"));
    };
    funcs
        .iter()
        .find(|f| btf.find_by_name(Kind::Func, f).is_none())
        .map(|f| format!("module {module} has no function {f} in its BTF"))
}

fn no_veth_functions() -> Option<String> {
    module_lacks("veth", &["veth_open", "veth_close"])
}

/// The conntrack kfuncs: nf_conntrack 5.18+.
fn no_conntrack_kfuncs() -> Option<String> {
    module_lacks("nf_conntrack", &["bpf_xdp_ct_lookup", "bpf_ct_release"])
}

/// fentry/veth_open and fexit/veth:veth_close count one open and one close
/// of a veth this test brings up and down.
fn fentry_and_fexit_on_veth_functions() -> TestResult {
    let spec = ObjectSpec::parse(&std::fs::read(bpf_object("module_fentry.bpf.o")?)?)?;
    let dev = format!("kmb{}", std::process::id());
    let mut name = [0u8; 16];
    name[..dev.len()].copy_from_slice(dev.as_bytes());
    let ebpf = EbpfLoader::new()
        .set_global("target_name", &name)
        .load(&spec)?;
    let mut links = Vec::new();
    for p in ["on_veth_open", "on_veth_close"] {
        let prog = ebpf.program(p).ok_or(format!("no program {p}"))?;
        links.push(attach_tracing(prog.fd(), prog.kind(), 0)?);
    }
    let ns = format!("kiln-modbtf-{}", std::process::id());
    sh(&["ip", "netns", "add", &ns])?;
    let peer = format!("{dev}p");
    let run = || -> TestResult {
        sh(&[
            "ip", "-n", &ns, "link", "add", &dev, "type", "veth", "peer", "name", &peer,
        ])?;
        sh(&["ip", "-n", &ns, "link", "set", &dev, "up"])?;
        sh(&["ip", "-n", &ns, "link", "set", &dev, "down"])?;
        Ok(())
    };
    let result = run();
    let _ = sh(&["ip", "netns", "del", &ns]);
    result?;
    let (opened, closed): (u64, u64) = (ebpf.global("opened")?, ebpf.global("closed")?);
    assert_eq!(
        (opened, closed),
        (1, 1),
        "veth_open and veth_close of {dev}"
    );
    Ok(())
}

/// bpf_xdp_ct_lookup of a connection nobody made: NULL, error -ENOENT.
/// Its call names nf_conntrack's slot in the fd_array.
fn conntrack_kfuncs_from_the_module() -> TestResult {
    let spec = ObjectSpec::parse(&std::fs::read(bpf_object("module_kfunc.bpf.o")?)?)?;
    let prepared = EbpfLoader::new().prepare(&spec)?;
    let prog = prepared
        .program("ct_lookup")
        .ok_or("no program ct_lookup")?;
    let slots: Vec<i16> = prog
        .insns
        .iter()
        .filter(|i| i.code == kiln_obj::insn::CALL && i.src_reg() == 2)
        .map(|i| i.off)
        .collect();
    let modules = kiln_loader::module_btf::module_btfs();
    let named: Vec<&str> = slots
        .iter()
        .map(|&off| {
            usize::try_from(off)
                .ok()
                .and_then(|o| o.checked_sub(1))
                .and_then(|i| modules.get(i))
                .map_or("?", |m| m.name.as_str())
        })
        .collect();
    assert_eq!(
        named,
        ["nf_conntrack", "nf_conntrack"],
        "kfunc calls' fd_array slots {slots:?}"
    );
    let ebpf = EbpfLoader::new().load_prepared(&prepared)?;
    let run = ebpf
        .program("ct_lookup")
        .ok_or("ct_lookup not loaded")?
        .test_run(TestRun {
            data_in: Some(&[0u8; 64]),
            data_out: None,
            ctx_in: None,
            ctx_out: None,
            repeat: 0,
            flags: 0,
            cpu: 0,
        })?;
    assert_eq!(run.retval, 2, "XDP_PASS");
    let (found, error): (i32, i32) = (ebpf.global("found")?, ebpf.global("lookup_error")?);
    assert_eq!((found, error), (0, -libc::ENOENT), "no such connection");
    Ok(())
}

fn main() {
    kiln_testkit::run(vec![
        test(
            "fentry_and_fexit_on_veth_functions",
            &[
                Need::Root,
                Need::Bpf,
                Need::NetNs,
                Need::Probe("veth module BTF", no_veth_functions),
                Need::Probe("fentry", attach_util::no_fentry),
            ],
            fentry_and_fexit_on_veth_functions,
        ),
        test(
            "conntrack_kfuncs_from_the_module",
            &[
                Need::Root,
                Need::Bpf,
                Need::Probe("nf_conntrack kfuncs", no_conntrack_kfuncs),
            ],
            conntrack_kfuncs_from_the_module,
        ),
    ])
}
