//! `cargo xtask vm [--kernel V | --kernel-image PATH [--modules DIR]] [--arch A] -- CMD ARGS...`:
//! any command in the test distro, like vmtest.
//!
//! The guest has no file system of the host's: the program (when it is a
//! path on the host), every argument that names a host file, and each
//! `--file`, are copied into the image at the same absolute path, with the
//! shared libraries and ELF interpreter a dynamic binary needs (from the
//! host's library directories for the guest's arch). The command runs in
//! the same working directory as here, with bpffs, tracefs and cgroup2
//! mounted and the test modules loaded; its output is streamed as it comes
//! and the runner exits with its status.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::vm::{self, Arch, BootSpec, Plan, Verdict};

#[derive(clap::Args)]
pub struct Args {
    /// The kernel (default: catalog 6.1 on the host's arch).
    #[command(flatten)]
    vm: vm::KernelArgs,
    /// More host files for the guest, at the same absolute path (repeatable).
    #[arg(long = "file")]
    files: Vec<PathBuf>,
    /// Seconds the command may run.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    vm::stop_on_signals();
    let (kernel, arch) = vm::resolve_kernel(&args.vm)?;
    let cwd = std::env::current_dir().context("reading the working directory")?;
    let (command, files) = guest_files(&args.command, &args.files, &cwd)?;
    let bins = crate::cross::build_guest_bins(arch)?;
    let mut plan = Plan::default();
    let timeout = Duration::from_secs(args.timeout);
    let cwd_text = cwd.to_string_lossy().into_owned();
    let mut image = vm::guest_image(&kernel, &bins, crate::modules::TEST_MODULES, &mut plan)?;
    // The image's paths have no leading `/`.
    let present: BTreeSet<String> = image.paths().map(|p| format!("/{p}")).collect();
    for f in &files {
        let guest = guest_path(f);
        // `/bin/sh` and the like: the guest's own tool answers to that path.
        if present.contains(&guest) {
            eprintln!("note: the guest has its own {guest}; the host's is not copied");
            continue;
        }
        // Staged in the image, put in place once /tmp and /run are mounted.
        let staged = format!("{HOST_FILES}{guest}");
        image
            .add_file(&staged, f, 0o755)
            .with_context(|| format!("adding {}", f.display()))?;
        plan.copy(&staged, &guest)?;
    }
    plan.run(timeout, &cwd_text, &command)?;
    for (host, guest) in libraries(&files, arch)? {
        // The guest's own glibc (Debian bookworm, as the host's) stays.
        if !present.contains(&guest) {
            image.add_file(&guest, &host, 0o755)?;
        }
    }
    image.add_bytes("/kiln/plan", plan.text.clone(), 0o644)?;
    let initrd = image.build_cached(&vm::initramfs_cache())?;
    let label = format!("vm-{}-{arch}", kernel.version);
    eprintln!(
        "[{label}] booting {} ({}) to run {}",
        kernel.vmlinuz.display(),
        kernel.release,
        command.join(" ")
    );
    let spec = BootSpec::of(&kernel, initrd, timeout, label);
    let stdout = std::io::stdout();
    let boot = vm::boot(&spec, &mut |e| {
        if e.kind == "KILN-STDOUT" {
            let mut out = stdout.lock();
            let _ = writeln!(out, "{}", e.json["line"].as_str().unwrap_or_default());
            let _ = out.flush();
        }
    })?;
    let verdict = Verdict::of(&boot, 0);
    let exec = boot.events.iter().find(|e| e.kind == "KILN-EXEC");
    let exit = exec.and_then(|e| e.json["exit"].as_i64());
    if let Some(e) = exec {
        if let Some(msg) = e.json["output"].as_str().filter(|m| !m.is_empty()) {
            eprintln!("{msg}");
        }
        if e.json["timed_out"].as_i64() == Some(1) {
            eprintln!(
                "the command was killed after {} s (--timeout)",
                args.timeout
            );
        }
    }
    for p in &verdict.problems {
        eprintln!("[{}] {p}", spec.label);
    }
    if !verdict.problems.is_empty() {
        eprintln!("console log: {}", boot.log.display());
    }
    if let Some(sig) = vm::interrupted() {
        std::process::exit(128 + sig);
    }
    let code = match exit {
        // A command that passed on a kernel that panicked or warned is not a pass.
        Some(0) if !verdict.problems.is_empty() => 1,
        Some(c) if c >= 0 => c as i32,
        _ => 1,
    };
    std::process::exit(code)
}

/// The command as the guest runs it (a program path made absolute) and the
/// host files to copy, each to the same absolute path in the guest: the
/// program when it is a host path, arguments naming host files, and `extra`.
fn guest_files(
    command: &[String],
    extra: &[PathBuf],
    cwd: &Path,
) -> Result<(Vec<String>, Vec<PathBuf>)> {
    let mut files = Vec::new();
    let mut out = Vec::new();
    for (i, word) in command.iter().enumerate() {
        let path = absolute(cwd, Path::new(word));
        // A bare program name is the guest's (`bpftool`, `sh`); a path is ours.
        let is_program_path = i > 0 || word.contains('/');
        if is_program_path && path.is_file() {
            out.push(if i == 0 {
                path.to_string_lossy().into_owned()
            } else {
                word.clone()
            });
            files.push(path);
        } else if i == 0 && word.contains('/') {
            bail!("{word}: no such file on this host");
        } else {
            out.push(word.clone());
        }
    }
    for f in extra {
        let path = absolute(cwd, f);
        if !path.is_file() {
            bail!("--file {}: no such file", f.display());
        }
        files.push(path);
    }
    files.sort();
    files.dedup();
    Ok((out, files))
}

/// `path` made absolute against `cwd`, `.` and `..` resolved by name (the
/// guest path must have neither; symlinks are followed when reading).
fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in cwd.join(path).components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Where the host's files wait in the image for init to copy them in place.
const HOST_FILES: &str = "/kiln/host";

fn guest_path(host: &Path) -> String {
    host.to_string_lossy().into_owned()
}

/// Where the host keeps libraries for `arch` (native, or the cross ones).
fn library_dirs(arch: Arch) -> Vec<PathBuf> {
    let triple = crate::userland::triple(arch);
    let mut dirs = vec![
        PathBuf::from(format!("/lib/{triple}")),
        PathBuf::from(format!("/usr/lib/{triple}")),
    ];
    if arch == Arch::host() {
        dirs.extend(["/lib64", "/lib", "/usr/lib"].map(PathBuf::from));
    } else {
        dirs.push(PathBuf::from(format!("/usr/{triple}/lib")));
    }
    dirs
}

/// The ELF interpreter and shared libraries the dynamic ELF files among
/// `files` need, transitively: (host path, guest path).
fn libraries(files: &[PathBuf], arch: Arch) -> Result<Vec<(PathBuf, String)>> {
    let dirs = library_dirs(arch);
    let triple = crate::userland::triple(arch);
    let mut queue: Vec<PathBuf> = files.iter().filter(|f| is_elf(f)).cloned().collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    while let Some(file) = queue.pop() {
        if !seen.insert(file.clone()) {
            continue;
        }
        let (interp, needed) = crate::userland::elf_deps(&file)?;
        if let Some(i) = interp {
            let host = PathBuf::from(&i);
            let cross = PathBuf::from(format!("/usr/{triple}")).join(i.trim_start_matches('/'));
            let found = [host, cross]
                .into_iter()
                .find(|p| p.exists())
                .with_context(|| {
                    format!(
                        "{}: its ELF interpreter {i} is not on this host",
                        file.display()
                    )
                })?;
            out.push((std::fs::canonicalize(&found)?, i));
        }
        for soname in needed {
            let found = dirs
                .iter()
                .map(|d| d.join(&soname))
                .find(|p| p.exists())
                .with_context(|| {
                    format!(
                        "{} needs {soname}, which is in none of {}",
                        file.display(),
                        dirs.iter()
                            .map(|d| d.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
            let host = std::fs::canonicalize(&found)?;
            out.push((host.clone(), format!("/lib/{triple}/{soname}")));
            queue.push(host);
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.1 == b.1);
    Ok(out)
}

fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// `cargo xtask boot-raw` (hidden; the runner's own tests): boots any file
/// as a kernel with an almost empty initramfs and none of the up-front
/// checks, so a test can watch the runner meet an image that never reaches
/// `/init`, or a signal.
#[derive(clap::Args)]
pub struct RawArgs {
    #[arg(long)]
    arch: Arch,
    #[arg(long)]
    image: PathBuf,
    /// Seconds before the VM is stopped whatever happens.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

pub fn boot_raw(args: RawArgs) -> Result<()> {
    vm::stop_on_signals();
    let mut image = kiln_initramfs::Initramfs::new();
    image.add_dir("/kiln")?;
    let initrd = image.build_cached(&vm::initramfs_cache())?;
    let label = format!("raw-{}", args.arch);
    let spec = BootSpec {
        arch: args.arch,
        vmlinuz: args.image.clone(),
        initrd,
        timeout: Duration::from_secs(args.timeout),
        log: vm::log_path(&label),
        label,
    };
    let boot = vm::boot(&spec, &mut |_| {})?;
    let verdict = Verdict::of(&boot, 0);
    for p in &verdict.problems {
        println!("{p}");
    }
    println!("after {:.1} s", boot.elapsed.as_secs_f64());
    if let Some(sig) = vm::interrupted() {
        std::process::exit(128 + sig);
    }
    std::process::exit(if verdict.problems.is_empty() { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_words_that_are_host_files_come_along() {
        let dir = std::env::temp_dir().join(format!("kiln-vmcmd-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/prog"), b"#!/bin/sh\n").unwrap();
        std::fs::write(dir.join("data.o"), b"x").unwrap();
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (cmd, files) = guest_files(
            &words(&["./sub/prog", "-v", "data.o", "../sub/prog"]),
            &[],
            &dir.join("sub/../"),
        )
        .unwrap();
        let bare = guest_files(&words(&["bpftool", "prog"]), &[], &dir).unwrap();
        let missing = guest_files(&words(&["./nope"]), &[], &dir).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(cmd[0], dir.join("sub/prog").to_string_lossy());
        assert_eq!(&cmd[1..], ["-v", "data.o", "../sub/prog"]);
        assert_eq!(files, [dir.join("data.o"), dir.join("sub/prog")]);
        assert_eq!(bare.0, ["bpftool", "prog"]);
        assert!(bare.1.is_empty());
        assert!(format!("{missing:#}").contains("./nope: no such file"));
    }
}
