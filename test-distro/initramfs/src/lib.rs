//! Deterministic newc initramfs images.
//!
//! Entries are kept sorted by path, every parent directory is created, and
//! inode numbers, owners and mtimes are fixed, so the same inputs always give
//! the same bytes. [`Initramfs::key`] hashes the inputs (paths, kinds, modes,
//! contents): [`Initramfs::build_cached`] reuses `<cache>/<key>.cpio` (or
//! `.cpio.gz` beyond [`RAW_LIMIT`]).
//!
//! Every image starts with `/dev/console` (char 5,1): without it the kernel
//! cannot give PID 1 a console and the init's output is lost.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("archive entry {path}: {source}")]
    Archive { path: String, source: io::Error },
    #[error("{path}: {size} bytes is too large for a newc archive entry")]
    TooLarge { path: String, size: u64 },
    #[error("guest path {0:?} must be absolute and normalised (no `.`, `..` or `//`)")]
    BadPath(String),
    #[error("{path} is added twice with different contents")]
    Conflict { path: String },
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Content {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    File(Content),
    CharDev { major: u32, minor: u32 },
    Symlink(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: Kind,
    /// Permission bits only; the file type comes from `kind`.
    perm: u32,
}

/// An initramfs under construction.
#[derive(Debug, Clone)]
pub struct Initramfs {
    /// Keyed by path without the leading `/`.
    entries: BTreeMap<String, Entry>,
}

impl Default for Initramfs {
    fn default() -> Self {
        Self::new()
    }
}

fn normalise(guest: &str) -> Result<String> {
    let rel = guest
        .strip_prefix('/')
        .ok_or_else(|| Error::BadPath(guest.into()))?;
    if rel.is_empty()
        || rel.ends_with('/')
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(Error::BadPath(guest.into()));
    }
    Ok(rel.to_owned())
}

impl Initramfs {
    /// An image holding `/dev/console` (char 5,1).
    pub fn new() -> Self {
        let mut me = Self {
            entries: BTreeMap::new(),
        };
        me.add_char_dev("/dev/console", 5, 1, 0o600)
            .expect("fixed path is valid");
        me
    }

    fn insert(&mut self, guest: &str, entry: Entry) -> Result<()> {
        let rel = normalise(guest)?;
        // Parents first, so the kernel can create the entry when unpacking.
        let mut parent = String::new();
        for comp in rel.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(comp);
            self.entries.entry(parent.clone()).or_insert(Entry {
                kind: Kind::Dir,
                perm: 0o755,
            });
        }
        match self.entries.get(&rel) {
            Some(old) if *old != entry && !(old.kind == Kind::Dir && entry.kind == Kind::Dir) => {
                Err(Error::Conflict { path: guest.into() })
            }
            _ => {
                self.entries.insert(rel, entry);
                Ok(())
            }
        }
    }

    pub fn add_dir(&mut self, guest: &str) -> Result<()> {
        self.insert(
            guest,
            Entry {
                kind: Kind::Dir,
                perm: 0o755,
            },
        )
    }

    /// A file whose bytes are read from `host` when the image is built.
    pub fn add_file(&mut self, guest: &str, host: impl Into<PathBuf>, perm: u32) -> Result<()> {
        self.insert(
            guest,
            Entry {
                kind: Kind::File(Content::Path(host.into())),
                perm,
            },
        )
    }

    pub fn add_bytes(&mut self, guest: &str, bytes: impl Into<Vec<u8>>, perm: u32) -> Result<()> {
        self.insert(
            guest,
            Entry {
                kind: Kind::File(Content::Bytes(bytes.into())),
                perm,
            },
        )
    }

    pub fn add_char_dev(&mut self, guest: &str, major: u32, minor: u32, perm: u32) -> Result<()> {
        self.insert(
            guest,
            Entry {
                kind: Kind::CharDev { major, minor },
                perm,
            },
        )
    }

    pub fn add_symlink(&mut self, guest: &str, target: &str) -> Result<()> {
        self.insert(
            guest,
            Entry {
                kind: Kind::Symlink(target.into()),
                perm: 0o777,
            },
        )
    }

    /// Every regular file under `host` (recursively, symlinks followed) at
    /// the same relative path under `guest`, for which `keep` says yes.
    pub fn add_tree(
        &mut self,
        guest: &str,
        host: &Path,
        keep: &dyn Fn(&Path) -> bool,
    ) -> Result<usize> {
        let mut count = 0;
        let mut stack = vec![(host.to_path_buf(), guest.trim_end_matches('/').to_owned())];
        while let Some((dir, gdir)) = stack.pop() {
            let rd = std::fs::read_dir(&dir).map_err(|source| Error::Read {
                path: dir.clone(),
                source,
            })?;
            for e in rd {
                let e = e.map_err(|source| Error::Read {
                    path: dir.clone(),
                    source,
                })?;
                let path = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                let gpath = format!("{gdir}/{name}");
                if path.is_dir() {
                    stack.push((path, gpath));
                } else if path.is_file() && keep(&path) {
                    self.add_file(&gpath, path, 0o644)?;
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    /// The paths in the image, sorted (without the leading `/`).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    fn bytes_of(content: &Content) -> Result<Vec<u8>> {
        match content {
            Content::Bytes(b) => Ok(b.clone()),
            Content::Path(p) => {
                let mut v = Vec::new();
                std::fs::File::open(p)
                    .and_then(|mut f| f.read_to_end(&mut v))
                    .map_err(|source| Error::Read {
                        path: p.clone(),
                        source,
                    })?;
                Ok(v)
            }
        }
    }

    /// A hash of everything that decides the image's bytes.
    pub fn key(&self) -> Result<String> {
        let mut h = Sha256::new();
        h.update(b"kiln-initramfs v1\0");
        for (path, e) in &self.entries {
            h.update(path.as_bytes());
            h.update([0]);
            h.update(e.perm.to_le_bytes());
            match &e.kind {
                Kind::Dir => h.update(b"d"),
                Kind::CharDev { major, minor } => {
                    h.update(b"c");
                    h.update(major.to_le_bytes());
                    h.update(minor.to_le_bytes());
                }
                Kind::Symlink(t) => {
                    h.update(b"l");
                    h.update(t.as_bytes());
                }
                Kind::File(c) => {
                    h.update(b"f");
                    h.update(Sha256::digest(Self::bytes_of(c)?));
                }
            }
            h.update([0]);
        }
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Writes the uncompressed newc archive.
    pub fn write_cpio<W: Write>(&self, mut w: W) -> Result<W> {
        for (ino, (path, e)) in self.entries.iter().enumerate() {
            let arch_err = |source| Error::Archive {
                path: path.clone(),
                source,
            };
            let (type_bits, data, rdev, nlink) = match &e.kind {
                Kind::Dir => (0o040000, Vec::new(), (0, 0), 2),
                Kind::File(c) => (0o100000, Self::bytes_of(c)?, (0, 0), 1),
                Kind::CharDev { major, minor } => (0o020000, Vec::new(), (*major, *minor), 1),
                Kind::Symlink(t) => (0o120000, t.as_bytes().to_vec(), (0, 0), 1),
            };
            let size = u32::try_from(data.len()).map_err(|_| Error::TooLarge {
                path: path.clone(),
                size: data.len() as u64,
            })?;
            let mut ww = cpio::newc::Builder::new(path)
                .ino(ino as u32 + 1)
                .mode(type_bits | (e.perm & 0o7777))
                .uid(0)
                .gid(0)
                .nlink(nlink)
                .mtime(0)
                .rdev_major(rdev.0)
                .rdev_minor(rdev.1)
                .write(w, size);
            ww.write_all(&data).map_err(arch_err)?;
            w = ww.finish().map_err(arch_err)?;
        }
        cpio::newc::trailer(w).map_err(|source| Error::Archive {
            path: "TRAILER!!!".into(),
            source,
        })
    }

    /// The gzip-compressed archive (gzip header without mtime or name).
    pub fn build_gz(&self) -> Result<Vec<u8>> {
        let enc = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::new(6));
        let enc = self.write_cpio(enc)?;
        enc.finish().map_err(|source| Error::Archive {
            path: "(gzip)".into(),
            source,
        })
    }

    /// Bytes of file contents (symlink targets included): the archive is
    /// this plus about 120 bytes of header per entry.
    pub fn content_len(&self) -> Result<u64> {
        let mut total = 0u64;
        for (path, e) in &self.entries {
            total += match &e.kind {
                Kind::File(Content::Bytes(b)) => b.len() as u64,
                Kind::File(Content::Path(p)) => std::fs::metadata(p)
                    .map_err(|source| Error::Read {
                        path: p.clone(),
                        source,
                    })?
                    .len(),
                Kind::Symlink(t) => t.len() as u64,
                Kind::Dir | Kind::CharDev { .. } => 0,
            } + 120
                + path.len() as u64;
        }
        Ok(total)
    }

    /// `<cache_dir>/<key>.cpio` (up to [`RAW_LIMIT`]) or `<key>.cpio.gz`,
    /// built only when absent.
    pub fn build_cached(&self, cache_dir: &Path) -> Result<PathBuf> {
        let raw = self.content_len()? <= RAW_LIMIT;
        let name = format!("{}.cpio{}", self.key()?, if raw { "" } else { ".gz" });
        let path = cache_dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
        let werr = |source| Error::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(cache_dir).map_err(werr)?;
        // Write then rename, so a reader never sees half an image.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let write = || -> Result<()> {
            let file = std::fs::File::create(&tmp).map_err(|source| Error::Write {
                path: tmp.clone(),
                source,
            })?;
            let w = io::BufWriter::new(file);
            let mut w = if raw {
                self.write_cpio(w)?
            } else {
                let enc = flate2::GzBuilder::new()
                    .mtime(0)
                    .write(w, flate2::Compression::new(6));
                self.write_cpio(enc)?
                    .finish()
                    .map_err(|source| Error::Archive {
                        path: "(gzip)".into(),
                        source,
                    })?
            };
            w.flush().map_err(|source| Error::Write {
                path: tmp.clone(),
                source,
            })
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &path).map_err(werr)?;
        Ok(path)
    }
}

/// Images up to this size are cached uncompressed. Under TCG the guest
/// spends seconds inflating a gzip'd initramfs (1.6 to 2.8 s of a 6.1
/// x86_64 boot for 14 MB gzip'd, measured with `initcall_debug`), while a
/// raw one is only parsed. Larger images (a whole test suite) stay gzip'd,
/// so the archive and the files unpacked from it fit the guest's memory
/// together.
pub const RAW_LIMIT: u64 = 192 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(order: bool) -> Initramfs {
        let mut i = Initramfs::new();
        let mut adds: Vec<(&str, &[u8])> = vec![
            ("/init", b"#!init"),
            ("/kiln/plan", b"test\t1\t/t"),
            ("/bpf/a.bpf.o", b"\x7fELF"),
        ];
        if order {
            adds.reverse();
        }
        for (p, b) in adds {
            i.add_bytes(p, b.to_vec(), 0o755).unwrap();
        }
        i
    }

    fn entries(bytes: &[u8]) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut r = bytes;
        loop {
            let mut reader = cpio::newc::Reader::new(r).unwrap();
            let e = reader.entry();
            if e.is_trailer() {
                break;
            }
            let meta = (
                e.name().to_owned(),
                e.mode(),
                e.rdev_major(),
                e.rdev_minor(),
            );
            let mut data = Vec::new();
            reader.read_to_end(&mut data).unwrap();
            out.push((meta.0, meta.1, meta.2, meta.3, data));
            r = reader.finish().unwrap();
        }
        out
    }

    #[test]
    fn same_inputs_same_bytes_in_any_order() {
        let a = sample(false);
        let b = sample(true);
        assert_eq!(a.key().unwrap(), b.key().unwrap());
        assert_eq!(a.build_gz().unwrap(), b.build_gz().unwrap());
        let mut c = sample(false);
        c.add_bytes("/extra", b"x".to_vec(), 0o644).unwrap();
        assert_ne!(a.key().unwrap(), c.key().unwrap());
    }

    #[test]
    fn console_parents_and_modes() {
        let mut buf = Vec::new();
        sample(false).write_cpio(&mut buf).unwrap();
        let es = entries(&buf);
        let names: Vec<&str> = es.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bpf",
                "bpf/a.bpf.o",
                "dev",
                "dev/console",
                "init",
                "kiln",
                "kiln/plan"
            ]
        );
        let console = &es[3];
        assert_eq!(
            (console.1 & 0o170000, console.2, console.3),
            (0o020000, 5, 1)
        );
        let init = &es[4];
        assert_eq!(init.1, 0o100755);
        assert_eq!(init.4, b"#!init");
        assert_eq!(es[0].1 & 0o170000, 0o040000);
    }

    #[test]
    fn bad_paths_and_conflicts() {
        let mut i = Initramfs::new();
        for p in ["relative", "/a/../b", "/a//b", "/", "/a/"] {
            assert!(matches!(i.add_dir(p), Err(Error::BadPath(_))), "{p}");
        }
        i.add_bytes("/x", b"1".to_vec(), 0o644).unwrap();
        i.add_bytes("/x", b"1".to_vec(), 0o644).unwrap();
        assert!(matches!(
            i.add_bytes("/x", b"2".to_vec(), 0o644),
            Err(Error::Conflict { .. })
        ));
    }

    #[test]
    fn cache_reuses_the_file() {
        let dir = std::env::temp_dir().join(format!("kiln-initramfs-test-{}", std::process::id()));
        let a = sample(false);
        let p1 = a.build_cached(&dir).unwrap();
        let m1 = std::fs::metadata(&p1).unwrap().modified().unwrap();
        let p2 = sample(true).build_cached(&dir).unwrap();
        assert_eq!(p1, p2);
        assert_eq!(std::fs::metadata(&p2).unwrap().modified().unwrap(), m1);
        // Small: cached raw.
        assert!(p1.to_string_lossy().ends_with(".cpio"), "{}", p1.display());
        assert_eq!(
            std::fs::read(&p1).unwrap(),
            a.write_cpio(Vec::new()).unwrap()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
