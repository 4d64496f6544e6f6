//! Program loading: verifier failures that name the source line, test runs,
//! kernel info, pinning and reopening.

use kiln_loader::programs::{LoadOptions, Program, TestRun, VerifierLogLevel};
use kiln_loader::{EbpfError, EbpfLoader, LoadError};
use kiln_obj::ObjectSpec;
use kiln_testkit::{Need, TestResult, test};

fn spec(file: &str) -> Result<ObjectSpec, Box<dyn std::error::Error + Send + Sync>> {
    Ok(ObjectSpec::parse(&std::fs::read(
        kiln_testkit::bpf_object(file)?,
    )?)?)
}

fn verifier_failure_names_program_and_line() -> TestResult {
    let spec = spec("loader_bad.bpf.o")?;
    let err = EbpfLoader::new()
        .load(&spec)
        .err()
        .ok_or("the unchecked program loaded")?;
    let EbpfError::Program(e @ LoadError::Verifier { .. }) = &err else {
        return Err(format!("expected a verifier error, got {err}").into());
    };
    let msg = e.to_string();
    assert!(
        msg.starts_with("program 'unchecked': the kernel refused"),
        "{msg}"
    );
    assert!(
        msg.contains("invalid mem access 'map_value_or_null'"),
        "{msg}"
    );
    // The failing load `*v == 42` is line 13 of the fixture.
    let bad_line =
        std::fs::read_to_string(kiln_testkit::repo_dir().join("loader/tests/bpf/loader_bad.bpf.c"))
            .ok()
            .and_then(|s| s.lines().position(|l| l.contains("KILN-BAD-LINE")))
            .map_or(13, |i| i + 1);
    assert!(
        msg.contains(&format!("loader_bad.bpf.c:{bad_line}")),
        "message lacks the source line:\n{msg}"
    );
    assert!(
        msg.lines().count() <= 24,
        "only the log's tail is shown:\n{msg}"
    );
    assert_eq!(e.errno(), Some(libc::EACCES));
    // The verifier said why: no capability, lockdown or RLIMIT hint anywhere
    // in the chain (that EACCES is its verdict, not a privilege problem).
    let mut chain = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(c) = cause {
        chain.push_str(&format!("\n{c}"));
        cause = c.source();
    }
    for hint in ["CAP_", "lockdown", "RLIMIT", "not accessible to this user"] {
        assert!(
            !chain.contains(hint),
            "hint {hint:?} on a verifier rejection:\n{chain}"
        );
    }
    assert!(e.reason().contains("invalid mem access"), "{}", e.reason());
    assert!(
        e.log().is_some_and(|l| l.contains("processed")),
        "the whole log is kept"
    );

    // load_each keeps going: the good program of the same object loads.
    let (ebpf, failures) = EbpfLoader::new().load_each(&spec)?;
    assert_eq!(
        failures.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["unchecked"]
    );
    assert!(ebpf.program("fine").is_some());
    // skip_program drops the bad one and the load succeeds.
    let ebpf = EbpfLoader::new().skip_program("unchecked").load(&spec)?;
    assert!(ebpf.program("unchecked").is_none());
    Ok(())
}

fn verbose_log_level_still_loads() -> TestResult {
    let spec = spec("loader_maps.bpf.o")?;
    let ebpf = EbpfLoader::new()
        .verifier_log_level(VerifierLogLevel::Verbose)
        .load(&spec)?;
    let log = ebpf
        .program("count")
        .ok_or("no count")?
        .verifier_log()
        .ok_or("no log kept")?;
    assert!(
        log.contains("processed"),
        "a level-2 log of a success ends with statistics:\n{log}"
    );
    Ok(())
}

/// A log buffer far too small grows until the whole log fits (ENOSPC retries).
fn log_buffer_grows() -> TestResult {
    let spec = spec("loader_bad.bpf.o")?;
    let p = spec.program("unchecked").ok_or("no unchecked")?;
    let maps: Vec<kiln_loader::Map> = spec
        .maps
        .iter()
        .map(|m| kiln_loader::Map::create(m, None, None))
        .collect::<Result<_, _>>()?;
    let insns = p.resolved_insns(|i| std::os::fd::AsRawFd::as_raw_fd(&maps[i].fd()));
    let opts = LoadOptions {
        license: "GPL",
        initial_log_size: 64,
        ..Default::default()
    };
    let e = Program::load(&p.name, p.kind.clone(), &insns, &opts)
        .err()
        .ok_or("loaded")?;
    let log = e.log().ok_or("no log")?;
    assert!(log.len() > 64, "the log grew past the first 64 bytes");
    assert!(log.contains("processed"), "and reached its end:\n{log}");
    assert_eq!(
        e.errno(),
        Some(libc::EACCES),
        "the verifier's errno, not ENOSPC"
    );
    Ok(())
}

fn test_run_info_and_pin() -> TestResult {
    let spec = spec("loader_maps.bpf.o")?;
    let mut ebpf = EbpfLoader::new().load(&spec)?;
    let prog = ebpf.take_program("perf_out").ok_or("no perf_out")?;
    let packet = [0xabu8; 64];
    let mut out = [0u8; 128];
    let r = prog.test_run(TestRun {
        data_in: Some(&packet),
        data_out: Some(&mut out),
        repeat: 10,
        ..Default::default()
    })?;
    assert_eq!(r.retval, 0, "TC_ACT_OK");
    assert_eq!(r.data_out_len, 64);
    assert_eq!(&out[..64], &packet[..], "the packet comes back unchanged");

    // A zero-length out-buffer is no buffer: the kernel reads size 0 as "no
    // limit" and would copy all 64 bytes to wherever the empty slice points.
    let mut guard = [[0x5au8; 8]; 2];
    let (empty, after) = guard.split_at_mut(1);
    let r = prog.test_run(TestRun {
        data_in: Some(&packet),
        data_out: Some(&mut empty[0][..0]),
        ..Default::default()
    })?;
    assert_eq!(r.retval, 0);
    assert_eq!(
        (empty[0], after[0]),
        ([0x5a; 8], [0x5a; 8]),
        "nothing written"
    );

    // With run-time stats on, runs are counted.
    let stats = kiln_loader::programs::enable_run_time_stats()?;
    let before = prog.info()?.run_cnt;
    prog.test_run(TestRun {
        data_in: Some(&packet),
        repeat: 5,
        ..Default::default()
    })?;
    let info = prog.info()?;
    drop(stats);
    assert_eq!(info.run_cnt - before, 5, "five counted runs");
    assert!(info.run_time_ns > 0);
    assert_eq!(info.id, prog.id());
    assert_eq!(info.tag, prog.tag());
    assert_eq!(info.name, "perf_out");
    assert_eq!(info.program_type, kiln_obj::ProgramType::SCHED_CLS);
    assert!(!info.map_ids.is_empty(), "the program uses the perf map");
    assert!(info.gpl_compatible);

    let dir =
        std::path::Path::new("/sys/fs/bpf").join(format!("kiln-test-prog-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("perf_out");
    let result = (|| -> TestResult {
        prog.pin(&path)?;
        let again = Program::from_pin(&path, None)?;
        assert_eq!(again.id(), prog.id(), "the pin holds the same program");
        let by_id = Program::from_id(prog.id())?;
        assert_eq!(by_id.name(), "perf_out");
        // Pinning outside bpffs is refused with a clear reason.
        let e = prog
            .pin(std::path::Path::new("/tmp/kiln-not-bpffs"))
            .err()
            .ok_or("pinned outside bpffs")?;
        assert!(e.to_string().contains("not on a bpf filesystem"), "{e}");
        Ok(())
    })();
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir(&dir);
    result
}

/// What another crate once read with raw bpf(2): ids, objects by id, the
/// BTF a program carries, pins. Now typed loader functions.
fn kernel_objects_by_id_and_pin() -> TestResult {
    use kiln_loader::ids::{IdKind, ids};
    let ebpf = EbpfLoader::new().load(&spec("loader_maps.bpf.o")?)?;
    let prog = ebpf.program("perf_out").ok_or("no perf_out")?;
    let all: Vec<u32> = ids(IdKind::Prog).collect::<Result<_, _>>()?;
    assert!(all.contains(&prog.id()), "{} not among {all:?}", prog.id());
    assert!(all.windows(2).all(|w| w[0] < w[1]), "ids ascend: {all:?}");
    assert_eq!(Program::from_id(prog.id())?.tag(), prog.tag());

    // The program's BTF, read back by id, names the program's function.
    let btf_id = prog.info()?.btf_id;
    assert_ne!(btf_id, 0, "the object's BTF was loaded");
    let bytes = kiln_loader::Btf::from_kernel_id(btf_id)?.bytes()?;
    let btf = kiln_obj::btf::Btf::parse(&bytes)?;
    assert!(
        btf.id_by_name("perf_out", kiln_obj::btf::Kind::Func)
            .is_some(),
        "func perf_out in BTF id {btf_id}"
    );
    let e = kiln_loader::Btf::from_kernel_id(u32::MAX)
        .err()
        .ok_or("BTF id u32::MAX opened")?;
    assert_eq!(
        e.to_string(),
        "BTF id 4294967295: open failed: bpf(BtfGetFdById) failed: No such file or directory (os \
         error 2)"
    );

    let missing = std::path::Path::new("/sys/fs/bpf/kiln-seal-test-no-such-pin");
    let e = kiln_loader::pin::open_pinned(missing, kiln_loader::OpenFlags::ReadOnly)
        .err()
        .ok_or("a missing pin opened")?;
    assert_eq!(
        e.to_string(),
        "cannot open the pin /sys/fs/bpf/kiln-seal-test-no-such-pin: bpf(ObjGet) failed: No such \
         file or directory (os error 2)"
    );
    assert!(!kiln_loader::permission_denied(&e), "ENOENT is no refusal");
    Ok(())
}

fn bpffs_mounted() -> Option<String> {
    match kiln_loader::pin::is_on_bpffs(std::path::Path::new("/sys/fs/bpf/x")) {
        Ok(true) => None,
        _ => Some("/sys/fs/bpf is not a bpffs mount".into()),
    }
}

fn main() {
    kiln_testkit::run(vec![
        test(
            "verifier_failure_names_program_and_line",
            &[Need::Bpf],
            verifier_failure_names_program_and_line,
        ),
        test("log_buffer_grows", &[Need::Bpf], log_buffer_grows),
        test(
            "verbose_log_level_still_loads",
            &[Need::Bpf],
            verbose_log_level_still_loads,
        ),
        test(
            "test_run_info_and_pin",
            &[Need::Bpf, Need::Probe("bpffs", bpffs_mounted)],
            test_run_info_and_pin,
        ),
        test(
            "kernel_objects_by_id_and_pin",
            &[Need::Root, Need::Bpf, Need::Probe("bpffs", bpffs_mounted)],
            kernel_objects_by_id_and_pin,
        ),
    ]);
}
