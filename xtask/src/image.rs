//! What a kernel image is, read from its header before anything boots:
//! the architecture it runs on and its release, so that `--kernel-image` of
//! the wrong arch, a file that is no kernel, or `--modules` of another
//! release are refused up front with the reason, not after a silent boot.
//!
//! - x86 bzImage: `HdrS` at 0x202 (the boot protocol's setup header); the
//!   16-bit `kernel_version` at 0x20e points (+0x200) at the version string.
//! - arm64 Image: magic `ARM\x64` at 0x38; the release is in the
//!   `Linux version ...` banner inside it.
//! - gzip (Debian's arm64 `vmlinuz`) and EFI zboot (`MZ` + `zimg`, gzip
//!   payload) are unpacked first; an ELF `vmlinux` is read by `e_machine`.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::vm::Arch;

/// A kernel image's architecture and, when its header carries one, release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelImage {
    pub arch: Arch,
    pub release: Option<String>,
    /// What kind of file it is, for messages (`x86 bzImage`, `gzip'd arm64 Image`, ...).
    pub format: String,
}

/// Largest image read (compressed or not): kernels are tens of MiB.
const MAX_IMAGE: u64 = 512 << 20;

/// Reads the header of the image at `path`.
pub fn inspect(path: &Path) -> Result<KernelImage> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", path.display());
    }
    if meta.len() > MAX_IMAGE {
        bail!(
            "{} is {} MiB, larger than any kernel image",
            path.display(),
            meta.len() >> 20
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    identify(&bytes).with_context(|| format!("--kernel-image {}", path.display()))
}

/// The image in `bytes`; gzip and EFI zboot wrappers are opened once.
pub fn identify(bytes: &[u8]) -> Result<KernelImage> {
    if let Some(k) = plain(bytes) {
        return Ok(k);
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let inner = gunzip(bytes)?;
        return plain(&inner)
            .map(|k| KernelImage {
                format: format!("gzip'd {}", k.format),
                ..k
            })
            .context("a gzip file that holds no kernel image");
    }
    if bytes.starts_with(b"MZ") && bytes.get(4..8) == Some(b"zimg") {
        let field = |at: usize| {
            bytes
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        };
        let (Some(offset), Some(size)) = (field(8), field(12)) else {
            bail!("a truncated EFI zboot image");
        };
        let kind = bytes.get(24..32).unwrap_or_default();
        let kind = String::from_utf8_lossy(kind)
            .trim_end_matches('\0')
            .to_owned();
        let payload = bytes
            .get(offset..offset.saturating_add(size))
            .context("an EFI zboot image whose payload lies past its end")?;
        if kind != "gzip" {
            bail!("an EFI zboot image compressed with {kind:?}; only gzip is read here");
        }
        return plain(&gunzip(payload)?)
            .map(|k| KernelImage {
                format: format!("EFI zboot {}", k.format),
                ..k
            })
            .context("an EFI zboot image that holds no kernel image");
    }
    bail!("not a kernel image: {}", describe_unknown(bytes))
}

/// A bzImage, arm64 Image or ELF vmlinux, without a wrapper.
fn plain(bytes: &[u8]) -> Option<KernelImage> {
    if bytes.get(0x202..0x206) == Some(b"HdrS") {
        let ptr = bytes
            .get(0x20e..0x210)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
            .unwrap_or(0);
        let release = (ptr != 0)
            .then(|| c_string_at(bytes, ptr + 0x200))
            .flatten()
            .and_then(|v| v.split_whitespace().next().map(str::to_owned));
        return Some(KernelImage {
            arch: Arch::X86_64,
            release,
            format: "x86 bzImage".into(),
        });
    }
    if bytes.get(0x38..0x3c) == Some(b"ARM\x64") {
        return Some(KernelImage {
            arch: Arch::Aarch64,
            release: banner_release(bytes),
            format: "arm64 Image".into(),
        });
    }
    if bytes.starts_with(b"\x7fELF") && bytes.len() > 20 {
        let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
        let arch = match machine {
            62 => Arch::X86_64,
            183 => Arch::Aarch64,
            _ => return None,
        };
        return Some(KernelImage {
            arch,
            release: banner_release(bytes),
            format: "ELF vmlinux".into(),
        });
    }
    None
}

/// The release in the `Linux version 6.1.0-57-cloud-arm64 (...)` banner.
fn banner_release(bytes: &[u8]) -> Option<String> {
    const BANNER: &[u8] = b"Linux version ";
    let at = bytes.windows(BANNER.len()).position(|w| w == BANNER)? + BANNER.len();
    let text = c_string_at(bytes, at)?;
    text.split_whitespace().next().map(str::to_owned)
}

fn c_string_at(bytes: &[u8], at: usize) -> Option<String> {
    let rest = bytes.get(at..)?;
    let end = rest.iter().take(256).position(|b| *b == 0)?;
    let s = std::str::from_utf8(&rest[..end]).ok()?;
    (!s.trim().is_empty()).then(|| s.to_owned())
}

fn gunzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(MAX_IMAGE)
        .read_to_end(&mut out)
        .context("decompressing the gzip'd image")?;
    Ok(out)
}

/// What the first bytes look like, for the refusal.
fn describe_unknown(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(512)];
    if bytes.is_empty() {
        return "the file is empty".into();
    }
    let printable = head
        .iter()
        .filter(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
        .count();
    let what = if printable * 10 >= head.len() * 9 {
        "it looks like a text file".to_owned()
    } else {
        let hex: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("it starts with {}", hex.join(" "))
    };
    format!(
        "{what}; an x86 bzImage has `HdrS` at 0x202, an arm64 Image `ARM\\x64` at 0x38 (either may be gzip'd)"
    )
}

/// The release the modules in `dir` were built for: the first word of
/// `vermagic=` in a module's `.modinfo`.
pub fn modules_release(dir: &Path) -> Result<String> {
    if !dir.is_dir() {
        bail!("--modules {}: no such directory", dir.display());
    }
    let index = crate::modules::index(dir)?;
    let Some((_, path)) = index.iter().next() else {
        bail!("--modules {}: no kernel module (*.ko) in it", dir.display());
    };
    let bytes = crate::modules::read_module(path)?;
    vermagic_release(&bytes).with_context(|| {
        format!(
            "--modules {}: {} has no vermagic in its .modinfo",
            dir.display(),
            path.display()
        )
    })
}

fn vermagic_release(module: &[u8]) -> Option<String> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(module).ok()?;
    let modinfo = file.section_by_name(".modinfo")?.data().ok()?;
    modinfo
        .split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"vermagic="))
        .and_then(|v| {
            String::from_utf8_lossy(v)
                .split_whitespace()
                .next()
                .map(str::to_owned)
        })
}

/// Checks `--kernel-image` (and `--modules`) against `--arch` before
/// anything is built or booted; returns the image's arch (what to boot
/// when `--arch` was not given) and release.
pub fn check_custom(
    image: &Path,
    modules: Option<&Path>,
    arch: Option<Arch>,
) -> Result<KernelImage> {
    let k = inspect(image)?;
    if let Some(want) = arch
        && want != k.arch
    {
        bail!(
            "--kernel-image {} is an {} for {}, not for --arch {want}; pass --arch {} or an image built for {want}",
            image.display(),
            k.format,
            k.arch,
            k.arch
        );
    }
    if let Some(dir) = modules {
        let m = modules_release(dir)?;
        match &k.release {
            Some(r) if *r != m => bail!(
                "--modules {} holds modules of release {m}, but --kernel-image {} is release {r}: the kernel would refuse them (Exec format error)",
                dir.display(),
                image.display()
            ),
            _ => {}
        }
    }
    Ok(k)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal bzImage header: `HdrS` and a version string.
    pub(crate) fn fake_bzimage(release: &str) -> Vec<u8> {
        let mut b = vec![0u8; 0x400];
        b[0] = b'M';
        b[1] = b'Z';
        b[0x202..0x206].copy_from_slice(b"HdrS");
        let version = format!("{release} (someone@example) #1 SMP\0");
        let at = 0x300;
        b[at..at + version.len()].copy_from_slice(version.as_bytes());
        b[0x20e..0x210].copy_from_slice(&((at - 0x200) as u16).to_le_bytes());
        b
    }

    pub(crate) fn fake_arm64_image(release: &str) -> Vec<u8> {
        let mut b = vec![0u8; 0x100];
        b[0x38..0x3c].copy_from_slice(b"ARM\x64");
        b.extend_from_slice(format!("Linux version {release} (gcc) #1\0").as_bytes());
        b
    }

    #[test]
    fn bzimage_arch_and_release() {
        let k = identify(&fake_bzimage("6.1.0-57-cloud-amd64")).unwrap();
        assert_eq!(k.arch, Arch::X86_64);
        assert_eq!(k.release.as_deref(), Some("6.1.0-57-cloud-amd64"));
    }

    #[test]
    fn arm64_image_plain_and_gzipped() {
        let raw = fake_arm64_image("6.1.0-57-cloud-arm64");
        let k = identify(&raw).unwrap();
        assert_eq!(
            (k.arch, k.release.as_deref()),
            (Arch::Aarch64, Some("6.1.0-57-cloud-arm64"))
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        let k = identify(&gz.finish().unwrap()).unwrap();
        assert_eq!(k.arch, Arch::Aarch64);
        assert!(k.format.starts_with("gzip'd"), "{}", k.format);
    }

    #[test]
    fn text_is_no_kernel() {
        let e = identify(b"#!/bin/sh\necho not a kernel\n").unwrap_err();
        assert!(
            format!("{e:#}").contains("not a kernel image: it looks like a text file"),
            "{e:#}"
        );
        assert!(format!("{:#}", identify(b"").unwrap_err()).contains("empty"));
    }

    #[test]
    fn wrong_arch_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("kiln-image-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let image = dir.join("bzImage");
        std::fs::write(&image, fake_bzimage("6.1.0-57-cloud-amd64")).unwrap();
        let e = check_custom(&image, None, Some(Arch::Aarch64)).unwrap_err();
        let ok = check_custom(&image, None, None).map(|k| k.arch);
        let missing = check_custom(&image, Some(&dir.join("nope")), None).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            format!("{e:#}").contains("is an x86 bzImage for x86_64, not for --arch aarch64"),
            "{e:#}"
        );
        assert_eq!(ok.unwrap(), Arch::X86_64);
        assert!(
            format!("{missing:#}").contains("--modules") && format!("{missing:#}").contains("nope"),
            "{missing:#}"
        );
    }

    #[test]
    fn modules_of_another_release_are_refused() {
        let dir = std::env::temp_dir().join(format!("kiln-mods-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let image = dir.join("bzImage");
        std::fs::write(&image, fake_bzimage("6.1.0-57-cloud-amd64")).unwrap();
        let modules = dir.join("lib/modules/6.12.9+deb13-cloud-amd64");
        std::fs::create_dir_all(&modules).unwrap();
        std::fs::write(
            modules.join("veth.ko"),
            fake_module("6.12.9+deb13-cloud-amd64"),
        )
        .unwrap();
        let e = check_custom(&image, Some(&modules), None).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        let e = format!("{e:#}");
        assert!(
            e.contains("holds modules of release 6.12.9+deb13-cloud-amd64")
                && e.contains("is release 6.1.0-57-cloud-amd64"),
            "{e}"
        );
    }

    /// A relocatable ELF with nothing but a `.modinfo` section.
    fn fake_module(release: &str) -> Vec<u8> {
        use object::write::Object;
        let mut obj = Object::new(
            object::BinaryFormat::Elf,
            object::Architecture::X86_64,
            object::Endianness::Little,
        );
        let section = obj.add_section(
            Vec::new(),
            b".modinfo".to_vec(),
            object::SectionKind::ReadOnlyData,
        );
        let info = format!("name=veth\0vermagic={release} SMP mod_unload modversions \0");
        obj.append_section_data(section, info.as_bytes(), 1);
        obj.write().unwrap()
    }

    #[test]
    fn cached_catalog_kernels_are_read() {
        // Whatever catalog kernels this machine has fetched: each must be
        // recognised as its own arch, with a release.
        let root = crate::apt::cache_root().join("kernels");
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let Ok(versions) = std::fs::read_dir(root.join(arch.as_str())) else {
                continue;
            };
            for v in versions.filter_map(|e| e.ok()) {
                for sub in ["boot", "usr/lib/modules"] {
                    let Ok(rd) = std::fs::read_dir(v.path().join(sub)) else {
                        continue;
                    };
                    for f in rd.filter_map(|e| e.ok()).map(|e| e.path()) {
                        let name = f.file_name().unwrap().to_string_lossy().into_owned();
                        if name.starts_with("vmlinuz") && f.is_file() {
                            let k = inspect(&f).unwrap();
                            assert_eq!(k.arch, arch, "{}", f.display());
                            let release = k.release.clone().unwrap();
                            // Its own modules match; any other release is refused.
                            let modules = v.path().join("lib/modules").join(&release);
                            if modules.is_dir() {
                                assert_eq!(modules_release(&modules).unwrap(), release);
                                check_custom(&f, Some(&modules), Some(arch)).unwrap();
                            }
                        }
                    }
                }
            }
        }
    }
}
