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
    (
        "xdp-tools",
        "xdp-loader: the libxdp side of the XDP dispatcher interop test",
    ),
];

/// Installed when apt can, but a failure only warns: nix only checks the
/// flake's syntax and nothing else depends on it.
const OPTIONAL_PACKAGES: &[(&str, &str)] = &[
    ("nix-bin", "checks the Nix flake's syntax"),
    (
        "podman",
        "runs the kiln image in `cargo xtask dist --podman`",
    ),
    (
        "python3-venv",
        "installs kubernetes-validate for `cargo xtask dist --check-deploy`",
    ),
];

/// Debian's Rust for eBPF: not needed when a nightly with rust-src builds `core`.
const DEBIAN_RUST_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "libstd-rust-web-dev-bpf"];

/// Where the tools every other command needs live.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// The rustc eBPF crates build with (Debian's, or the nightly's).
    pub rustc: PathBuf,
    /// The cargo that drives them.
    pub cargo: PathBuf,
    /// How they get a `core` for bpfel-unknown-none.
    pub rust_route: RustRoute,
    /// The cached bpf-linker (or the one on PATH under Nix).
    pub bpf_linker: PathBuf,
    /// clang for the C programs and kiln-ebpf's bitcode shim.
    pub clang: PathBuf,
    /// llvm-ar for kiln-ebpf's bitcode shim.
    pub llvm_ar: PathBuf,
    /// bpftool (vmlinux.h, interop tests).
    pub bpftool: PathBuf,
}

impl Toolchain {
    fn expected(rust_route: RustRoute) -> Self {
        let (rustc, cargo) = match &rust_route {
            RustRoute::Debian => ("/usr/bin/rustc".into(), "/usr/bin/cargo".into()),
            // rustup's proxies (for `cargo +nightly`) or the nightly on PATH.
            RustRoute::Nightly { .. } => (
                which("rustc").unwrap_or_else(|| "rustc".into()),
                which("cargo").unwrap_or_else(|| "cargo".into()),
            ),
        };
        Self {
            rustc,
            cargo,
            rust_route,
            bpf_linker: bpf_linker_root().join("bin/bpf-linker"),
            clang: "/usr/bin/clang-22".into(),
            llvm_ar: "/usr/bin/llvm-ar-22".into(),
            bpftool: bpftool_path(),
        }
    }

    /// Everything from PATH (the Nix dev shell, or any non-Debian machine).
    fn from_path(rust_route: RustRoute) -> anyhow::Result<Self> {
        let find = |names: &[&str]| -> anyhow::Result<PathBuf> {
            names.iter().find_map(|n| which(n)).with_context(|| {
                format!(
                    "setup: none of {names:?} is on PATH (inside `nix develop` the flake provides them)"
                )
            })
        };
        Ok(Self {
            rustc: find(&["rustc"])?,
            cargo: find(&["cargo"])?,
            rust_route,
            bpf_linker: find(&["bpf-linker"])?,
            clang: find(&["clang-22", "clang"])?,
            llvm_ar: find(&["llvm-ar-22", "llvm-ar"])?,
            bpftool: find(&["bpftool"])?,
        })
    }
}

/// How Rust eBPF crates get a `core` for `bpfel-unknown-none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RustRoute {
    /// Debian's stable rustc and its prebuilt `core` (libstd-rust-web-dev-bpf):
    /// no nightly anywhere. The default wherever it is installed or installable.
    Debian,
    /// A nightly rustc with rust-src compiles `core` itself
    /// (`cargo build -Z build-std=core`): through rustup's `cargo +<toolchain>`
    /// when `toolchain` is set, else the `cargo` on PATH (the Nix flake's).
    Nightly { toolchain: Option<String> },
}

/// What the machine offers for Rust eBPF, probed lazily.
struct RustProbe {
    /// `KILN_EBPF_RUST=debian|nightly`.
    forced: Option<String>,
    debian: bool,
    path_nightly: fn() -> bool,
    rustup_nightly: fn() -> bool,
    /// Debian packages can be installed here (Debian, root, not the Nix shell).
    can_install_debian: bool,
}

/// Picks the route: forced by `KILN_EBPF_RUST`, else Debian's when present,
/// else a nightly with rust-src (PATH, then rustup's `nightly`), else Debian's
/// to be installed.
fn choose_route(p: &RustProbe) -> anyhow::Result<RustRoute> {
    let nightly = || {
        if (p.path_nightly)() {
            Some(RustRoute::Nightly { toolchain: None })
        } else if (p.rustup_nightly)() {
            Some(RustRoute::Nightly {
                toolchain: Some("nightly".into()),
            })
        } else {
            None
        }
    };
    match p.forced.as_deref() {
        Some("debian") => return Ok(RustRoute::Debian),
        Some("nightly") => {
            return nightly().context(
                "KILN_EBPF_RUST=nightly, but neither the rustc on PATH nor rustup's `nightly` \
                 is a nightly with the rust-src component (`rustup component add rust-src \
                 --toolchain nightly`, or `nix develop`)",
            );
        }
        Some(other) => bail!("KILN_EBPF_RUST={other:?}: expected `debian` or `nightly`"),
        None => {}
    }
    if p.debian {
        return Ok(RustRoute::Debian);
    }
    if let Some(route) = nightly() {
        return Ok(route);
    }
    if p.can_install_debian {
        return Ok(RustRoute::Debian);
    }
    bail!(
        "setup: no Rust that can build for bpfel-unknown-none: install Debian's rustc-web, \
         cargo-web and libstd-rust-web-dev-bpf, or a nightly with rust-src (`nix develop`)"
    )
}

fn is_nix_shell() -> bool {
    std::env::var("KILN_TOOLCHAIN").is_ok_and(|v| v == "nix")
}

fn debian_rust_present() -> bool {
    Path::new("/usr/bin/rustc").is_file()
        && Path::new("/usr/lib/rustlib/bpfel-unknown-none/lib").is_dir()
}

/// Whether `rustc` (with `args` before the subcommand, e.g. `run nightly`
/// through rustup) is a nightly whose sysroot has rust-src.
fn nightly_with_src(program: &str, prefix: &[&str]) -> bool {
    let run = |extra: &[&str]| {
        Command::new(program)
            .args(prefix)
            .args(extra)
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTC")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(version) = run(&["-vV"]) else {
        return false;
    };
    if !version.contains("-nightly") && !version.contains("-dev") {
        return false;
    }
    run(&["--print", "sysroot"]).is_some_and(|sysroot| {
        Path::new(&sysroot)
            .join("lib/rustlib/src/rust/library/core/Cargo.toml")
            .is_file()
    })
}

/// The route for this machine (see [`choose_route`]).
pub fn rust_route() -> anyhow::Result<RustRoute> {
    choose_route(&RustProbe {
        forced: std::env::var("KILN_EBPF_RUST")
            .ok()
            .filter(|v| !v.is_empty()),
        debian: debian_rust_present(),
        path_nightly: || nightly_with_src("rustc", &[]),
        rustup_nightly: || nightly_with_src("rustup", &["run", "nightly", "rustc"]),
        can_install_debian: is_debian() && is_root() && !is_nix_shell(),
    })
}

/// The first executable called `name` on PATH.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
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
        let route = rust_route()?;
        if is_nix_shell() || !is_debian() {
            let tc = Toolchain::from_path(route)?;
            println!("setup: everything is on PATH ({:?})", tc.rust_route);
            return Ok(());
        }
        let missing = missing(&route);
        if missing.is_empty() {
            println!("setup: everything is in place ({route:?})");
            return Ok(());
        }
        bail!("setup: missing:\n{}", describe(&missing));
    }
    let route = rust_route()?;
    let tc = if is_nix_shell() || !is_debian() {
        Toolchain::from_path(route)?
    } else {
        install(route)?
    };
    // Debian's arm64 std for cross-built guest binaries (aarch64 VMs). Only
    // the explicit setup fetches it: other commands ask for it when they
    // cross-build, so a host-only workflow never downloads it.
    let sysroot = crate::cross::ensure_aarch64_sysroot()?;
    println!("setup: aarch64 sysroot at {}", sysroot.display());
    println!(
        "setup: ready ({:?}: rustc {}, cargo {}, bpf-linker {}, clang {})",
        tc.rust_route,
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
    let route = rust_route()?;
    if is_nix_shell() || !is_debian() {
        return Toolchain::from_path(route);
    }
    if missing(&route).is_empty() {
        return Ok(Toolchain::expected(route));
    }
    install(route)
}

/// The Debian packages this route needs.
fn wanted_packages(route: &RustRoute) -> Vec<(&'static str, &'static str)> {
    PACKAGES
        .iter()
        .filter(|(p, _)| *route == RustRoute::Debian || !DEBIAN_RUST_PACKAGES.contains(p))
        .copied()
        .collect()
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

fn missing(route: &RustRoute) -> Vec<Missing> {
    let mut out: Vec<Missing> = missing_packages(&wanted_packages(route))
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

pub fn cache_dir() -> PathBuf {
    // kiln-build looks for bpf-linker here too, from users' build scripts.
    kiln_build::cache_dir()
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

fn install(route: RustRoute) -> anyhow::Result<Toolchain> {
    let packages = missing_packages(&wanted_packages(&route));
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
    let tc = Toolchain::expected(route);
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
    if tc.rust_route == RustRoute::Debian
        && !Path::new("/usr/lib/rustlib/bpfel-unknown-none/lib").is_dir()
    {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(forced: Option<&str>, debian: bool, path: bool, rustup: bool) -> RustProbe {
        fn yes() -> bool {
            true
        }
        fn no() -> bool {
            false
        }
        RustProbe {
            forced: forced.map(str::to_owned),
            debian,
            path_nightly: if path { yes } else { no },
            rustup_nightly: if rustup { yes } else { no },
            can_install_debian: false,
        }
    }

    #[test]
    fn debian_wins_when_present() {
        let r = choose_route(&probe(None, true, true, true)).unwrap();
        assert_eq!(r, RustRoute::Debian);
    }

    #[test]
    fn nightly_with_src_when_debian_is_absent() {
        let r = choose_route(&probe(None, false, true, true)).unwrap();
        assert_eq!(r, RustRoute::Nightly { toolchain: None });
        let r = choose_route(&probe(None, false, false, true)).unwrap();
        assert_eq!(
            r,
            RustRoute::Nightly {
                toolchain: Some("nightly".into())
            }
        );
        assert!(choose_route(&probe(None, false, false, false)).is_err());
        let mut installable = probe(None, false, false, false);
        installable.can_install_debian = true;
        assert_eq!(choose_route(&installable).unwrap(), RustRoute::Debian);
    }

    #[test]
    fn forced_routes() {
        let r = choose_route(&probe(Some("nightly"), true, false, true)).unwrap();
        assert!(matches!(r, RustRoute::Nightly { .. }));
        assert!(choose_route(&probe(Some("nightly"), true, false, false)).is_err());
        assert_eq!(
            choose_route(&probe(Some("debian"), false, true, true)).unwrap(),
            RustRoute::Debian
        );
        assert!(choose_route(&probe(Some("beta"), true, true, true)).is_err());
    }

    #[test]
    fn nightly_route_needs_no_debian_rust() {
        let names: Vec<&str> = wanted_packages(&RustRoute::Nightly { toolchain: None })
            .iter()
            .map(|(p, _)| *p)
            .collect();
        assert!(!names.contains(&"rustc-web") && names.contains(&"clang-22"));
        assert!(
            wanted_packages(&RustRoute::Debian)
                .iter()
                .any(|(p, _)| *p == "rustc-web")
        );
    }
}
