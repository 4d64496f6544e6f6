//! An isolated apt: index other Debian suites and architectures without
//! touching the system's apt state.
//!
//! The mirror addresses come from the system's own deb822 sources
//! (`/etc/apt/sources.list.d/*.sources`) at run time, so no host name is ever
//! written into the repository. Each (suites, arch) pair gets its own state
//! under `~/.cache/kiln/apt/<name>/`, so fetching one kernel only downloads the
//! indexes of its own suite.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};

/// Where the system says Debian lives: the main archive and the security archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrors {
    pub main: String,
    pub security: Option<String>,
    /// The keyring the system's sources name in `Signed-By:`.
    pub keyring: Option<String>,
}

impl Mirrors {
    /// Reads `/etc/apt/sources.list.d/*.sources`.
    pub fn from_system() -> Result<Self> {
        let dir = Path::new("/etc/apt/sources.list.d");
        let mut texts = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "sources"))
            .collect();
        entries.sort();
        for p in entries {
            texts.push(
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
            );
        }
        Self::parse(&texts.join("\n\n")).context(
            "no Debian archive found in /etc/apt/sources.list.d/*.sources (need a `URIs:` stanza)",
        )
    }

    /// Parses deb822 stanzas: the stanza whose suites end in `-security` gives
    /// the security archive, the first other one the main archive.
    pub fn parse(text: &str) -> Option<Self> {
        let mut main = None;
        let mut security = None;
        let mut keyring = None;
        for stanza in text.split("\n\n") {
            let mut uri = None;
            let mut suites = String::new();
            let mut types = String::from("deb");
            for line in stanza.lines() {
                let line = line.trim_end();
                if line.starts_with('#') {
                    continue;
                }
                if let Some((key, value)) = line.split_once(':') {
                    let value = value.trim();
                    match key.trim() {
                        "URIs" => uri = value.split_whitespace().next().map(str::to_owned),
                        "Suites" => suites = value.to_owned(),
                        "Types" => types = value.to_owned(),
                        "Signed-By" if !value.is_empty() && keyring.is_none() => {
                            keyring = Some(value.to_owned())
                        }
                        _ => {}
                    }
                }
            }
            let Some(uri) = uri else { continue };
            if !types.split_whitespace().any(|t| t == "deb") {
                continue;
            }
            let uri = uri.trim_end_matches('/').to_owned();
            if suites.split_whitespace().any(|s| s.ends_with("-security")) {
                security.get_or_insert(uri);
            } else {
                main.get_or_insert(uri);
            }
        }
        Some(Self {
            main: main?,
            security,
            keyring,
        })
    }

    /// One-line sources for `suites`: each suite from the main archive, and
    /// its `-security` suite when `with_security` and the system has one.
    pub fn sources_list(&self, suites: &[&str], with_security: bool) -> String {
        let signed = match &self.keyring {
            Some(k) => format!(" signed-by={k}"),
            None => String::new(),
        };
        let mut out = String::new();
        for suite in suites {
            out.push_str(&format!(
                "deb [{}] {} {suite} main\n",
                signed.trim(),
                self.main
            ));
            if with_security {
                if let Some(sec) = &self.security {
                    out.push_str(&format!(
                        "deb [{}] {sec} {suite}-security main\n",
                        signed.trim()
                    ));
                }
            }
        }
        out.replace("deb [] ", "deb ")
    }
}

/// One package version as the index describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkgInfo {
    pub package: String,
    pub version: String,
    pub filename: String,
    pub sha256: String,
    pub size: u64,
    /// `Pre-Depends` and `Depends`, as the index writes them.
    pub depends: String,
}

/// An apt configuration of its own, in `~/.cache/kiln/apt/<name>`.
pub struct IsolatedApt {
    dir: PathBuf,
    deb_arch: String,
}

/// Kiln's cache root: `$KILN_CACHE_DIR` or `~/.cache/kiln`.
pub fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("KILN_CACHE_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/kiln")
}

/// Indexes older than this are refreshed before a resolve.
const MAX_INDEX_AGE: Duration = Duration::from_secs(12 * 3600);

impl IsolatedApt {
    /// Prepares (without downloading) an apt for `suites` (plus their
    /// `-security` suites when asked) on Debian architecture `deb_arch`.
    pub fn new(suites: &[&str], with_security: bool, deb_arch: &str) -> Result<Self> {
        let mirrors = Mirrors::from_system()?;
        let name = format!("{}-{deb_arch}", suites.join("+"));
        let dir = cache_root().join("apt").join(name);
        for sub in ["lists/partial", "cache/archives/partial"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let list = mirrors.sources_list(suites, with_security);
        let list_path = dir.join("sources.list");
        if std::fs::read_to_string(&list_path).ok().as_deref() != Some(list.as_str()) {
            std::fs::write(&list_path, list)
                .with_context(|| format!("writing {}", list_path.display()))?;
            // A new source list invalidates what was indexed before.
            let _ = std::fs::remove_file(dir.join("updated"));
        }
        Ok(Self {
            dir,
            deb_arch: deb_arch.to_owned(),
        })
    }

    fn options(&self) -> Vec<String> {
        let d = self.dir.display();
        vec![
            format!("-oDir::Etc::SourceList={d}/sources.list"),
            "-oDir::Etc::SourceParts=/dev/null".into(),
            format!("-oDir::State::Lists={d}/lists"),
            format!("-oDir::Cache={d}/cache"),
            "-oDir::State::status=/dev/null".into(),
            format!("-oAPT::Architecture={}", self.deb_arch),
            format!("-oAPT::Architectures::={}", self.deb_arch),
            "-oAcquire::Languages=none".into(),
            "-oAcquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false".into(),
            "-oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
            "-oAcquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".into(),
            "-oAcquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".into(),
            "-oAcquire::IndexTargets::deb::CNF::DefaultEnabled=false".into(),
            "-oDebug::NoLocking=1".into(),
            // The cache lives in root's home, which apt's sandbox user cannot write.
            "-oAPT::Sandbox::User=root".into(),
        ]
    }

    fn apt(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.args(self.options());
        c
    }

    /// `apt-get update` unless the indexes are younger than 12 hours (or `force`).
    pub fn update(&self, force: bool) -> Result<()> {
        let stamp = self.dir.join("updated");
        let fresh = std::fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < MAX_INDEX_AGE);
        if fresh && !force {
            return Ok(());
        }
        eprintln!("apt: indexing {} ...", self.dir.display());
        let out = self
            .apt("apt-get")
            .args(["-q", "update"])
            .output()
            .context("running apt-get update")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // apt-get exits 0 even when a suite's index failed: check its warnings.
        if !out.status.success() || stderr.contains("Failed to fetch") || stderr.contains("E: ") {
            bail!(
                "apt-get update for {} failed:\n{}{}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stdout),
                stderr
            );
        }
        std::fs::write(&stamp, b"")?;
        Ok(())
    }

    /// Package names matching the (apt, POSIX extended) regex `pattern`.
    pub fn search_names(&self, pattern: &str) -> Result<Vec<String>> {
        let out = self
            .apt("apt-cache")
            .args(["search", "--names-only", pattern])
            .output()
            .context("running apt-cache search")?;
        if !out.status.success() {
            bail!(
                "apt-cache search {pattern}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(" - ").next())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Every version of `package` the indexes know.
    pub fn show(&self, package: &str) -> Result<Vec<PkgInfo>> {
        let out = self
            .apt("apt-cache")
            .args(["show", package])
            .output()
            .context("running apt-cache show")?;
        if !out.status.success() {
            bail!(
                "apt-cache show {package}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(parse_show(&String::from_utf8_lossy(&out.stdout)))
    }

    /// The newest version among all packages matching `pattern`.
    pub fn newest(&self, pattern: &str) -> Result<Vec<PkgInfo>> {
        let mut all = Vec::new();
        for name in self.search_names(pattern)? {
            all.extend(self.show(&name)?);
        }
        all.sort_by(|a, b| compare_versions(&b.version, &a.version));
        Ok(all)
    }

    /// Downloads `pkg` into `dest` (apt's progress goes to the terminal) and
    /// returns the file's path.
    pub fn download(&self, pkg: &PkgInfo, dest: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dest)?;
        let file_name = Path::new(&pkg.filename)
            .file_name()
            .context("index Filename has no file name")?;
        let target = dest.join(file_name);
        if target.is_file() {
            return Ok(target);
        }
        eprintln!(
            "apt: downloading {} {} ({:.1} MiB)",
            pkg.package,
            pkg.version,
            pkg.size as f64 / 1048576.0
        );
        let status = self
            .apt("apt-get")
            .current_dir(dest)
            .args(["download", &format!("{}={}", pkg.package, pkg.version)])
            .status()
            .context("running apt-get download")?;
        // apt-get names the file after the version, with an epoch `1:` as
        // `1%3a`; the pool name has no epoch. Keep the pool name.
        let apt_name = format!(
            "{}_{}_{}.deb",
            pkg.package,
            pkg.version.replace(':', "%3a"),
            file_name
                .to_string_lossy()
                .rsplit('_')
                .next()
                .unwrap_or("")
                .trim_end_matches(".deb")
        );
        if status.success() && !target.is_file() && dest.join(&apt_name).is_file() {
            std::fs::rename(dest.join(&apt_name), &target)?;
        }
        if !status.success() || !target.is_file() {
            bail!(
                "apt-get download {}={} failed (the pool file may be gone: try `cargo xtask kernels fetch --refresh`)",
                pkg.package,
                pkg.version
            );
        }
        Ok(target)
    }
}

/// Parses `apt-cache show` output (several stanzas).
pub fn parse_show(text: &str) -> Vec<PkgInfo> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(|v| v.trim().to_owned())
            })
        };
        if let (Some(package), Some(version), Some(filename), Some(sha256), Some(size)) = (
            field("Package"),
            field("Version"),
            field("Filename"),
            field("SHA256"),
            field("Size").and_then(|s| s.parse().ok()),
        ) {
            let depends = [field("Pre-Depends"), field("Depends")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ");
            let info = PkgInfo {
                package,
                version,
                filename,
                sha256,
                size,
                depends,
            };
            if !out.contains(&info) {
                out.push(info);
            }
        }
    }
    out
}

/// Debian version order, by asking dpkg (the authority on it).
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let run = |op: &str| {
        Command::new("dpkg")
            .args(["--compare-versions", a, op, b])
            .status()
            .is_ok_and(|s| s.success())
    };
    if a == b {
        std::cmp::Ordering::Equal
    } else if run("gt") {
        std::cmp::Ordering::Greater
    } else {
        std::cmp::Ordering::Less
    }
}

/// The SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex(&h.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `dpkg-deb -x deb dir`.
pub fn extract_deb(deb: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(dir)
        .status()
        .context("running dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb -x {} {} failed", deb.display(), dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCES: &str = "Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/k.gpg\n\nTypes: deb\nURIs: http://mirror.example/debian-security/\nSuites: bookworm-security\nComponents: main\n";

    #[test]
    fn mirrors_from_deb822() {
        let m = Mirrors::parse(SOURCES).unwrap();
        assert_eq!(m.main, "http://mirror.example/debian");
        assert_eq!(
            m.security.as_deref(),
            Some("http://mirror.example/debian-security")
        );
        assert_eq!(m.keyring.as_deref(), Some("/usr/share/keyrings/k.gpg"));
        let list = m.sources_list(&["sid"], true);
        assert!(list.contains(
            "deb [signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/debian sid main\n"
        ));
        assert!(list.contains("debian-security sid-security main"));
        assert!(!m.sources_list(&["sid"], false).contains("security"));
    }

    #[test]
    fn no_main_archive_is_none() {
        assert!(Mirrors::parse("Types: deb\nSuites: x\n").is_none());
    }

    #[test]
    fn show_stanzas() {
        let text = "Package: linux-image-6.1.0-9-cloud-amd64-unsigned\nVersion: 6.1.27-1\nFilename: pool/main/l/linux/a.deb\nSize: 123\nSHA256: abc\n\nPackage: x\nVersion: 1\n";
        let v = parse_show(text);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].size, 123);
        assert_eq!(v[0].filename, "pool/main/l/linux/a.deb");
        let text = "Package: iproute2\nVersion: 6.1.0-3\nPre-Depends: init-system-helpers\nDepends: libbpf1 (>= 1:0.6.0), libc6 (>= 2.34) | libc6.1\nFilename: pool/i.deb\nSize: 1\nSHA256: aa\n";
        let v = parse_show(text);
        assert_eq!(
            v[0].depends,
            "init-system-helpers, libbpf1 (>= 1:0.6.0), libc6 (>= 2.34) | libc6.1"
        );
    }

    #[test]
    fn dpkg_version_order() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("6.1.158-1", "6.1.27-1"), Greater);
        assert_eq!(compare_versions("6.12.9-1", "6.12.10-1"), Less);
        assert_eq!(compare_versions("1", "1"), Equal);
    }
}
