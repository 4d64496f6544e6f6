//! `cargo xtask setup`: install or check everything Kiln needs to build and
//! test, idempotently.
//!
//! The quick check ([`ensure`]) looks at a handful of files and one
//! `dpkg-query` call, so every other xtask command can run it first and a
//! newcomer never needs to remember a separate setup step. Only when
//! something is missing does it reach for apt (one `apt-get update`, one
//! `apt-get install`) or build bpf-linker into the cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The bpf-linker release we build; bumping it rebuilds the cached copy.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian's LLVM that both rustc-web and bpf-linker are built on.
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// Debian packages Kiln needs, each with the reason we give when installing it.
const PACKAGES: &[(&str, &str)] = &[
    (
        "rustc-web",
        "Debian's rustc 1.96 (/usr/bin/rustc): compiles Rust eBPF on stable",
    ),
    (
        "cargo-web",
        "Debian's cargo (/usr/bin/cargo) matching rustc-web",
    ),
    (
        "libstd-rust-web-dev-bpf",
        "prebuilt core/alloc for bpfel-unknown-none",
    ),
    ("clang-22", "compiles the *.bpf.c programs"),
    ("llvm-22-dev", "LLVM 22 that bpf-linker links against"),
    ("lld-22", "needed by bpf-linker's LLVM build"),
    (
        "libpolly-22-dev",
        "needed to link bpf-linker against LLVM 22",
    ),
    (
        "bpftool",
        "generates vmlinux.h; reference loader in interop tests",
    ),
    ("libbpf-dev", "bpf_helpers.h and friends for the C programs"),
    ("gcc-aarch64-linux-gnu", "linker for aarch64 test binaries"),
    (
        "libc6-dev-arm64-cross",
        "aarch64 libc for static test binaries",
    ),
    ("qemu-system-x86", "x86_64 test VMs"),
    ("qemu-system-arm", "aarch64 test VMs"),
    ("cpio", "builds the test initramfs"),
    ("zlib1g-dev", "needed to link bpf-linker"),
    ("libzstd-dev", "needed to link bpf-linker"),
    ("iproute2", "ip/tc for network tests"),
];

/// Installed when apt can, but a failure only warns: nix only checks the
/// flake's syntax and nothing else depends on it.
const OPTIONAL_PACKAGES: &[(&str, &str)] = &[("nix-bin", "checks the Nix flake's syntax")];

/// Where the tools every other command needs live.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// Debian's rustc, the only one with a `core` for bpfel-unknown-none.
    pub rustc: PathBuf,
    /// Debian's cargo.
    pub cargo: PathBuf,
    /// The cached bpf-linker.
    pub bpf_linker: PathBuf,
    /// clang-22 for the C programs.
    pub clang: PathBuf,
    /// bpftool (vmlinux.h, interop tests).
    pub bpftool: PathBuf,
}

impl Toolchain {
    fn expected() -> Self {
        Self {
            rustc: "/usr/bin/rustc".into(),
            cargo: "/usr/bin/cargo".into(),
            bpf_linker: bpf_linker_root().join("bin/bpf-linker"),
            clang: "/usr/bin/clang-22".into(),
            bpftool: bpftool_path(),
        }
    }
}

fn bpftool_path() -> PathBuf {
    // Debian's bpftool package puts the binary in /usr/sbin.
    ["/usr/sbin/bpftool", "/usr/bin/bpftool"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| "/usr/sbin/bpftool".into())
}

#[derive(clap::Args)]
pub struct Args {
    /// Only check; print what is missing and exit non-zero if anything is.
    #[arg(long)]
    check: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.check {
        let missing = missing();
        if missing.is_empty() {
            println!("setup: everything is in place");
            return Ok(());
        }
        bail!("setup: missing:\n{}", describe(&missing));
    }
    let tc = install()?;
    // Debian's arm64 std for cross-built guest binaries (aarch64 VMs). Only
    // the explicit setup fetches it: other commands ask for it when they
    // cross-build, so a host-only workflow never downloads it.
    let sysroot = crate::cross::ensure_aarch64_sysroot()?;
    println!("setup: aarch64 sysroot at {}", sysroot.display());
    println!(
        "setup: ready (rustc {}, cargo {}, bpf-linker {}, clang {})",
        tc.rustc.display(),
        tc.cargo.display(),
        tc.bpf_linker.display(),
        tc.clang.display()
    );
    Ok(())
}

/// The quick check every xtask command runs first: returns the toolchain when
/// all is present (a few file checks and one dpkg-query), otherwise installs
/// what is missing (on Debian as root) or says exactly what to do.
pub fn ensure() -> anyhow::Result<Toolchain> {
    if missing().is_empty() {
        return Ok(Toolchain::expected());
    }
    install()
}

/// Something the machine lacks.
#[derive(Debug)]
enum Missing {
    Package(&'static str, &'static str),
    BpfLinker(String),
}

fn describe(missing: &[Missing]) -> String {
    missing
        .iter()
        .map(|m| match m {
            Missing::Package(p, why) => format!("  - Debian package {p}: {why}"),
            Missing::BpfLinker(why) => format!("  - bpf-linker {BPF_LINKER_VERSION}: {why}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn missing() -> Vec<Missing> {
    let mut out: Vec<Missing> = missing_packages(PACKAGES)
        .into_iter()
        .map(|(p, why)| Missing::Package(p, why))
        .collect();
    if let Some(why) = bpf_linker_problem() {
        out.push(Missing::BpfLinker(why));
    }
    out
}

/// Packages of `wanted` that dpkg does not report as installed.
fn missing_packages(wanted: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let names: Vec<&str> = wanted.iter().map(|(p, _)| *p).collect();
    // One call for all: `${db:Status-Abbrev}` is "ii " for an installed package;
    // unknown packages go to stderr and are simply absent from stdout.
    let output = Command::new("dpkg-query")
        .arg("-W")
        .arg("-f=${Package} ${db:Status-Abbrev}\n")
        .args(&names)
        .output();
    let installed: Vec<String> = match output {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| {
                let (name, status) = l.split_once(' ')?;
                status.starts_with("ii").then(|| name.to_string())
            })
            .collect(),
        // No dpkg at all: not Debian; everything counts as missing.
        Err(_) => Vec::new(),
    };
    wanted
        .iter()
        .filter(|(p, _)| !installed.iter().any(|i| i == p))
        .copied()
        .collect()
}

fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("kiln");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/kiln")
}

fn bpf_linker_root() -> PathBuf {
    cache_dir().join("bpf-linker")
}

/// Why the cached bpf-linker is unusable, or `None` when it is the pinned version.
fn bpf_linker_problem() -> Option<String> {
    let bin = bpf_linker_root().join("bin/bpf-linker");
    if !bin.is_file() {
        return Some(format!("not built yet at {}", bin.display()));
    }
    match Command::new(&bin).arg("--version").output() {
        Ok(o) if o.status.success() => {
            let v = String::from_utf8_lossy(&o.stdout);
            if v.split_whitespace().nth(1) == Some(BPF_LINKER_VERSION) {
                None
            } else {
                Some(format!(
                    "{} reports {:?}, want {BPF_LINKER_VERSION}",
                    bin.display(),
                    v.trim()
                ))
            }
        }
        Ok(o) => Some(format!("{} --version fails: {}", bin.display(), o.status)),
        Err(e) => Some(format!("{} does not run: {e}", bin.display())),
    }
}

fn is_debian() -> bool {
    std::fs::read_to_string("/etc/os-release")
        .is_ok_and(|s| s.lines().any(|l| l == "ID=debian" || l == "ID=\"debian\""))
}

fn is_root() -> bool {
    // /proc/self/status "Uid:\treal\teffective\t...": avoids a libc dependency.
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1).map(|e| e == "0"))
            .unwrap_or(false)
    })
}

fn install() -> anyhow::Result<Toolchain> {
    let packages = missing_packages(PACKAGES);
    if !packages.is_empty() {
        if !is_debian() || !is_root() {
            let what = if is_debian() {
                "not root"
            } else {
                "not Debian"
            };
            bail!(
                "setup: {what}, so I cannot install the missing packages:\n{}\n\
                 Install them yourself, or use the Nix flake: `nix develop`.",
                describe(
                    &packages
                        .iter()
                        .map(|(p, w)| Missing::Package(p, w))
                        .collect::<Vec<_>>()
                )
            );
        }
        println!("setup: installing missing Debian packages:");
        for (p, why) in &packages {
            println!("  - {p}: {why}");
        }
        apt_update()?;
        apt_install(&packages.iter().map(|(p, _)| *p).collect::<Vec<_>>())?;
        let optional = missing_packages(OPTIONAL_PACKAGES);
        if !optional.is_empty() {
            let names: Vec<&str> = optional.iter().map(|(p, _)| *p).collect();
            if let Err(e) = apt_install(&names) {
                println!(
                    "setup: warning: optional {names:?} not installed ({e:#}); only flake checks need them"
                );
            }
        }
    }
    if let Some(why) = bpf_linker_problem() {
        println!(
            "setup: building bpf-linker {BPF_LINKER_VERSION} ({why}); takes about 2-3 minutes"
        );
        build_bpf_linker()?;
        if let Some(why) = bpf_linker_problem() {
            bail!("setup: bpf-linker still unusable after building it: {why}");
        }
    }
    let tc = Toolchain::expected();
    for (what, p) in [
        ("rustc", &tc.rustc),
        ("cargo", &tc.cargo),
        ("clang", &tc.clang),
        ("bpftool", &tc.bpftool),
    ] {
        if !p.exists() {
            bail!(
                "setup: {what} is not at {} although its package is installed",
                p.display()
            );
        }
    }
    if !Path::new("/usr/lib/rustlib/bpfel-unknown-none/lib").is_dir() {
        bail!(
            "setup: /usr/lib/rustlib/bpfel-unknown-none/lib is missing (libstd-rust-web-dev-bpf)"
        );
    }
    Ok(tc)
}

fn apt_update() -> anyhow::Result<()> {
    let status = Command::new("apt-get")
        .args(["update", "-q"])
        .status()
        .context("running apt-get update")?;
    if !status.success() {
        bail!("apt-get update failed: {status}");
    }
    Ok(())
}

fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get install")?;
    if !status.success() {
        bail!("apt-get install {} failed: {status}", packages.join(" "));
    }
    Ok(())
}

fn build_bpf_linker() -> anyhow::Result<()> {
    // Any cargo can build it (it is a host program); prefer the one running
    // us, then PATH, then Debian's.
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| "cargo".into());
    let root = bpf_linker_root();
    let status = Command::new(&cargo)
        .args(["install", "bpf-linker", "--locked", "--force"])
        .args(["--version", BPF_LINKER_VERSION])
        .args(["--no-default-features", "--features", "llvm-22"])
        .arg("--root")
        .arg(&root)
        // bpf-linker's build script reads LLVM_PREFIX; without it, it finds
        // LLVM 14's llvm-config and fails at the final link.
        .env("LLVM_PREFIX", LLVM_PREFIX)
        // Our own target dir so the build does not fight the workspace's lock.
        .env("CARGO_TARGET_DIR", cache_dir().join("bpf-linker-build"))
        .status()
        .with_context(|| format!("running {} install bpf-linker", cargo.display()))?;
    if !status.success() {
        bail!("cargo install bpf-linker failed: {status}");
    }
    // The build tree is large and only useful for the next version bump.
    let _ = std::fs::remove_dir_all(cache_dir().join("bpf-linker-build"));
    Ok(())
}
