//! The few userspace tools the integration tests shell out to (`ip`,
//! `mount`, `bash`, `true`, ...), for the guest's arch, from Debian bookworm.
//!
//! busybox-static supplies the simple tools as applets; `ip` (iproute2, for
//! `ip netns`, which busybox lacks) and `bash` are dynamic, so their shared
//! libraries and the ELF interpreter come along, found by walking `DT_NEEDED`
//! in the extracted packages. Everything goes through the isolated apt.
//! `xdp-loader` (xdp-tools) and the dispatcher object libxdp loads at run
//! time come along for the XDP dispatcher interop test, and `bpftool` (the
//! libbpf reference) for the libbpf interop and differential tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::apt::{self, IsolatedApt};
use crate::vm::Arch;

/// busybox applets linked into /bin (what tests and scripts commonly call).
const APPLETS: &[&str] = &[
    "sh", "mount", "umount", "true", "false", "cat", "echo", "ls", "mkdir", "rm", "rmdir", "sleep",
    "grep", "sed", "awk", "ps", "kill", "test", "[", "env", "uname", "id", "ln", "cp", "mv",
    "touch", "head", "tail", "wc", "sync", "dmesg", "nproc", "seq", "tr", "cut", "sort", "uniq",
    "xargs", "find", "stat", "readlink", "dirname", "basename", "date", "chmod", "chown", "mknod",
    "nc", "ping", "hostname", "printf", "timeout", "tee", "yes", "dd", "od", "hexdump", "mktemp",
    "realpath", "which", "nsenter", "unshare",
];

/// (package, path of the binary in it, guest path).
const DYNAMIC_TOOLS: &[(&str, &str, &str)] = &[
    ("iproute2", "bin/ip", "/bin/ip"),
    ("bash", "bin/bash", "/bin/bash"),
    ("xdp-tools", "usr/sbin/xdp-loader", "/bin/xdp-loader"),
    // Where Debian installs it: the interop test looks in the usual places.
    ("bpftool", "usr/sbin/bpftool", "/usr/sbin/bpftool"),
];

/// (package, data file in it): copied to the same path in the guest.
/// `{triple}` is the guest's multiarch triple.
const DATA_FILES: &[(&str, &str)] = &[("libxdp1", "usr/lib/{triple}/bpf/xdp-dispatcher.o")];

/// The cache directory name for this set of tools: a new set downloads into
/// a new directory instead of changing one another checkout may be using.
fn cache_key() -> String {
    // FNV-1a: stable across compilers, unlike std's hasher.
    let mut h: u32 = 0x811c_9dc5;
    let parts = DYNAMIC_TOOLS
        .iter()
        .flat_map(|t| [t.0, t.1, t.2])
        .chain(DATA_FILES.iter().flat_map(|t| [t.0, t.1]));
    for b in parts.flat_map(|p| p.bytes().chain([0])) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// Host file → guest path, ready to add to an image.
pub struct Userland {
    pub files: Vec<(PathBuf, String)>,
    pub symlinks: Vec<(String, String)>,
}

pub fn triple(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64-linux-gnu",
        Arch::Aarch64 => "aarch64-linux-gnu",
    }
}

/// The package names a package depends on (first of each alternative).
fn depends_of(apt: &IsolatedApt, pkg: &str) -> Result<(apt::PkgInfo, Vec<String>)> {
    let mut infos = apt.show(pkg)?;
    infos.sort_by(|a, b| apt::compare_versions(&b.version, &a.version));
    let info = infos
        .into_iter()
        .next()
        .with_context(|| format!("{pkg} is not in the index"))?;
    let names = info
        .depends
        .split(',')
        .filter_map(|d| d.split('|').next())
        .map(|d| d.split(['(', ':']).next().unwrap_or("").trim().to_owned())
        .filter(|d| !d.is_empty())
        .collect();
    Ok((info.clone(), names))
}

/// Library packages are followed; the rest (debconf, perl, ...) is not
/// needed to run a binary.
fn is_library(pkg: &str) -> bool {
    (pkg.starts_with("lib") && !pkg.ends_with("-bin") && !pkg.ends_with("-common"))
        || pkg == "zlib1g"
}

/// Downloads and extracts the tools for `arch` (cached), returns what to add.
pub fn ensure(arch: Arch) -> Result<Userland> {
    let root =
        apt::cache_root()
            .join("userland")
            .join(format!("{}-{}", arch.as_str(), cache_key()));
    let extracted = root.join("root");
    let stamp = root.join(".complete");
    if !stamp.exists() {
        let apt = IsolatedApt::new(&["bookworm"], true, arch.deb())?;
        apt.update(false)?;
        // The tools, and the library packages they pull in, transitively.
        let mut want: Vec<String> = vec!["busybox-static".into()];
        want.extend(DYNAMIC_TOOLS.iter().map(|t| t.0.to_owned()));
        want.extend(DATA_FILES.iter().map(|t| t.0.to_owned()));
        let mut seen = BTreeSet::new();
        let mut infos = Vec::new();
        let mut level = want;
        for _ in 0..6 {
            let mut next = Vec::new();
            for p in level {
                if !seen.insert(p.clone()) {
                    continue;
                }
                let (info, deps) = depends_of(&apt, &p)?;
                infos.push(info);
                next.extend(
                    deps.into_iter()
                        .filter(|d| is_library(d) && !seen.contains(d)),
                );
            }
            level = next;
        }
        let _ = std::fs::remove_dir_all(&extracted);
        let debs = apt::cache_root().join("debs");
        for info in &infos {
            let deb = apt.download(info, &debs)?;
            if apt::sha256_file(&deb)? != info.sha256 {
                bail!("{}: sha256 differs from the index", deb.display());
            }
            apt::extract_deb(&deb, &extracted)?;
        }
        let tools = collect(arch, &extracted)?;
        // Only a complete, resolvable tree is marked as cached.
        std::fs::write(&stamp, b"")?;
        return Ok(tools);
    }
    collect(arch, &extracted)
}

/// Resolves `path` (absolute in the guest) inside `root`, following symlinks
/// within the extracted tree.
fn resolve(root: &Path, guest: &str) -> Option<PathBuf> {
    let mut p = guest.trim_start_matches('/').to_owned();
    for _ in 0..16 {
        let host = root.join(&p);
        match std::fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&host).ok()?;
                let t = target.to_string_lossy();
                p = if let Some(abs) = t.strip_prefix('/') {
                    abs.to_owned()
                } else {
                    let parent = Path::new(&p).parent().unwrap_or(Path::new(""));
                    normalise(&parent.join(&*t))
                };
            }
            Ok(_) => return Some(host),
            Err(_) => {
                // usr-merge: /lib/x is /usr/lib/x in the packages, or the reverse.
                let alt = if let Some(r) = p.strip_prefix("usr/") {
                    r.to_owned()
                } else {
                    format!("usr/{p}")
                };
                let h = root.join(&alt);
                if h.exists() && !std::fs::symlink_metadata(&h).ok()?.file_type().is_symlink() {
                    return Some(h);
                }
                if std::fs::symlink_metadata(&h).is_ok() {
                    p = alt;
                    continue;
                }
                return None;
            }
        }
    }
    None
}

fn normalise(p: &Path) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    out.join("/")
}

/// (interpreter, needed sonames) of an ELF executable or library.
pub fn elf_deps(path: &Path) -> Result<(Option<String>, Vec<String>)> {
    use object::read::elf::{ElfFile64, ProgramHeader};
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let elf = ElfFile64::<object::Endianness>::parse(&*data)
        .with_context(|| format!("parsing {}", path.display()))?;
    let endian = elf.endian();
    let mut interp = None;
    for ph in elf.elf_program_headers() {
        if ph.p_type(endian) == object::elf::PT_INTERP {
            if let Ok(bytes) = ph.data(endian, &*data) {
                interp = Some(
                    String::from_utf8_lossy(bytes)
                        .trim_end_matches('\0')
                        .to_owned(),
                );
            }
        }
    }
    let mut needed = Vec::new();
    use object::Object;
    // DT_NEEDED through the dynamic section.
    if let Some(section) = elf.section_by_name(".dynamic") {
        use object::ObjectSection;
        let dynstr = elf
            .section_by_name(".dynstr")
            .and_then(|s| s.data().ok())
            .unwrap_or_default();
        let dynamic = section.data().unwrap_or_default();
        let little = elf.is_little_endian();
        for chunk in dynamic.chunks_exact(16) {
            let rd = |b: &[u8]| {
                let a: [u8; 8] = b.try_into().unwrap();
                if little {
                    u64::from_le_bytes(a)
                } else {
                    u64::from_be_bytes(a)
                }
            };
            let (tag, val) = (rd(&chunk[..8]), rd(&chunk[8..]));
            if tag == object::elf::DT_NEEDED as u64 {
                let s = &dynstr[(val as usize).min(dynstr.len())..];
                let end = s.iter().position(|b| *b == 0).unwrap_or(s.len());
                needed.push(String::from_utf8_lossy(&s[..end]).into_owned());
            }
        }
    }
    Ok((interp, needed))
}

fn collect(arch: Arch, root: &Path) -> Result<Userland> {
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut symlinks = Vec::new();
    let busybox = resolve(root, "/bin/busybox").context("busybox-static has no bin/busybox")?;
    files.insert("/bin/busybox".into(), busybox);
    for a in APPLETS {
        symlinks.push((format!("/bin/{a}"), "busybox".to_owned()));
    }
    let lib_dirs = [
        format!("lib/{}", triple(arch)),
        format!("usr/lib/{}", triple(arch)),
    ];
    let mut queue: Vec<PathBuf> = Vec::new();
    for (_, inside, guest) in DYNAMIC_TOOLS {
        let host = resolve(root, inside)
            .with_context(|| format!("{inside} missing in the extracted packages"))?;
        files.insert((*guest).to_owned(), host.clone());
        queue.push(host);
    }
    for (_, inside) in DATA_FILES {
        let inside = inside.replace("{triple}", triple(arch));
        let host = resolve(root, &inside)
            .with_context(|| format!("{inside} missing in the extracted packages"))?;
        files.insert(format!("/{inside}"), host);
    }
    let mut done = BTreeSet::new();
    while let Some(bin) = queue.pop() {
        if !done.insert(bin.clone()) {
            continue;
        }
        let (interp, needed) = elf_deps(&bin)?;
        if let Some(i) = interp {
            let host = resolve(root, &i)
                .with_context(|| format!("ELF interpreter {i} not in the packages"))?;
            files.insert(i, host);
        }
        for soname in needed {
            let found = lib_dirs
                .iter()
                .find_map(|d| resolve(root, &format!("/{d}/{soname}")));
            let host = found.with_context(|| {
                format!("{soname} (needed by {}) not in the packages", bin.display())
            })?;
            files.insert(format!("/lib/{}/{soname}", triple(arch)), host.clone());
            queue.push(host);
        }
    }
    Ok(Userland {
        files: files.into_iter().map(|(g, h)| (h, g)).collect(),
        symlinks,
    })
}
