//! `cargo xtask build-ebpf`: builds every eBPF program of the repository to a
//! stable path, `target/bpf/<name>.bpf.o`.
//!
//! - every `*.bpf.c` outside `target/` and `.git/` → `target/bpf/<stem>.bpf.o` (clang-22);
//! - every Rust crate under `ebpf-sdk/programs/`, `ebpf-sdk/examples/` or `manifests/examples/` whose
//!   Cargo.toml says `[package.metadata.kiln] ebpf = true` →
//!   `target/bpf/<package>.bpf.o` (Debian's cargo and rustc, bpf-linker).
//!
//! `--arch ARCH` builds the same programs for another kernel architecture
//! (whose `pt_regs` differ) into `target/bpf/ARCH/<name>.bpf.o`: Rust crates
//! get `--cfg bpf_target_arch="ARCH"`, C files `-D__TARGET_ARCH_<libbpf's
//! name>`; big-endian arches (s390x, mips) build for `bpfeb`. The
//! default, x86_64, keeps writing `target/bpf/<name>.bpf.o` (every test
//! reads there) and mirrors the objects into `target/bpf/x86_64/`, so a VM
//! runner can always take `target/bpf/<arch>/`.
//!
//! Beside the x86_64 objects, every C program is also built with
//! `--target=bpfeb` into `target/bpf/bpfeb/<stem>.bpf.o`: the big-endian twin
//! of the same source and flags, which the parser tests compare with the
//! little-endian object on any host.
//!
//! Builds are incremental (a stamp per object records the command and its
//! inputs' sizes and mtimes; cargo and clang run only when it changes) and
//! reproducible: two clean builds in one checkout give the same bytes
//! (`--check-reproducible` proves it), and no checkout path is recorded in
//! debug info or BTF line info. Across checkouts, clang's BTF can still order
//! forward declarations differently (see `Builder::build_c`), and rustc's
//! symbol hashes include the crates' paths.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

use anyhow::{Context, bail};
use kiln_build::show;
use sha2::{Digest, Sha256};

use crate::setup::{self, RustRoute, Toolchain};

/// The path prefix recorded in debug info and BTF line info instead of the
/// checkout's real location.
const REMAPPED_ROOT: &str = "/kiln";

#[derive(clap::Args)]
pub struct Args {
    /// Print every command before running it.
    #[arg(long, short)]
    verbose: bool,
    /// Also rebuild everything from scratch in target/bpf-repro (another
    /// cargo target dir, no stamps) and fail unless every object is
    /// byte-identical to target/bpf's.
    #[arg(long)]
    check_reproducible: bool,
    /// The kernel architecture the programs are for (their `pt_regs` layout).
    #[arg(long, value_enum, default_value = "x86_64")]
    arch: Arch,
}

/// Under target/bpf: the big-endian twins of the x86_64 C objects.
pub const BPFEB_TWINS: &str = "bpfeb";

/// The byte order of the eBPF an arch's kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteOrder {
    Little,
    Big,
}

impl ByteOrder {
    /// clang's `--target` for it.
    pub(crate) fn clang_target(self) -> &'static str {
        match self {
            ByteOrder::Little => "--target=bpfel",
            ByteOrder::Big => "--target=bpfeb",
        }
    }
}

/// The kernel architecture an object targets. BPF bytecode is the same on
/// every arch of one byte order; what differs is how tracing programs read
/// registers (`pt_regs`) and the syscall wrappers' names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    #[value(name = "x86_64", alias = "x86", alias = "amd64")]
    X86_64,
    #[value(name = "aarch64", alias = "arm64")]
    Aarch64,
    /// 32-bit arm (armv7, Debian's armhf).
    #[value(name = "arm", alias = "armv7", alias = "armhf")]
    Arm,
    #[value(name = "riscv64")]
    Riscv64,
    /// Little-endian POWER (Debian's ppc64el).
    #[value(name = "powerpc64", alias = "ppc64le", alias = "ppc64el")]
    Powerpc64,
    /// IBM Z: big-endian, objects built with `--target=bpfeb`.
    #[value(name = "s390x", alias = "s390")]
    S390x,
    /// Big-endian mips (build-checked only: no mips kernel runs here).
    #[value(name = "mips")]
    Mips,
    #[value(name = "loongarch64", alias = "loongarch")]
    Loongarch64,
}

impl Arch {
    /// The directory name under target/bpf (Rust's arch names).
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Arm => "arm",
            Arch::Riscv64 => "riscv64",
            Arch::Powerpc64 => "powerpc64",
            Arch::S390x => "s390x",
            Arch::Mips => "mips",
            Arch::Loongarch64 => "loongarch64",
        }
    }

    /// The byte order of this arch's kernel, and so of its objects.
    pub fn byte_order(self) -> ByteOrder {
        match self {
            Arch::S390x | Arch::Mips => ByteOrder::Big,
            _ => ByteOrder::Little,
        }
    }

    /// libbpf's `__TARGET_ARCH_*` for C programs.
    pub(crate) fn c_define(self) -> &'static str {
        match self {
            Arch::X86_64 => "-D__TARGET_ARCH_x86",
            Arch::Aarch64 => "-D__TARGET_ARCH_arm64",
            Arch::Arm => "-D__TARGET_ARCH_arm",
            Arch::Riscv64 => "-D__TARGET_ARCH_riscv",
            Arch::Powerpc64 => "-D__TARGET_ARCH_powerpc",
            Arch::S390x => "-D__TARGET_ARCH_s390",
            Arch::Mips => "-D__TARGET_ARCH_mips",
            Arch::Loongarch64 => "-D__TARGET_ARCH_loongarch",
        }
    }

    /// The host-vmlinux.h types this arch's own replace (renamed away), and
    /// the C definitions of the registers libbpf's `PT_REGS_*` macros read
    /// on it. `None` for x86_64, whose vmlinux.h is the host's.
    fn uapi_regs(self) -> Option<(&'static [&'static str], &'static str)> {
        Some(match self {
            Arch::X86_64 => return None,
            Arch::Aarch64 => (
                &[],
                "struct user_pt_regs {\n\t__u64 regs[31];\n\t__u64 sp;\n\t__u64 pc;\n\t__u64 pstate;\n};\n",
            ),
            // 32-bit registers: BPF's `long` is 64-bit.
            Arch::Arm => (&["pt_regs"], "struct pt_regs {\n\t__u32 uregs[18];\n};\n"),
            Arch::Riscv64 => (
                &["user_regs_struct"],
                "struct user_regs_struct {\n\t__u64 pc, ra, sp, gp, tp, t0, t1, t2, s0, s1;\n\t\
                 __u64 a0, a1, a2, a3, a4, a5, a6, a7;\n\t\
                 __u64 s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, t3, t4, t5, t6;\n};\n",
            ),
            Arch::Powerpc64 => (
                &["pt_regs"],
                "struct pt_regs {\n\t__u64 gpr[32];\n\t__u64 nip, msr, orig_gpr3, ctr, link, xer, \
                 ccr, softe, trap, dar, dsisr, result;\n};\n",
            ),
            Arch::S390x => (
                &[],
                "typedef struct {\n\t__u64 mask;\n\t__u64 addr;\n} psw_t;\n\
                 typedef struct {\n\t__u64 args[1];\n\tpsw_t psw;\n\t__u64 gprs[16];\n} user_pt_regs;\n",
            ),
            Arch::Mips => (
                &["pt_regs"],
                "struct pt_regs {\n\t__u64 regs[32];\n\t__u64 cp0_status, hi, lo, cp0_badvaddr, \
                 cp0_cause, cp0_epc;\n};\n",
            ),
            Arch::Loongarch64 => (
                &["user_pt_regs"],
                "struct user_pt_regs {\n\t__u64 regs[32];\n\t__u64 orig_a0, csr_era, csr_badv;\n\t\
                 __u64 reserved[10];\n};\n",
            ),
        })
    }

    /// Where `<asm/types.h>` for this arch lives (linux-libc-dev, or the
    /// arm64 cross package; the x86 one serves as a fallback: the BPF-relevant
    /// asm headers are the generic ones on both).
    pub(crate) fn asm_include(self) -> &'static str {
        match self {
            Arch::Aarch64 if Path::new("/usr/aarch64-linux-gnu/include/asm").is_dir() => {
                "-I/usr/aarch64-linux-gnu/include"
            }
            _ => "-I/usr/include/x86_64-linux-gnu",
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let tc = setup::ensure()?;
    let built = Builder::new(&tc, args.verbose, args.arch).build_all()?;
    for b in &built {
        let state = if b.fresh { "up to date" } else { "built" };
        println!("build-ebpf: {state:>10}  {}", b.output.display());
    }
    println!(
        "build-ebpf: {} objects for {} in {}",
        built.len(),
        args.arch.name(),
        bpf_dir_for(args.arch).display()
    );
    if args.check_reproducible {
        check_reproducible(&tc, args.verbose, args.arch, &built)?;
    }
    Ok(())
}

/// Rebuilds every object in a scratch directory with a different cargo
/// target dir and compares bytes with the regular build.
fn check_reproducible(
    tc: &Toolchain,
    verbose: bool,
    arch: Arch,
    built: &[Built],
) -> anyhow::Result<()> {
    let scratch = repo_root().join("target/bpf-repro");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)
            .with_context(|| format!("removing {}", scratch.display()))?;
    }
    let mut b = Builder::new(tc, verbose, arch);
    b.mirror_dir = None;
    b.out_dir = scratch.join("out");
    b.target_dir = scratch.join("build");
    let again = b.build_all()?;
    let mut differ = Vec::new();
    for (first, second) in built.iter().zip(&again) {
        let a = std::fs::read(&first.output)?;
        let b = std::fs::read(&second.output)?;
        if a != b {
            differ.push(format!(
                "{} != {}",
                first.output.display(),
                second.output.display()
            ));
        }
    }
    if !differ.is_empty() {
        bail!("build-ebpf: not reproducible:\n  {}", differ.join("\n  "));
    }
    println!(
        "build-ebpf: all {} objects are byte-identical across two clean builds",
        built.len()
    );
    std::fs::remove_dir_all(&scratch).with_context(|| format!("removing {}", scratch.display()))?;
    Ok(())
}

/// Builds every eBPF program quietly for x86_64; returns the objects' paths
/// (`target/bpf/<name>.bpf.o`). `xtask apply` and `xtask test` call this
/// before anything needs an object.
pub fn build_all() -> anyhow::Result<Vec<PathBuf>> {
    // The x86_64 build writes target/bpf/<name>.bpf.o and mirrors it.
    let mirrored = build_all_for(Arch::X86_64)?;
    Ok(mirrored
        .into_iter()
        .map(|p| match p.file_name() {
            Some(name) => bpf_dir().join(name),
            None => p,
        })
        .collect())
}

/// Builds every eBPF program quietly for `arch`; returns the objects' paths,
/// all under [`bpf_dir_for`]`(arch)` (for x86_64 these are the mirrors of
/// `target/bpf/<name>.bpf.o`).
pub fn build_all_for(arch: Arch) -> anyhow::Result<Vec<PathBuf>> {
    let tc = setup::ensure()?;
    let dir = bpf_dir_for(arch);
    let built = Builder::new(&tc, false, arch).build_all()?;
    Ok(built
        .into_iter()
        .map(|b| match b.output.file_name() {
            Some(name) => dir.join(name),
            None => b.output,
        })
        .collect())
}

/// `target/bpf/<arch>`: where a VM of that arch takes its objects from.
pub fn bpf_dir_for(arch: Arch) -> PathBuf {
    bpf_dir().join(arch.name())
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}

/// Where the objects land.
pub fn bpf_dir() -> PathBuf {
    repo_root().join("target/bpf")
}

/// One eBPF program source.
#[derive(Debug, Clone)]
enum Source {
    C(PathBuf),
    Rust { dir: PathBuf, package: String },
}

impl Source {
    fn origin(&self) -> &Path {
        match self {
            Source::C(p) => p,
            Source::Rust { dir, .. } => dir,
        }
    }
}

struct Built {
    output: PathBuf,
    fresh: bool,
}

struct Builder<'a> {
    tc: &'a Toolchain,
    verbose: bool,
    arch: Arch,
    root: PathBuf,
    /// Where objects and stamps go (target/bpf).
    out_dir: PathBuf,
    /// Cargo's target dir for the Rust programs (target/bpf-build, or
    /// `target/bpf-build-<arch>`: other cfgs, kept apart so switching arch does
    /// not rebuild everything).
    target_dir: PathBuf,
    /// Where each object is also copied (target/bpf/x86_64 for the default arch).
    mirror_dir: Option<PathBuf>,
}

impl<'a> Builder<'a> {
    fn new(tc: &'a Toolchain, verbose: bool, arch: Arch) -> Self {
        let root = repo_root();
        let (out_dir, target_dir, mirror_dir) = match arch {
            Arch::X86_64 => (
                root.join("target/bpf"),
                root.join("target/bpf-build"),
                Some(root.join("target/bpf").join(arch.name())),
            ),
            _ => (
                root.join("target/bpf").join(arch.name()),
                root.join(format!("target/bpf-build-{}", arch.name())),
                None,
            ),
        };
        Self {
            tc,
            verbose,
            arch,
            root,
            out_dir,
            target_dir,
            mirror_dir,
        }
    }

    fn build_all(&self) -> anyhow::Result<Vec<Built>> {
        let sources = discover(&self.root)?;
        std::fs::create_dir_all(self.out_dir.join(".stamps"))
            .with_context(|| format!("creating {}", self.out_dir.display()))?;
        let mut built = Vec::new();
        // The C programs take their PT_REGS and USDT macros from the
        // installed libbpf's headers; an older libbpf (Debian 12's 1.1) has
        // no loongarch there, so for such an arch only the Rust programs
        // are built, and the reason is said once.
        let c_programs = self.libbpf_headers_know_arch()?;
        if !c_programs {
            eprintln!(
                "build-ebpf: C programs skipped for {}: the installed libbpf's bpf/bpf_tracing.h does not know {} (a newer libbpf-dev has it)",
                self.arch.name(),
                self.arch.c_define().trim_start_matches("-D")
            );
        }
        for (name, src) in &sources {
            let output = self.out_dir.join(format!("{name}.bpf.o"));
            let fresh = match src {
                Source::C(_) if !c_programs => continue,
                Source::C(path) => {
                    // The big-endian twins, with the same arch defines as
                    // their little-endian objects, for each arch a VM runs
                    // (the guests compare the twins they carry too).
                    if matches!(self.arch, Arch::X86_64 | Arch::Aarch64) {
                        let twin_dir = self.out_dir.join(BPFEB_TWINS);
                        for dir in [&twin_dir, &self.out_dir.join(".stamps").join(BPFEB_TWINS)] {
                            std::fs::create_dir_all(dir)
                                .with_context(|| format!("creating {}", dir.display()))?;
                        }
                        let twin = twin_dir.join(format!("{name}.bpf.o"));
                        let twin_name = format!("{BPFEB_TWINS}/{name}");
                        self.build_c(&twin_name, path, &twin, ByteOrder::Big)?;
                        if let Some(mirror) = &self.mirror_dir {
                            let mirror_twins = mirror.join(BPFEB_TWINS);
                            std::fs::create_dir_all(&mirror_twins)
                                .with_context(|| format!("creating {}", mirror_twins.display()))?;
                            copy_if_changed(&twin, &mirror_twins.join(format!("{name}.bpf.o")))?;
                        }
                    }
                    self.build_c(name, path, &output, self.arch.byte_order())?
                }
                Source::Rust { dir, package } => self.build_rust(name, dir, package, &output)?,
            };
            if let Some(mirror) = &self.mirror_dir {
                std::fs::create_dir_all(mirror)
                    .with_context(|| format!("creating {}", mirror.display()))?;
                copy_if_changed(&output, &mirror.join(format!("{name}.bpf.o")))?;
            }
            built.push(Built { output, fresh });
        }
        Ok(built)
    }

    fn run(&self, cmd: &mut Command, what: &str) -> anyhow::Result<()> {
        if self.verbose {
            println!("+ {}", show(cmd));
        }
        let status = cmd
            .status()
            .with_context(|| format!("{what}: cannot run {}", show(cmd)))?;
        if !status.success() {
            bail!("{what}: failed ({status}): {}", show(cmd));
        }
        Ok(())
    }

    /// `target/bpf/include/vmlinux.h` from the running kernel's BTF, for C
    /// programs that include it. Generated once; delete it to refresh.
    fn vmlinux_h(&self) -> anyhow::Result<PathBuf> {
        // Always the regular build's: its path is part of the objects' debug info.
        let dir = self.root.join("target/bpf/include");
        let header = dir.join("vmlinux.h");
        if header.is_file() {
            return self.arch_vmlinux_h(dir);
        }
        std::fs::create_dir_all(&dir)?;
        let btf = Path::new("/sys/kernel/btf/vmlinux");
        if !btf.exists() {
            // Programs that do not include vmlinux.h still build.
            return Ok(dir);
        }
        let mut cmd = Command::new(&self.tc.bpftool);
        cmd.args(["btf", "dump", "file"])
            .arg(btf)
            .args(["format", "c"]);
        if self.verbose {
            println!("+ {} > {}", show(&cmd), header.display());
        }
        let out = cmd
            .output()
            .with_context(|| format!("running {}", show(&cmd)))?;
        if !out.status.success() {
            bail!(
                "generating vmlinux.h failed: {}\n{}",
                show(&cmd),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let tmp = header.with_extension("h.tmp");
        std::fs::write(&tmp, &out.stdout)?;
        std::fs::rename(&tmp, &header)?;
        self.arch_vmlinux_h(dir)
    }

    /// For another arch than the host's, the host's vmlinux.h plus the arch's
    /// register struct, which libbpf's bpf_tracing.h casts `ctx` to
    /// (`struct user_pt_regs` on arm64) and which an x86 vmlinux.h lacks or
    /// defines with x86's fields (then the host's is renamed out of the way).
    /// Everything else goes through CO-RE, so the host's types serve
    /// (toolchain.md: an object built on x86 against its vmlinux.h loaded on
    /// arm64 5.10 and 6.1).
    fn arch_vmlinux_h(&self, host_dir: PathBuf) -> anyhow::Result<PathBuf> {
        let Some((renamed, regs)) = self.arch.uapi_regs() else {
            return Ok(host_dir);
        };
        let host = host_dir.join("vmlinux.h");
        let Ok(text) = std::fs::read_to_string(&host) else {
            return Ok(host_dir);
        };
        let dir = self
            .root
            .join("target/bpf")
            .join(self.arch.name())
            .join("include");
        std::fs::create_dir_all(&dir)?;
        let mut out = String::new();
        for name in renamed {
            out.push_str(&format!("#define {name} {name}___host\n"));
        }
        out.push_str(&text);
        for name in renamed {
            out.push_str(&format!("#undef {name}\n"));
        }
        out.push_str(&format!(
            "\n/* Added by cargo xtask build-ebpf --arch {} (its UAPI register layout). */\n{regs}",
            self.arch.name()
        ));
        let header = dir.join("vmlinux.h");
        if std::fs::read_to_string(&header).ok().as_deref() != Some(out.as_str()) {
            std::fs::write(&header, out)
                .with_context(|| format!("writing {}", header.display()))?;
        }
        Ok(dir)
    }

    /// Whether the installed libbpf's `bpf/bpf_tracing.h` recognises this
    /// arch's `__TARGET_ARCH_*` (it then defines `bpf_target_defined`).
    fn libbpf_headers_know_arch(&self) -> anyhow::Result<bool> {
        use std::io::Write;
        let mut child = Command::new(&self.tc.clang)
            .args(["--target=bpfel", "-E", "-x", "c", "-", "-o", "/dev/null"])
            .arg(self.arch.c_define())
            .arg(self.arch.asm_include())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("running {}", self.tc.clang.display()))?;
        child
            .stdin
            .take()
            .context("clang's stdin")?
            .write_all(
                b"#include <bpf/bpf_tracing.h>\n#ifndef bpf_target_defined\n#error unknown arch\n#endif\n",
            )?;
        Ok(child.wait()?.success())
    }

    fn build_c(
        &self,
        name: &str,
        src: &Path,
        output: &Path,
        order: ByteOrder,
    ) -> anyhow::Result<bool> {
        let include = self.vmlinux_h()?;
        // clang 22 orders some BTF entries (forward declarations, in
        // BTFDebug's map keyed by DICompositeType pointers) by heap address,
        // and the heap layout follows the lengths of its arguments. So the
        // command line must not depend on where the output goes: paths
        // relative to the repository root, the object on stdout, the
        // depfile at one fixed path per arch and name. Two builds in one
        // checkout then give the same bytes. Across checkouts most objects
        // match too, but the checkout path's length still moves the heap
        // (clang keeps its working directory), so an object with forward
        // declarations can differ in their order, nothing else.
        let deps = self.deps_path(name);
        let mut cmd = Command::new(&self.tc.clang);
        cmd.args(["-O2", "-g", order.clang_target(), "-mcpu=v3"])
            .arg(self.arch.c_define())
            .arg(self.arch.asm_include())
            .arg("-Iebpf-sdk/include")
            .arg(format!("-I{}", self.relative(&include).display()))
            // No checkout path in DWARF or BTF line info.
            .arg(format!("-fdebug-compilation-dir={REMAPPED_ROOT}"))
            .arg("-MD")
            .arg("-MF")
            .arg(self.relative(&deps))
            .arg("-c")
            .arg(self.relative(src))
            .args(["-o", "-"])
            .current_dir(&self.root)
            // Nor on the caller's environment (a test under nextest has
            // another than a shell): clang needs only PATH.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PWD", &self.root);
        let command_line = show(&cmd);
        // The inputs are the source plus every header clang saw last time.
        let inputs_now = || {
            let mut inputs = vec![src.to_path_buf()];
            inputs.extend(read_depfile(&deps).into_iter().map(|p| self.root.join(p)));
            inputs
        };
        let stamp = stamp_of(&command_line, &inputs_now());
        if self.is_fresh(name, output, &stamp) {
            return Ok(true);
        }
        std::fs::create_dir_all(deps.parent().expect("a depfile has a directory"))?;
        if self.verbose {
            println!("+ (cd {}; {command_line})", self.root.display());
        }
        let out = cmd
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("{}: cannot run {command_line}", src.display()))?;
        if !out.status.success() {
            bail!("{}: failed ({}): {command_line}", src.display(), out.status);
        }
        write_if_changed(output, &out.stdout)?;
        // Record the stamp over the headers clang just reported.
        self.write_stamp(name, &stamp_of(&command_line, &inputs_now()))?;
        Ok(false)
    }

    /// Where clang writes the depfile of `name`: the same path for the
    /// regular and the `--check-reproducible` build (see `build_c`).
    fn deps_path(&self, name: &str) -> PathBuf {
        self.root
            .join("target/bpf-deps")
            .join(self.arch.name())
            .join(format!("{name}.d"))
    }

    /// `path` relative to the repository root when it lies inside it.
    fn relative<'p>(&self, path: &'p Path) -> &'p Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }

    fn build_rust(
        &self,
        name: &str,
        dir: &Path,
        package: &str,
        output: &Path,
    ) -> anyhow::Result<bool> {
        let target_dir = &self.target_dir;
        let root = self.root.display().to_string();
        let cargo_home = std::env::var("CARGO_HOME").unwrap_or_else(|_| {
            format!(
                "{}/.cargo",
                std::env::var("HOME").unwrap_or_else(|_| "/root".into())
            )
        });
        let mut extra_rustflags = vec![
            format!("--remap-path-prefix={root}={REMAPPED_ROOT}"),
            format!("--remap-path-prefix={cargo_home}=/cargo"),
            // Last, so it wins over the checkout's prefix: build scripts'
            // outputs (kiln-ebpf-build's `include!`d accessors) live under the
            // target dir, which differs between checkouts and builds.
            format!("--remap-path-prefix={}=/kiln-target", target_dir.display()),
        ];
        // x86_64 is kiln-ebpf's default layout; the flag is only added for
        // other arches so x86 objects stay what they were.
        if self.arch != Arch::X86_64 {
            extra_rustflags.push(format!("--cfg bpf_target_arch=\"{}\"", self.arch.name()));
        }
        // The flags, profile and environment are kiln-build's, the same a
        // user's build.rs gets.
        let toolchain = kiln_build_toolchain(self.tc);
        let build = kiln_build::CargoBuild {
            toolchain: &toolchain,
            crate_dir: dir,
            target_dir,
            extra_rustflags,
            verbose: self.verbose,
            target: match self.arch.byte_order() {
                ByteOrder::Little => kiln_build::TARGET,
                ByteOrder::Big => kiln_build::TARGET_BIG_ENDIAN,
            },
        };
        let rustflags = build.rustflags();
        let mut cmd = build.command();
        let command_line = format!("{} RUSTFLAGS={rustflags}", show(&cmd));
        let mut inputs = rust_inputs(dir);
        inputs.extend(rust_inputs(&self.root.join("ebpf-sdk/kiln-ebpf")));
        inputs.extend(rust_inputs(&self.root.join("ebpf-sdk/kiln-ebpf-macros")));
        // Program crates' build scripts generate CO-RE accessors with it.
        inputs.extend(rust_inputs(&self.root.join("ebpf-sdk/kiln-ebpf-build")));
        inputs.push(self.tc.rustc.clone());
        inputs.push(self.tc.bpf_linker.clone());
        let stamp = stamp_of(&command_line, &inputs);
        if self.is_fresh(name, output, &stamp) {
            return Ok(true);
        }
        self.run(&mut cmd, &format!("crate {package} ({})", dir.display()))?;
        let artifact = build.artifact(package);
        if !artifact.is_file() {
            bail!(
                "crate {package} ({}): cargo succeeded but {} is missing; is it a `[[bin]]` crate with #![no_main]?",
                dir.display(),
                artifact.display()
            );
        }
        copy_if_changed(&artifact, output)?;
        // Recompute after the build: cargo may have written Cargo.lock.
        let mut inputs = rust_inputs(dir);
        inputs.extend(rust_inputs(&self.root.join("ebpf-sdk/kiln-ebpf")));
        inputs.extend(rust_inputs(&self.root.join("ebpf-sdk/kiln-ebpf-macros")));
        // Program crates' build scripts generate CO-RE accessors with it.
        inputs.extend(rust_inputs(&self.root.join("ebpf-sdk/kiln-ebpf-build")));
        inputs.push(self.tc.rustc.clone());
        inputs.push(self.tc.bpf_linker.clone());
        self.write_stamp(name, &stamp_of(&command_line, &inputs))?;
        Ok(false)
    }

    fn stamp_path(&self, name: &str) -> PathBuf {
        self.out_dir.join(".stamps").join(format!("{name}.stamp"))
    }

    fn is_fresh(&self, name: &str, output: &Path, stamp: &str) -> bool {
        output.is_file() && std::fs::read_to_string(self.stamp_path(name)).is_ok_and(|s| s == stamp)
    }

    fn write_stamp(&self, name: &str, stamp: &str) -> anyhow::Result<()> {
        let p = self.stamp_path(name);
        std::fs::write(&p, stamp).with_context(|| format!("writing {}", p.display()))
    }
}

/// The setup's toolchain as kiln-build takes it.
fn kiln_build_toolchain(tc: &Toolchain) -> kiln_build::Toolchain {
    let core = match &tc.rust_route {
        RustRoute::Debian => kiln_build::Core::Prebuilt {
            rustc: tc.rustc.clone(),
        },
        // The nightly's own rustc (rustup picks it from `+nightly`), and the
        // shim's tools by path: under Nix they are not called clang-22/llvm-ar-22.
        RustRoute::Nightly { toolchain } => kiln_build::Core::BuildStd {
            toolchain: toolchain.clone(),
            clang: tc.clang.clone(),
            llvm_ar: tc.llvm_ar.clone(),
        },
    };
    kiln_build::Toolchain {
        cargo: tc.cargo.clone(),
        core,
        bpf_linker: tc.bpf_linker.clone(),
    }
}

/// Every eBPF source of the repository, keyed by output name; two sources
/// wanting the same output name is an error.
fn discover(root: &Path) -> anyhow::Result<BTreeMap<String, Source>> {
    let mut found: BTreeMap<String, Source> = BTreeMap::new();
    let mut add = |name: String, src: Source| -> anyhow::Result<()> {
        if let Some(prev) = found.get(&name) {
            bail!(
                "two eBPF programs would both build target/bpf/{name}.bpf.o: {} and {}; rename one",
                prev.origin().display(),
                src.origin().display()
            );
        }
        found.insert(name, src);
        Ok(())
    };
    let mut c_files = Vec::new();
    walk(root, &mut |p| {
        if p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".bpf.c"))
        {
            c_files.push(p.to_path_buf());
        }
    })?;
    c_files.sort();
    for p in c_files {
        let file = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let stem = file.trim_end_matches(".bpf.c").to_string();
        add(stem, Source::C(p))?;
    }
    let mut manifests = Vec::new();
    for base in [
        "ebpf-sdk/programs",
        "ebpf-sdk/examples",
        "manifests/examples",
    ] {
        let base = root.join(base);
        if base.is_dir() {
            walk(&base, &mut |p| {
                if p.file_name().is_some_and(|n| n == "Cargo.toml") {
                    manifests.push(p.to_path_buf());
                }
            })?;
        }
    }
    manifests.sort();
    for m in manifests {
        let text =
            std::fs::read_to_string(&m).with_context(|| format!("reading {}", m.display()))?;
        let doc: toml::Table =
            toml::from_str(&text).with_context(|| format!("parsing {}", m.display()))?;
        let Some(pkg) = doc.get("package").and_then(|p| p.as_table()) else {
            continue;
        };
        let is_ebpf = pkg
            .get("metadata")
            .and_then(|m| m.get("kiln"))
            .and_then(|k| k.get("ebpf"))
            .and_then(|e| e.as_bool())
            .unwrap_or(false);
        if !is_ebpf {
            continue;
        }
        let package = pkg
            .get("name")
            .and_then(|n| n.as_str())
            .with_context(|| format!("{}: [package] has no name", m.display()))?
            .to_string();
        let dir = m.parent().expect("a file has a parent").to_path_buf();
        add(package.clone(), Source::Rust { dir, package })?;
    }
    Ok(found)
}

/// Visits every file under `dir`, skipping build outputs, VCS data and hidden
/// directories.
fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading directory {}", dir.display()))?;
    for e in entries {
        let e = e?;
        let path = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        let ft = e.file_type()?;
        if ft.is_dir() {
            if name == "target" || name.starts_with('.') || name == "node_modules" {
                continue;
            }
            walk(&path, f)?;
        } else if ft.is_file() {
            f(&path);
        }
    }
    Ok(())
}

/// The files of a crate that can change its output.
fn rust_inputs(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let _ = walk(dir, &mut |p| v.push(p.to_path_buf()));
    // A .cargo/config.toml is hidden from walk but changes the build.
    let cfg = dir.join(".cargo/config.toml");
    if cfg.is_file() {
        v.push(cfg);
    }
    v.sort();
    v
}

/// Files listed in a make-style depfile written by `clang -MD`.
fn read_depfile(path: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let joined = text.replace("\\\n", " ");
    let Some((_, deps)) = joined.split_once(": ") else {
        return Vec::new();
    };
    deps.split_whitespace().map(PathBuf::from).collect()
}

/// A digest of the command and each input's path, size and mtime. A missing
/// input changes the digest too, so a deleted header forces a rebuild.
fn stamp_of(command_line: &str, inputs: &[PathBuf]) -> String {
    let mut h = Sha256::new();
    h.update(command_line.as_bytes());
    for p in inputs {
        h.update(p.to_string_lossy().as_bytes());
        match std::fs::metadata(p) {
            Ok(m) => {
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                h.update(m.len().to_le_bytes());
                h.update(mtime.to_le_bytes());
            }
            Err(_) => h.update(b"missing"),
        }
    }
    format!("{:x}", h.finalize())
}

/// Copies only when the bytes differ, so an unchanged object keeps its mtime
/// and whatever depends on it stays fresh.
fn copy_if_changed(from: &Path, to: &Path) -> anyhow::Result<()> {
    let new = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    write_if_changed(to, &new)
}

/// Writes `bytes` to `to` (atomically, by rename) unless it already holds them.
fn write_if_changed(to: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if std::fs::read(to).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let tmp = to.with_extension("o.tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, to).with_context(|| format!("renaming to {}", to.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depfile_parsing() {
        let dir = std::env::temp_dir().join(format!("kiln-depfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.join("x.d");
        std::fs::write(&d, "x.o: a.c /usr/include/b.h \\\n  c.h\n").unwrap();
        let deps = read_depfile(&d);
        assert_eq!(
            deps,
            vec![
                PathBuf::from("a.c"),
                "/usr/include/b.h".into(),
                "c.h".into()
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stamp_changes_with_command() {
        assert_ne!(stamp_of("a", &[]), stamp_of("b", &[]));
        assert_eq!(stamp_of("a", &[]), stamp_of("a", &[]));
    }
}
