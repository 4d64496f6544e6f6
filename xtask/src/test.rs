//! `cargo xtask test`: unit tests, host integration tests (as root), and the
//! integration tests again inside VMs across kernels and arches.
//!
//! Without `--kernel`/`--kernel-image`/`--matrix` it runs the CI suite:
//! unit (nextest `--lib --bins` and doctests), host integration tests, then
//! the VMs of the whole matrix: every catalog kernel (5.10, 6.1, 6.12, 7.2)
//! on x86_64 and aarch64, two VMs at a time on two cores (about 10 minutes
//! under TCG with the kernels cached). `--arch` narrows it to one arch,
//! `--kernel` to one kernel. The last line is always
//! `N passed, N failed[, N skipped]`; any failure, timeout, kernel panic or
//! missing `KILN-DONE` exits non-zero.
//!
//! Besides the console, the VM phase writes `target/vm-report.json`,
//! `target/vm-report.junit.xml` (a testsuite per VM, for CI systems),
//! `target/vm-report.html` (the same as one self-contained page) and,
//! across several VMs, prints a grid of the tests that did not pass on every
//! VM with the reason each was skipped there.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cross::{self, GuestBinaries, TestBinary};
use crate::kernels::{Catalog, KernelFiles, repo_root};
use crate::vm::{self, Arch, BootSpec, Plan, TestRecord, Verdict};

#[derive(clap::Args)]
pub struct Args {
    /// Only the VM of this kernel (default: every catalog kernel; with
    /// --kernel and no --arch, every arch of the catalog).
    #[command(flatten)]
    vm: vm::KernelArgs,
    /// Only the VMs, every catalog kernel on every arch (what the default
    /// run ends with), as many VMs at once as cores allow.
    #[arg(long)]
    matrix: bool,
    /// Only the host integration tests.
    #[arg(long)]
    host_only: bool,
    /// Only the unit tests.
    #[arg(long)]
    unit_only: bool,
    /// Only the VM tests.
    #[arg(long)]
    vm_only: bool,
    /// Prove the runner fails on a kernel panic, a hang, a WARN and a taint.
    #[arg(long)]
    selftest: bool,
    /// Only test binaries whose name contains this (repeatable).
    #[arg(long)]
    binary: Vec<String>,
    /// Per test binary timeout in the VM, seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// VMs at once (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Arguments for every test binary (a test name filter, `--exact`, ...).
    #[arg(last = true)]
    test_args: Vec<String>,
}

/// Pass/fail/skip counts of a phase.
#[derive(Default, Clone, Copy, Debug, PartialEq)]
struct Counts {
    passed: usize,
    failed: usize,
    skipped: usize,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Self) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.skipped += o.skipped;
    }
}

#[derive(Clone)]
enum KernelSource {
    Catalog(String),
    Image {
        path: PathBuf,
        modules: Option<PathBuf>,
        /// From the image's header (`image::inspect`), when it has one.
        release: Option<String>,
    },
}

#[derive(Clone)]
struct Target {
    source: KernelSource,
    arch: Arch,
}

impl Target {
    fn label(&self) -> String {
        match &self.source {
            KernelSource::Catalog(v) => format!("{v}-{}", self.arch),
            KernelSource::Image { release, .. } => {
                format!("{}-{}", release.as_deref().unwrap_or("custom"), self.arch)
            }
        }
    }

    fn kernel_name(&self) -> String {
        match &self.source {
            KernelSource::Catalog(v) => v.clone(),
            KernelSource::Image { path, .. } => path.display().to_string(),
        }
    }

    fn rerun_args(&self) -> String {
        match &self.source {
            KernelSource::Catalog(v) => format!("--kernel {v} --arch {}", self.arch),
            KernelSource::Image { path, modules, .. } => {
                let m = modules
                    .as_ref()
                    .map(|m| format!(" --modules {}", m.display()))
                    .unwrap_or_default();
                format!("--kernel-image {}{m} --arch {}", path.display(), self.arch)
            }
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let catalog = Catalog::load()?;
    // A kernel we do not have fails before anything is built (a nixpkgs
    // kernel from `nix develop` counts as one we have).
    if let Some(k) = &args.vm.kernel {
        if nix_kernel(k, args.vm.arch.unwrap_or(Arch::host())).is_none() {
            catalog.entry(k)?;
        }
    }
    let vm_targets = vm_targets(&args, &catalog)?;
    let specific_vm =
        args.vm.kernel.is_some() || args.vm.kernel_image.is_some() || args.matrix || args.selftest;
    let (unit, host, vms) = if specific_vm {
        (false, false, true)
    } else {
        let only = args.unit_only || args.host_only || args.vm_only;
        (
            !only || args.unit_only,
            !only || args.host_only,
            !only || args.vm_only,
        )
    };

    let mut total = Counts::default();
    let mut phase_lines = Vec::new();
    if unit {
        let c = unit_phase()?;
        phase_lines.push(format!("unit:  {}", counts_text(c)));
        total += c;
    }
    if host {
        let c = host_phase()?;
        phase_lines.push(format!("host:  {}", counts_text(c)));
        total += c;
    }
    if vms {
        let c = if args.selftest {
            selftest_phase(&args, &vm_targets)?
        } else {
            vm_phase(&args, &catalog, &vm_targets)?
        };
        phase_lines.push(format!("vm:    {}", counts_text(c)));
        total += c;
    }
    if phase_lines.len() > 1 {
        println!();
        for l in &phase_lines {
            println!("{l}");
        }
    }
    println!("{}", counts_text(total));
    if total.failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

fn counts_text(c: Counts) -> String {
    let mut s = format!("{} passed, {} failed", c.passed, c.failed);
    if c.skipped > 0 {
        s.push_str(&format!(", {} skipped", c.skipped));
    }
    s
}

fn vm_targets(args: &Args, catalog: &Catalog) -> Result<Vec<Target>> {
    let arches = match args.vm.arch {
        Some(a) => vec![a],
        None => catalog.arches()?,
    };
    if let Some(path) = &args.vm.kernel_image {
        // Before anything is built: the wrong arch, a file that is no
        // kernel, or modules of another release are refused here, by name.
        let image = crate::image::check_custom(path, args.vm.modules.as_deref(), args.vm.arch)?;
        return Ok(vec![Target {
            source: KernelSource::Image {
                path: path.clone(),
                modules: args.vm.modules.clone(),
                release: image.release,
            },
            arch: image.arch,
        }]);
    }
    if let Some(k) = &args.vm.kernel {
        if catalog.entry(k).is_err() {
            let arch = args.vm.arch.unwrap_or(Arch::host());
            if let Some(source) = nix_kernel(k, arch) {
                return Ok(vec![Target { source, arch }]);
            }
        }
        return Ok(arches
            .into_iter()
            .map(|arch| Target {
                source: KernelSource::Catalog(k.clone()),
                arch,
            })
            .collect());
    }
    if args.selftest {
        return Ok(vec![Target {
            source: KernelSource::Catalog("6.1".into()),
            arch: args.vm.arch.unwrap_or(Arch::X86_64),
        }]);
    }
    // `--matrix` and the CI suite: every catalog kernel on every arch.
    let mut v = Vec::new();
    for k in catalog.versions() {
        for a in &arches {
            v.push(Target {
                source: KernelSource::Catalog(k.to_owned()),
                arch: *a,
            });
        }
    }
    Ok(v)
}

/// Runs a cargo command, echoing its output, and adds up the counts of
/// nextest's `Summary` line or libtest's `test result:` lines.
fn run_counted(mut c: Command, what: &str) -> Result<Counts> {
    eprintln!("\n=== {what}: {c:?}");
    c.current_dir(repo_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().with_context(|| format!("running {what}"))?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(stream)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("{l}");
                let _ = tx.send(l);
            }
        });
    }
    drop(tx);
    let lines: Vec<String> = rx.iter().collect();
    let status = child.wait()?;
    let (mut counts, seen) = total_of(&lines);
    if !status.success() && counts.failed == 0 {
        eprintln!("{what} failed ({status}) before reporting a failed test");
        counts.failed += 1;
    } else if !seen && status.success() {
        eprintln!("note: {what} reported no test counts");
    }
    Ok(counts)
}

/// The counts a run printed. nextest echoes a failed test's own output,
/// libtest's `test result:` line included, above its `Summary`: when a
/// `Summary` is there, it alone counts, or that failure would count twice.
fn total_of(lines: &[String]) -> (Counts, bool) {
    let is_nextest = |l: &String| l.trim_start().starts_with("Summary");
    let nextest = lines.iter().any(is_nextest);
    let mut counts = Counts::default();
    let mut seen = false;
    for l in lines.iter().filter(|l| !nextest || is_nextest(l)) {
        if let Some(c) = parse_summary(l) {
            counts += c;
            seen = true;
        }
    }
    (counts, seen)
}

/// nextest: `Summary [ 1.2s] 45 tests run: 43 passed, 1 failed, 2 skipped`;
/// libtest: `test result: ok. 3 passed; 0 failed; 1 ignored; ...`.
fn parse_summary(line: &str) -> Option<Counts> {
    let line = line.trim();
    let body = if line.starts_with("Summary") {
        line.split_once("tests run:")
            .or_else(|| line.split_once("test run:"))?
            .1
    } else {
        line.strip_prefix("test result: ")?
    };
    let mut c = Counts::default();
    let words: Vec<&str> = body
        .split(|ch: char| ch == ',' || ch == ';' || ch == '.' || ch.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    for w in words.windows(2) {
        let Ok(n) = w[0].parse::<usize>() else {
            continue;
        };
        match w[1] {
            "passed" => c.passed += n,
            "failed" | "timed" => c.failed += n,
            "skipped" | "ignored" => c.skipped += n,
            _ => {}
        }
    }
    Some(c)
}

fn unit_phase() -> Result<Counts> {
    let mut c = Command::new("cargo");
    c.args([
        "nextest",
        "run",
        "--workspace",
        "--lib",
        "--bins",
        "--no-tests=warn",
        // Every failure counts in the summary, not only the first one.
        "--no-fail-fast",
    ]);
    let mut counts = run_counted(c, "unit tests")?;
    let mut d = Command::new("cargo");
    d.args(["test", "--workspace", "--doc", "--no-fail-fast"]);
    counts += run_counted(d, "doctests")?;
    // Broken intra-doc links and the like fail the run, so the API docs a
    // user reads stay whole (missing_docs itself is denied in the crates).
    let mut doc = Command::new("cargo");
    doc.args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings");
    counts += run_counted(doc, "cargo doc (warnings are errors)")?;
    Ok(counts)
}

/// `cargo xtask build-ebpf` before any integration test. A failure counts as
/// one failed item (the run cannot be green) but the tests still run, so one
/// broken eBPF program does not hide every other result.
fn build_ebpf_counted() -> Counts {
    match crate::build_ebpf::build_all() {
        Ok(_) => Counts::default(),
        Err(e) => {
            eprintln!(
                "\n!!! build-ebpf FAILED (counted as a failure; tests needing objects will fail): {e:#}\n"
            );
            Counts {
                failed: 1,
                ..Counts::default()
            }
        }
    }
}

/// Features the host integration run turns on so that every `[[test]]` with
/// `required-features` is built and run.
const HOST_TEST_FEATURES: &str = "kiln-loader/tokio,kiln-log/tokio,kiln-log/tracing";

fn host_phase() -> Result<Counts> {
    let ebpf = build_ebpf_counted();
    let root = crate::vm::is_root();
    if !root {
        eprintln!(
            "\n!!! SKIPPING host integration tests: they need root (bpf(2)); run as root or use `cargo xtask test --kernel 6.1`."
        );
        return Ok(Counts { skipped: 1, ..ebpf });
    }
    mount_host_bpffs()?;
    let mut c = Command::new("cargo");
    c.args([
        "nextest",
        "run",
        "--workspace",
        "-E",
        "kind(test)",
        "--no-tests=warn",
        "--no-fail-fast",
        // Integration tests behind a feature (`async_buffers` needs tokio)
        // are skipped silently by cargo without it.
        "--features",
        HOST_TEST_FEATURES,
    ])
    .env("KILN_TEST_STRICT", "1");
    let mut counts = run_counted(c, "host integration tests (root, KILN_TEST_STRICT=1)")?;
    counts += ebpf;
    if counts.skipped > 0 {
        print_skip_reasons();
    }
    Ok(counts)
}

/// nextest counts the tests kiln-testkit marked as skipped but shows
/// neither which nor why (the testkit prints the reason when the binary
/// lists its tests, and nextest swallows that). List them again here, with
/// the reason, so no skip goes unexplained.
fn print_skip_reasons() {
    let listed = Command::new("cargo")
        .args([
            "nextest",
            "list",
            "--workspace",
            "-E",
            "kind(test)",
            "--features",
            HOST_TEST_FEATURES,
            "--message-format",
            "json",
        ])
        .stderr(Stdio::null())
        .output();
    let Ok(listed) = listed else { return };
    let Ok(list) = serde_json::from_slice::<serde_json::Value>(&listed.stdout) else {
        return;
    };
    let Some(suites) = list["rust-suites"].as_object() else {
        return;
    };
    println!(
        "
skipped on this host, and why:"
    );
    for suite in suites.values() {
        let ignored = suite["testcases"]
            .as_object()
            .is_some_and(|t| t.values().any(|c| c["ignored"] == true));
        let (Some(binary), true) = (suite["binary-path"].as_str(), ignored) else {
            continue;
        };
        let mut cmd = Command::new(binary);
        cmd.arg("--list")
            .env("KILN_TEST_STRICT", "1")
            .env("KILN_TEST_EXPLAIN_SKIPS", "1");
        if let Some(cwd) = suite["cwd"].as_str() {
            cmd.current_dir(cwd);
        }
        if let Ok(out) = cmd.output() {
            for line in String::from_utf8_lossy(&out.stderr).lines() {
                if let Some(reason) = line.strip_prefix("kiln-testkit: SKIP ") {
                    println!(
                        "  SKIP {}::{reason}",
                        suite["binary-id"].as_str().unwrap_or("?")
                    );
                }
            }
        }
    }
}

/// The host tests pin under /sys/fs/bpf, as users do. systemd mounts a
/// bpffs there at boot; a fresh machine without that unit (CI's, a
/// container) has sysfs's bare directory, so mount one as systemd would.
fn mount_host_bpffs() -> Result<()> {
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf"))
    {
        return Ok(());
    }
    let status = Command::new("mount")
        .args([
            "-t",
            "bpf",
            "-o",
            "nosuid,nodev,noexec,mode=0700",
            "bpf",
            "/sys/fs/bpf",
        ])
        .status()
        .context("running mount")?;
    if !status.success() {
        bail!("mounting a bpffs at /sys/fs/bpf failed ({status}); the host tests pin there");
    }
    eprintln!("mounted a bpffs at /sys/fs/bpf for the host tests (nothing was mounted there)");
    Ok(())
}

/// Guest binaries per arch, built once.
struct Builds {
    per_arch: BTreeMap<Arch, GuestBinaries>,
    /// Test packages that did not compile (each counts as a failure).
    failed: Vec<String>,
}

fn build_for(targets: &[Target], with_tests: bool, filters: &[String]) -> Result<Builds> {
    let mut per_arch = BTreeMap::new();
    let mut failed = Vec::new();
    for t in targets {
        if per_arch.contains_key(&t.arch) {
            continue;
        }
        let mut bins = cross::build_guest_bins(t.arch)?;
        if with_tests {
            let built = cross::build_guest_tests(t.arch)?;
            bins.tests = built.tests;
            failed.extend(built.failed);
            if !filters.is_empty() {
                bins.tests
                    .retain(|b| filters.iter().any(|f| b.name.contains(f.as_str())));
                if bins.tests.is_empty() {
                    bail!("no test binary matches --binary {filters:?}");
                }
            }
        }
        per_arch.insert(t.arch, bins);
    }
    Ok(Builds { per_arch, failed })
}

fn kernel_files(t: &Target, catalog: &Catalog) -> Result<KernelFiles> {
    match &t.source {
        KernelSource::Catalog(v) => crate::kernels::ensure(catalog, v, t.arch),
        KernelSource::Image {
            path,
            modules,
            release,
        } => Ok(KernelFiles {
            version: release.clone().unwrap_or_else(|| "custom".into()),
            arch: t.arch,
            release: release.clone().unwrap_or_else(|| "custom".into()),
            vmlinuz: path.clone(),
            modules: modules.clone(),
        }),
    }
}

/// One VM's result.
struct VmRun {
    target: Target,
    verdict: Verdict,
    elapsed: Duration,
    accel: &'static str,
    log: PathBuf,
    error: Option<String>,
}

fn vm_once(
    t: &Target,
    catalog: &Catalog,
    bins: &GuestBinaries,
    tests: &[TestBinary],
    args: &Args,
    timeout: Duration,
    print: &Mutex<()>,
) -> Result<VmRun> {
    let kernel = kernel_files(t, catalog)?;
    let mut plan = Plan::default();
    let mut image = vm::guest_image(&kernel, bins, crate::modules::TEST_MODULES, &mut plan)?;
    for tb in tests {
        let guest = format!("/tests/{}", tb.name);
        image.add_file(&guest, &tb.path, 0o755)?;
        plan.test(timeout, &guest, &args.test_args)?;
    }
    image.add_bytes("/kiln/plan", plan.text.clone(), 0o644)?;
    let initrd = image.build_cached(&vm::initramfs_cache())?;
    let label = t.label();
    let spec = BootSpec {
        arch: t.arch,
        vmlinuz: kernel.vmlinuz.clone(),
        initrd,
        timeout: timeout * tests.len().max(1) as u32 + vm::boot_allowance(t.arch),
        log: vm::log_path(&label),
        label: label.clone(),
    };
    {
        let _g = print.lock().unwrap();
        println!(
            "[{label}] booting {} ({})",
            kernel.vmlinuz.display(),
            kernel.release
        );
    }
    let boot = vm::boot(&spec, &mut |e| {
        if e.kind == "KILN-RESULT" {
            let j = &e.json;
            let status = j["status"].as_str().unwrap_or("?");
            let mark = match status {
                "pass" => "PASS",
                "fail" => "FAIL",
                "skip" => "SKIP",
                _ => "????",
            };
            let reason = j["reason"]
                .as_str()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            let _g = print.lock().unwrap();
            println!(
                "[{label}] {mark} {}::{} {} ms{reason}",
                j["binary"].as_str().unwrap_or("?"),
                j["test"].as_str().unwrap_or("?"),
                j["duration_ms"]
            );
        }
    })?;
    let verdict = Verdict::of(&boot, tests.len());
    Ok(VmRun {
        target: t.clone(),
        elapsed: boot.elapsed,
        accel: boot.accel,
        log: boot.log.clone(),
        verdict,
        error: None,
    })
}

fn run_vms(
    targets: &[Target],
    catalog: &Catalog,
    builds: &Builds,
    args: &Args,
    selftest: Option<&TestBinary>,
) -> Vec<VmRun> {
    let print = Mutex::new(());
    let timeout = Duration::from_secs(if selftest.is_some() { 20 } else { args.timeout });
    vm::in_parallel(targets, args.jobs, |t| {
        let bins = &builds.per_arch[&t.arch];
        let tests: Vec<TestBinary> = match selftest {
            Some(st) => vec![st.clone()],
            None => bins.tests.clone(),
        };
        vm_once(t, catalog, bins, &tests, args, timeout, &print).unwrap_or_else(|e| VmRun {
            target: t.clone(),
            verdict: Verdict {
                tests: vec![],
                problems: vec![],
                first_result: None,
                first_binary_uptime_ms: None,
                verifier: vec![],
            },
            elapsed: Duration::ZERO,
            accel: "-",
            log: vm::log_path(&t.label()),
            error: Some(format!("{e:#}")),
        })
    })
}

fn vm_phase(args: &Args, catalog: &Catalog, targets: &[Target]) -> Result<Counts> {
    vm::stop_on_signals();
    // The previous run's report must not pass for this one's: until this
    // run writes its own, the report says a run started and did not finish.
    write_unfinished_report()?;
    let mut ebpf = build_ebpf_counted();
    // Each guest gets the objects of its own arch (target/bpf/<arch>/).
    if targets.iter().any(|t| t.arch == Arch::Aarch64)
        && let Err(e) = crate::build_ebpf::build_all_for(Arch::Aarch64.bpf())
    {
        eprintln!("\n!!! build-ebpf --arch aarch64 FAILED (counted as a failure): {e:#}\n");
        ebpf.failed += 1;
    }
    // Kernels first, so a missing one fails before minutes of cross builds.
    for t in targets {
        kernel_files(t, catalog)?;
    }
    let builds = build_for(targets, true, &args.binary)?;
    let runs = run_vms(targets, catalog, &builds, args, None);
    let mut counts = report(&runs, args)?;
    counts += ebpf;
    if let Some(sig) = vm::interrupted() {
        let not_run: Vec<String> = targets
            .iter()
            .filter(|t| !runs.iter().any(|r| r.target.label() == t.label()))
            .map(Target::label)
            .collect();
        println!(
            "\nINTERRUPTED by signal {sig}: the report is marked interrupted{}",
            if not_run.is_empty() {
                String::new()
            } else {
                format!("; not run: {}", not_run.join(", "))
            }
        );
        std::process::exit(128 + sig);
    }
    for f in &builds.failed {
        println!("\nFAILED to build the integration tests of {f}: not run in the VMs");
        counts.failed += 1;
    }
    Ok(counts)
}

fn vm_counts(r: &VmRun) -> Counts {
    let mut c = Counts::default();
    for t in &r.verdict.tests {
        match t.status.as_str() {
            "pass" => c.passed += 1,
            "skip" => c.skipped += 1,
            _ => c.failed += 1,
        }
    }
    // A VM that is not clean is one more failure, whatever its tests said.
    if r.error.is_some() || !r.verdict.problems.is_empty() {
        c.failed += 1;
    }
    c
}

fn report(runs: &[VmRun], args: &Args) -> Result<Counts> {
    let mut total = Counts::default();
    println!(
        "\n{:<14} {:<6} {:>6} {:>6} {:>6}  {:>8}  {:>12}  verdict",
        "vm", "accel", "pass", "fail", "skip", "time", "first test"
    );
    for r in runs {
        let c = vm_counts(r);
        total += c;
        let first = match (r.verdict.first_result, r.verdict.first_binary_uptime_ms) {
            (Some(h), Some(g)) => format!("{:.1}s/{:.1}s", h.as_secs_f64(), g as f64 / 1000.0),
            (Some(h), None) => format!("{:.1}s", h.as_secs_f64()),
            _ => "-".into(),
        };
        let verdict = if r.error.is_some() {
            "ERROR"
        } else if !r.verdict.problems.is_empty() {
            "BROKEN"
        } else if c.failed > 0 {
            "FAIL"
        } else {
            "ok"
        };
        println!(
            "{:<14} {:<6} {:>6} {:>6} {:>6}  {:>7.1}s  {:>12}  {verdict}",
            r.target.label(),
            r.accel,
            c.passed,
            c.failed,
            c.skipped,
            r.elapsed.as_secs_f64(),
            first
        );
    }
    println!("(first test: QEMU start to first result / guest uptime at the first test binary)");
    for r in runs {
        if let Some(e) = &r.error {
            println!("\n[{}] could not run: {e}", r.target.label());
        }
        for p in &r.verdict.problems {
            println!("\n[{}] {p}", r.target.label());
        }
        let failed: Vec<&TestRecord> = r
            .verdict
            .tests
            .iter()
            .filter(|t| t.status == "fail")
            .collect();
        for t in &failed {
            println!("\n[{}] FAILED {}::{}", r.target.label(), t.binary, t.test);
            if let Some(reason) = &t.reason {
                println!("  {reason}");
            }
            if let Some(o) = &t.output {
                for l in o.lines().take(80) {
                    println!("  | {l}");
                }
            }
            let filter = if t.test.starts_with('(') {
                String::new()
            } else {
                format!(" -- {} --exact", t.test)
            };
            println!(
                "  re-run: cargo xtask test {} --binary {}{filter}",
                r.target.rerun_args(),
                t.binary
            );
        }
        if (r.error.is_some() || !r.verdict.problems.is_empty() || !failed.is_empty())
            && failed.is_empty()
        {
            println!("  re-run: cargo xtask test {}", r.target.rerun_args());
        }
        if r.error.is_some() || !r.verdict.problems.is_empty() || !failed.is_empty() {
            println!("  console log: {}", r.log.display());
        }
    }
    if runs.len() > 1 {
        print!("{}", grid(runs));
    }
    write_report(runs, args)?;
    write_junit(runs)?;
    if !args.selftest {
        let now: crate::verifier_trend::Numbers = runs
            .iter()
            .map(|r| {
                (
                    r.target.label(),
                    crate::verifier_trend::of_records(&r.verdict.verifier),
                )
            })
            .collect();
        let path = repo_root().join("target/vm-verifier-last.json");
        crate::verifier_trend::compare_and_store(&path, &now)?;
    }
    Ok(total)
}

/// Where the tests did not all pass alike: one row per test that was skipped
/// or failed on some VM, one column per VM (P pass, S skip, F fail, - not
/// run), each row followed by its reasons and the VMs they hold on. A test
/// that passes everywhere has no row.
fn grid(runs: &[VmRun]) -> String {
    use std::fmt::Write;
    let labels: Vec<String> = runs.iter().map(|r| r.target.label()).collect();
    // test -> per VM: (status, reason), `None` where it did not run.
    type Cell<'a> = Option<(&'a str, Option<&'a str>)>;
    let mut rows: BTreeMap<String, Vec<Cell>> = BTreeMap::new();
    for (i, r) in runs.iter().enumerate() {
        for t in &r.verdict.tests {
            let row = rows
                .entry(format!("{}::{}", t.binary, t.test))
                .or_insert_with(|| vec![None; runs.len()]);
            row[i] = Some((t.status.as_str(), t.reason.as_deref()));
        }
    }
    rows.retain(|_, v| v.iter().any(|c| !matches!(c, Some(("pass", _)))));
    let mut out = String::new();
    if rows.is_empty() {
        return out;
    }
    let width = rows.keys().map(|k| k.len()).max().unwrap_or(0);
    let _ = writeln!(
        out,
        "\nnot passed everywhere (P pass, S skip, F fail, - not run):"
    );
    let _ = write!(out, "{:width$}", "");
    for l in &labels {
        let _ = write!(out, " {l:>13}");
    }
    out.push('\n');
    for (name, cells) in &rows {
        let _ = write!(out, "{name:width$}");
        for c in cells {
            let mark = match c {
                Some(("pass", _)) => "P",
                Some(("skip", _)) => "S",
                Some(_) => "F",
                None => "-",
            };
            let _ = write!(out, " {mark:>13}");
        }
        out.push('\n');
        // reason -> the VMs it holds on, in column order.
        let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
        for (i, c) in cells.iter().enumerate() {
            if let Some((status, reason)) = c
                && *status != "pass"
            {
                let reason = reason.unwrap_or(if *status == "skip" {
                    "skipped"
                } else {
                    "failed"
                });
                match reasons.iter_mut().find(|(r, _)| *r == reason) {
                    Some((_, vms)) => vms.push(&labels[i]),
                    None => reasons.push((reason, vec![&labels[i]])),
                }
            }
        }
        for (reason, vms) in reasons {
            let on = if vms.len() == labels.len() && labels.len() > 1 {
                "every VM".to_owned()
            } else {
                vms.join(", ")
            };
            let _ = writeln!(out, "    {on}: {reason}");
        }
    }
    out
}

/// The VM runs as JUnit suites: one per VM; a VM that could not run or is
/// not clean adds an error case named `(vm)`.
fn junit_suites(runs: &[VmRun]) -> Vec<crate::junit::Suite> {
    use crate::junit::{Case, Outcome, Suite};
    runs.iter()
        .map(|r| {
            let mut cases: Vec<Case> = r
                .verdict
                .tests
                .iter()
                .map(|t| Case {
                    classname: t.binary.clone(),
                    name: t.test.clone(),
                    time: Duration::from_millis(t.duration_ms),
                    outcome: match t.status.as_str() {
                        "pass" => Outcome::Pass,
                        "skip" => Outcome::Skip(t.reason.clone().unwrap_or_default()),
                        _ => Outcome::Fail {
                            message: t.reason.clone().unwrap_or_else(|| "failed".into()),
                            output: t.output.clone().unwrap_or_default(),
                        },
                    },
                })
                .collect();
            let mut problems: Vec<String> = r.error.iter().cloned().collect();
            problems.extend(r.verdict.problems.iter().cloned());
            if !problems.is_empty() {
                cases.push(Case {
                    classname: "vm".into(),
                    name: "(vm)".into(),
                    time: r.elapsed,
                    outcome: Outcome::Error {
                        message: problems[0].lines().next().unwrap_or_default().to_owned(),
                        output: format!(
                            "{}\nconsole log: {}",
                            problems.join("\n"),
                            r.log.display()
                        ),
                    },
                });
            }
            Suite {
                name: r.target.label(),
                properties: vec![
                    ("kernel".into(), r.target.kernel_name()),
                    ("arch".into(), r.target.arch.as_str().into()),
                    ("accel".into(), r.accel.into()),
                    ("console_log".into(), r.log.display().to_string()),
                    ("rerun".into(), r.target.rerun_args()),
                ],
                time: r.elapsed,
                cases,
            }
        })
        .collect()
}

fn write_junit(runs: &[VmRun]) -> Result<()> {
    let path = repo_root().join("target/vm-report.junit.xml");
    std::fs::create_dir_all(path.parent().unwrap())?;
    let suites = junit_suites(runs);
    std::fs::write(&path, crate::junit::render("kiln-vm", &suites))?;
    println!("junit: {}", path.display());
    let html = repo_root().join("target/vm-report.html");
    let title = if vm::interrupted().is_some() {
        "Kiln VM test report (INTERRUPTED: not every VM ran to the end)"
    } else {
        "Kiln VM test report"
    };
    std::fs::write(&html, crate::html::render(title, &suites))?;
    println!("html: {}", html.display());
    Ok(())
}

fn write_report(runs: &[VmRun], args: &Args) -> Result<()> {
    let vms: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| {
            serde_json::json!({
                "kernel": r.target.kernel_name(),
                "arch": r.target.arch.as_str(),
                "accel": r.accel,
                "elapsed_ms": r.elapsed.as_millis() as u64,
                "first_result_ms": r.verdict.first_result.map(|d| d.as_millis() as u64),
                "first_binary_uptime_ms": r.verdict.first_binary_uptime_ms,
                "problems": r.verdict.problems,
                "error": r.error,
                "console_log": r.log,
                "tests": r.verdict.tests,
                "verifier": r.verdict.verifier,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "selftest": args.selftest,
        "interrupted": vm::interrupted().is_some(),
        "vms": vms,
    });
    let path = repo_root().join("target/vm-report.json");
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
    println!("report: {}", path.display());
    Ok(())
}

/// Replaces the previous run's reports with ones that say this run has not
/// finished: if it is killed before it writes its own (even by SIGKILL),
/// nobody reads the old results as current.
fn write_unfinished_report() -> Result<()> {
    let target = repo_root().join("target");
    std::fs::create_dir_all(&target)?;
    let doc = serde_json::json!({
        "interrupted": true,
        "note": "this run started and has not finished (or was killed before writing its report)",
        "vms": [],
    });
    std::fs::write(
        target.join("vm-report.json"),
        serde_json::to_string_pretty(&doc)?,
    )?;
    let suites: Vec<crate::junit::Suite> = Vec::new();
    std::fs::write(
        target.join("vm-report.junit.xml"),
        crate::junit::render("kiln-vm (unfinished)", &suites),
    )?;
    std::fs::write(
        target.join("vm-report.html"),
        crate::html::render(
            "Kiln VM test report: run unfinished or interrupted",
            &suites,
        ),
    )?;
    Ok(())
}

/// What each selftest binary must make the runner say.
const SELFTESTS: &[(&str, &str)] = &[
    ("kiln-selftest-panic", "kernel panic"),
    ("kiln-selftest-hang", "(timeout)"),
    ("kiln-selftest-warn", "kernel WARNING"),
    ("kiln-selftest-taint", "tainted by WARN"),
];

/// Each bad binary in its own VM: the runner passes its selftest when it
/// fails that VM for the expected reason.
fn selftest_phase(args: &Args, targets: &[Target]) -> Result<Counts> {
    let catalog = Catalog::load()?;
    let builds = build_for(targets, false, &[])?;
    let mut counts = Counts::default();
    for t in targets {
        let bins = &builds.per_arch[&t.arch];
        for (name, expect) in SELFTESTS {
            let st = bins
                .selftests
                .iter()
                .find(|b| b.name == *name)
                .with_context(|| format!("{name} was not built"))?;
            let mut runs = run_vms(std::slice::from_ref(t), &catalog, &builds, args, Some(st));
            let r = runs.pop().expect("one target, one run");
            let c = vm_counts(&r);
            let text = format!(
                "{} {}",
                r.verdict.problems.join("\n"),
                r.verdict
                    .tests
                    .iter()
                    .map(|t| format!("{} {}", t.test, t.reason.clone().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            let caught = c.failed > 0 && text.contains(expect);
            println!(
                "selftest {name} on {}: {}",
                t.label(),
                if caught {
                    format!("runner failed the VM as it must ({expect})")
                } else {
                    format!("NOT CAUGHT (expected {expect}); problems: {text}")
                }
            );
            if !caught {
                println!("  console log: {}", r.log.display());
            }
            if caught {
                counts.passed += 1
            } else {
                counts.failed += 1
            }
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        assert_eq!(
            parse_summary("     Summary [   1.234s] 45 tests run: 43 passed, 1 failed, 2 skipped"),
            Some(Counts {
                passed: 43,
                failed: 1,
                skipped: 2
            })
        );
        assert_eq!(
            parse_summary("     Summary [   1.234s] 3 tests run: 2 passed, 1 timed out, 0 skipped"),
            Some(Counts {
                passed: 2,
                failed: 1,
                skipped: 0
            })
        );
        assert_eq!(
            parse_summary(
                "test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s"
            ),
            Some(Counts {
                passed: 3,
                failed: 0,
                skipped: 1
            })
        );
        assert_eq!(parse_summary("running 3 tests"), None);
    }

    #[test]
    fn a_failed_test_counts_once_under_nextest() {
        let lines: Vec<String> = [
            "        FAIL [  33.475s] (220/220) kiln-ebpf::build_ebpf reproducible",
            "    test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out",
            "     Summary [  33.477s] 220 tests run: 219 passed, 1 failed, 5 skipped",
        ]
        .map(String::from)
        .to_vec();
        let (c, seen) = total_of(&lines);
        assert!(seen);
        assert_eq!((c.passed, c.failed, c.skipped), (219, 1, 5));
        // Plain cargo test (doctests): every `test result:` line adds up.
        let doc: Vec<String> = [
            "test result: ok. 3 passed; 0 failed; 1 ignored",
            "test result: FAILED. 1 passed; 2 failed; 0 ignored",
        ]
        .map(String::from)
        .to_vec();
        let (c, _) = total_of(&doc);
        assert_eq!((c.passed, c.failed, c.skipped), (4, 2, 1));
    }

    fn run_of(kernel: &str, arch: Arch, tests: &[(&str, &str, Option<&str>)]) -> VmRun {
        VmRun {
            target: Target {
                source: KernelSource::Catalog(kernel.into()),
                arch,
            },
            verdict: Verdict {
                tests: tests
                    .iter()
                    .map(|(name, status, reason)| TestRecord {
                        binary: "kiln-loader-maps".into(),
                        test: (*name).into(),
                        status: (*status).into(),
                        duration_ms: 12,
                        reason: reason.map(String::from),
                        output: (*status == "fail").then(|| "left: 1\nright: 2".into()),
                    })
                    .collect(),
                problems: vec![],
                first_result: None,
                first_binary_uptime_ms: None,
                verifier: vec![],
            },
            elapsed: Duration::from_secs(90),
            accel: "tcg",
            log: PathBuf::from(format!("target/vm-logs/{kernel}-{arch}.log")),
            error: None,
        }
    }

    #[test]
    fn grid_shows_where_and_why() {
        let bloom = Some("kernel has no bloom filter maps (5.16+)");
        let runs = vec![
            run_of(
                "5.10",
                Arch::X86_64,
                &[("hash", "pass", None), ("bloom", "skip", bloom)],
            ),
            run_of(
                "5.10",
                Arch::Aarch64,
                &[("hash", "fail", Some("boom")), ("bloom", "skip", bloom)],
            ),
            run_of("6.1", Arch::X86_64, &[("hash", "pass", None)]),
        ];
        let g = grid(&runs);
        let lines: Vec<&str> = g.lines().collect();
        assert_eq!(
            lines[1],
            "not passed everywhere (P pass, S skip, F fail, - not run):"
        );
        assert!(lines[2].ends_with("  5.10-x86_64  5.10-aarch64    6.1-x86_64"));
        let words = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(words(lines[3]), ["kiln-loader-maps::bloom", "S", "S", "-"]);
        assert_eq!(
            lines[4],
            "    5.10-x86_64, 5.10-aarch64: kernel has no bloom filter maps (5.16+)"
        );
        assert_eq!(words(lines[5]), ["kiln-loader-maps::hash", "P", "F", "P"]);
        assert_eq!(lines[6], "    5.10-aarch64: boom");
        assert_eq!(lines.len(), 7);
        // All green: no grid at all.
        assert_eq!(grid(&runs[2..]), "");
        // Skipped for one reason everywhere: said once.
        let g = grid(&runs[..2]);
        assert!(g.contains("\n    every VM: kernel has no bloom filter maps (5.16+)\n"));
    }

    #[test]
    fn junit_has_a_suite_per_vm_and_an_error_for_a_broken_vm() {
        let mut broken = run_of("7.2", Arch::Aarch64, &[("hash", "pass", None)]);
        broken.verdict.problems = vec!["kernel panic: Kernel panic - not syncing".into()];
        let runs = vec![
            run_of(
                "5.10",
                Arch::X86_64,
                &[
                    ("hash", "fail", Some("boom")),
                    ("bloom", "skip", Some("no bloom")),
                ],
            ),
            broken,
        ];
        let suites = junit_suites(&runs);
        assert_eq!(suites.len(), 2);
        assert_eq!(suites[0].name, "5.10-x86_64");
        assert_eq!(
            suites[0].cases[0].outcome,
            crate::junit::Outcome::Fail {
                message: "boom".into(),
                output: "left: 1\nright: 2".into()
            }
        );
        assert_eq!(
            suites[0].cases[1].outcome,
            crate::junit::Outcome::Skip("no bloom".into())
        );
        let vm = suites[1].cases.last().unwrap();
        assert_eq!(vm.name, "(vm)");
        assert!(
            matches!(&vm.outcome, crate::junit::Outcome::Error { message, output }
            if message.starts_with("kernel panic") && output.contains("7.2-aarch64.log"))
        );
        let x = crate::junit::render("kiln-vm", &suites);
        assert!(x.contains("tests=\"4\" failures=\"1\" errors=\"1\" skipped=\"1\""));
    }

    #[test]
    fn final_line() {
        assert_eq!(
            counts_text(Counts {
                passed: 3,
                failed: 0,
                skipped: 0
            }),
            "3 passed, 0 failed"
        );
        assert_eq!(
            counts_text(Counts {
                passed: 3,
                failed: 1,
                skipped: 2
            }),
            "3 passed, 1 failed, 2 skipped"
        );
    }
}

/// A nixpkgs kernel exported by `nix develop` (flake.nix): `$KILN_NIX_KERNELS/<version>/`
/// is the kernel derivation, with `bzImage` (x86_64) or `Image` (aarch64) and
/// its modules under `lib/modules/<release>/`. Nix builds kernels for the host
/// system, so only the host's arch is offered.
fn nix_kernel(version: &str, arch: Arch) -> Option<KernelSource> {
    nix_kernel_in(
        &PathBuf::from(std::env::var_os("KILN_NIX_KERNELS")?),
        version,
        arch,
    )
}

fn nix_kernel_in(farm: &std::path::Path, version: &str, arch: Arch) -> Option<KernelSource> {
    let root = farm.join(version);
    if arch != Arch::host() {
        return None;
    }
    let image = ["bzImage", "Image", "vmlinuz"]
        .iter()
        .map(|name| root.join(name))
        .find(|p| p.is_file())?;
    let modules = std::fs::read_dir(root.join("lib/modules"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.is_dir());
    Some(KernelSource::Image {
        path: image,
        modules,
        release: None,
    })
}

#[cfg(test)]
mod nix_kernel_tests {
    use super::*;

    #[test]
    fn nix_kernel_farm_layout_is_found() {
        let farm = std::env::temp_dir().join(format!("kiln-nix-farm-{}", std::process::id()));
        let modules = farm.join("5.15/lib/modules/5.15.180");
        std::fs::create_dir_all(&modules).unwrap();
        let image = if Arch::host() == Arch::X86_64 {
            "bzImage"
        } else {
            "Image"
        };
        std::fs::write(farm.join("5.15").join(image), b"kernel").unwrap();

        let found = nix_kernel_in(&farm, "5.15", Arch::host());
        let missing = nix_kernel_in(&farm, "6.6", Arch::host());
        std::fs::remove_dir_all(&farm).unwrap();
        match found {
            Some(KernelSource::Image {
                path,
                modules: Some(m),
                ..
            }) => {
                assert!(path.ends_with(format!("5.15/{image}")));
                assert!(m.ends_with("lib/modules/5.15.180"));
            }
            _ => panic!("the 5.15 kernel in the farm was not found"),
        }
        assert!(missing.is_none());
    }
}
