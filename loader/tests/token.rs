//! `EbpfLoader::token`: an object (a raw tracepoint and an array map) loaded
//! by a process that is root only inside its own user namespace, through a
//! token from a bpffs delegating exactly that; without the token, and for a
//! map type the bpffs does not delegate, the kernel refuses.
//!
//! The namespaced half is this test binary run again with
//! `KILN_TOKEN_CHILD` set: it prints what happened, the parent asserts.

use std::path::Path;
use std::process::Command;

use kiln_loader::links::raw_tracepoint::attach_raw_tracepoint;
use kiln_loader::maps::UpdateFlags;
use kiln_loader::{EbpfLoader, MapType, Token};
use kiln_testkit::userns::{run_delegated, tokens_unavailable_reason, userns_unavailable_reason};
use kiln_testkit::{Need, TestResult};

mod attach_util;

const CHILD: &str = "KILN_TOKEN_CHILD";
const NOBODY: u32 = 65534;
const BPFFS: &str = "/sys/fs/bpf";
const OBJECT: &str = "token_counter.bpf.o";

/// In the user namespace: one line per step, `name: outcome`.
fn child() -> Result<(), Box<dyn std::error::Error>> {
    let spec = kiln_obj::ObjectSpec::parse(&std::fs::read(kiln_testkit::bpf_object(OBJECT)?)?)?;
    match EbpfLoader::new().load(&spec) {
        Ok(_) => println!("without token: loaded"),
        Err(e) => println!("without token: {e}"),
    }
    let token = Token::from_bpffs(BPFFS)?;
    let ebpf = EbpfLoader::new().token(token.clone()).load(&spec)?;
    let prog = ebpf.program("count_exec").ok_or("no program count_exec")?;
    let _link = attach_raw_tracepoint(prog.fd(), "sched_process_exec")?;
    Command::new("/bin/true").status()?;
    let execs = ebpf
        .map("EXECS")
        .ok_or("no map EXECS")?
        .lookup_bytes(&0u32.to_ne_bytes(), UpdateFlags::ANY)?
        .ok_or("EXECS has no key 0")?;
    println!(
        "execs: {}",
        u64::from_ne_bytes(execs[..8].try_into().map_err(|_| "short value")?)
    );
    let hash = token.scope(|| {
        // BPF_MAP_TYPE_HASH: not delegated.
        attach_util::create_map("undelegated", MapType::HASH, 4, 4, 1, 0)
    });
    match hash {
        Ok(_) => println!("hash through token: created"),
        Err(e) => println!("hash through token: errno {}", e.errno().unwrap_or(0)),
    }
    Ok(())
}

fn loads_through_a_delegated_token() -> TestResult {
    let mut me = Command::new(std::env::current_exe()?);
    me.env(CHILD, "1");
    let run = run_delegated(
        me,
        NOBODY,
        NOBODY,
        Path::new(BPFFS),
        &[
            ("delegate_cmds", "map_create:btf_load:prog_load"),
            ("delegate_maps", "array"),
            ("delegate_progs", "raw_tracepoint"),
            ("delegate_attachs", "cgroup_inet_ingress"),
        ],
    )?;
    let stdout = String::from_utf8_lossy(&run.output.stdout);
    let stderr = String::from_utf8_lossy(&run.output.stderr);
    assert!(
        run.output.status.success(),
        "namespaced loader: {}\n{stdout}\n{stderr}",
        run.output.status
    );
    let line = |step: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(step)?.strip_prefix(": "))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("without token").contains("Operation not permitted"),
        "without the token the load must be refused:\n{stdout}"
    );
    let execs: u64 = line("execs")
        .parse()
        .map_err(|e| format!("{e}:\n{stdout}"))?;
    assert!(execs >= 1, "the exec was not counted:\n{stdout}");
    assert_eq!(
        line("hash through token"),
        format!("errno {}", libc::EPERM),
        "a map type the bpffs does not delegate:\n{stdout}"
    );
    Ok(())
}

fn main() {
    if std::env::var_os(CHILD).is_some() {
        if let Err(e) = child() {
            eprintln!("namespaced loader: {e}");
            std::process::exit(1);
        }
        return;
    }
    let needs = &[
        Need::Root,
        Need::Bpf,
        Need::Probe("bpf tokens", tokens_unavailable_reason),
        Need::Probe("user namespaces", userns_unavailable_reason),
    ];
    kiln_testkit::run(vec![kiln_testkit::test(
        "loads_through_a_delegated_token",
        needs,
        loads_through_a_delegated_token,
    )]);
}
