//! Every eBPF object the repository builds (C fixtures and the Rust SDK's
//! programs) goes through the loader on this kernel.

use kiln_loader::EbpfLoader;
use kiln_obj::{ObjectSpec, ProgramKind};
use kiln_testkit::{Need, TestResult, test};

/// Programs that cannot load on a kernel for a reason outside the object:
/// fentry/fexit/LSM need attach targets the host refuses (EPERM under
/// lockdown); the verifier fixture is broken on purpose.
fn expected_failure(file: &str, kind: &ProgramKind, name: &str, errno: Option<i32>) -> bool {
    // fentry/fexit/fmod_ret/lsm: EPERM on the host (lockdown); freplace and
    // struct_ops need a target program / struct the loader is not given here.
    let host_limited = match kind {
        ProgramKind::Tracing { attach_type, .. } => {
            errno == Some(libc::EPERM) && *attach_type != kiln_obj::AttachType::TRACE_RAW_TP
        }
        ProgramKind::Lsm { .. } => errno == Some(libc::EPERM),
        ProgramKind::Extension { .. } | ProgramKind::StructOps { .. } => true,
        _ => false,
    };
    host_limited
        || (file == "loader_bad.bpf.o" && name == "unchecked")
        || (file == "loader_bad_inline.bpf.o" && name == "unchecked_inline")
}

fn load_object(file: String) -> TestResult {
    let path = kiln_testkit::bpf_dir().join(&file);
    let spec = ObjectSpec::parse(&std::fs::read(&path)?).map_err(|e| format!("{file}: {e}"))?;
    let (ebpf, failures) = EbpfLoader::new()
        .verifier_log_level(kiln_loader::programs::VerifierLogLevel::Stats)
        .load_each(&spec)
        .map_err(|e| format!("{file}: {e}"))?;
    // Per program and kernel, for the VM report's verifier statistics.
    let test = format!("load_{}", file.trim_end_matches(".bpf.o"));
    for (name, p) in ebpf.programs() {
        kiln_testkit::report_verifier_stats(&test, name, p.verifier_log().unwrap_or(""));
    }
    let mut unexpected = Vec::new();
    for (name, e) in &failures {
        let kind = &spec
            .program(name)
            .ok_or("failure for an unknown program")?
            .kind;
        // A kernel without CONFIG_KALLSYMS_ALL cannot take per-CPU `__ksym` variables
        // (the kernel itself looks their address up): the host lacks it, the VMs have it.
        let no_kallsyms = e.errno() == Some(libc::ENOENT)
            && e.log()
                .is_some_and(|l| l.contains("failed to find the address for kernel symbol"));
        if no_kallsyms || expected_failure(&file, kind, name, e.errno()) {
            eprintln!("{file}: {name}: expected on this host: {}", e.reason());
        } else {
            unexpected.push(format!("{e}"));
        }
    }
    if !unexpected.is_empty() {
        return Err(format!("{file}:\n{}", unexpected.join("\n")).into());
    }
    assert_eq!(
        ebpf.maps().count(),
        spec.maps.len(),
        "{file}: every map was created"
    );
    // struct_ops and freplace programs are loaded by their attach helpers (they
    // need a target); everything else either loaded or failed with a reason.
    let accounted: std::collections::BTreeSet<&str> = ebpf
        .programs()
        .map(|(n, _)| n)
        .chain(failures.iter().map(|(n, _)| n.as_str()))
        .collect();
    for p in &spec.programs {
        let deferred = !p.autoload
            || matches!(
                p.kind,
                ProgramKind::StructOps { .. } | ProgramKind::Extension { .. }
            );
        assert_eq!(
            accounted.contains(p.name.as_str()),
            !deferred,
            "{file}: program {}",
            p.name
        );
    }
    Ok(())
}

fn has_bloom_filter() -> Option<String> {
    (!kiln_loader::probe::probe_map_type(kiln_obj::MapType::BLOOM_FILTER))
        .then(|| "kernel has no bloom filter maps (5.16+)".into())
}

/// A kernel feature probe, as `Need::Probe` takes it.
type Probe = fn() -> Option<String>;

fn no_netfilter() -> Option<String> {
    let ok = kiln_loader::probe::probe_program_type(
        kiln_obj::ProgramType::NETFILTER,
        Some(kiln_obj::AttachType::NETFILTER),
    );
    (!ok).then(|| "kernel has no netfilter programs (6.4+)".into())
}

/// Whether the kernel lets `fent_s` of sections.bpf.o (`fentry.s/bpf_fentry_test1`)
/// sleep: only the verifier's own "is not sleepable" verdict means it cannot
/// (6.1 without CONFIG_FUNCTION_ERROR_INJECTION); any other outcome runs the test.
fn no_sleepable_fentry() -> Option<String> {
    let path = kiln_testkit::bpf_dir().join("sections.bpf.o");
    let spec = ObjectSpec::parse(&std::fs::read(path).ok()?).ok()?;
    let (_, failures) = EbpfLoader::new().load_each(&spec).ok()?;
    failures
        .iter()
        .find(|(n, e)| n == "fent_s" && e.log().is_some_and(|l| l.contains("is not sleepable")))
        .map(|_| {
            "kernel cannot attach a sleepable fentry to bpf_fentry_test1 (6.3+ or error injection)"
                .into()
        })
}

/// Whether the kernel lets sdk-hooks.bpf.o's `fmod_ret/bpf_modify_return_test`
/// modify its target: only the verifier's own "is not modifiable" verdict
/// means it cannot (kernels without CONFIG_FUNCTION_ERROR_INJECTION, such as
/// Debian's 6.1 cloud build); any other outcome runs the test.
fn no_modifiable_return() -> Option<String> {
    let path = kiln_testkit::bpf_dir().join("sdk-hooks.bpf.o");
    let spec = ObjectSpec::parse(&std::fs::read(path).ok()?).ok()?;
    let (_, failures) = EbpfLoader::new().load_each(&spec).ok()?;
    failures
        .iter()
        .find(|(n, e)| {
            n == "prog_fmod_ret" && e.log().is_some_and(|l| l.contains("is not modifiable"))
        })
        .map(|_| {
            "kernel cannot attach fmod_ret to bpf_modify_return_test (no function error injection)"
                .into()
        })
}

fn no_arena() -> Option<String> {
    (!kiln_loader::probe::probe_map_type(kiln_obj::MapType::ARENA)).then(|| {
        "kernel cannot create arena maps (6.9+; EPERM under some security policies)".into()
    })
}

fn no_netkit_programs() -> Option<String> {
    let ok = kiln_loader::probe::probe_program_type(
        kiln_obj::ProgramType::SCHED_CLS,
        Some(kiln_obj::AttachType::NETKIT_PRIMARY),
    );
    (!ok).then(|| "kernel refuses netkit program attach types (6.7+)".into())
}

fn no_bpf_cookie() -> Option<String> {
    (!kiln_loader::probe::features().bpf_cookie)
        .then(|| "kernel has no bpf_get_attach_cookie (5.15+)".into())
}

/// bpf_loop (5.17+), whose callback is the ld_imm64 of a function: older
/// verifiers do not count the callback as a subprogram.
fn no_bpf_loop() -> Option<String> {
    let f = kiln_loader::probe::features();
    (!f.helpers
        .get("loop@socket_filter")
        .copied()
        .unwrap_or(false))
    .then(|| "kernel has no bpf_loop (5.17+)".into())
}

/// Whether the kernel's BTF has no type `name` of `kind` (`false` when it
/// cannot be read: the load itself then says what is wrong).
fn vmlinux_lacks(kind: kiln_obj::btf::Kind, name: &str) -> bool {
    let Ok(data) = std::fs::read("/sys/kernel/btf/vmlinux") else {
        return false;
    };
    kiln_obj::btf::Btf::from_bytes(data).is_ok_and(|btf| btf.find_by_name(kind, name).is_none())
}

/// fentry/fexit on `do_unlinkat` resolve it in the kernel's BTF at load time;
/// 7.x renamed it (`filename_unlinkat`).
fn no_do_unlinkat() -> Option<String> {
    vmlinux_lacks(kiln_obj::btf::Kind::Func, "do_unlinkat").then(|| {
        "kernel has no function do_unlinkat (renamed in 7.x) to attach fentry/fexit to".into()
    })
}

/// externs.bpf.o takes the per-CPU variable `bpf_prog_active` as a `__ksym`:
/// the kernel must expose it, in /proc/kallsyms (CONFIG_KALLSYMS_ALL) or as a
/// BTF variable. Debian's arm64 5.10 does neither.
fn no_prog_active_ksym() -> Option<String> {
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
    let listed = kallsyms
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("bpf_prog_active"));
    (!listed && vmlinux_lacks(kiln_obj::btf::Kind::Var, "bpf_prog_active")).then(|| {
        "kernel exposes no data symbols (CONFIG_KALLSYMS_ALL off, no per-CPU variables in its BTF) for the __ksym bpf_prog_active".into()
    })
}

/// core_module.bpf.o relocates against `struct veth_priv`: in vmlinux where
/// veth is built in (the host), else in the veth module's own BTF, which
/// kernels before 5.11 do not have.
fn no_veth_priv() -> Option<String> {
    let module_btf = std::path::Path::new("/sys/kernel/btf/veth").exists();
    (!module_btf && vmlinux_lacks(kiln_obj::btf::Kind::Struct, "veth_priv")).then(|| {
        "no BTF for struct veth_priv: veth is a module here and the kernel has no module BTF (5.11+), or veth is not loaded".into()
    })
}

/// The type `name` of `kind` in the BTF of `module`, a loaded module (5.11+).
fn module_has(module: &str, kind: kiln_obj::btf::Kind, name: &str) -> bool {
    let find = || {
        let vmlinux = std::fs::read("/sys/kernel/btf/vmlinux").ok()?;
        let vmlinux = std::sync::Arc::new(kiln_obj::btf::Btf::from_bytes(vmlinux).ok()?);
        let bytes = std::fs::read(format!("/sys/kernel/btf/{module}")).ok()?;
        kiln_obj::btf::Btf::from_bytes_split(bytes, vmlinux)
            .ok()?
            .find_by_name(kind, name)
    };
    find().is_some()
}

/// module_fentry.bpf.o attaches to veth_open and `veth:veth_close`, which
/// names the module: veth must be a loaded module with BTF (5.11+), as
/// libbpf requires of a module-qualified target.
fn no_veth_functions() -> Option<String> {
    (!module_has("veth", kiln_obj::btf::Kind::Func, "veth_close"))
        .then(|| "veth is not a loaded module with BTF (built in, or before 5.11)".into())
}

/// module_kfunc.bpf.o calls the conntrack kfuncs (5.18+), in vmlinux or in
/// the nf_conntrack module.
fn no_conntrack_kfuncs() -> Option<String> {
    let kind = kiln_obj::btf::Kind::Func;
    (vmlinux_lacks(kind, "bpf_xdp_ct_lookup")
        && !module_has("nf_conntrack", kind, "bpf_xdp_ct_lookup"))
    .then(|| "no conntrack kfuncs (5.18+, nf_conntrack built in or loaded)".into())
}

/// kfunc-demo.bpf.o (the SDK's kfuncs from Rust) calls bpf_task_from_pid
/// (6.2+) and the bpf_iter_num iterator (6.4+).
fn no_iter_num_kfuncs() -> Option<String> {
    vmlinux_lacks(kiln_obj::btf::Kind::Func, "bpf_iter_num_new")
        .then(|| "kernel has no bpf_iter_num kfuncs (6.4+)".into())
}

/// Cgroup local storage maps and the task kfuncs dropin.bpf.o uses: 6.2+.
fn no_cgrp_storage() -> Option<String> {
    (!kiln_loader::probe::probe_map_type(kiln_obj::MapType::CGRP_STORAGE))
        .then(|| "no cgroup local storage maps (kernel 6.2+)".into())
}

/// Objects that need more than the oldest supported kernel (5.10) offers,
/// or what a newer one renamed.
const OBJECT_NEEDS: &[(&str, &str, Probe)] = &[
    ("maps_arena.bpf.o", "arena", no_arena),
    ("arena_globals.bpf.o", "arena", no_arena),
    ("dropin.bpf.o", "cgroup local storage", no_cgrp_storage),
    ("map_extra.bpf.o", "arena", no_arena),
    ("map_extra.bpf.o", "bloom_filter", has_bloom_filter),
    ("attach_netkit.bpf.o", "netkit", no_netkit_programs),
    ("loader_bloom.bpf.o", "bloom_filter", has_bloom_filter),
    ("sdk-maps.bpf.o", "bloom_filter", has_bloom_filter),
    ("attach_cookie.bpf.o", "bpf_cookie", no_bpf_cookie),
    ("subprogs.bpf.o", "bpf_loop", no_bpf_loop),
    ("w456.bpf.o", "bpf_loop", no_bpf_loop),
    ("attach_nf.bpf.o", "netfilter", no_netfilter),
    ("sections.bpf.o", "netfilter", no_netfilter),
    ("sections.bpf.o", "sleepable fentry", no_sleepable_fentry),
    ("sections.bpf.o", "do_unlinkat", no_do_unlinkat),
    ("sdk-btf.bpf.o", "do_unlinkat", no_do_unlinkat),
    ("externs.bpf.o", "bpf_prog_active ksym", no_prog_active_ksym),
    ("core_module.bpf.o", "veth_priv BTF", no_veth_priv),
    ("module_fentry.bpf.o", "veth functions", no_veth_functions),
    (
        "module_kfunc.bpf.o",
        "conntrack kfuncs",
        no_conntrack_kfuncs,
    ),
    // The SDK's macros for the newest program types (netkit is the newest).
    ("sdk-hooks-new.bpf.o", "netkit", no_netkit_programs),
    ("sdk-hooks-new.bpf.o", "netfilter", no_netfilter),
    ("sdk-hooks.bpf.o", "fmod_ret", no_modifiable_return),
    (
        "kfunc-demo.bpf.o",
        "bpf_iter_num kfuncs",
        no_iter_num_kfuncs,
    ),
];

fn main() {
    let dir = kiln_testkit::bpf_dir();
    // kiln-obj's CO-RE fixture relocates against a synthetic target BTF, not a kernel's.
    // compat_renamed.bpf.o reads a field that 5.14 renamed: its program is
    // refused on later kernels by design (kiln-manifest's compat test checks
    // the verifier and `kiln check --kernels` agree on it).
    const NOT_FOR_A_KERNEL: &[&str] = &["core.bpf.o", "compat_renamed.bpf.o"];
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".bpf.o") && !NOT_FOR_A_KERNEL.contains(&n.as_str()))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut tests: Vec<_> = files
        .into_iter()
        .map(|f| {
            // A test binary lists its tests once per run: leaking the names is bounded.
            let file: &'static str = Box::leak(f.clone().into_boxed_str());
            let mut needs = vec![Need::Bpf, Need::HelpersOf(file)];
            for (_, what, probe) in OBJECT_NEEDS.iter().filter(|(n, _, _)| *n == f) {
                needs.push(Need::Probe(what, *probe));
            }
            test(
                format!("load_{}", f.trim_end_matches(".bpf.o")),
                &needs,
                move || load_object(f),
            )
        })
        .collect();
    // The fixtures this crate owns must be present: a missing build is a failure, not an empty run.
    for own in [
        "loader_maps.bpf.o",
        "loader_bad.bpf.o",
        "loader_bad_inline.bpf.o",
        "loader_pinned.bpf.o",
    ] {
        tests.push(test(format!("fixture_present_{own}"), &[], move || {
            kiln_testkit::bpf_object(own)?;
            Ok(())
        }));
    }
    tests.push(test(
        "load_bytes_at_any_alignment",
        &[Need::Bpf],
        load_bytes_at_any_alignment,
    ));
    tests.push(test(
        "load_file_names_the_file",
        &[],
        load_file_names_the_file,
    ));
    kiln_testkit::run(tests);
}

/// `include_bytes!` places an object at any address: `kiln_loader::load`
/// must take it at an odd one as it does at an aligned one, and garbage must
/// still be reported as garbage.
fn load_bytes_at_any_alignment() -> TestResult {
    let bytes = std::fs::read(kiln_testkit::bpf_object("loader_maps.bpf.o")?)?;
    let mut shifted = vec![0u8; bytes.len() + 1];
    shifted[1..].copy_from_slice(&bytes);
    let odd = &shifted[1..];
    assert_ne!(
        odd.as_ptr().align_offset(8),
        0,
        "the copy must sit misaligned"
    );
    let ebpf = kiln_loader::load(odd).map_err(|e| format!("misaligned load: {e}"))?;
    if ebpf.map("hash").is_none() {
        return Err("the misaligned object loaded without its map 'hash'".into());
    }
    let err = match kiln_loader::load(&shifted[..64]) {
        Ok(_) => return Err("64 bytes of a truncated object loaded".into()),
        Err(e) => e,
    };
    if !matches!(err, kiln_loader::EbpfError::Parse(_)) {
        return Err(format!("garbage input gave {err:?}, not a parse error").into());
    }
    Ok(())
}

fn load_file_names_the_file() -> TestResult {
    let missing = std::env::temp_dir().join("kiln-no-such-object.bpf.o");
    let err = match kiln_loader::load_file(&missing) {
        Ok(_) => return Err("a missing file loaded".into()),
        Err(e) => e,
    };
    let msg = err.to_string();
    if !msg.contains("kiln-no-such-object.bpf.o") {
        return Err(format!("the error does not name the file: {msg}").into());
    }
    Ok(())
}
