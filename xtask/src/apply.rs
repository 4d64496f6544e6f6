//! `cargo xtask apply MANIFEST`: build the manifest's eBPF sources, then run
//! `kiln apply` with the built objects, on this host (as root) or, with
//! `--vm` or when this host has no bpf access, inside the test distro.
//!
//! ```text
//! cargo xtask apply manifests/examples/quickstart/manifest.toml
//! cargo xtask apply manifests/examples/quickstart/manifest.toml --vm --kernel 6.1 --arch x86_64
//! cargo xtask apply manifests/examples/quickstart/manifest.toml --kiln plan
//! cargo xtask apply --matrix manifests/examples/quickstart/manifest.toml --kernel 6.1
//! ```
//!
//! `--matrix` runs the manifest on every catalog kernel and arch (or those
//! asked) and prints the grid: see [`crate::apply_matrix`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::vm;

#[derive(clap::Args)]
pub struct Args {
    /// The manifest to apply.
    manifest: PathBuf,
    /// Run in a VM of the test distro even when this host could apply.
    #[arg(long)]
    vm: bool,
    /// Every catalog kernel on every arch (narrowed by --kernel, --arch, or
    /// one --kernel-image): load, check, plan, apply, status and `[test]` in
    /// each VM, then the grid (target/matrix-report.{json,junit.xml,html});
    /// exit status 1 when anything failed.
    #[arg(long, conflicts_with_all = ["vm", "kiln"])]
    matrix: bool,
    /// VMs at once with --matrix (default: the number of cores).
    #[arg(long, requires = "matrix")]
    jobs: Option<usize>,
    /// Where --matrix writes its reports and keeps the verifier's numbers
    /// (default: target/).
    #[arg(long, requires = "matrix")]
    report_dir: Option<PathBuf>,
    /// The VM's kernel (default: catalog 6.1 on the host's arch; or --kernel-image).
    #[command(flatten)]
    target: vm::KernelArgs,
    /// The kiln subcommand to run instead of `apply` (plan, status, destroy, check).
    #[arg(long, default_value = "apply")]
    kiln: String,
    /// Extra arguments for kiln (after `--`), e.g. `-- --json`.
    #[arg(last = true)]
    rest: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let root = crate::build_ebpf::repo_root();
    let manifest = if args.manifest.is_absolute() {
        args.manifest.clone()
    } else {
        std::env::current_dir()?.join(&args.manifest)
    };
    if !manifest.is_file() {
        bail!(
            "{}: no such manifest (try manifests/examples/quickstart/manifest.toml)",
            args.manifest.display()
        );
    }
    if args.matrix {
        return crate::apply_matrix::run(
            &manifest,
            &args.target,
            args.jobs,
            args.report_dir.as_deref(),
        );
    }
    if !["apply", "plan", "status", "destroy", "check"].contains(&args.kiln.as_str()) {
        bail!(
            "--kiln {}: use apply, plan, status, destroy or check",
            args.kiln
        );
    }
    // A wrong --kernel-image is refused before minutes of builds; its arch
    // is the guest's.
    let mut args = args;
    if let Some(image) = &args.target.kernel_image {
        let image =
            crate::image::check_custom(image, args.target.modules.as_deref(), args.target.arch)?;
        args.target.arch = Some(image.arch);
    }
    // build_all runs the setup check first (quick when all is installed).
    crate::build_ebpf::build_all().context("building the eBPF programs")?;
    let objects = object_overrides(&manifest, &crate::build_ebpf::bpf_dir())?;

    let host_ok = vm::is_root() && Path::new("/sys/fs/bpf").is_dir();
    if !args.vm && host_ok {
        let kiln = build_kiln(&root)?;
        let mut cmd = Command::new(&kiln);
        cmd.arg(&args.kiln).arg(&manifest);
        if args.kiln != "destroy" {
            for (name, path) in &objects {
                cmd.arg("--object")
                    .arg(format!("{name}={}", path.display()));
            }
        }
        cmd.args(&args.rest);
        eprintln!(
            "running {} {} {} on this host",
            kiln.display(),
            args.kiln,
            args.manifest.display()
        );
        let status = cmd
            .status()
            .with_context(|| format!("running {}", kiln.display()))?;
        if !status.success() {
            bail!("kiln {} failed ({status})", args.kiln);
        }
        return Ok(());
    }
    if !args.vm {
        eprintln!(
            "this host cannot load eBPF programs (not root, or no bpffs at /sys/fs/bpf): applying inside the test distro"
        );
    }
    // A guest of another arch gets the objects built for it (`pt_regs`).
    let guest_arch = args.target.arch.unwrap_or(vm::Arch::host());
    let objects = if guest_arch == vm::Arch::host() {
        objects
    } else {
        crate::build_ebpf::build_all_for(guest_arch.bpf())
            .with_context(|| format!("building the eBPF programs for {guest_arch}"))?;
        object_overrides(&manifest, &crate::build_ebpf::bpf_dir_for(guest_arch.bpf()))?
    };
    run_in_vm(&args, &manifest, &objects)
}

/// `NAME=PATH` for every `[objects.NAME]` with a `source`: the built object
/// `target/bpf/<stem>.bpf.o`. Objects with `path` need nothing.
fn object_overrides(manifest: &Path, bpf_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    // A light read: kiln itself validates the manifest and cites lines.
    let value: toml::Value = toml::from_str(&text)
        .with_context(|| format!("{} is not valid TOML", manifest.display()))?;
    let mut out = Vec::new();
    let Some(objects) = value.get("objects").and_then(|o| o.as_table()) else {
        return Ok(out);
    };
    for (name, decl) in objects {
        let Some(source) = decl.get("source").and_then(|s| s.as_str()) else {
            continue;
        };
        let file = Path::new(source)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = file
            .strip_suffix(".bpf.c")
            .or_else(|| file.strip_suffix(".c"))
            .unwrap_or(&file)
            .to_string();
        let built = bpf_dir.join(format!("{stem}.bpf.o"));
        if !built.is_file() {
            bail!(
                "object '{name}': {source} did not build to {} (is it a Rust eBPF crate with [package.metadata.kiln] ebpf = true, or a .bpf.c file?)",
                built.display()
            );
        }
        out.push((name.clone(), built));
    }
    Ok(out)
}

/// Builds the `kiln` binary for this host and returns its path.
fn build_kiln(root: &Path) -> Result<PathBuf> {
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(root)
        .args(["build", "--quiet", "-p", "kiln-manifest", "--bin", "kiln"])
        .status()
        .context("running cargo build for kiln")?;
    if !status.success() {
        bail!("building kiln failed");
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let kiln = target.join("debug/kiln");
    if !kiln.is_file() {
        bail!("cargo built kiln but {} is missing", kiln.display());
    }
    Ok(kiln)
}

fn run_in_vm(args: &Args, manifest: &Path, objects: &[(String, PathBuf)]) -> Result<()> {
    const GUEST_MANIFEST: &str = "/kiln/apply/manifest.toml";
    let mut files = vec![(manifest.to_path_buf(), GUEST_MANIFEST.to_string())];
    let mut command = vec![
        "/bin/kiln".to_string(),
        args.kiln.clone(),
        GUEST_MANIFEST.to_string(),
    ];
    if args.kiln != "destroy" {
        for (name, path) in objects {
            let guest = format!(
                "/kiln/apply/{}",
                path.file_name()
                    .map(|f| f.to_string_lossy())
                    .unwrap_or_default()
            );
            files.push((path.clone(), guest.clone()));
            command.push("--object".into());
            command.push(format!("{name}={guest}"));
        }
    }
    command.extend(args.rest.iter().cloned());
    if args.kiln == "apply" {
        // The VM lives only for this command: show what the apply left
        // running (programs attached, maps pinned) before it powers off.
        let apply = command.join(" ");
        command = vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("{apply} && echo && /bin/kiln status {GUEST_MANIFEST}"),
        ];
    }
    let kernel = match (&args.target.kernel_image, &args.target.kernel) {
        (Some(image), _) => image.display().to_string(),
        (None, version) => version.clone().unwrap_or_else(|| "6.1".into()),
    };
    eprintln!(
        "booting kernel {kernel} ({}) to run: {}",
        args.target
            .arch
            .map_or_else(|| "the host's arch".to_owned(), |a| a.to_string()),
        command.join(" ")
    );
    let out = vm::run_in_vm(vm::VmRequest {
        kernel: args.target.clone(),
        files,
        command,
        modules: Vec::new(),
        timeout: Duration::from_secs(120),
    })?;
    print!("{}", out.output);
    if !out.output.is_empty() && !out.output.ends_with('\n') {
        println!();
    }
    for p in &out.problems {
        eprintln!("vm: {p}");
    }
    match out.exit {
        Some(0) if out.problems.is_empty() => Ok(()),
        Some(0) => bail!(
            "kiln {} succeeded but the VM reported problems (console log: {})",
            args.kiln,
            out.console_log.display()
        ),
        Some(code) => bail!(
            "kiln {} failed in the VM (exit {code}; console log: {})",
            args.kiln,
            out.console_log.display()
        ),
        None => bail!(
            "the VM did not finish kiln {} (console log: {})",
            args.kiln,
            out.console_log.display()
        ),
    }
}
