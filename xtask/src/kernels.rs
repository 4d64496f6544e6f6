//! `cargo xtask kernels list|fetch|verify`: the test kernel catalog
//! (`kernels/catalog.toml`) and what was resolved from it (`kernels/lock.toml`).
//!
//! Kernels come from Debian through [`crate::apt::IsolatedApt`]; the `.deb`
//! files are cached in `~/.cache/kiln/kernels/` and extracted into
//! `~/.cache/kiln/kernels/<arch>/<package version>/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::apt::{self, IsolatedApt, PkgInfo};
use crate::vm::Arch;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Show the catalog and what the lock holds and the cache has.
    List,
    /// Resolve the newest package of a kernel, download, check and extract it.
    Fetch {
        /// Kernel version from the catalog (5.10, 6.1, 6.12, 7.2).
        #[arg(long)]
        kernel: Option<String>,
        /// x86_64 or aarch64 (default: both).
        #[arg(long)]
        arch: Option<Arch>,
        /// Every kernel of the catalog on every arch.
        #[arg(long)]
        all: bool,
        /// Refresh the apt indexes even when they are recent.
        #[arg(long)]
        refresh: bool,
    },
    /// Check the cached packages against the lock's sha256.
    Verify,
    /// Extract each kernel's BTF once into ~/.cache/kiln/btf/ARCH/VERSION.btf,
    /// for `kiln check --kernels` (fetches the kernel first if needed).
    Btf {
        /// Kernel versions (default: the whole catalog).
        #[arg(long)]
        kernel: Vec<String>,
        /// Architectures (default: the catalog's).
        #[arg(long)]
        arch: Vec<Arch>,
    },
}

pub fn run(args: Args) -> Result<()> {
    let catalog = Catalog::load()?;
    match args.command {
        Sub::List => list(&catalog),
        Sub::Fetch {
            kernel,
            arch,
            all,
            refresh,
        } => {
            let versions: Vec<String> = match (&kernel, all) {
                (Some(k), false) => vec![catalog.entry(k)?.version.clone()],
                (None, true) => catalog.kernels.iter().map(|k| k.version.clone()).collect(),
                _ => bail!("say `--kernel K [--arch A]` or `--all`"),
            };
            let arches = match arch {
                Some(a) => vec![a],
                None => catalog.arches()?,
            };
            let mut failed = Vec::new();
            for v in &versions {
                for a in &arches {
                    match fetch(&catalog, v, *a, refresh) {
                        Ok(k) => println!("{v} {a}: {} -> {}", k.release, k.vmlinuz.display()),
                        // Keep going: one unavailable kernel should not block the others.
                        Err(e) => {
                            eprintln!("error: {v} {a}: {e:#}");
                            failed.push(format!("{v} {a}"));
                        }
                    }
                }
            }
            if !failed.is_empty() {
                bail!("could not fetch: {}", failed.join(", "));
            }
            Ok(())
        }
        Sub::Verify => verify(),
        Sub::Btf { kernel, arch } => {
            for (v, a, path) in crate::kernel_btf::ensure_all(&kernel, &arch)? {
                println!("{v} {a}: {}", path.display());
            }
            Ok(())
        }
    }
}

/// `kernels/catalog.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub arches: Vec<String>,
    #[serde(rename = "kernel")]
    pub kernels: Vec<CatalogEntry>,
    /// Kernels only `nix develop` provides (no Debian package).
    #[serde(default)]
    pub nix_only: Vec<NixOnlyKernel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    pub version: String,
    pub suite: String,
    #[serde(default)]
    pub security: bool,
    /// Regex of the kernel release inside package names; `{arch}` is replaced.
    pub release: String,
    /// Image package name template with `{release}`.
    pub image: String,
    /// Further packages (modules) with `{release}`.
    #[serde(default)]
    pub extra: Vec<String>,
    pub vmlinuz: Vec<String>,
    pub modules: Vec<String>,
    /// The nixpkgs attribute of this kernel (`linuxPackages_6_1`), where
    /// nixpkgs has one: flake.nix offers it in `nix develop`.
    #[serde(default)]
    pub nix: Option<String>,
}

/// A kernel that only Nix provides: `[[nix_only]]` in the catalog.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NixOnlyKernel {
    pub version: String,
    pub nix: String,
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

impl Catalog {
    pub fn load() -> Result<Self> {
        let path = repo_root().join("kernels/catalog.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let c: Catalog = toml::from_str(text)?;
        for k in &c.kernels {
            if !k.image.contains("{release}") || !k.release.contains("{arch}") {
                bail!(
                    "kernel {}: `image` must contain {{release}} and `release` {{arch}}",
                    k.version
                );
            }
        }
        Ok(c)
    }

    pub fn versions(&self) -> Vec<&str> {
        self.kernels.iter().map(|k| k.version.as_str()).collect()
    }

    /// The kernels `nix develop` offers: the entries with a nixpkgs attribute,
    /// then the Nix-only ones (what kernels/nix-kernels.nix reads).
    pub fn nix_versions(&self) -> Vec<&str> {
        self.kernels
            .iter()
            .filter(|k| k.nix.is_some())
            .map(|k| k.version.as_str())
            .chain(self.nix_only.iter().map(|k| k.version.as_str()))
            .collect()
    }

    pub fn arches(&self) -> Result<Vec<Arch>> {
        self.arches.iter().map(|a| a.parse()).collect()
    }

    /// The entry for `version`, or an error that names the available ones and
    /// how to bring another kernel.
    pub fn entry(&self, version: &str) -> Result<&CatalogEntry> {
        let nix_only = self
            .nix_only
            .iter()
            .find(|k| k.version == version)
            .map(|k| {
                format!(
                    "\n{version} is one of the kernels only Nix provides (nixpkgs {}): inside `nix develop`, \
                     `cargo xtask test --kernel {version}` boots it (`nix develop` offers {}).",
                    k.nix,
                    self.nix_versions().join(", ")
                )
            })
            .unwrap_or_default();
        self.kernels.iter().find(|k| k.version == version).with_context(|| {
            format!(
                "kernel {version} is not in kernels/catalog.toml; available: {}.{nix_only}\n\
                 To test another kernel, bring its image: `cargo xtask test --kernel-image PATH [--modules DIR] --arch A`\n\
                 (inside `nix develop`, a nixpkgs kernel works: e.g. KILN_NIX_KERNELS=$(nix build --print-out-paths nixpkgs#linux_5_15) \
                 and `--kernel-image $KILN_NIX_KERNELS/bzImage`).",
                self.versions().join(", ")
            )
        })
    }
}

/// `kernels/lock.toml`: what `fetch` resolved.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    #[serde(default, rename = "kernel")]
    pub kernels: Vec<LockedKernel>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LockedKernel {
    pub version: String,
    pub arch: String,
    pub release: String,
    #[serde(rename = "package")]
    pub packages: Vec<LockedPackage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub filename: String,
    pub sha256: String,
    pub size: u64,
}

const LOCK_HEADER: &str = "# Written by `cargo xtask kernels fetch`: the exact packages behind each test kernel.\n# Committed, so every machine tests the same bytes; a sha256 mismatch is an error.\n\n";

impl Lock {
    fn path() -> PathBuf {
        repo_root().join("kernels/lock.toml")
    }

    pub fn load() -> Result<Self> {
        let path = Self::path();
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text).with_context(|| format!("parsing {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        Ok(toml::from_str(text)?)
    }

    pub fn render(&self) -> Result<String> {
        let mut sorted: Vec<LockedKernel> = self.kernels.clone();
        sorted.sort_by(|a, b| (&a.version, &a.arch).cmp(&(&b.version, &b.arch)));
        let body = toml::to_string(&Lock { kernels: sorted })?;
        Ok(format!("{LOCK_HEADER}{body}"))
    }

    pub fn save(&self) -> Result<()> {
        std::fs::write(Self::path(), self.render()?).context("writing kernels/lock.toml")
    }

    pub fn get(&self, version: &str, arch: Arch) -> Option<&LockedKernel> {
        self.kernels
            .iter()
            .find(|k| k.version == version && k.arch == arch.as_str())
    }

    /// Checks `got` against a locked package of the same name and version:
    /// a different sha256 is an error (the archive changed under us).
    pub fn check(&self, got: &LockedPackage) -> Result<()> {
        for k in &self.kernels {
            for p in &k.packages {
                if p.name == got.name && p.version == got.version && p.sha256 != got.sha256 {
                    bail!(
                        "{} {}: sha256 {} does not match kernels/lock.toml ({})",
                        got.name,
                        got.version,
                        got.sha256,
                        p.sha256
                    );
                }
            }
        }
        Ok(())
    }

    fn upsert(&mut self, k: LockedKernel) {
        self.kernels
            .retain(|o| !(o.version == k.version && o.arch == k.arch));
        self.kernels.push(k);
    }
}

/// A kernel ready to boot.
#[derive(Debug, Clone)]
pub struct KernelFiles {
    pub version: String,
    pub arch: Arch,
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `.../lib/modules/<release>` (holds `kernel/...`), if the kernel has one.
    pub modules: Option<PathBuf>,
}

fn kernels_cache() -> PathBuf {
    apt::cache_root().join("kernels")
}

fn extract_dir(arch: Arch, locked: &LockedKernel) -> PathBuf {
    kernels_cache()
        .join(arch.as_str())
        .join(&locked.packages[0].version)
}

/// The kernel when the lock's packages are already extracted; never downloads.
pub fn ensure_cached(catalog: &Catalog, version: &str, arch: Arch) -> Result<KernelFiles> {
    let entry = catalog.entry(version)?;
    let lock = Lock::load()?;
    let locked = lock
        .get(version, arch)
        .with_context(|| format!("{version} {arch} is not in kernels/lock.toml"))?;
    let dir = extract_dir(arch, locked);
    if !dir.join(".complete").exists() {
        bail!(
            "{version} {arch} is not cached: `cargo xtask kernels fetch --kernel {version} --arch {arch}`"
        );
    }
    locate(entry, arch, locked, &dir)
}

/// The kernel `version` on `arch`: from the cache when the lock's packages are
/// extracted there, otherwise fetched (which may update the lock).
pub fn ensure(catalog: &Catalog, version: &str, arch: Arch) -> Result<KernelFiles> {
    match ensure_cached(catalog, version, arch) {
        Ok(k) => Ok(k),
        Err(_) => fetch(catalog, version, arch, false),
    }
}

/// Resolves the newest package for (`version`, `arch`), downloads it (and its
/// extra packages), checks them against the lock, extracts them, updates the lock.
pub fn fetch(catalog: &Catalog, version: &str, arch: Arch, refresh: bool) -> Result<KernelFiles> {
    let entry = catalog.entry(version)?;
    let apt = IsolatedApt::new(&[entry.suite.as_str()], entry.security, arch.deb())?;
    apt.update(refresh)?;
    let release_re = entry.release.replace("{arch}", arch.deb());
    let (prefix, suffix) = entry
        .image
        .split_once("{release}")
        .expect("checked at parse time");
    let pattern = format!(
        "^{}{release_re}{}$",
        regex_escape(prefix),
        regex_escape(suffix)
    );
    let candidates = apt.newest(&pattern)?;
    if candidates.is_empty() {
        bail!(
            "no package matches {pattern} in {} ({}): the catalog entry for {version} needs updating",
            entry.suite,
            arch.deb()
        );
    }
    let debs = kernels_cache();
    let mut lock = Lock::load()?;
    let mut last_err = None;
    // A security pool file sometimes answers 404: fall back to the next newest.
    for image in &candidates {
        let release = image.package[prefix.len()..image.package.len() - suffix.len()].to_owned();
        let mut pkgs = vec![image.clone()];
        for extra in &entry.extra {
            let name = extra.replace("{release}", &release);
            let versions = apt.show(&name)?;
            let pick = versions
                .iter()
                .find(|p| p.version == image.version)
                .or(versions.first())
                .with_context(|| {
                    format!(
                        "{name} (extra package of {}) is not in the index",
                        image.package
                    )
                })?;
            pkgs.push(pick.clone());
        }
        let mut locked_pkgs = Vec::new();
        let mut files = Vec::new();
        let mut failed = None;
        for p in &pkgs {
            match apt.download(p, &debs) {
                Ok(path) => {
                    let lp = locked_package(p, &path)?;
                    lock.check(&lp)?;
                    locked_pkgs.push(lp);
                    files.push(path);
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            eprintln!("warning: {e:#}; trying an older version");
            last_err = Some(e);
            continue;
        }
        let locked = LockedKernel {
            version: version.to_owned(),
            arch: arch.as_str().to_owned(),
            release,
            packages: locked_pkgs,
        };
        let dir = extract_dir(arch, &locked);
        if !dir.join(".complete").exists() {
            let _ = std::fs::remove_dir_all(&dir);
            for f in &files {
                eprintln!("extracting {} ...", f.display());
                apt::extract_deb(f, &dir)?;
            }
            std::fs::write(dir.join(".complete"), b"")?;
        }
        let files = locate(entry, arch, &locked, &dir)?;
        lock.upsert(locked);
        lock.save()?;
        return Ok(files);
    }
    Err(last_err.expect("at least one candidate was tried"))
}

fn locked_package(p: &PkgInfo, path: &Path) -> Result<LockedPackage> {
    let sha = apt::sha256_file(path)?;
    if sha != p.sha256 {
        bail!(
            "{}: sha256 {sha} differs from the index's {}",
            path.display(),
            p.sha256
        );
    }
    Ok(LockedPackage {
        name: p.package.clone(),
        version: p.version.clone(),
        filename: path.file_name().unwrap().to_string_lossy().into_owned(),
        sha256: sha,
        size: p.size,
    })
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

fn locate(
    entry: &CatalogEntry,
    arch: Arch,
    locked: &LockedKernel,
    dir: &Path,
) -> Result<KernelFiles> {
    let vmlinuz = entry
        .vmlinuz
        .iter()
        .find_map(|p| glob_first(dir, p))
        .with_context(|| {
            format!(
                "no kernel image matching {:?} in {}",
                entry.vmlinuz,
                dir.display()
            )
        })?;
    let modules = entry
        .modules
        .iter()
        .find_map(|p| glob_first(dir, p))
        .filter(|p| p.is_dir());
    Ok(KernelFiles {
        version: locked.version.clone(),
        arch,
        release: locked.release.clone(),
        vmlinuz,
        modules,
    })
}

/// The first (sorted) path under `root` matching `pattern`, where a `*` in a
/// component matches any run of characters within that component.
pub fn glob_first(root: &Path, pattern: &str) -> Option<PathBuf> {
    let mut current = vec![root.to_path_buf()];
    for comp in pattern.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for base in &current {
            if let Some((pre, post)) = comp.split_once('*') {
                let Ok(rd) = std::fs::read_dir(base) else {
                    continue;
                };
                let mut names: Vec<String> = rd
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| {
                        n.len() >= pre.len() + post.len() && n.starts_with(pre) && n.ends_with(post)
                    })
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| base.join(n)));
            } else if base.join(comp).exists() {
                next.push(base.join(comp));
            }
        }
        current = next;
    }
    current.into_iter().next()
}

fn list(catalog: &Catalog) -> Result<()> {
    let lock = Lock::load()?;
    println!(
        "{:<6} {:<8} {:<10} {:<34} cached",
        "kernel", "arch", "suite", "locked release (package version)"
    );
    for k in &catalog.kernels {
        for a in catalog.arches()? {
            let (locked, cached) = match lock.get(&k.version, a) {
                Some(l) => (
                    format!("{} ({})", l.release, l.packages[0].version),
                    extract_dir(a, l).join(".complete").exists(),
                ),
                None => ("-".to_owned(), false),
            };
            println!(
                "{:<6} {:<8} {:<10} {:<34} {}",
                k.version,
                a,
                k.suite,
                locked,
                if cached { "yes" } else { "no" }
            );
        }
    }
    Ok(())
}

fn verify() -> Result<()> {
    let lock = Lock::load()?;
    let mut bad = BTreeMap::new();
    let mut checked = 0;
    for k in &lock.kernels {
        for p in &k.packages {
            let path = kernels_cache().join(&p.filename);
            if !path.is_file() {
                println!(
                    "{} {}: {} not cached (run `cargo xtask kernels fetch --kernel {} --arch {}`)",
                    k.version, k.arch, p.filename, k.version, k.arch
                );
                continue;
            }
            let sha = apt::sha256_file(&path)?;
            checked += 1;
            if sha == p.sha256 {
                println!("{} {}: {} ok", k.version, k.arch, p.filename);
            } else {
                bad.insert(p.filename.clone(), sha);
            }
        }
    }
    for (f, sha) in &bad {
        println!("MISMATCH {f}: {sha}");
    }
    if !bad.is_empty() {
        bail!(
            "{} cached package(s) differ from kernels/lock.toml",
            bad.len()
        );
    }
    println!("{checked} cached package(s) match the lock");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_catalog_parses() {
        let c = Catalog::load().unwrap();
        assert_eq!(c.versions(), ["5.10", "6.1", "6.12", "7.2"]);
        assert_eq!(c.arches().unwrap(), [Arch::X86_64, Arch::Aarch64]);
        let e = c.entry("7.2").unwrap();
        assert_eq!(e.extra, ["linux-modules-{release}"]);
        let err = format!("{:#}", c.entry("5.15").unwrap_err());
        assert!(err.contains("5.10, 6.1, 6.12, 7.2"), "{err}");
        assert!(err.contains("--kernel-image"), "{err}");
    }

    #[test]
    fn catalog_rejects_missing_placeholder() {
        let t = "arches=[]\n[[kernel]]\nversion='1'\nsuite='s'\nrelease='x'\nimage='y'\nvmlinuz=[]\nmodules=[]\n";
        assert!(Catalog::parse(t).is_err());
    }

    #[test]
    fn lock_roundtrip_and_mismatch() {
        let p = LockedPackage {
            name: "linux-image-x".into(),
            version: "1-1".into(),
            filename: "x.deb".into(),
            sha256: "aa".into(),
            size: 3,
        };
        let lock = Lock {
            kernels: vec![LockedKernel {
                version: "6.1".into(),
                arch: "x86_64".into(),
                release: "6.1.0-1-cloud-amd64".into(),
                packages: vec![p.clone()],
            }],
        };
        let text = lock.render().unwrap();
        assert_eq!(Lock::parse(&text).unwrap(), lock);
        assert!(lock.check(&p).is_ok());
        let mut other = p.clone();
        other.sha256 = "bb".into();
        assert!(lock.check(&other).is_err());
        other.version = "2-1".into();
        assert!(
            lock.check(&other).is_ok(),
            "a new version is recorded, not refused"
        );
    }

    #[test]
    fn escape_and_glob() {
        assert_eq!(
            regex_escape("linux-binary-unsigned-"),
            "linux-binary-unsigned-"
        );
        assert_eq!(regex_escape("a.b+"), "a\\.b\\+");
        let d = std::env::temp_dir().join(format!("kiln-glob-{}", std::process::id()));
        std::fs::create_dir_all(d.join("usr/lib/modules/7.2.1/kernel")).unwrap();
        std::fs::write(d.join("usr/lib/modules/7.2.1/vmlinuz.unsigned"), b"").unwrap();
        assert_eq!(
            glob_first(&d, "usr/lib/modules/*/vmlinuz.unsigned"),
            Some(d.join("usr/lib/modules/7.2.1/vmlinuz.unsigned"))
        );
        assert_eq!(glob_first(&d, "boot/vmlinuz-*"), None);
        std::fs::remove_dir_all(&d).unwrap();
    }
}

/// The one list of kernels: flake.nix must take its kernels from the
/// catalog (through kernels/nix-kernels.nix), never name its own.
#[cfg(test)]
mod flake_tests {
    use super::*;

    /// (version, nixpkgs attribute) the catalog gives Nix.
    fn catalog_nix_kernels(c: &Catalog) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = c
            .kernels
            .iter()
            .filter_map(|k| Some((k.version.clone(), k.nix.clone()?)))
            .chain(
                c.nix_only
                    .iter()
                    .map(|k| (k.version.clone(), k.nix.clone())),
            )
            .collect();
        v.sort();
        v
    }

    #[test]
    fn flake_kernels_are_the_catalogs() {
        let root = repo_root();
        let flake = std::fs::read_to_string(root.join("flake.nix")).unwrap();
        assert!(
            flake.contains("import ./kernels/nix-kernels.nix"),
            "flake.nix does not read its kernels from the catalog (kernels/nix-kernels.nix)"
        );
        // A second list would drift: no nixpkgs kernel attribute by name.
        assert!(
            !flake.contains("linuxPackages_")
                && !flake.contains("linux_5")
                && !flake.contains("linux_6"),
            "flake.nix names kernels of its own; add them to kernels/catalog.toml instead"
        );
        let catalog = Catalog::load().unwrap();
        let want = catalog_nix_kernels(&catalog);
        for (version, attr) in &want {
            let v = version.replace('.', "_");
            assert_eq!(*attr, format!("linuxPackages_{v}"), "kernel {version}");
        }
        // Nix itself reads the catalog, where it is installed (setup's
        // optional nix-bin): the flake's list must be the catalog's.
        let out = std::process::Command::new("nix-instantiate")
            .current_dir(&root)
            .args(["--eval", "--strict", "--json", "-E"])
            .arg("import ./kernels/nix-kernels.nix {}")
            .output();
        let Ok(out) = out else {
            eprintln!(
                "note: nix-instantiate is not installed; the flake's evaluation is not checked"
            );
            return;
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        let mut got: Vec<(String, String)> = list
            .iter()
            .map(|k| {
                (
                    k["version"].as_str().unwrap().to_owned(),
                    k["attr"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        got.sort();
        assert_eq!(got, want, "the flake's kernels are not the catalog's");
        // Every Debian kernel without a nixpkgs attribute is said so in the
        // catalog by leaving `nix` out; 5.15 and 6.6 come from Nix only.
        let only: Vec<&str> = catalog
            .nix_only
            .iter()
            .map(|k| k.version.as_str())
            .collect();
        assert_eq!(only, ["5.15", "6.6"]);
    }

    #[test]
    fn flake_pins_nixpkgs() {
        let flake = std::fs::read_to_string(repo_root().join("flake.nix")).unwrap();
        let url = flake
            .lines()
            .find_map(|l| l.trim().strip_prefix("nixpkgs.url = \""))
            .and_then(|l| l.split('"').next())
            .expect("flake.nix has a nixpkgs.url");
        let rev = url.rsplit('/').next().unwrap_or_default();
        assert!(
            rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()),
            "nixpkgs is not pinned to a revision: {url}"
        );
    }

    #[test]
    fn a_nix_only_kernel_is_refused_with_where_to_get_it() {
        let c = Catalog::load().unwrap();
        let e = format!("{:#}", c.entry("5.15").unwrap_err());
        assert!(e.contains("available: 5.10, 6.1, 6.12, 7.2"), "{e}");
        assert!(e.contains("nix develop"), "{e}");
    }
}
