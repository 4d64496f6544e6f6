//! Static builds of the guest's userspace (test binaries, `kiln`, `kiln-init`)
//! for x86_64 and aarch64.
//!
//! Both arches build with Debian's `/usr/bin/rustc` (rustup here has no
//! aarch64 std): for aarch64 its std comes from `libstd-rust-web-dev:arm64`,
//! fetched through the isolated apt into a sysroot of our own. Everything is
//! linked with `+crt-static`, so the binaries run in a bare initramfs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::apt::{self, IsolatedApt};
use crate::kernels::repo_root;
use crate::vm::Arch;

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";

/// `x.y.z` of Debian's rustc.
fn rustc_version() -> Result<String> {
    let out = Command::new(DEBIAN_RUSTC)
        .arg("-V")
        .output()
        .with_context(|| {
            format!("running {DEBIAN_RUSTC} -V (is rustc-web installed? `cargo xtask setup`)")
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .map(str::to_owned)
        .with_context(|| format!("unexpected `rustc -V` output: {text}"))
}

/// A sysroot whose `lib/rustlib/aarch64-unknown-linux-gnu` holds Debian's
/// arm64 std for the same rustc as `/usr/bin/rustc`:
/// `~/.cache/kiln/sysroot-aarch64`. Downloads it on first use.
pub fn ensure_aarch64_sysroot() -> Result<PathBuf> {
    ensure_sysroot(&Sysroot {
        name: "aarch64",
        triple: "aarch64-unknown-linux-gnu",
        deb_arch: "arm64",
        suite: "bookworm",
    })
}

/// Where Debian publishes the std of one architecture for this rustc.
pub struct Sysroot {
    /// The cache directory's suffix (`~/.cache/kiln/sysroot-NAME`).
    pub name: &'static str,
    /// Rust's target triple.
    pub triple: &'static str,
    /// Debian's architecture name.
    pub deb_arch: &'static str,
    /// The suite (its `-security` suite is searched too).
    pub suite: &'static str,
}

/// 32-bit arm: trixie-security carries `libstd-rust-web-dev:armhf` of the
/// same upstream version as the host's rustc-web.
pub const ARMHF: Sysroot = Sysroot {
    name: "armv7",
    triple: "armv7-unknown-linux-gnueabihf",
    deb_arch: "armhf",
    suite: "trixie",
};

/// A sysroot whose `lib/rustlib/TRIPLE` holds Debian's std of `spec`'s
/// architecture for the same rustc as `/usr/bin/rustc`. Downloads it on
/// first use.
pub fn ensure_sysroot(spec: &Sysroot) -> Result<PathBuf> {
    let Sysroot {
        name,
        triple,
        deb_arch,
        suite,
    } = *spec;
    let version = rustc_version()?;
    let root = apt::cache_root().join(format!("sysroot-{name}"));
    let stamp = root.join(".kiln-rustc-version");
    let target_lib = root.join(format!("lib/rustlib/{triple}/lib"));
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(version.as_str())
        && target_lib.is_dir()
    {
        return Ok(root);
    }
    eprintln!("sysroot: fetching Debian's {deb_arch} std for rustc {version}");
    let apt = IsolatedApt::new(&[suite], true, deb_arch)?;
    apt.update(false)?;
    let mut versions = apt.show("libstd-rust-web-dev")?;
    // Debian versions look like 1.96.0+dfsg1-1~deb12u1: match the upstream part.
    versions.retain(|p| {
        p.version.starts_with(&format!("{version}+"))
            || p.version.starts_with(&format!("{version}-"))
    });
    versions.sort_by(|a, b| apt::compare_versions(&b.version, &a.version));
    let Some(pkg) = versions.first() else {
        bail!("no libstd-rust-web-dev:{deb_arch} for rustc {version} in {suite}/{suite}-security");
    };
    let deb = apt.download(pkg, &apt::cache_root().join("debs"))?;
    if apt::sha256_file(&deb)? != pkg.sha256 {
        bail!("{}: sha256 differs from the index", deb.display());
    }
    let _ = std::fs::remove_dir_all(&root);
    let extracted = root.join("deb");
    apt::extract_deb(&deb, &extracted)?;
    let src = extracted.join(format!("usr/lib/rustlib/{triple}"));
    if !src.join("lib").is_dir() {
        bail!("{} has no usr/lib/rustlib/{triple}/lib", deb.display());
    }
    std::fs::create_dir_all(root.join("lib/rustlib"))?;
    std::os::unix::fs::symlink(&src, root.join(format!("lib/rustlib/{triple}")))?;
    std::fs::write(&stamp, &version)?;
    Ok(root)
}

/// `cargo check` of the loader and `kiln` for 32-bit arm (armv7 with
/// Debian's armhf std): proves they compile where `usize` is 32 bits.
pub fn check_32bit() -> Result<()> {
    let sysroot = ensure_sysroot(&ARMHF)?;
    let mut c = Command::new(DEBIAN_CARGO);
    c.current_dir(repo_root())
        .env("RUSTC", DEBIAN_RUSTC)
        .env("RUSTFLAGS", format!("--sysroot {}", sysroot.display()))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env("CARGO_TARGET_DIR", target_dir().join("check-32bit"))
        .args(["check", "--target", ARMHF.triple])
        .args(["-p", "kiln-obj", "-p", "kiln-loader", "-p", "kiln-manifest"]);
    eprintln!("+ {}", kiln_build::show(&c));
    let status = c
        .status()
        .with_context(|| format!("running {DEBIAN_CARGO}"))?;
    if !status.success() {
        bail!("cargo check for {} failed (see above)", ARMHF.triple);
    }
    Ok(())
}

/// One integration-test executable.
#[derive(Debug, Clone)]
pub struct TestBinary {
    /// `<package>-<target name>`, unique in a run.
    pub name: String,
    pub path: PathBuf,
}

/// What the guest runs.
#[derive(Debug, Clone)]
pub struct GuestBinaries {
    pub init: PathBuf,
    pub kiln: Option<PathBuf>,
    /// `kiln-grid`, the guest's half of `cargo xtask apply --matrix`.
    pub grid: Option<PathBuf>,
    pub tests: Vec<TestBinary>,
    /// Deliberately bad binaries (`--selftest`), by name.
    pub selftests: Vec<TestBinary>,
}

/// Packages whose integration tests run in the VMs.
pub const TEST_PACKAGES: &[&str] = &[
    "kiln-testkit",
    "kiln-obj",
    "kiln-loader",
    "kiln-manifest",
    "kiln-ebpf",
    // EbpfLogger and the exec-tracer example, on every kernel of the matrix.
    "kiln-log",
];

pub fn target_dir() -> PathBuf {
    repo_root().join("target/vm-cross")
}

fn cargo(arch: Arch) -> Result<Command> {
    let mut c = Command::new(DEBIAN_CARGO);
    let mut flags = String::from("-C target-feature=+crt-static");
    if arch == Arch::Aarch64 {
        let sysroot = ensure_aarch64_sysroot()?;
        flags = format!("--sysroot {} {flags}", sysroot.display());
        c.env(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
            "aarch64-linux-gnu-gcc",
        );
    }
    c.current_dir(repo_root())
        .env("RUSTC", DEBIAN_RUSTC)
        .env("RUSTFLAGS", flags)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env("CARGO_TARGET_DIR", target_dir())
        // Small binaries make a small initramfs; symbols stay for backtraces.
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .env("CARGO_PROFILE_TEST_DEBUG", "0")
        // std's prebuilt debug info is most of a binary's size; the symbol
        // table stays, so backtraces still name functions.
        .env("CARGO_PROFILE_DEV_STRIP", "debuginfo")
        .env("CARGO_PROFILE_TEST_STRIP", "debuginfo");
    Ok(c)
}

fn target_triple(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64-unknown-linux-gnu",
        Arch::Aarch64 => "aarch64-unknown-linux-gnu",
    }
}

/// Runs a cargo command with JSON messages; returns (kind, target name,
/// package, is test, executable) of each built executable.
fn run_json(mut c: Command, what: &str) -> Result<Vec<(String, String, bool, PathBuf)>> {
    c.arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let out = c
        .spawn()
        .with_context(|| format!("running {DEBIAN_CARGO} for {what}"))?
        .wait_with_output()?;
    if !out.status.success() {
        bail!("building {what} failed (see the compiler output above)");
    }
    let mut exes = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(exe) = v["executable"].as_str() else {
            continue;
        };
        let name = v["target"]["name"].as_str().unwrap_or_default().to_owned();
        let pkg = package_name(v["package_id"].as_str().unwrap_or_default());
        let is_test = v["profile"]["test"].as_bool().unwrap_or(false);
        exes.push((pkg, name, is_test, PathBuf::from(exe)));
    }
    Ok(exes)
}

/// Builds `kiln-init` (with the selftest binaries) and `kiln` for `arch`, statically.
pub fn build_guest_bins(arch: Arch) -> Result<GuestBinaries> {
    let triple = target_triple(arch);
    eprintln!("building kiln-init for {arch} (static, {triple}) ...");
    let mut c = cargo(arch)?;
    c.args(["build", "--target", triple, "-p", "kiln-init", "--bins"]);
    let bins = run_json(c, &format!("kiln-init for {arch}"))?;
    let find = |n: &str| bins.iter().find(|b| b.1 == n).map(|b| b.3.clone());
    let init = find("kiln-init").context("cargo built no kiln-init")?;
    // `kiln` is built apart: while it does not compile, the tests still run
    // (a guest without /bin/kiln only fails what uses it).
    let kiln = match build_kiln(arch, false) {
        Ok(path) => Some(path),
        Err(e) => {
            eprintln!("!!! {e:#}: the guest will have no /bin/kiln");
            None
        }
    };
    let selftests = bins
        .iter()
        .filter(|b| b.1.starts_with("kiln-selftest-"))
        .map(|b| TestBinary {
            name: b.1.clone(),
            path: b.3.clone(),
        })
        .collect();
    Ok(GuestBinaries {
        init,
        kiln,
        grid: find("kiln-grid"),
        tests: Vec::new(),
        selftests,
    })
}

/// The package name in a cargo package id: `path+file:///.../dir#name@ver`,
/// `path+file:///.../name#ver` when the directory is named like the package,
/// or `name ver (...)` in old cargo.
fn package_name(id: &str) -> String {
    match id.rsplit_once('#') {
        Some((_, r)) if r.contains('@') => r.split('@').next().unwrap_or(r),
        Some((url, _)) => url.rsplit('/').next().unwrap_or(url),
        None => id.split(' ').next().unwrap_or(id),
    }
    .to_owned()
}

/// Integration tests that built, and the packages whose tests did not.
pub struct BuiltTests {
    pub tests: Vec<TestBinary>,
    pub failed: Vec<String>,
}

/// Builds the integration tests of [`TEST_PACKAGES`] for `arch`, statically,
/// one package at a time: a package that does not compile is reported, and
/// the others still run.
pub fn build_guest_tests(arch: Arch) -> Result<BuiltTests> {
    let triple = target_triple(arch);
    let mut out = BuiltTests {
        tests: Vec::new(),
        failed: Vec::new(),
    };
    for p in TEST_PACKAGES {
        if !has_integration_tests(p) {
            continue;
        }
        eprintln!("building {p} integration tests for {arch} (static, {triple}) ...");
        let targets = runnable_test_targets(p)?;
        if targets.is_empty() {
            continue;
        }
        let mut c = cargo(arch)?;
        c.args(["test", "--no-run", "--target", triple, "-p", p]);
        for t in &targets {
            c.args(["--test", t]);
        }
        match run_json(c, &format!("{p} integration tests for {arch}")) {
            Ok(built) => out.tests.extend(built.into_iter().filter(|t| t.2).map(
                |(pkg, name, _, path)| TestBinary {
                    name: format!("{pkg}-{name}"),
                    path,
                },
            )),
            Err(e) => {
                eprintln!("!!! {e:#}");
                out.failed.push(format!("{p} ({arch})"));
            }
        }
    }
    out.tests.sort_by(|a, b| a.name.cmp(&b.name));
    out.tests.dedup_by(|a, b| a.name == b.name);
    Ok(out)
}

/// Integration tests about the host's toolchain, not the kernel: they build
/// eBPF programs from the repository's sources with rustc and bpf-linker,
/// which the guest does not carry (and should not: nothing in them differs
/// by kernel). They run in the host phase only, so a VM's grid holds no skip
/// for them.
const HOST_TOOLCHAIN_TESTS: &[(&str, &str)] = &[("kiln-ebpf", "build_ebpf")];

/// The integration-test targets of workspace package `name` that need no
/// optional feature (cargo refuses `--test X` when X has unmet
/// `required-features`; those run on the host with their features).
fn runnable_test_targets(name: &str) -> Result<Vec<String>> {
    let out = Command::new(DEBIAN_CARGO)
        .current_dir(repo_root())
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .env("RUSTC", DEBIAN_RUSTC)
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut names = Vec::new();
    for pkg in meta["packages"].as_array().into_iter().flatten() {
        if pkg["name"] != name {
            continue;
        }
        for t in pkg["targets"].as_array().into_iter().flatten() {
            let is_test = t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "test"));
            let needs_features = t["required-features"]
                .as_array()
                .is_some_and(|f| !f.is_empty());
            let tname = t["name"].as_str().unwrap_or_default().to_owned();
            if is_test && HOST_TOOLCHAIN_TESTS.contains(&(name, tname.as_str())) {
                eprintln!(
                    "note: {name} test `{tname}` tests the host's toolchain; it runs on the host only"
                );
            } else if is_test && needs_features {
                eprintln!(
                    "note: {name} test `{tname}` needs optional features; it runs on the host only"
                );
            } else if is_test {
                names.push(tname);
            }
        }
    }
    Ok(names)
}

/// Whether the workspace package `name` has a `tests/*.rs`.
fn has_integration_tests(name: &str) -> bool {
    let dir = match name {
        "kiln-testkit" => "test-distro/testkit",
        "kiln-obj" => "obj",
        "kiln-loader" => "loader",
        "kiln-manifest" => "manifests",
        _ => return true,
    };
    std::fs::read_dir(repo_root().join(dir).join("tests")).is_ok_and(|rd| {
        rd.filter_map(|e| e.ok()).any(|e| {
            let p = e.path();
            p.extension().is_some_and(|x| x == "rs") || p.join("main.rs").is_file()
        })
    })
}

/// Whether `path` is a static executable (no ELF interpreter), so it can run
/// in the bare initramfs.
pub fn is_static(path: &Path) -> Result<bool> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file =
        object::File::parse(&*data).with_context(|| format!("parsing {}", path.display()))?;
    use object::Object;
    Ok(file.section_by_name(".interp").is_none())
}

/// Builds `kiln` for `arch`, statically (`release`: the release profile,
/// stripped of debug info), and returns the binary.
pub fn build_kiln(arch: Arch, release: bool) -> Result<PathBuf> {
    let triple = target_triple(arch);
    eprintln!(
        "building kiln for {arch} (static, {triple}, {}) ...",
        if release { "release" } else { "dev" }
    );
    let mut c = cargo(arch)?;
    c.args([
        "build",
        "--target",
        triple,
        "-p",
        "kiln-manifest",
        "--bin",
        "kiln",
    ]);
    if release {
        c.arg("--release")
            .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
            .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    }
    run_json(c, &format!("kiln for {arch}"))?
        .into_iter()
        .find(|b| b.1 == "kiln")
        .map(|b| b.3)
        .context("cargo built no kiln")
}

#[cfg(test)]
mod package_name_tests {
    #[test]
    fn package_ids() {
        use super::package_name;
        assert_eq!(
            package_name("path+file:///work/main/loader#kiln-loader@0.1.0"),
            "kiln-loader"
        );
        assert_eq!(
            package_name("path+file:///work/main/ebpf-sdk/kiln-ebpf#0.1.0"),
            "kiln-ebpf"
        );
        assert_eq!(
            package_name("kiln-obj 0.1.0 (path+file:///work/main/obj)"),
            "kiln-obj"
        );
    }
}
