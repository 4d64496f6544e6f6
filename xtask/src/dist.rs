//! `cargo xtask dist`: what ships to servers and clusters.
//!
//! - a static `kiln` per architecture (`target/dist/kiln-VERSION-ARCH`),
//! - an OCI image of it, built from nothing (no base image, nothing pulled):
//!   one gzip layer holding `/usr/local/bin/kiln` and the directories the
//!   agent uses, written as an OCI image layout (`target/dist/oci/`, one
//!   manifest per architecture under one index) and as a single-arch
//!   `oci-archive` per architecture for `podman load`. The bytes depend only
//!   on the binary and the source revision's commit time, so two builds of
//!   one commit give the same image digest.
//! - the quickstart object beside the Kubernetes example's manifest
//!   (`deploy/kubernetes/manifests.d/counter.bpf.o`, ignored by git).
//!
//! `--podman` then runs the image as a container against the host kernel:
//! it applies the quickstart manifest from a mounted directory, and the
//! host's `kiln status` must find it as declared.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::kernels::repo_root;
use crate::vm::Arch;

#[derive(clap::Args)]
pub struct Args {
    /// Architectures to build for (default: x86_64 and aarch64).
    #[arg(long)]
    arch: Vec<Arch>,
    /// Build with the dev profile (fast; what the VM tests already built)
    /// instead of release.
    #[arg(long)]
    debug: bool,
    /// Then run the host architecture's image under podman against this
    /// kernel (root; skipped with the reason where podman cannot run).
    #[arg(long)]
    podman: bool,
    /// Only validate deploy/: the Kubernetes YAML against the schemas
    /// (offline, strict) and the systemd unit; build nothing.
    #[arg(long, conflicts_with_all = ["arch", "debug", "podman"])]
    check_deploy: bool,
}

pub fn run(args: Args) -> Result<()> {
    if args.check_deploy {
        return check_deploy();
    }
    crate::setup::ensure()?;
    let arches = if args.arch.is_empty() {
        vec![Arch::X86_64, Arch::Aarch64]
    } else {
        args.arch.clone()
    };
    let out = repo_root().join("target/dist");
    std::fs::create_dir_all(&out)?;
    let version = env!("CARGO_PKG_VERSION");
    let (revision, epoch) = source_revision();

    let objects = crate::build_ebpf::build_all()?;
    let counter = objects
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == "counter.bpf.o"))
        .context("build-ebpf built no counter.bpf.o (manifests/examples/quickstart/counter)")?;
    let k8s_object = repo_root().join("deploy/kubernetes/manifests.d/counter.bpf.o");
    std::fs::copy(counter, &k8s_object)
        .with_context(|| format!("copying {} to {}", counter.display(), k8s_object.display()))?;
    eprintln!("dist: {}", k8s_object.display());

    let mut images = Vec::new();
    for &arch in &arches {
        let built = crate::cross::build_kiln(arch, !args.debug)?;
        let bin = out.join(format!("kiln-{version}-{arch}"));
        std::fs::copy(&built, &bin)?;
        eprintln!("dist: {} (static)", bin.display());
        images.push(Image::build(
            arch,
            &std::fs::read(&bin)?,
            version,
            &revision,
            epoch,
        )?);
    }
    let layout = out.join("oci");
    write_layout(&layout, &images, version)?;
    eprintln!(
        "dist: {} (OCI image layout, {} arch(es))",
        layout.display(),
        images.len()
    );
    for image in &images {
        let archive = out.join(format!("kiln-{version}-{}.oci.tar", image.arch));
        write_archive(&archive, image, version)?;
        eprintln!(
            "dist: {} (podman load -i ...; image {})",
            archive.display(),
            image.manifest_digest()
        );
    }
    if args.podman {
        let host = images
            .iter()
            .find(|i| i.arch == Arch::host())
            .context("--podman needs an image of the host's architecture")?;
        podman_check(
            &out.join(format!("kiln-{version}-{}.oci.tar", host.arch)),
            version,
        )?;
    }
    Ok(())
}

/// The commit and its time (the image's `created`), or "unknown" and 0
/// outside a git checkout.
fn source_revision() -> (String, u64) {
    let out = Command::new("git")
        .args(["log", "-1", "--format=%H %ct"])
        .current_dir(repo_root())
        .output();
    let text = out
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    match text.split_once(' ') {
        Some((rev, time)) => (rev.to_string(), time.parse().unwrap_or(0)),
        None => ("unknown".into(), 0),
    }
}

/// A content-addressed blob.
struct Blob {
    media_type: &'static str,
    bytes: Vec<u8>,
}

impl Blob {
    fn digest(&self) -> String {
        format!("sha256:{:x}", Sha256::digest(&self.bytes))
    }

    fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({
            "mediaType": self.media_type,
            "digest": self.digest(),
            "size": self.bytes.len(),
        })
    }
}

/// One architecture's image: its layer, config and manifest.
struct Image {
    arch: Arch,
    layer: Blob,
    config: Blob,
    manifest: Blob,
}

impl Image {
    fn build(arch: Arch, kiln: &[u8], version: &str, revision: &str, epoch: u64) -> Result<Image> {
        let tar = layer_tar(kiln, epoch)?;
        let diff_id = format!("sha256:{:x}", Sha256::digest(&tar));
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::best());
        gz.write_all(&tar)?;
        let layer = Blob {
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
            bytes: gz.finish()?,
        };
        let created = rfc3339(epoch);
        let labels = serde_json::json!({
            "org.opencontainers.image.title": "kiln",
            "org.opencontainers.image.description": "Kiln: declarative eBPF deployments (kiln agent keeps manifests applied)",
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.revision": revision,
            "org.opencontainers.image.created": created,
            "org.opencontainers.image.licenses": "MIT OR Apache-2.0",
        });
        let config = serde_json::json!({
            "created": created,
            "architecture": arch.deb(),
            "os": "linux",
            "config": {
                "Entrypoint": ["/usr/local/bin/kiln"],
                "Cmd": ["agent", "--dir", "/etc/kiln/manifests.d", "--listen", "0.0.0.0:9464"],
                "Env": ["PATH=/usr/local/bin"],
                "WorkingDir": "/",
                "ExposedPorts": {"9464/tcp": {}},
                "Labels": labels,
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": "cargo xtask dist"}],
        });
        let config = Blob {
            media_type: "application/vnd.oci.image.config.v1+json",
            bytes: serde_json::to_vec(&config)?,
        };
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config.descriptor(),
            "layers": [layer.descriptor()],
            "annotations": labels,
        });
        let manifest = Blob {
            media_type: "application/vnd.oci.image.manifest.v1+json",
            bytes: serde_json::to_vec(&manifest)?,
        };
        Ok(Image {
            arch,
            layer,
            config,
            manifest,
        })
    }

    fn manifest_digest(&self) -> String {
        self.manifest.digest()
    }

    fn blobs(&self) -> [&Blob; 3] {
        [&self.layer, &self.config, &self.manifest]
    }

    fn index_entry(&self, version: &str) -> serde_json::Value {
        let mut d = self.manifest.descriptor();
        d["platform"] = serde_json::json!({"architecture": self.arch.deb(), "os": "linux"});
        d["annotations"] =
            serde_json::json!({"org.opencontainers.image.ref.name": format!("kiln:{version}")});
        d
    }
}

/// `epoch` (seconds) as RFC 3339 UTC.
fn rfc3339(epoch: u64) -> String {
    let days = epoch / 86400;
    let secs = epoch % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The image's one layer: the binary and the directories the agent uses,
/// owned by root, every time `epoch`.
fn layer_tar(kiln: &[u8], epoch: u64) -> Result<Vec<u8>> {
    let mut tar = Vec::new();
    for dir in [
        "etc/",
        "etc/kiln/",
        "etc/kiln/manifests.d/",
        "proc/",
        "run/",
        "run/kiln/",
        "sys/",
        "tmp/",
        "usr/",
        "usr/local/",
        "usr/local/bin/",
    ] {
        let mode = if dir == "tmp/" { 0o1777 } else { 0o755 };
        tar_entry(&mut tar, dir, b'5', mode, &[], epoch)?;
    }
    tar_entry(&mut tar, "usr/local/bin/kiln", b'0', 0o755, kiln, epoch)?;
    // Two zero blocks end the archive.
    tar.extend_from_slice(&[0; 1024]);
    Ok(tar)
}

/// Appends one ustar entry (name up to 100 bytes).
fn tar_entry(
    tar: &mut Vec<u8>,
    name: &str,
    kind: u8,
    mode: u32,
    data: &[u8],
    mtime: u64,
) -> Result<()> {
    if name.len() > 100 {
        bail!("tar entry name over 100 bytes: {name}");
    }
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let mut octal = |at: usize, len: usize, value: u64| {
        let s = format!("{value:0width$o}\0", width = len - 1);
        h[at..at + len].copy_from_slice(s.as_bytes());
    };
    octal(100, 8, u64::from(mode));
    octal(108, 8, 0); // uid
    octal(116, 8, 0); // gid
    octal(124, 12, data.len() as u64);
    octal(136, 12, mtime);
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    tar.extend_from_slice(&h);
    tar.extend_from_slice(data);
    tar.resize(tar.len().next_multiple_of(512), 0);
    Ok(())
}

fn index(images: &[&Image], version: &str) -> Result<Vec<u8>> {
    let manifests: Vec<_> = images.iter().map(|i| i.index_entry(version)).collect();
    Ok(serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))?)
}

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// An OCI image layout directory holding every image under one index.
fn write_layout(dir: &Path, images: &[Image], version: &str) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    for blob in images.iter().flat_map(|i| i.blobs()) {
        let digest = blob.digest();
        std::fs::write(blobs.join(&digest["sha256:".len()..]), &blob.bytes)?;
    }
    std::fs::write(dir.join("oci-layout"), OCI_LAYOUT)?;
    let all: Vec<&Image> = images.iter().collect();
    std::fs::write(dir.join("index.json"), index(&all, version)?)?;
    Ok(())
}

/// A single-image layout as a tar (`podman load -i`, `skopeo copy oci-archive:`).
fn write_archive(path: &Path, image: &Image, version: &str) -> Result<()> {
    let mut tar = Vec::new();
    tar_entry(&mut tar, "oci-layout", b'0', 0o644, OCI_LAYOUT, 0)?;
    tar_entry(
        &mut tar,
        "index.json",
        b'0',
        0o644,
        &index(&[image], version)?,
        0,
    )?;
    for dir in ["blobs/", "blobs/sha256/"] {
        tar_entry(&mut tar, dir, b'5', 0o755, &[], 0)?;
    }
    for blob in image.blobs() {
        let name = format!("blobs/sha256/{}", &blob.digest()["sha256:".len()..]);
        tar_entry(&mut tar, &name, b'0', 0o644, &blob.bytes, 0)?;
    }
    tar.extend_from_slice(&[0; 1024]);
    std::fs::write(path, tar)?;
    Ok(())
}

/// Why podman cannot run a container here, or `None`.
fn podman_unusable() -> Option<String> {
    let version = Command::new("podman").arg("--version").output();
    match version {
        Err(_) => return Some("podman is not installed (apt-get install podman)".into()),
        Ok(o) if !o.status.success() => {
            return Some(format!(
                "podman --version failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Ok(_) => {}
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root: the container loads programs into the host kernel".into());
    }
    None
}

/// Loads the image into podman and runs `kiln apply` of the quickstart
/// manifest in it against the host kernel; the host's `kiln status` then
/// checks what the container did. Skipped (and said so) where podman
/// cannot run.
fn podman_check(archive: &Path, version: &str) -> Result<()> {
    if let Some(why) = podman_unusable() {
        eprintln!("dist: SKIP the podman check: {why}");
        return Ok(());
    }
    let out = Command::new("podman")
        .args(["load", "-q", "-i"])
        .arg(archive)
        .output()
        .context("podman load")?;
    if !out.status.success() {
        bail!(
            "podman load -i {} failed: {}",
            archive.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let loaded = String::from_utf8_lossy(&out.stdout);
    let image = loaded
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image: "))
        .map(str::trim)
        .map(str::to_string)
        .with_context(|| format!("podman load printed no image name: {loaded}"))?;
    eprintln!("dist: podman loaded {image} (version {version})");

    let dir = repo_root().join("target/dist/podman-manifests");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let name = format!("kiln-dist-podman-{}", std::process::id());
    let root = format!("/sys/fs/bpf/{name}");
    let manifest =
        std::fs::read_to_string(repo_root().join("deploy/kubernetes/manifests.d/quickstart.toml"))?
            .replace("name = \"quickstart\"", &format!("name = \"{name}\""))
            .replace("/sys/fs/bpf/kiln/quickstart", &root)
            // The host's lo may already run the quickstart's XDP program: this
            // check attaches the tracepoint only.
            .replace(
                "attach = { xdp = { interface = \"lo\", mode = \"generic\" } }",
                "attach = \"none\"",
            );
    std::fs::write(dir.join("quickstart.toml"), &manifest)?;
    std::fs::copy(
        repo_root().join("deploy/kubernetes/manifests.d/counter.bpf.o"),
        dir.join("counter.bpf.o"),
    )?;
    let result = (|| -> Result<()> {
        let mut c = Command::new("podman");
        c.args(["run", "--rm", "--privileged", "--network=host"])
            .arg("-v")
            .arg(format!("{}:/etc/kiln/manifests.d:ro", dir.display()))
            .args(["-v", "/sys/fs/bpf:/sys/fs/bpf"])
            .args(["-v", "/sys/kernel/btf:/sys/kernel/btf:ro"])
            .arg(&image)
            .args(["apply", "/etc/kiln/manifests.d/quickstart.toml"]);
        let out = c.output().context("podman run")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            // The runtime refusing to start any container is this machine's
            // limit (a hybrid cgroup hierarchy, rlimits it may not raise), not
            // the image's: the image's root filesystem is then run by hand.
            let runtime = text
                .lines()
                .find(|l| l.contains("OCI runtime") || l.contains("OCI permission denied"));
            let Some(why) = runtime else {
                bail!("kiln apply in the container failed:\n{text}");
            };
            eprintln!(
                "dist: SKIP podman run: the container runtime cannot start containers on this machine ({}); running the image's root filesystem under chroot with the same mounts instead",
                why.trim()
            );
            chroot_apply(archive, &dir)?;
        } else {
            eprintln!("dist: in the container:\n{text}");
        }
        // The host's own kiln judges what the container did.
        let status = Command::new(repo_root().join("target/debug/kiln"))
            .arg("status")
            .arg(dir.join("quickstart.toml"))
            .output()
            .context("running target/debug/kiln status (cargo build -p kiln-manifest)")?;
        let text = String::from_utf8_lossy(&status.stdout);
        if !status.status.success() {
            bail!("after the image's apply, kiln status on the host says:\n{text}");
        }
        eprintln!(
            "dist: image check passed: what the image applied is what the host's kiln status finds\n{text}"
        );
        Ok(())
    })();
    let _ = Command::new(repo_root().join("target/debug/kiln"))
        .arg("destroy")
        .arg(dir.join("quickstart.toml"))
        .output();
    result
}

/// Unpacks the image's layer from `archive` and runs its `kiln apply` of
/// the mounted manifest directory under chroot, in a private mount
/// namespace with the mounts a container gets (bpffs, BTF, tracefs, proc).
fn chroot_apply(archive: &Path, manifests: &Path) -> Result<()> {
    let work = repo_root().join("target/dist/chroot");
    let _ = std::fs::remove_dir_all(&work);
    let rootfs = work.join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    let sh = |script: &str| -> Result<String> {
        let out = Command::new("sh").arg("-c").arg(script).output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            bail!("`{script}` failed:\n{text}");
        }
        Ok(text)
    };
    sh(&format!(
        "tar -xf {} -C {}",
        archive.display(),
        work.display()
    ))?;
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join("index.json"))?)?;
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .context("index.json names no manifest")?;
    let blob = |d: &str| {
        work.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(blob(digest))?)?;
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .context("the manifest names no layer")?;
    sh(&format!(
        "tar -xzf {} -C {}",
        blob(layer).display(),
        rootfs.display()
    ))?;
    let r = rootfs.display();
    let text = sh(&format!(
        "unshare --mount --propagation private sh -ec '\
         mount --rbind /sys {r}/sys; \
         mount -t proc proc {r}/proc; \
         mount --bind {m} {r}/etc/kiln/manifests.d; \
         exec chroot {r} /usr/local/bin/kiln apply /etc/kiln/manifests.d/quickstart.toml'",
        m = manifests.display()
    ))?;
    eprintln!("dist: the image's kiln, under chroot:\n{text}");
    Ok(())
}

/// Pinned so that the schemas (bundled in the package) do not move under CI.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.34.1";

/// `cargo xtask dist --check-deploy`: every Kubernetes YAML of deploy/
/// against the Kubernetes schemas, offline and strict (unknown fields
/// refused), and the systemd unit with `systemd-analyze verify`.
pub fn check_deploy() -> Result<()> {
    let venv = crate::setup::cache_dir().join("kubernetes-validate");
    let validate = venv.join("bin/kubernetes-validate");
    if !validate.exists() {
        eprintln!(
            "deploy: installing {KUBERNETES_VALIDATE} into {}",
            venv.display()
        );
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()?
            .success()
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", KUBERNETES_VALIDATE])
                .status()?
                .success();
        if !ok {
            let _ = std::fs::remove_dir_all(&venv);
            bail!("could not install {KUBERNETES_VALIDATE} (python3-venv and PyPI are needed)");
        }
    }
    let k8s = repo_root().join("deploy/kubernetes");
    let mut files = Vec::new();
    let mut kustomizations = Vec::new();
    for dir in [k8s.clone(), k8s.join("privileged")] {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            match path.file_name().and_then(|n| n.to_str()) {
                Some("kustomization.yaml") => kustomizations.push(path),
                Some(n) if n.ends_with(".yaml") => files.push(path),
                _ => {}
            }
        }
    }
    files.sort();
    let out = Command::new(&validate)
        .args(["--strict", "--kubernetes-version", "1.34"])
        .args(&files)
        .output()?;
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        bail!(
            "Kubernetes schema validation failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // No schema exists for kustomize's own files: every file they name must exist.
    for k in &kustomizations {
        let text = std::fs::read_to_string(k)?;
        let base = k.parent().unwrap_or(&k8s);
        for line in text.lines().map(str::trim) {
            let Some(item) = line.strip_prefix("- ") else {
                continue;
            };
            let named = base.join(item);
            let generated = item.ends_with(".bpf.o");
            if (item.ends_with(".yaml") || item.ends_with(".toml") || item == "..")
                && !named.exists()
            {
                bail!("{}: names {item}, which does not exist", k.display());
            }
            if generated && !named.exists() {
                eprintln!(
                    "deploy: {} names {item}, which `cargo xtask dist` builds",
                    k.display()
                );
            }
        }
        eprintln!("deploy: {}: every file it names is there", k.display());
    }
    let unit = repo_root().join("deploy/systemd/kiln-agent.service");
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        // verify wants the ExecStart binary to exist: point it at this build's.
        let kiln = repo_root().join("target/debug/kiln");
        if !kiln.exists() {
            bail!(
                "{} is missing: cargo build -p kiln-manifest",
                kiln.display()
            );
        }
        let dir = repo_root().join("target/dist/systemd");
        std::fs::create_dir_all(&dir)?;
        let copy = dir.join("kiln-agent.service");
        std::fs::write(
            &copy,
            std::fs::read_to_string(&unit)?
                .replace("/usr/local/bin/kiln", &kiln.display().to_string()),
        )?;
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()?;
        let text = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || text.contains("kiln-agent.service") {
            bail!("systemd-analyze verify {}:\n{text}", unit.display());
        }
        eprintln!("deploy: {}: systemd-analyze verify passed", unit.display());
    } else {
        eprintln!("deploy: SKIP systemd-analyze verify: systemd-analyze is not installed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_644_800), "2026-12-07T12:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn same_inputs_same_image() {
        let a = Image::build(Arch::X86_64, b"binary", "0.1.0", "abc", 5).unwrap();
        let b = Image::build(Arch::X86_64, b"binary", "0.1.0", "abc", 5).unwrap();
        assert_eq!(a.manifest_digest(), b.manifest_digest());
        let c = Image::build(Arch::X86_64, b"binary2", "0.1.0", "abc", 5).unwrap();
        assert_ne!(a.manifest_digest(), c.manifest_digest());
    }

    #[test]
    fn tar_headers_have_valid_checksums() {
        let tar = layer_tar(b"x", 0).unwrap();
        assert_eq!(tar.len() % 512, 0);
        let h = &tar[..512];
        let stored = u32::from_str_radix(
            std::str::from_utf8(&h[148..154])
                .unwrap()
                .trim_matches(['\0', ' ']),
            8,
        )
        .unwrap();
        let mut copy = h.to_vec();
        copy[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, copy.iter().map(|&b| u32::from(b)).sum::<u32>());
    }
}
