//! The BTF of the catalog's kernels, taken from their packages once and
//! cached, so that `kiln check --kernels` answers without booting anything.
//!
//! Debian ships the kernel as an x86 bzImage (the setup header names the
//! compressed payload: gzip, xz or zstd, an ELF vmlinux inside) or an arm64
//! `Image` (uncompressed; an EFI zboot image names its payload too). The BTF
//! is the blob the kernel serves as /sys/kernel/btf/vmlinux: the `.BTF`
//! section of the ELF, or found by its header in a raw image and checked by
//! parsing it whole.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::kernels::{self, Catalog};
use crate::vm::Arch;

/// Where the BTF of catalog kernel `version` for `arch` is cached.
pub fn cache_path(version: &str, arch: Arch) -> PathBuf {
    crate::setup::cache_dir()
        .join("btf")
        .join(arch.as_str())
        .join(format!("{version}.btf"))
}

/// Extracts (once) and returns the path of every requested kernel's BTF.
pub fn ensure_all(versions: &[String], arches: &[Arch]) -> Result<Vec<(String, Arch, PathBuf)>> {
    let catalog = Catalog::load()?;
    let versions: Vec<String> = if versions.is_empty() {
        catalog.versions().into_iter().map(str::to_string).collect()
    } else {
        versions.to_vec()
    };
    let arches = if arches.is_empty() {
        catalog.arches()?
    } else {
        arches.to_vec()
    };
    let mut out = Vec::new();
    for version in &versions {
        for &arch in &arches {
            let path = cache_path(version, arch);
            if !path.exists() {
                let files = kernels::ensure(&catalog, version, arch)?;
                let image = std::fs::read(&files.vmlinuz)
                    .with_context(|| format!("reading {}", files.vmlinuz.display()))?;
                let btf = btf_of_image(&image)
                    .with_context(|| format!("the BTF of {}", files.vmlinuz.display()))?;
                std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
                let tmp = path.with_extension("btf.tmp");
                std::fs::write(&tmp, &btf)?;
                std::fs::rename(&tmp, &path)?;
                eprintln!(
                    "kernels: {version} {arch}: {} KiB of BTF from {} -> {}",
                    btf.len() / 1024,
                    files.vmlinuz.display(),
                    path.display()
                );
            }
            out.push((version.clone(), arch, path));
        }
    }
    Ok(out)
}

/// The vmlinux BTF inside a kernel image.
pub fn btf_of_image(image: &[u8]) -> Result<Vec<u8>> {
    let vmlinux = decompressed_kernel(image)?;
    if vmlinux.starts_with(b"\x7fELF") {
        use object::{Object, ObjectSection};
        let elf = object::File::parse(&*vmlinux).context("the decompressed kernel is no ELF")?;
        if let Some(section) = elf.section_by_name(".BTF") {
            return Ok(section.data().context(".BTF")?.to_vec());
        }
    }
    find_btf(&vmlinux).context("no BTF in the kernel image (CONFIG_DEBUG_INFO_BTF off?)")
}

/// The kernel proper: an x86 bzImage's or an EFI zboot image's payload,
/// decompressed, or the image itself when it is not compressed.
fn decompressed_kernel(image: &[u8]) -> Result<Vec<u8>> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(image.get(at..at + 4)?.try_into().ok()?))
    };
    // x86 boot protocol: "HdrS" at 0x202, payload_offset/length at 0x248/0x24c,
    // relative to the protected-mode code after the setup sectors.
    if image.get(0x202..0x206) == Some(b"HdrS") {
        let setup_sects = match image.get(0x1f1).copied().unwrap_or(0) {
            0 => 4,
            n => usize::from(n),
        };
        let start = (setup_sects + 1) * 512 + u32_at(0x248).context("setup header")? as usize;
        let len = u32_at(0x24c).context("setup header")? as usize;
        let payload = image
            .get(start..start.saturating_add(len))
            .context("bzImage payload out of the file")?;
        return decompress(payload);
    }
    // EFI zboot: "zimg" at 4, payload offset and size at 8 and 12.
    if image.get(4..8) == Some(b"zimg") {
        let start = u32_at(8).context("zboot header")? as usize;
        let len = u32_at(12).context("zboot header")? as usize;
        let payload = image
            .get(start..start.saturating_add(len))
            .context("zboot payload out of the file")?;
        return decompress(payload);
    }
    Ok(image.to_vec())
}

fn decompress(payload: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    if payload.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(payload).read_to_end(&mut out)?;
    } else if payload.starts_with(b"\xfd7zXZ\0") {
        lzma_rs::xz_decompress(&mut std::io::BufReader::new(payload), &mut out)
            .map_err(|e| anyhow::anyhow!("xz: {e}"))?;
    } else if payload.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let mut decoder = ruzstd::decoding::StreamingDecoder::new(payload)
            .map_err(|e| anyhow::anyhow!("zstd: {e}"))?;
        decoder
            .read_to_end(&mut out)
            .map_err(|e| anyhow::anyhow!("zstd after {} bytes: {e:?}", out.len()))?;
    } else if payload.starts_with(&[0x02, 0x21, 0x4c, 0x18]) {
        out = lz4_legacy(&payload[4..])?;
    } else {
        bail!(
            "the kernel payload is compressed in a way this does not read (first bytes {:02x?}; gzip, xz, zstd and lz4 are)",
            &payload[..payload.len().min(6)]
        );
    }
    Ok(out)
}

/// The kernel's LZ4 "legacy" stream (`lz4 -l`): blocks of at most 8 MiB
/// decompressed, each behind its compressed size; the build appends the
/// total decompressed size, which ends the walk like any word that is no
/// block.
fn lz4_legacy(mut data: &[u8]) -> Result<Vec<u8>> {
    const BLOCK: usize = 8 << 20;
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = u32::from_le_bytes(data[..4].try_into()?) as usize;
        if len == 0x184c_2102 {
            // A concatenated stream starts again.
            data = &data[4..];
            continue;
        }
        let Some(block) = data.get(4..4 + len) else {
            break;
        };
        let mut buf = vec![0u8; BLOCK];
        let n = lz4_flex::block::decompress_into(block, &mut buf)
            .map_err(|e| anyhow::anyhow!("lz4 block at output {}: {e}", out.len()))?;
        out.extend_from_slice(&buf[..n]);
        data = &data[4 + len..];
    }
    if out.is_empty() {
        bail!("lz4: no block decompressed");
    }
    Ok(out)
}

/// The largest blob that starts with a BTF header and parses whole.
fn find_btf(data: &[u8]) -> Option<Vec<u8>> {
    const MAGIC: [u8; 4] = [0x9f, 0xeb, 0x01, 0x00];
    let mut best: Option<&[u8]> = None;
    let mut at = 0;
    while let Some(i) = data[at..].windows(4).position(|w| w == MAGIC) {
        let start = at + i;
        at = start + 1;
        let word = |o: usize| -> Option<usize> {
            Some(u32::from_le_bytes(data.get(start + o..start + o + 4)?.try_into().ok()?) as usize)
        };
        let (Some(hdr_len), Some(str_off), Some(str_len)) = (word(4), word(16), word(20)) else {
            continue;
        };
        if hdr_len != 24 {
            continue;
        }
        let end = start + hdr_len + str_off + str_len;
        let Some(blob) = data.get(start..end) else {
            continue;
        };
        if best.is_some_and(|b| b.len() >= blob.len()) {
            continue;
        }
        if kiln_obj::btf::Btf::from_bytes(blob.to_vec()).is_ok() {
            best = Some(blob);
        }
    }
    best.map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_a_kernel() {
        assert!(btf_of_image(b"hello").is_err());
    }

    /// A small BTF (one `int`), embedded in noise after a false start, is
    /// found again whole.
    #[test]
    fn finds_btf_in_a_raw_image() {
        let mut btf = Vec::new();
        for word in [0x0001_eb9f_u32, 24, 0, 16, 16, 5] {
            btf.extend_from_slice(&word.to_le_bytes());
        }
        // INT "int": name_off 1, kind 1, size 4, 32 bits.
        for word in [1u32, 1 << 24, 4, 32] {
            btf.extend_from_slice(&word.to_le_bytes());
        }
        btf.extend_from_slice(b"\0int\0");
        assert!(kiln_obj::btf::Btf::from_bytes(btf.clone()).is_ok());
        let mut image = vec![0u8; 4096];
        image.extend_from_slice(&[0x9f, 0xeb, 0x01, 0x00, 1, 2, 3]);
        image.extend_from_slice(&btf);
        image.extend_from_slice(&[0u8; 100]);
        assert_eq!(find_btf(&image).as_deref(), Some(&btf[..]));
    }
}
