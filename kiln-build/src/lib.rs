//! `kiln-build`: compile an eBPF crate of your own workspace from your
//! userspace crate's `build.rs`, and embed the object in your binary.
//!
//! ```no_run
//! // build.rs of the userspace crate
//! fn main() -> Result<(), kiln_build::Error> {
//!     kiln_build::EbpfBuild::new("../hello-ebpf").build()?;
//!     Ok(())
//! }
//! ```
//!
//! ```ignore
//! // src/main.rs: the object, 8-byte aligned, named after the eBPF package
//! let ebpf = kiln_loader::load(kiln_build::include_object!("hello-ebpf"))?;
//! ```
//!
//! The eBPF crate builds for `bpfel-unknown-none` with a stable compiler:
//! Debian's `rustc` (package `rustc-web`) and its prebuilt `core` for BPF
//! (`libstd-rust-web-dev-bpf`), linked by `bpf-linker`. No nightly, no
//! `-Z build-std`. The flags and profile every eBPF crate needs (BTF for
//! `.maps`, full debug info for source lines in verifier logs, no overflow
//! checks, `panic = "abort"`, LTO) come from here, so a crate's own
//! Cargo.toml does not have to repeat them; `cargo xtask build-ebpf` uses the
//! same [`CargoBuild`].
//!
//! [`template`] writes a new project (an eBPF crate, a userspace crate and a
//! manifest): `kiln new NAME`.
#![deny(missing_docs)]

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub mod template;

/// The target eBPF crates build for (little-endian BPF).
pub const TARGET: &str = "bpfel-unknown-none";

/// The big-endian eBPF target, for kernels of big-endian machines (s390x).
/// Debian's `libstd-rust-web-dev-bpf` ships a `core` for it too.
pub const TARGET_BIG_ENDIAN: &str = "bpfeb-unknown-none";

/// Flags every eBPF crate is compiled with. `--btf` makes bpf-linker emit
/// `.BTF`/`.BTF.ext` (BTF-defined maps in `.maps` need it: without it a load
/// fails with "no DATASEC '.maps' in .BTF"); full debug info is what BTF and
/// the source lines of verifier logs are made from. `target-cpu=v3` enables
/// 32-bit jumps and ALU ops (kernel 5.1 and later).
pub const RUSTFLAGS: &[&str] = &["-C link-arg=--btf", "-C target-cpu=v3", "-C debuginfo=2"];

/// The release profile every eBPF crate gets, whatever its Cargo.toml says.
/// Overflow checks and debug assertions leave core's panic paths in
/// `.text.unlikely.` as static functions that loaders reject; a panic cannot
/// unwind in the kernel.
pub const PROFILE: &[(&str, &str)] = &[
    ("panic", "\"abort\""),
    ("overflow-checks", "false"),
    ("debug-assertions", "false"),
    ("debug", "2"),
    ("lto", "true"),
    ("codegen-units", "1"),
    ("opt-level", "3"),
    ("incremental", "false"),
];

/// Errors of discovering the toolchain and building an eBPF crate. Each says
/// what to install or which crate and file is at fault.
#[derive(thiserror::Error)]
pub enum Error {
    /// No rustc with a prebuilt `core` for [`TARGET`].
    #[error(
        "no Rust compiler with a `core` for {TARGET} (tried {}): install Debian's \
         `apt-get install rustc-web cargo-web libstd-rust-web-dev-bpf` (Debian 12 and later), \
         or set KILN_EBPF_RUSTC to a rustc whose sysroot has lib/rustlib/{TARGET}",
        tried.display()
    )]
    NoCompiler {
        /// Where it looked.
        tried: PathBuf,
    },
    /// No bpf-linker.
    #[error(
        "bpf-linker not found (looked at {}): install it with `apt-get install llvm-22-dev \
         libpolly-22-dev` and `LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker \
         --no-default-features --features llvm-22`, or run `cargo xtask setup` in a Kiln \
         checkout, or set KILN_BPF_LINKER to its path",
        looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NoLinker {
        /// Where it looked.
        looked: Vec<PathBuf>,
    },
    /// A build-script variable cargo always sets is missing.
    #[error("{0} is not set: kiln_build::EbpfBuild runs from a build script (build.rs)")]
    NotInBuildScript(&'static str),
    /// A file could not be read, written or copied.
    #[error("{}: {what}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The system's answer.
        #[source]
        source: std::io::Error,
    },
    /// The eBPF crate's Cargo.toml lacks what the build needs.
    #[error("{}: {what}", path.display())]
    Manifest {
        /// The Cargo.toml.
        path: PathBuf,
        /// What is missing.
        what: String,
    },
    /// A tool could not be started.
    #[error("cannot run {command}")]
    Spawn {
        /// The command line.
        command: String,
        /// The system's answer.
        #[source]
        source: std::io::Error,
    },
    /// cargo failed on the eBPF crate; its diagnostics are on stderr.
    #[error(
        "eBPF crate {package} ({}) failed to build ({status}); the compiler's messages are above. \
         Command: {command}",
        dir.display()
    )]
    Build {
        /// The crate.
        package: String,
        /// Its directory.
        dir: PathBuf,
        /// cargo's exit status.
        status: std::process::ExitStatus,
        /// The command line.
        command: String,
    },
    /// cargo succeeded without producing the object.
    #[error(
        "eBPF crate {package}: cargo succeeded but {} is missing; is it a `[[bin]]` crate with #![no_main]?",
        artifact.display()
    )]
    NoArtifact {
        /// The crate.
        package: String,
        /// Where the object should be.
        artifact: PathBuf,
    },
}

/// A build script's `main` returning `Result<(), Error>` prints the error's
/// Debug form: make that the message and its causes, not a struct dump.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")?;
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

/// How the compiler gets a `core` for [`TARGET`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Core {
    /// A stable rustc whose sysroot ships `core` for BPF (Debian's).
    Prebuilt {
        /// That rustc.
        rustc: PathBuf,
    },
    /// A nightly rustc with rust-src builds `core` itself
    /// (`-Z build-std=core`): through rustup's `cargo +TOOLCHAIN` when
    /// `toolchain` is set, else the `cargo` given. kiln-ebpf's bitcode shim
    /// then needs `clang` and `llvm_ar` by path.
    BuildStd {
        /// The rustup toolchain (`nightly`), if any.
        toolchain: Option<String>,
        /// clang, for kiln-ebpf's C shim.
        clang: PathBuf,
        /// llvm-ar, for kiln-ebpf's C shim.
        llvm_ar: PathBuf,
    },
}

/// The tools an eBPF crate builds with.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// The cargo that drives the build.
    pub cargo: PathBuf,
    /// Where `core` comes from.
    pub core: Core,
    /// bpf-linker, the crate's linker.
    pub bpf_linker: PathBuf,
}

impl Toolchain {
    /// Finds the stable route: `KILN_EBPF_RUSTC` or `/usr/bin/rustc` with a
    /// `core` for [`TARGET`] in its sysroot, the `cargo` beside it, and
    /// bpf-linker from `KILN_BPF_LINKER`, Kiln's setup cache
    /// (`~/.cache/kiln/bpf-linker`), `PATH` or `~/.cargo/bin`.
    pub fn discover() -> Result<Toolchain, Error> {
        let rustc = std::env::var_os("KILN_EBPF_RUSTC")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/rustc"));
        if !has_bpf_core(&rustc) {
            return Err(Error::NoCompiler { tried: rustc });
        }
        let sibling = rustc.with_file_name("cargo");
        let cargo = match std::env::var_os("KILN_EBPF_CARGO") {
            Some(c) => PathBuf::from(c),
            None if sibling.is_file() => sibling,
            // The outer cargo drives any rustc given as RUSTC.
            None => std::env::var_os("CARGO")
                .map(PathBuf::from)
                .unwrap_or_else(|| "cargo".into()),
        };
        let bpf_linker = find_bpf_linker()?;
        Ok(Toolchain {
            cargo,
            core: Core::Prebuilt { rustc },
            bpf_linker,
        })
    }
}

/// Whether `rustc`'s sysroot has a `core` for [`TARGET`].
fn has_bpf_core(rustc: &Path) -> bool {
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    if !out.status.success() {
        return false;
    }
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .join("lib")
        .is_dir()
}

/// Kiln's cache directory, where `cargo xtask setup` installs bpf-linker.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("kiln");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/kiln")
}

fn find_bpf_linker() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("KILN_BPF_LINKER") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::NoLinker { looked: vec![p] })
        };
    }
    let mut looked = vec![cache_dir().join("bpf-linker/bin/bpf-linker")];
    if let Some(path) = std::env::var_os("PATH") {
        looked.extend(std::env::split_paths(&path).map(|d| d.join("bpf-linker")));
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo")
        });
    looked.push(cargo_home.join("bin/bpf-linker"));
    match looked.iter().find(|p| p.is_file()) {
        Some(p) => Ok(p.clone()),
        None => Err(Error::NoLinker { looked }),
    }
}

/// One `cargo build` of an eBPF crate: the command with Kiln's flags and
/// profile. `cargo xtask build-ebpf` and [`EbpfBuild`] both run it.
#[derive(Debug, Clone)]
pub struct CargoBuild<'a> {
    /// The tools to build with.
    pub toolchain: &'a Toolchain,
    /// The directory holding the crate's Cargo.toml.
    pub crate_dir: &'a Path,
    /// cargo's `--target-dir`.
    pub target_dir: &'a Path,
    /// Flags after [`RUSTFLAGS`] (path remapping, `--cfg`s).
    pub extra_rustflags: Vec<String>,
    /// Let cargo print its progress (else `--quiet`).
    pub verbose: bool,
    /// [`TARGET`], or [`TARGET_BIG_ENDIAN`] for a big-endian kernel.
    pub target: &'static str,
}

impl CargoBuild<'_> {
    /// Every rustc flag, space-separated.
    pub fn rustflags(&self) -> String {
        let mut flags: Vec<&str> = RUSTFLAGS.to_vec();
        flags.extend(self.extra_rustflags.iter().map(String::as_str));
        flags.join(" ")
    }

    /// The `cargo build` command, ready to run.
    pub fn command(&self) -> Command {
        let tc = self.toolchain;
        let mut cmd = Command::new(&tc.cargo);
        if let Core::BuildStd {
            toolchain: Some(t), ..
        } = &tc.core
        {
            cmd.arg(format!("+{t}"));
        }
        cmd.arg("build");
        if let Core::BuildStd { .. } = &tc.core {
            // Not compiler-builtins-mem: kiln-ebpf defines memset & co itself.
            cmd.args(["-Z", "build-std=core"]);
        }
        cmd.arg("--release")
            .args(["--target", self.target])
            .arg("--manifest-path")
            .arg(self.crate_dir.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(self.target_dir);
        for (k, v) in PROFILE {
            cmd.arg("--config").arg(format!("profile.release.{k}={v}"));
        }
        if !self.verbose {
            cmd.arg("--quiet");
        }
        match &tc.core {
            Core::Prebuilt { rustc } => {
                cmd.env("RUSTC", rustc);
            }
            Core::BuildStd { clang, llvm_ar, .. } => {
                cmd.env_remove("RUSTC")
                    .env("KILN_CLANG", clang)
                    .env("KILN_LLVM_AR", llvm_ar);
            }
        }
        cmd.env("CARGO_TARGET_BPFEL_UNKNOWN_NONE_LINKER", &tc.bpf_linker)
            .env("CARGO_TARGET_BPFEB_UNKNOWN_NONE_LINKER", &tc.bpf_linker)
            .env(
                "CARGO_ENCODED_RUSTFLAGS",
                self.rustflags().replace(' ', "\x1f"),
            );
        // An outer cargo's (a build script's) or rustup's settings must not
        // leak in: they name another compiler, target or target dir.
        for var in [
            "RUSTFLAGS",
            "RUSTUP_TOOLCHAIN",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "RUSTC_LINKER",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "CARGO_BUILD_RUSTC",
            "CARGO_BUILD_RUSTC_WRAPPER",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_MAKEFLAGS",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            cmd.env_remove(var);
        }
        cmd.current_dir(self.crate_dir);
        cmd
    }

    /// Where cargo leaves the object of `package`.
    pub fn artifact(&self, package: &str) -> PathBuf {
        self.target_dir
            .join(self.target)
            .join("release")
            .join(package)
    }
}

/// Builds one eBPF crate from a build script, into `OUT_DIR/<package>.bpf.o`
/// (what [`include_object!`] embeds).
#[derive(Debug, Clone)]
pub struct EbpfBuild {
    crate_dir: PathBuf,
    copies: Vec<PathBuf>,
    toolchain: Option<Toolchain>,
}

impl EbpfBuild {
    /// The eBPF crate at `crate_dir`, relative to the calling crate's
    /// directory (`CARGO_MANIFEST_DIR`) unless absolute.
    pub fn new(crate_dir: impl AsRef<Path>) -> Self {
        Self {
            crate_dir: crate_dir.as_ref().to_path_buf(),
            copies: Vec::new(),
            toolchain: None,
        }
    }

    /// Also copies the object to `path` (relative like [`Self::new`]), for a
    /// manifest or another tool that reads it from a fixed place.
    pub fn copy_to(mut self, path: impl AsRef<Path>) -> Self {
        self.copies.push(path.as_ref().to_path_buf());
        self
    }

    /// Builds with these tools instead of [`Toolchain::discover`]'s.
    pub fn toolchain(mut self, toolchain: Toolchain) -> Self {
        self.toolchain = Some(toolchain);
        self
    }

    /// Builds the crate; returns the object's path in `OUT_DIR`.
    pub fn build(self) -> Result<PathBuf, Error> {
        let manifest_dir = env_path("CARGO_MANIFEST_DIR")?;
        let out_dir = env_path("OUT_DIR")?;
        let crate_dir = manifest_dir.join(&self.crate_dir);
        let cargo_toml = crate_dir.join("Cargo.toml");
        let package = package_name(&cargo_toml)?;
        for watched in ["Cargo.toml", "Cargo.lock", "src"] {
            println!(
                "cargo:rerun-if-changed={}",
                crate_dir.join(watched).display()
            );
        }
        for var in ["KILN_EBPF_RUSTC", "KILN_EBPF_CARGO", "KILN_BPF_LINKER"] {
            println!("cargo:rerun-if-env-changed={var}");
        }
        let toolchain = match self.toolchain {
            Some(t) => t,
            None => Toolchain::discover()?,
        };
        let target_dir = out_dir.join("ebpf-target");
        let build = CargoBuild {
            toolchain: &toolchain,
            crate_dir: &crate_dir,
            target_dir: &target_dir,
            extra_rustflags: Vec::new(),
            verbose: false,
            target: TARGET,
        };
        let mut cmd = build.command();
        let command = show(&cmd);
        // A build script's stdout is cargo's instruction channel: the inner
        // cargo's output goes to stderr, which cargo shows on failure.
        let stderr = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|source| Error::Spawn {
                command: command.clone(),
                source,
            })?;
        cmd.stdout(Stdio::from(stderr));
        let status = cmd.status().map_err(|source| Error::Spawn {
            command: command.clone(),
            source,
        })?;
        if !status.success() {
            return Err(Error::Build {
                package,
                dir: crate_dir,
                status,
                command,
            });
        }
        let artifact = build.artifact(&package);
        if !artifact.is_file() {
            return Err(Error::NoArtifact { package, artifact });
        }
        let object = out_dir.join(format!("{package}.bpf.o"));
        copy(&artifact, &object)?;
        for to in &self.copies {
            let to = manifest_dir.join(to);
            create_parent(&to)?;
            copy(&artifact, &to)?;
        }
        Ok(object)
    }
}

fn env_path(var: &'static str) -> Result<PathBuf, Error> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .ok_or(Error::NotInBuildScript(var))
}

/// Creates the directory `path` goes in.
pub(crate) fn create_parent(path: &Path) -> Result<(), Error> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        what: "creating the directory",
        source,
    })
}

fn copy(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::copy(from, to)
        .map(drop)
        .map_err(|source| Error::Io {
            path: to.to_path_buf(),
            what: "copying the eBPF object here",
            source,
        })
}

/// The `[package] name` of a Cargo.toml (read line by line: kiln-build
/// stays free of a TOML parser for every user's build graph).
fn package_name(cargo_toml: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(cargo_toml).map_err(|source| Error::Io {
        path: cargo_toml.to_path_buf(),
        what: "reading the eBPF crate's manifest",
        source,
    })?;
    parse_package_name(&text).ok_or_else(|| Error::Manifest {
        path: cargo_toml.to_path_buf(),
        what: "no `name = \"...\"` under [package]".into(),
    })
}

fn parse_package_name(text: &str) -> Option<String> {
    let mut in_package = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
            continue;
        }
        if !in_package {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() == "name" {
            let value = value.split('#').next().unwrap_or("").trim();
            return value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_owned);
        }
    }
    None
}

/// A command as one line, for error messages.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

#[doc(hidden)]
#[repr(C, align(8))]
pub struct Aligned<Bytes: ?Sized>(pub Bytes);

/// The eBPF object [`EbpfBuild`] built for package `$name`, embedded with
/// `include_bytes!` at an 8-byte aligned address (ELF readers need aligned
/// headers), as `&'static [u8]`. The crate using it lists kiln-build under
/// `[dependencies]` as well as `[build-dependencies]`; kiln-build has no
/// dependencies of its own besides `thiserror`.
#[macro_export]
macro_rules! include_object {
    ($name:literal) => {{
        static OBJECT: &$crate::Aligned<[u8]> = &$crate::Aligned(*include_bytes!(concat!(
            env!("OUT_DIR"),
            "/",
            $name,
            ".bpf.o"
        )));
        &OBJECT.0
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_name_from_manifest() {
        let text = "[workspace]\nname = \"no\"\n[package]\nversion = \"0.1.0\"\nname = \"hello-ebpf\" # the crate\n[dependencies]\nname = \"x\"\n";
        assert_eq!(parse_package_name(text).as_deref(), Some("hello-ebpf"));
        assert_eq!(parse_package_name("[dependencies]\nname = \"x\"\n"), None);
    }

    #[test]
    fn aligned_wrapper_aligns() {
        static BYTES: &Aligned<[u8]> = &Aligned([1u8, 2, 3]);
        assert_eq!(BYTES.0.as_ptr().align_offset(8), 0);
        assert_eq!(&BYTES.0, &[1, 2, 3]);
    }

    #[test]
    fn missing_linker_names_what_to_install() {
        let msg = Error::NoLinker {
            looked: vec!["/nowhere/bpf-linker".into()],
        }
        .to_string();
        assert!(msg.contains("cargo install bpf-linker"), "{msg}");
        assert!(msg.contains("/nowhere/bpf-linker"), "{msg}");
        let msg = Error::NoCompiler {
            tried: "/usr/bin/rustc".into(),
        }
        .to_string();
        assert!(msg.contains("libstd-rust-web-dev-bpf"), "{msg}");
    }
}
