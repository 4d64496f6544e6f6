//! Booting the test distro in QEMU and reading what it reports.
//!
//! # For other xtask modules: run a command inside a VM
//!
//! ```ignore
//! let out = crate::vm::run_in_vm(crate::vm::VmRequest {
//!     kernel: crate::vm::KernelArgs {         // a catalog version (default 6.1) or an image
//!         kernel: Some("6.1".into()),
//!         arch: Some(crate::vm::Arch::X86_64),
//!         ..Default::default()
//!     },
//!     files: vec![(host_path, "/kiln/obj/fw.bpf.o".into())],
//!     command: vec!["/bin/kiln".into(), "apply".into(), "/kiln/m.toml".into()],
//!     modules: vec!["veth".into()],          // loaded (with dependencies) before the command
//!     timeout: std::time::Duration::from_secs(120),
//! })?;
//! // out.exit: Some(code) (None: killed or the VM died), out.output: stdout+stderr,
//! // out.problems: kernel panics/oops/warnings/timeouts (non-empty = do not trust exit),
//! // out.console_log: the full serial log.
//! ```
//! The guest has `/bin/kiln` (the operator binary, static), bpffs at
//! `/sys/fs/bpf`, tracefs, cgroup2 and `lo` up; the eBPF objects of
//! `target/bpf` are at `/bpf`, the repository's manifests under `/kiln/repo`.
//!
//! # The console protocol
//! `kiln-init` prints `KILN-<KIND> {json}` lines with a sequence number; the
//! kernel may print on the same console at any time, so a protocol line is
//! found anywhere in a console line and its JSON must parse. Kernel health
//! (panic, Oops, BUG, WARNING, a taint) fails a run whatever the tests said.

use std::fmt;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::kernels::{KernelFiles, repo_root};

/// A guest architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// Debian's name for it.
    pub fn deb(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The same arch as `cargo xtask build-ebpf --arch` names it.
    pub fn bpf(self) -> crate::build_ebpf::Arch {
        match self {
            Arch::X86_64 => crate::build_ebpf::Arch::X86_64,
            Arch::Aarch64 => crate::build_ebpf::Arch::Aarch64,
        }
    }

    pub fn host() -> Self {
        if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else {
            Arch::X86_64
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Arch {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "x86_64" | "amd64" | "x86-64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            _ => bail!("unknown arch `{s}` (x86_64 or aarch64)"),
        }
    }
}

/// Which kernel to boot, as `cargo xtask test` and `cargo xtask vm` take it.
#[derive(clap::Args, Clone, Default)]
pub struct KernelArgs {
    /// A catalog kernel (5.10, 6.1, 6.12, 7.2).
    #[arg(long)]
    pub kernel: Option<String>,
    /// Guest architecture (x86_64, aarch64); with --kernel-image, the image's by default.
    #[arg(long)]
    pub arch: Option<Arch>,
    /// Boot this kernel image instead of a catalog kernel (checked first:
    /// its arch and release are read from its header).
    #[arg(long, conflicts_with = "kernel")]
    pub kernel_image: Option<PathBuf>,
    /// Modules directory (`lib/modules/<release>`) for --kernel-image; its
    /// release must be the image's.
    #[arg(long, requires = "kernel_image")]
    pub modules: Option<PathBuf>,
}

/// The kernel to boot and the guest's arch: a catalog kernel (default 6.1,
/// on the host's arch), or an image checked before anything is built.
pub fn resolve_kernel(k: &KernelArgs) -> Result<(KernelFiles, Arch)> {
    if let Some(path) = &k.kernel_image {
        let image = crate::image::check_custom(path, k.modules.as_deref(), k.arch)?;
        let release = image.release.unwrap_or_else(|| "custom".into());
        let files = KernelFiles {
            version: release.clone(),
            arch: image.arch,
            release,
            vmlinuz: path.clone(),
            modules: k.modules.clone(),
        };
        return Ok((files, image.arch));
    }
    let arch = k.arch.unwrap_or(Arch::host());
    let version = k.kernel.as_deref().unwrap_or("6.1");
    let catalog = crate::kernels::Catalog::load()?;
    catalog.entry(version)?;
    Ok((crate::kernels::ensure(&catalog, version, arch)?, arch))
}

/// A command to run in a fresh VM.
pub struct VmRequest {
    /// The kernel and arch (a catalog version, default 6.1, or an image).
    pub kernel: KernelArgs,
    /// (host path, absolute guest path).
    pub files: Vec<(PathBuf, String)>,
    /// Program and arguments (no tabs or newlines).
    pub command: Vec<String>,
    /// Module names to load first (with their dependencies).
    pub modules: Vec<String>,
    pub timeout: Duration,
}

pub struct VmOutcome {
    pub exit: Option<i32>,
    pub output: String,
    /// Kernel health and protocol problems; non-empty means the run is not clean.
    pub problems: Vec<String>,
    pub console_log: PathBuf,
}

/// Boots `req.kernel` on `req.arch` with the files and runs the command.
pub fn run_in_vm(req: VmRequest) -> Result<VmOutcome> {
    let (kernel, arch) = resolve_kernel(&req.kernel)?;
    let bins = crate::cross::build_guest_bins(arch)?;
    let mut plan = Plan::default();
    plan.exec(req.timeout, &req.command)?;
    let modules: Vec<&str> = req.modules.iter().map(String::as_str).collect();
    let mut image = guest_image(&kernel, &bins, &modules, &mut plan)?;
    for (host, guest) in &req.files {
        image
            .add_file(guest, host, 0o755)
            .with_context(|| format!("adding {} as {guest}", host.display()))?;
    }
    image.add_bytes("/kiln/plan", plan.text.clone(), 0o644)?;
    let initrd = image.build_cached(&initramfs_cache())?;
    let label = format!("exec-{}-{arch}", kernel.version);
    let boot = boot(
        &BootSpec {
            arch,
            vmlinuz: kernel.vmlinuz.clone(),
            initrd,
            timeout: req.timeout + boot_allowance(arch),
            log: log_path(&label),
            label,
        },
        &mut |_| {},
    )?;
    let verdict = Verdict::of(&boot, 0);
    let exec = boot.events.iter().find(|e| e.kind == "KILN-EXEC");
    Ok(VmOutcome {
        exit: exec
            .and_then(|e| e.json["exit"].as_i64())
            .filter(|c| *c >= 0)
            .map(|c| c as i32),
        output: exec
            .and_then(|e| e.json["output"].as_str())
            .unwrap_or_default()
            .to_owned(),
        problems: verdict.problems,
        console_log: boot.log,
    })
}

/// The plan file `kiln-init` reads (tab-separated steps, see its docs).
#[derive(Default, Clone)]
pub struct Plan {
    pub text: String,
}

fn check_fields(fields: &[String]) -> Result<()> {
    for f in fields {
        if f.contains(['\t', '\n']) {
            bail!("argument {f:?} holds a tab or newline, which the plan format cannot carry");
        }
    }
    Ok(())
}

impl Plan {
    pub fn module(&mut self, guest_path: &str) {
        self.text.push_str(&format!("module\t{guest_path}\n"));
    }

    pub fn test(&mut self, timeout: Duration, binary: &str, args: &[String]) -> Result<()> {
        check_fields(args)?;
        let mut line = format!("test\t{}\t{binary}", timeout.as_secs());
        for a in args {
            line.push('\t');
            line.push_str(a);
        }
        self.text.push_str(&line);
        self.text.push('\n');
        Ok(())
    }

    pub fn exec(&mut self, timeout: Duration, command: &[String]) -> Result<()> {
        self.command_step(&format!("exec\t{}", timeout.as_secs()), command)
    }

    /// A file of the image copied to `to` after the mounts (which hide what
    /// the image holds under /tmp or /run).
    pub fn copy(&mut self, from: &str, to: &str) -> Result<()> {
        check_fields(&[from.to_owned(), to.to_owned()])?;
        self.text.push_str(&format!("copy\t{from}\t{to}\n"));
        Ok(())
    }

    /// A command run in `cwd` with its output streamed (`KILN-STDOUT`).
    pub fn run(&mut self, timeout: Duration, cwd: &str, command: &[String]) -> Result<()> {
        check_fields(&[cwd.to_owned()])?;
        self.command_step(&format!("run\t{}\t{cwd}", timeout.as_secs()), command)
    }

    /// `head` (the step's own fields) then the command, one field a word.
    fn command_step(&mut self, head: &str, command: &[String]) -> Result<()> {
        check_fields(command)?;
        if command.is_empty() {
            bail!("empty command");
        }
        self.text
            .push_str(&format!("{head}\t{}\n", command.join("\t")));
        Ok(())
    }
}

/// The common part of every guest: /init, /bin/kiln, modules (their load
/// steps go first in `plan`), /bpf/*.bpf.o, /kiln/repo/manifests/examples.
pub fn guest_image(
    kernel: &KernelFiles,
    bins: &crate::cross::GuestBinaries,
    modules: &[&str],
    plan: &mut Plan,
) -> Result<kiln_initramfs::Initramfs> {
    let mut image = kiln_initramfs::Initramfs::new();
    if !crate::cross::is_static(&bins.init)? {
        bail!(
            "{} is not static; PID 1 cannot run in the bare initramfs",
            bins.init.display()
        );
    }
    image.add_file("/init", &bins.init, 0o755)?;
    if let Some(kiln) = &bins.kiln {
        image.add_file("/bin/kiln", kiln, 0o755)?;
    }
    if let Some(grid) = &bins.grid {
        image.add_file("/bin/kiln-grid", grid, 0o755)?;
    }
    for d in ["/proc", "/sys", "/tmp", "/run", "/bpf", "/lib/modules"] {
        image.add_dir(d)?;
    }
    // Where libbpf, bpftool and the tests read `__kconfig` values and
    // CONFIG_ options from (Debian's kernels have no /proc/config.gz).
    match kernel_config(kernel) {
        Some(config) => {
            image.add_file(&format!("/boot/config-{}", kernel.release), &config, 0o644)?
        }
        None => eprintln!(
            "note: no config-{} beside {}: the guest has no /boot/config-{}",
            kernel.release,
            kernel.vmlinuz.display(),
            kernel.release
        ),
    }
    let mut steps = Plan::default();
    if !modules.is_empty() {
        match &kernel.modules {
            Some(dir) => {
                let (mods, missing) = crate::modules::resolve(dir, modules)?;
                if !missing.is_empty() {
                    eprintln!(
                        "note: {} {}: no module file for {} (built in or not built)",
                        kernel.version,
                        kernel.arch,
                        missing.join(", ")
                    );
                }
                for m in mods {
                    let guest = format!("/lib/modules/{}.ko", m.name);
                    image.add_bytes(&guest, m.bytes, 0o644)?;
                    steps.module(&guest);
                }
            }
            None => eprintln!("note: no modules directory for this kernel; modules not loaded"),
        }
    }
    steps.text.push_str(&plan.text);
    *plan = steps;
    let tools = crate::userland::ensure(kernel.arch)?;
    for (host, guest) in &tools.files {
        image.add_file(guest, host, 0o755)?;
    }
    // Test programs that need a C compiler, built on the host for this arch.
    for (host, guest) in crate::prebuilt::build(kernel.arch)? {
        image.add_file(&guest, &host, 0o755)?;
    }
    image.add_symlink("/var/run", "/run")?;
    for (link, target) in &tools.symlinks {
        image.add_symlink(link, target)?;
    }
    // The objects built for the guest's arch (arm64 `pt_regs` differ from
    // x86's), flat at /bpf: an aarch64 guest loading the x86 objects fails
    // every CO-RE access to x86-only fields.
    let bpf = crate::build_ebpf::bpf_dir_for(kernel.arch.bpf());
    if bpf.is_dir() {
        image.add_tree("/bpf", &bpf, &|p| {
            p.parent() == Some(bpf.as_path()) && p.to_string_lossy().ends_with(".bpf.o")
        })?;
    }
    // Their big-endian twins (built with the same arch defines), which the
    // byte-order tests compare with them, and the s390x build (bpfeb) when
    // `cargo xtask build-ebpf --arch s390x` made one (CI does): the parsing
    // tests read them in every guest as on the host.
    let twins = bpf.join(crate::build_ebpf::BPFEB_TWINS);
    let s390x = crate::build_ebpf::bpf_dir_for(crate::build_ebpf::Arch::S390x);
    for (at, dir) in [("/bpf/bpfeb", &twins), ("/bpf/s390x", &s390x)] {
        if dir.is_dir() {
            image.add_tree(at, dir, &|p| {
                p.parent() == Some(dir.as_path()) && p.to_string_lossy().ends_with(".bpf.o")
            })?;
        }
    }
    // Test data the integration tests read through kiln_testkit::repo_dir().
    for dir in REPO_DATA {
        let host = repo_root().join(dir);
        if host.is_dir() {
            image.add_tree(&format!("/kiln/repo/{dir}"), &host, &|p| {
                !p.components().any(|c| c.as_os_str() == "target")
                    && p.extension().is_none_or(|e| e != "rs")
                    && std::fs::metadata(p).is_ok_and(|m| m.len() < 4 << 20)
            })?;
        }
    }
    Ok(image)
}

/// The kernel's build configuration: `config-<release>` beside its image
/// (`boot/` of Debian's image packages; for `--kernel-image`, the same
/// name in the image's directory), or `config` in its modules directory.
fn kernel_config(kernel: &KernelFiles) -> Option<PathBuf> {
    let name = format!("config-{}", kernel.release);
    let beside = kernel.vmlinuz.parent().map(|d| d.join(&name));
    let in_modules = kernel.modules.as_ref().map(|d| d.join("config"));
    [beside, in_modules]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
}

/// `~/.cache/kiln/initramfs`, keeping only the most recent images (each
/// code change makes new ones; old ones are never read again).
pub fn initramfs_cache() -> PathBuf {
    let dir = crate::apt::cache_root().join("initramfs");
    if let Ok(rd) = std::fs::read_dir(&dir) {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        files.sort();
        let excess = files.len().saturating_sub(16);
        for (_, p) in files.into_iter().take(excess) {
            let _ = std::fs::remove_file(p);
        }
    }
    dir
}

/// Repository folders whose data files (not Rust sources, not build output)
/// go to `/kiln/repo` in the guest.
const REPO_DATA: &[&str] = &[
    "manifests/examples",
    "manifests/tests",
    "obj/tests",
    "loader/tests",
    "test-distro/testkit/tests",
];

/// Boot time on top of the tests' own timeouts (TCG is slow, sid's kernel most).
pub fn boot_allowance(arch: Arch) -> Duration {
    match arch {
        Arch::X86_64 => Duration::from_secs(90),
        Arch::Aarch64 => Duration::from_secs(120),
    }
}

pub fn log_path(label: &str) -> PathBuf {
    repo_root()
        .join("target/vm-logs")
        .join(format!("{label}.log"))
}

pub struct BootSpec {
    pub arch: Arch,
    pub vmlinuz: PathBuf,
    pub initrd: PathBuf,
    pub timeout: Duration,
    pub log: PathBuf,
    pub label: String,
}

impl BootSpec {
    /// `kernel` with `initrd`, for a guest whose own work takes at most
    /// `work` (the boot allowance is added); the console log is named
    /// after `label`.
    pub fn of(kernel: &KernelFiles, initrd: PathBuf, work: Duration, label: String) -> Self {
        BootSpec {
            arch: kernel.arch,
            vmlinuz: kernel.vmlinuz.clone(),
            initrd,
            timeout: work + boot_allowance(kernel.arch),
            log: log_path(&label),
            label,
        }
    }
}

/// `f` on every item, `jobs` at a time (default: the number of cores), the
/// last item first (the catalog lists the slowest kernels last, so they do
/// not start at the end), the results in the items' order. After SIGINT or
/// SIGTERM no new item starts: the results then hold only the items that ran.
pub fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    jobs: Option<usize>,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let jobs = jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let queue = std::sync::Mutex::new((0..items.len()).collect::<Vec<_>>());
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.min(items.len()) {
            s.spawn(|| {
                while interrupted().is_none() {
                    let Some(i) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    let r = f(&items[i]);
                    results.lock().unwrap().push((i, r));
                }
            });
        }
    });
    let mut v = results.into_inner().unwrap();
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, r)| r).collect()
}

/// One protocol line.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: String,
    pub json: Value,
    /// Since QEMU started.
    pub at: Duration,
}

/// A kernel health problem seen on the console: the line and the trace after it.
#[derive(Debug, Clone)]
pub struct Health {
    pub what: String,
    pub trace: Vec<String>,
}

/// What one boot produced.
pub struct Boot {
    pub events: Vec<Event>,
    pub health: Vec<Health>,
    pub garbled: Vec<String>,
    pub timed_out: bool,
    pub elapsed: Duration,
    pub accel: &'static str,
    pub log: PathBuf,
    pub qemu_status: Option<i32>,
    /// Why the guest never reached `/init`, when it did not: QEMU's own
    /// refusal, a panic, or no console output at all (see [`init_problem`]).
    pub init_problem: Option<String>,
    /// The runner got SIGINT/SIGTERM and stopped this VM.
    pub interrupted: bool,
}

/// One console line, classified.
#[derive(Debug, PartialEq)]
pub enum ConsoleLine {
    Protocol {
        kind: String,
        json: Value,
    },
    /// A `KILN-` prefix whose JSON does not parse (cut by a kernel message?).
    Garbled(String),
    /// A kernel health problem; the string names it.
    Health(&'static str),
    Other,
}

const HEALTH: &[(&str, &str)] = &[
    ("Kernel panic - not syncing", "kernel panic"),
    ("Internal error: Oops", "kernel Oops"),
    ("Oops: ", "kernel Oops"),
    ("BUG: ", "kernel BUG"),
    ("WARNING: ", "kernel WARNING"),
    ("watchdog: BUG: soft lockup", "soft lockup"),
    ("INFO: task ", "hung task"),
    ("INFO: rcu_", "RCU stall"),
];

/// Classifies a console line. Our kinds are checked first: their JSON is
/// escaped, so a test's output can never pose as a kernel problem.
pub fn classify(line: &str) -> ConsoleLine {
    if let Some(pos) = line.find("KILN-") {
        let rest = &line[pos..];
        let kind_end = rest.find(' ').unwrap_or(rest.len());
        let kind = &rest[..kind_end];
        if kind.len() > 5
            && kind[5..]
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'-')
        {
            let body = rest[kind_end..].trim();
            return match serde_json::from_str::<Value>(body) {
                Ok(json) if json.is_object() => ConsoleLine::Protocol {
                    kind: kind.to_owned(),
                    json,
                },
                _ => ConsoleLine::Garbled(line.to_owned()),
            };
        }
    }
    for (pat, what) in HEALTH {
        if line.contains(pat) {
            return ConsoleLine::Health(what);
        }
    }
    ConsoleLine::Other
}

/// Effective uid 0, from /proc/self/status (xtask has no libc binding).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
            .unwrap_or(false)
    })
}

fn cpu_has_virt() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
        c.lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
    })
}

/// `Some(true)`: KVM booted a guest; `Some(false)`: it did not (never try
/// again in this process); `None`: not yet probed.
static KVM_WORKS: OnceLock<bool> = OnceLock::new();

fn kvm_candidate(arch: Arch) -> bool {
    arch == Arch::host()
        && std::env::var_os("KILN_NO_KVM").is_none()
        && cpu_has_virt()
        && std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok()
}

fn qemu_command(spec: &BootSpec, accel: &str) -> Command {
    let (bin, console) = match spec.arch {
        Arch::X86_64 => ("qemu-system-x86_64", "ttyS0"),
        Arch::Aarch64 => ("qemu-system-aarch64", "ttyAMA0"),
    };
    let mut c = Command::new(bin);
    if spec.arch == Arch::Aarch64 {
        c.args([
            "-M",
            "virt",
            "-cpu",
            if accel == "kvm" { "host" } else { "cortex-a72" },
        ]);
    }
    c.args([
        "-accel",
        accel,
        "-m",
        "2048",
        "-nodefaults",
        "-display",
        "none",
    ])
    .args(["-serial", "stdio", "-monitor", "none", "-no-reboot"])
    .arg("-kernel")
    .arg(&spec.vmlinuz)
    .arg("-initrd")
    .arg(&spec.initrd)
    // loglevel=5 keeps warnings (and worse) on the console but not the
    // chatter, which costs seconds on an emulated serial port.
    .args([
        "-append",
        &format!(
            "console={console} panic=-1 loglevel=5 printk.time=1 rdinit=/init {BOOT_SHORTCUTS}{}",
            extra_kernel_args()
        ),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    die_with_parent(&mut c);
    c
}

/// Work a test guest does not need at boot, skipped: the crypto API's
/// self-tests of every algorithm it registers, and the SP800-108 KDF
/// self-test (6.1+; its initcall does nothing else), which `cryptomgr.notests`
/// does not cover. Under TCG they cost about half a second of a 6.1 boot
/// (`KILN_KERNEL_ARGS="loglevel=8 initcall_debug"` shows each initcall's time).
const BOOT_SHORTCUTS: &str = "cryptomgr.notests initcall_blacklist=crypto_kdf108_init";

/// More kernel command line from `KILN_KERNEL_ARGS` (e.g. `loglevel=7
/// initcall_debug` to see where a boot spends its time), with a leading space.
fn extra_kernel_args() -> String {
    std::env::var("KILN_KERNEL_ARGS")
        .ok()
        .filter(|a| !a.trim().is_empty())
        .map(|a| format!(" {}", a.trim()))
        .unwrap_or_default()
}

/// QEMU must not outlive the runner, however the runner ends (a signal
/// that kills it outright included): the kernel sends QEMU SIGKILL when the
/// thread that started it exits. Every boot waits for its QEMU on the
/// thread that spawned it, so that thread outlives QEMU in a normal run.
fn die_with_parent(c: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: runs in the forked child before exec; prctl, getppid and kill
    // are async-signal-safe system calls on integers, nothing is allocated.
    unsafe {
        c.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The runner died between fork and prctl: nobody would kill us.
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        })
    };
}

/// The signal (SIGINT, SIGTERM) that asked the runner to stop, 0 if none.
static INTERRUPT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_interrupt(sig: libc::c_int) {
    INTERRUPT.store(sig, std::sync::atomic::Ordering::SeqCst);
}

/// SIGINT and SIGTERM stop the running VMs (their QEMU killed) and let the
/// runner write its report, marked interrupted. A second signal kills the
/// runner at once (the handler is reset after the first); QEMU then dies
/// with it (see [`die_with_parent`]).
pub fn stop_on_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a handler that only stores to an
        // atomic (async-signal-safe); SA_RESETHAND restores the default
        // after one delivery.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
            act.sa_flags = libc::SA_RESETHAND;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
}

/// The signal that interrupted this run, if one did.
pub fn interrupted() -> Option<i32> {
    match INTERRUPT.load(std::sync::atomic::Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// How much CPU time QEMU may spend before the guest reaches `/init` (its
/// first protocol line). CPU time, not wall time: on a machine shared with
/// builds, a 6.1 guest took 27 s of wall time to get there (3.5 s idle),
/// while what it costs QEMU stays about the same. Every catalog kernel gets
/// there in under 15 s of CPU under TCG; a kernel that never does (another
/// arch's image spins without a word) is stopped after 30 s of CPU, within
/// about 30 s on a machine with a core free. `KILN_INIT_DEADLINE_SECS`
/// changes it.
pub fn init_cpu_budget() -> Duration {
    std::env::var("KILN_INIT_DEADLINE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(30), Duration::from_secs)
}

/// However starved of CPU QEMU is, a guest that has not reached `/init`
/// after this much wall time is stopped.
const INIT_WALL_CAP: Duration = Duration::from_secs(300);

/// User plus system CPU time of process `pid` (fields 14 and 15 of
/// `/proc/PID/stat`), or `None` once it is gone.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from its `)`.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf reads a configuration value and has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| Duration::from_millis(ticks * 1000 / hz as u64))
}

/// Why a guest that printed no protocol line never got to `/init`, from what
/// QEMU and the console said.
fn init_problem(
    spec: &BootSpec,
    out: &Boot,
    qemu_stderr: &[String],
    console: &[String],
    waited: Duration,
    qemu_cpu: Option<Duration>,
) -> String {
    let waited = match qemu_cpu {
        Some(cpu) => format!(
            "{:.0} s ({:.0} s of QEMU's CPU)",
            waited.as_secs_f64(),
            cpu.as_secs_f64()
        ),
        None => format!("{:.0} s", waited.as_secs_f64()),
    };
    let image = spec.vmlinuz.display();
    if out.qemu_status.is_some_and(|c| c != 0) && !qemu_stderr.is_empty() {
        return format!(
            "QEMU refused to boot {image} (exit status {}): {}",
            out.qemu_status.unwrap_or(-1),
            qemu_stderr.join(" | ")
        );
    }
    if let Some(panic) = out.health.iter().find(|h| h.what == "kernel panic") {
        return format!(
            "the kernel panicked before /init ran: {}",
            panic.trace.first().map(String::as_str).unwrap_or_default()
        );
    }
    let console_name = match spec.arch {
        Arch::X86_64 => "ttyS0",
        Arch::Aarch64 => "ttyAMA0",
    };
    if console.is_empty() {
        return format!(
            "no console output in {waited} and /init never ran: {image} is likely not a kernel for {} \
             (an image of another arch, or not a kernel at all), or it does not write to {console_name}",
            spec.arch
        );
    }
    let tail = &console[console.len().saturating_sub(5)..];
    format!(
        "the kernel started but never ran /init within {waited} (a panic or hang before init, \
         or no initramfs support); its last console lines:\n    {}",
        tail.join("\n    ")
    )
}

/// Boots with KVM when it has been shown to work (a first boot under KVM that
/// does not reach init within 30 s marks it broken, e.g. `kvm_pvm` hosts), else TCG.
pub fn boot(spec: &BootSpec, on_event: &mut dyn FnMut(&Event)) -> Result<Boot> {
    if kvm_candidate(spec.arch) && KVM_WORKS.get() != Some(&false) {
        let probe = KVM_WORKS.get().is_none();
        let first_deadline = probe.then_some(Duration::from_secs(30));
        let b = boot_with(spec, "kvm", first_deadline, on_event)?;
        let reached_init = b.events.iter().any(|e| e.kind == "KILN-EVENT");
        if reached_init {
            let _ = KVM_WORKS.set(true);
            return Ok(b);
        }
        if probe {
            let _ = KVM_WORKS.set(false);
            eprintln!(
                "{}: KVM did not boot the guest within 30 s; using TCG",
                spec.label
            );
        } else {
            return Ok(b);
        }
    }
    boot_with(spec, "tcg", None, on_event)
}

fn boot_with(
    spec: &BootSpec,
    accel: &'static str,
    first_line_deadline: Option<Duration>,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Boot> {
    if let Some(dir) = spec.log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut log = std::io::BufWriter::new(
        std::fs::File::create(&spec.log)
            .with_context(|| format!("creating {}", spec.log.display()))?,
    );
    let mut cmd = qemu_command(spec, accel);
    writeln!(log, "# {cmd:?}")?;
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| {
        format!(
            "starting {:?} (is QEMU installed? `cargo xtask setup`)",
            cmd.get_program()
        )
    })?;
    // For wrappers and the runner's own tests, which must tell our QEMU
    // from any other.
    if let Some(f) = std::env::var_os("KILN_QEMU_PID_FILE") {
        std::fs::write(&f, child.id().to_string())
            .with_context(|| format!("writing {}", Path::new(&f).display()))?;
    }
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx2.send(format!("qemu: {l}"));
        }
    });
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(stdout);
        let mut buf = Vec::new();
        while r.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let l = String::from_utf8_lossy(&buf)
                .trim_end_matches(['\n', '\r'])
                .to_owned();
            buf.clear();
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut out = Boot {
        events: Vec::new(),
        health: Vec::new(),
        garbled: Vec::new(),
        timed_out: false,
        elapsed: Duration::ZERO,
        accel,
        log: spec.log.clone(),
        qemu_status: None,
        init_problem: None,
        interrupted: false,
    };
    let init_budget = init_cpu_budget();
    let init_by = start + INIT_WALL_CAP;
    let mut reached_init = false;
    let mut qemu_stderr: Vec<String> = Vec::new();
    // The console (not QEMU's stderr) before init, the last lines only.
    let mut console: Vec<String> = Vec::new();
    // After the end (DONE, panic), QEMU gets a few seconds to exit on its own
    // and the trace after a panic is still collected.
    let mut grace: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let mut deadline = start + spec.timeout;
        if let (Some(d), true) = (first_line_deadline, out.events.is_empty()) {
            deadline = deadline.min(start + d);
        }
        if let Some(g) = grace {
            deadline = deadline.min(g);
        }
        if !reached_init && grace.is_none() {
            deadline = deadline.min(init_by);
        }
        if interrupted().is_some() {
            out.interrupted = true;
            break;
        }
        if !reached_init
            && grace.is_none()
            && cpu_time(child.id()).is_some_and(|used| used >= init_budget)
        {
            out.timed_out = true;
            break;
        }
        if now >= deadline {
            if grace.is_none() {
                out.timed_out = true;
            }
            break;
        }
        match rx.recv_timeout((deadline - now).min(Duration::from_millis(500))) {
            Ok(line) => {
                writeln!(log, "{line}")?;
                if !reached_init {
                    if let Some(q) = line.strip_prefix("qemu: ") {
                        qemu_stderr.push(q.to_owned());
                    } else if !line.trim().is_empty() && !line.contains("KILN-") {
                        if console.len() == 200 {
                            console.remove(0);
                        }
                        console.push(line.clone());
                    }
                }
                if let Some(last) = out.health.last_mut() {
                    if last.trace.len() < 60 {
                        last.trace.push(line.clone());
                    }
                }
                match classify(&line) {
                    ConsoleLine::Protocol { kind, json } => {
                        reached_init = true;
                        let ev = Event {
                            kind,
                            json,
                            at: start.elapsed(),
                        };
                        on_event(&ev);
                        let end = ev.kind == "KILN-DONE" || ev.kind == "KILN-INIT-PANIC";
                        out.events.push(ev);
                        if end && grace.is_none() {
                            grace = Some(Instant::now() + Duration::from_secs(15));
                        }
                    }
                    ConsoleLine::Garbled(l) => out.garbled.push(l),
                    ConsoleLine::Health(what) => {
                        out.health.push(Health {
                            what: what.to_owned(),
                            trace: vec![line.clone()],
                        });
                        if what == "kernel panic" && grace.is_none() {
                            grace = Some(Instant::now() + Duration::from_secs(3));
                        }
                        // A stuck CPU fails the run already; waiting for the
                        // whole timeout (minutes per test binary) tells nothing
                        // more than the next 20 s of trace do.
                        if matches!(what, "soft lockup" | "hung task" | "RCU stall")
                            && grace.is_none()
                        {
                            grace = Some(Instant::now() + Duration::from_secs(20));
                        }
                    }
                    ConsoleLine::Other => {}
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(st) = child.try_wait()? {
                    out.qemu_status = st.code();
                    // Drain what the readers still hold.
                    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                        writeln!(log, "{line}")?;
                        if let Some(q) = line.strip_prefix("qemu: ") {
                            qemu_stderr.push(q.to_owned());
                        }
                        if let ConsoleLine::Protocol { kind, json } = classify(&line) {
                            reached_init = true;
                            let ev = Event {
                                kind,
                                json,
                                at: start.elapsed(),
                            };
                            on_event(&ev);
                            out.events.push(ev);
                        }
                    }
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                out.qemu_status = child.wait()?.code();
                break;
            }
        }
    }
    let qemu_cpu = cpu_time(child.id());
    if child.try_wait()?.is_none() {
        // SIGKILL to the QEMU we started (by its pid, through the handle).
        let _ = child.kill();
        let _ = child.wait();
        writeln!(
            log,
            "# killed QEMU after {:.1} s",
            start.elapsed().as_secs_f64()
        )?;
    }
    out.elapsed = start.elapsed();
    if !reached_init && !out.interrupted {
        out.init_problem = Some(init_problem(
            spec,
            &out,
            &qemu_stderr,
            &console,
            out.elapsed,
            qemu_cpu,
        ));
    }
    if out.interrupted {
        writeln!(
            log,
            "# the runner was interrupted (signal {})",
            interrupted().unwrap_or(0)
        )?;
    }
    log.flush()?;
    Ok(out)
}

/// Taint flags that mean the kernel itself misbehaved (kernel/panic.c):
/// 5 BAD_PAGE, 7 DIE (Oops), 9 WARN, 14 SOFTLOCKUP.
const BAD_TAINT: &[(u32, &str)] = &[
    (5, "bad page"),
    (7, "Oops"),
    (9, "WARN"),
    (14, "soft lockup"),
];

/// One test's outcome as reported by the guest.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TestRecord {
    pub binary: String,
    pub test: String,
    pub status: String,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// A boot's results and every reason not to trust it.
pub struct Verdict {
    pub tests: Vec<TestRecord>,
    pub problems: Vec<String>,
    /// QEMU start to the first test result.
    pub first_result: Option<Duration>,
    /// Guest uptime when the first test binary started.
    pub first_binary_uptime_ms: Option<u64>,
    /// The verifier's statistics of the programs tests loaded (`KILN-VERIFIER`:
    /// binary, test, program, insns, total_states, peak_states).
    pub verifier: Vec<serde_json::Value>,
}

impl Verdict {
    /// `expected_binaries`: how many test binaries the plan ran (0: do not check).
    pub fn of(boot: &Boot, expected_binaries: usize) -> Self {
        let mut tests: Vec<TestRecord> = Vec::new();
        let mut problems = Vec::new();
        let mut seqs = Vec::new();
        let mut done = None;
        let mut ends = 0;
        let mut first_result = None;
        let mut first_binary_uptime_ms = None;
        let mut verifier = Vec::new();
        for e in &boot.events {
            let j = &e.json;
            if let Some(s) = j["seq"].as_u64() {
                seqs.push(s);
            }
            let field = |k: &str| j[k].as_str().unwrap_or_default().to_owned();
            match e.kind.as_str() {
                "KILN-RESULT" => {
                    first_result.get_or_insert(e.at);
                    tests.push(TestRecord {
                        binary: field("binary"),
                        test: field("test"),
                        status: field("status"),
                        duration_ms: j["duration_ms"].as_u64().unwrap_or(0),
                        reason: j["reason"].as_str().map(str::to_owned),
                        output: None,
                    })
                }
                "KILN-VERIFIER" => {
                    let mut v = j.clone();
                    if let Some(o) = v.as_object_mut() {
                        o.remove("seq");
                    }
                    verifier.push(v);
                }
                "KILN-OUTPUT" => {
                    let (b, t) = (field("binary"), field("test"));
                    if let Some(r) = tests
                        .iter_mut()
                        .rev()
                        .find(|r| r.binary == b && r.test == t)
                    {
                        r.output = Some(field("output"));
                    }
                }
                "KILN-EVENT" => match field("event").as_str() {
                    "binary-start" if first_binary_uptime_ms.is_none() => {
                        first_binary_uptime_ms = j["uptime_ms"].as_u64();
                    }
                    "binary-end" => ends += 1,
                    "module" if field("status") == "failed" => problems.push(format!(
                        "module {} failed to load: {}",
                        field("name"),
                        field("error")
                    )),
                    "copy-failed" => problems.push(format!(
                        "copying {} failed: {}",
                        field("what"),
                        field("error")
                    )),
                    "mount-failed" => problems.push(format!(
                        "mounting {} failed: {}",
                        field("what"),
                        field("error")
                    )),
                    "bad-plan-line" => {
                        problems.push(format!("init rejected plan line: {}", field("text")))
                    }
                    _ => {}
                },
                "KILN-INIT-PANIC" => {
                    problems.push(format!("kiln-init panicked: {}", field("message")))
                }
                "KILN-DONE" => done = Some(j.clone()),
                _ => {}
            }
        }
        for h in &boot.health {
            problems.push(format!(
                "{} on the console:\n    {}",
                h.what,
                h.trace.join("\n    ")
            ));
        }
        for g in &boot.garbled {
            problems.push(format!("unreadable protocol line: {g}"));
        }
        if boot.interrupted {
            problems.push(format!(
                "interrupted: the runner got signal {} and stopped the VM after {:.0} s",
                interrupted().unwrap_or(0),
                boot.elapsed.as_secs_f64()
            ));
        }
        match &done {
            _ if boot.interrupted => {}
            None if boot.init_problem.is_some() => {
                problems.insert(0, boot.init_problem.clone().unwrap_or_default())
            }
            None if boot.timed_out => problems.push(format!(
                "the VM timed out after {:.0} s without KILN-DONE",
                boot.elapsed.as_secs_f64()
            )),
            None => problems.push("the VM stopped without KILN-DONE".into()),
            Some(d) => {
                let lines = d["lines"].as_u64().unwrap_or(0);
                seqs.sort_unstable();
                seqs.dedup();
                let missing: Vec<u64> = (0..lines)
                    .filter(|s| seqs.binary_search(s).is_err())
                    .collect();
                if !missing.is_empty() {
                    problems.push(format!("lost protocol lines (seq {missing:?})"));
                }
                let reported = d["results"].as_u64().unwrap_or(0) as usize;
                if reported != tests.len() {
                    problems.push(format!(
                        "init reported {reported} results, {} arrived",
                        tests.len()
                    ));
                }
                let taint = d["tainted"].as_i64().unwrap_or(0);
                for (bit, what) in BAD_TAINT {
                    if taint > 0 && taint & (1 << bit) != 0 {
                        problems.push(format!("kernel tainted by {what} (tainted={taint})"));
                    }
                }
            }
        }
        if expected_binaries > 0 && done.is_some() && ends != expected_binaries {
            problems.push(format!(
                "{ends} of {expected_binaries} test binaries finished"
            ));
        }
        Verdict {
            tests,
            problems,
            first_result,
            first_binary_uptime_ms,
            verifier,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_lines_amid_kernel_messages() {
        let l = r#"[    3.1] random: crng init done KILN-RESULT {"seq":4,"binary":"b","test":"t","status":"pass","duration_ms":3}"#;
        match classify(l) {
            ConsoleLine::Protocol { kind, json } => {
                assert_eq!(kind, "KILN-RESULT");
                assert_eq!(json["test"], "t");
            }
            other => panic!("{other:?}"),
        }
        // A kernel message cut into our line: reported, never trusted.
        let cut = r#"KILN-RESULT {"seq":5,"binary":"b","te[    4.0] virtio: x"#;
        assert!(matches!(classify(cut), ConsoleLine::Garbled(_)));
        // A test output that mentions BUG: travels JSON-escaped inside our line.
        let out = r#"KILN-OUTPUT {"seq":6,"output":"BUG: in my test\nWARNING: x"}"#;
        assert!(matches!(classify(out), ConsoleLine::Protocol { .. }));
        assert_eq!(
            classify("[ 9.0] Kernel panic - not syncing: sysrq triggered crash"),
            ConsoleLine::Health("kernel panic")
        );
        assert_eq!(
            classify("[ 2.0] WARNING: CPU: 0 PID: 1 at mm/x.c:1 f+0x1/0x2"),
            ConsoleLine::Health("kernel WARNING")
        );
        assert_eq!(
            classify("[ 2.0] BUG: kernel NULL pointer dereference"),
            ConsoleLine::Health("kernel BUG")
        );
        assert_eq!(classify("Run /init as init process"), ConsoleLine::Other);
        assert_eq!(classify("KILN-lowercase is not ours"), ConsoleLine::Other);
    }

    fn ev(kind: &str, json: &str) -> Event {
        Event {
            kind: kind.into(),
            json: serde_json::from_str(json).unwrap(),
            at: Duration::from_millis(10),
        }
    }

    fn boot_of(events: Vec<Event>) -> Boot {
        Boot {
            events,
            health: vec![],
            garbled: vec![],
            timed_out: false,
            elapsed: Duration::from_secs(1),
            accel: "tcg",
            log: PathBuf::new(),
            qemu_status: Some(0),
            init_problem: None,
            interrupted: false,
        }
    }

    #[test]
    fn verdicts() {
        let good = vec![
            ev(
                "KILN-EVENT",
                r#"{"seq":0,"event":"binary-start","binary":"b","uptime_ms":900}"#,
            ),
            ev(
                "KILN-RESULT",
                r#"{"seq":1,"binary":"b","test":"t","status":"fail","duration_ms":3}"#,
            ),
            ev(
                "KILN-OUTPUT",
                r#"{"seq":2,"binary":"b","test":"t","output":"boom"}"#,
            ),
            ev(
                "KILN-EVENT",
                r#"{"seq":3,"event":"binary-end","binary":"b","exit":101}"#,
            ),
            ev(
                "KILN-DONE",
                r#"{"seq":4,"results":1,"tainted":0,"lines":5}"#,
            ),
        ];
        let v = Verdict::of(&boot_of(good.clone()), 1);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.tests[0].output.as_deref(), Some("boom"));
        assert_eq!(v.first_binary_uptime_ms, Some(900));

        let mut lost = good.clone();
        lost.remove(2);
        let v = Verdict::of(&boot_of(lost), 1);
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("lost protocol lines (seq [2])")),
            "{:?}",
            v.problems
        );

        let mut tainted = good.clone();
        tainted[4] = ev(
            "KILN-DONE",
            r#"{"seq":4,"results":1,"tainted":512,"lines":5}"#,
        );
        assert!(Verdict::of(&boot_of(tainted), 1).problems[0].contains("WARN"));

        let mut b = boot_of(good[..2].to_vec());
        b.timed_out = true;
        assert!(
            Verdict::of(&b, 1)
                .problems
                .iter()
                .any(|p| p.contains("timed out"))
        );
        assert!(
            Verdict::of(&boot_of(good[..2].to_vec()), 1)
                .problems
                .iter()
                .any(|p| p.contains("without KILN-DONE"))
        );
    }

    #[test]
    fn plan_lines() {
        let mut p = Plan::default();
        p.module("/lib/modules/veth.ko");
        p.test(Duration::from_secs(60), "/tests/a", &["x".into()])
            .unwrap();
        p.exec(Duration::from_secs(5), &["/bin/kiln".into(), "plan".into()])
            .unwrap();
        assert_eq!(
            p.text,
            "module\t/lib/modules/veth.ko\ntest\t60\t/tests/a\tx\nexec\t5\t/bin/kiln\tplan\n"
        );
        assert!(p.exec(Duration::from_secs(1), &["a\tb".into()]).is_err());
    }
}
