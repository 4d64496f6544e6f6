//! The harness every Kiln integration test runs under, on the host and in the VMs.
//!
//! A test states what it needs ([`Need`]); when the machine lacks it the test is
//! reported as *ignored* (nextest: SKIP) and the reason is printed loudly on
//! stderr as `kiln-testkit: SKIP <test>: <reason>`. It never passes silently.
//!
//! With `KILN_TEST_STRICT=1` (set by CI, which runs as root) a missing `Root`
//! or `Bpf` need is a failure instead of a skip: CI must run those tests.
//!
//! ```ignore
//! fn main() {
//!     kiln_testkit::run(vec![
//!         kiln_testkit::test("hash_map_roundtrip", &[Need::Bpf], hash_map_roundtrip),
//!     ]);
//! }
//! ```

use std::path::PathBuf;
use std::sync::OnceLock;

pub mod helpers;
pub mod userns;

pub use libtest_mimic::Failed;

/// Prebuilt C test programs in the guest (`$KILN_PREBUILT_DIR`).
pub mod prebuilt;
/// Running a command as nobody or without some capabilities (no setpriv/capsh).
pub mod privilege;

/// What a test body returns; `?` works on any error type.
pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A requirement a test declares up front.
#[derive(Clone, Copy)]
pub enum Need {
    /// Effective uid 0.
    Root,
    /// bpf(2) answers: an array map can be created.
    Bpf,
    /// The kernel has kprobes (`/sys/bus/event_source/devices/kprobe`).
    Kprobes,
    /// Network namespaces can be created (for veth/XDP/TC tests).
    NetNs,
    /// A probe of the caller's: `Some(reason)` when the need is unmet.
    Probe(&'static str, fn() -> Option<String>),
    /// Every helper the object (a file name in [`bpf_dir`]) calls is granted
    /// to the program type of its section, probed by a bare load per helper
    /// ([`helpers`]): kernels of one release differ in what they grant.
    HelpersOf(&'static str),
}

impl Need {
    fn unmet_reason(&self) -> Option<String> {
        match self {
            Need::Root => (!is_root()).then(|| {
                "needs root (run as root or inside `cargo xtask test --kernel ...`)".into()
            }),
            Need::Bpf => bpf_unavailable_reason(),
            Need::Kprobes => (!std::path::Path::new("/sys/bus/event_source/devices/kprobe")
                .exists())
            .then(|| "kernel has no kprobes (CONFIG_KPROBES off); runs in the VMs".into()),
            Need::NetNs => {
                if !is_root() {
                    Some("needs root to create network namespaces".into())
                } else if !std::path::Path::new("/proc/self/ns/net").exists() {
                    Some("kernel has no network namespaces".into())
                } else {
                    None
                }
            }
            Need::Probe(_, probe) => probe(),
            Need::HelpersOf(file) => helpers::object_helpers_unmet(file),
        }
    }

    /// Needs that CI promises to meet: missing them fails under `KILN_TEST_STRICT=1`.
    fn is_strict(&self) -> bool {
        matches!(self, Need::Root | Need::Bpf | Need::NetNs)
    }
}

/// One test: a name, its needs and its body.
pub struct Test {
    name: String,
    needs: Vec<Need>,
    body: Box<dyn FnOnce() -> TestResult + Send + 'static>,
}

/// Declares a test.
pub fn test(
    name: impl Into<String>,
    needs: &[Need],
    body: impl FnOnce() -> TestResult + Send + 'static,
) -> Test {
    Test {
        name: name.into(),
        needs: needs.to_vec(),
        body: Box::new(body),
    }
}

/// Runs the tests with libtest's command line and output (so nextest and
/// `cargo test` drive them), then exits.
pub fn run(tests: Vec<Test>) -> ! {
    let args = libtest_mimic::Arguments::from_args();
    // Listing stays quiet (test runners parse it), unless the caller asks
    // for the reasons: nextest never runs a skipped test, so `cargo xtask
    // test` lists again with KILN_TEST_EXPLAIN_SKIPS=1 to show them.
    let listing = args.list && std::env::var_os("KILN_TEST_EXPLAIN_SKIPS").is_none();
    let strict = std::env::var_os("KILN_TEST_STRICT").is_some_and(|v| v == "1");
    if tests
        .iter()
        .any(|t| t.needs.iter().any(|n| matches!(n, Need::Bpf)))
    {
        raise_memlock();
    }
    let trials = tests
        .into_iter()
        .map(|t| {
            let name = t.name.clone();
            // Probes load programs: a run of one test (nextest runs each in its
            // own process) probes only that test's needs. Listing probes all.
            let unmet: Vec<(bool, String)> = if args.list || is_selected(&args, &name) {
                t.needs
                    .iter()
                    .filter_map(|n| n.unmet_reason().map(|r| (n.is_strict(), r)))
                    .collect()
            } else {
                Vec::new()
            };
            if let Some((_, reason)) = unmet.iter().find(|(is_strict, _)| strict && *is_strict) {
                let reason = reason.clone();
                return libtest_mimic::Trial::test(name, move || {
                    Err(format!("KILN_TEST_STRICT=1 but this test cannot run: {reason}").into())
                });
            }
            if let Some((_, reason)) = unmet.first() {
                if !listing {
                    eprintln!("kiln-testkit: SKIP {name}: {reason}");
                }
                return libtest_mimic::Trial::test(name, || Ok(())).with_ignored_flag(true);
            }
            let body = t.body;
            libtest_mimic::Trial::test(name, move || {
                body().map_err(|e| Failed::from(format!("{e:#}")))
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit()
}

/// Whether libtest's filters (`NAME`, `--exact`, `--skip`) keep `name`.
fn is_selected(args: &libtest_mimic::Arguments, name: &str) -> bool {
    let matches = |pattern: &str| {
        if args.exact {
            name == pattern
        } else {
            name.contains(pattern)
        }
    };
    args.filter.as_deref().is_none_or(matches) && !args.skip.iter().any(|s| matches(s))
}

/// The verifier's summary of one load, from the log's `processed N insns
/// (limit L) max_states_per_insn M total_states T peak_states P ...` line
/// (log level 1 and up, the stats level 4 included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifierStats {
    pub insns: u64,
    pub total_states: u64,
    pub peak_states: u64,
}

impl VerifierStats {
    pub fn parse(log: &str) -> Option<Self> {
        let line = log.lines().rev().find(|l| l.starts_with("processed "))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |key: &str| -> Option<u64> {
            let i = words.iter().position(|w| *w == key)?;
            words.get(i + 1)?.parse().ok()
        };
        Some(VerifierStats {
            insns: after("processed")?,
            total_states: after("total_states").unwrap_or(0),
            peak_states: after("peak_states").unwrap_or(0),
        })
    }
}

/// Reports the verifier's statistics of `program`, loaded by `test`, on
/// stderr as `kiln-testkit: VERIFIER <test> <program> insns=N total_states=T
/// peak_states=P`; the VM runner gathers them per kernel into its report.
/// Nothing is printed when `log` has no summary line.
pub fn report_verifier_stats(test: &str, program: &str, log: &str) {
    if let Some(v) = VerifierStats::parse(log) {
        eprintln!(
            "kiln-testkit: VERIFIER {test} {program} insns={} total_states={} peak_states={}",
            v.insns, v.total_states, v.peak_states
        );
    }
}

/// Kernels before 5.11 charge maps and programs to `RLIMIT_MEMLOCK` (64 KiB
/// for PID 1's children unless raised). A program using kiln-loader raises
/// it, as the `kiln` binary does; so do the tests. Best effort: without
/// CAP_SYS_RESOURCE the limit stays and an EPERM from the kernel says so.
fn raise_memlock() {
    let r = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid rlimit and changes only this process.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) };
}

/// BPF_MAP_CREATE through a raw bpf(2) of the test's own (never the loader
/// under test), with `[map_type, key_size, value_size, max_entries,
/// map_flags]`; the map is closed at once.
fn raw_map_create(head: [u32; 5]) -> std::io::Result<()> {
    let mut attr = [0u32; 32];
    attr[..5].copy_from_slice(&head);
    // SAFETY: BPF_MAP_CREATE (0) reads `size` bytes of `attr`, a live, zero-filled buffer of that size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            0,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr) as u32,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

/// For `Need::Probe`: why a map of `map_type` with these sizes and flags
/// cannot be created here, or `None` when it can.
pub fn map_type_unavailable(
    name: &str,
    map_type: u32,
    key_size: u32,
    value_size: u32,
    map_flags: u32,
) -> Option<String> {
    raw_map_create([map_type, key_size, value_size, 1, map_flags])
        .err()
        .map(|err| format!("this kernel creates no {name} map: {err}"))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Why bpf(2) is unusable here, or `None` when an array map can be created.
/// Computed once per process.
pub fn bpf_unavailable_reason() -> Option<String> {
    static REASON: OnceLock<Option<String>> = OnceLock::new();
    REASON
        .get_or_init(|| {
            raw_map_create([2, 4, 4, 1, 0]) // BPF_MAP_TYPE_ARRAY
                .err()
                .map(|err| format!("bpf(BPF_MAP_CREATE) fails here: {err} (needs root or CAP_BPF)"))
        })
        .clone()
}

/// Where `cargo xtask build-ebpf` put the eBPF objects: `$KILN_BPF_DIR`, or
/// `<workspace>/target/bpf`.
pub fn bpf_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_BPF_DIR") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bpf")
}

/// For `Need::Probe`: why bpftool, the libbpf reference tests compare with,
/// cannot run here (`None` when it can). Never a runtime dependency of Kiln.
pub fn bpftool_missing() -> Option<String> {
    let ok = std::process::Command::new("bpftool")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    (!ok).then(|| "bpftool (the libbpf reference) is not installed".into())
}

/// Why libbpf cannot resolve `__kconfig` externs here, or `None`: it reads
/// the running kernel's configuration from `/boot/config-RELEASE` or
/// `/proc/config.gz` and refuses an object that needs it when neither
/// exists (the test VMs carry no kernel config yet).
pub fn kernel_config_missing() -> Option<String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let boot = PathBuf::from(format!("/boot/config-{}", release.trim()));
    (!boot.exists() && !std::path::Path::new("/proc/config.gz").exists()).then(|| {
        format!(
            "libbpf reads __kconfig values from {} or /proc/config.gz, and this system has neither (the test VMs carry no kernel config)",
            boot.display()
        )
    })
}

/// The path of a built eBPF object, or an error telling how to build it.
pub fn bpf_object(file_name: &str) -> Result<PathBuf, String> {
    let path = bpf_dir().join(file_name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: run `cargo xtask build-ebpf` first",
            path.display()
        ))
    }
}

/// The repository's root (host runs) or `$KILN_REPO_DIR` (VM runs put manifests there).
pub fn repo_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_REPO_DIR") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_summary_line() {
        let log = "func#0 @0\nprocessed 12 insns (limit 1000000) max_states_per_insn 0 total_states 3 peak_states 2 mark_read 1\nverification time 25 usec\nstack depth 8\n";
        assert_eq!(
            VerifierStats::parse(log),
            Some(VerifierStats {
                insns: 12,
                total_states: 3,
                peak_states: 2
            })
        );
        // Old kernels end the line early.
        assert_eq!(
            VerifierStats::parse("processed 7 insns (limit 131072), stack depth 0\n")
                .map(|v| (v.insns, v.peak_states)),
            Some((7, 0))
        );
        assert_eq!(VerifierStats::parse("0: (95) exit\n"), None);
    }
}
