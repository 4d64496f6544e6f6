//! `kiln`: the operator's front door. No cargo, no sources: a manifest and
//! prebuilt objects are enough.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use kiln_manifest::apply::{ApplyOptions, Step};
use kiln_manifest::{Deployment, Manifest};

mod object;
mod probe;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "Declarative eBPF deployments: check, plan, apply, status, destroy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and validate a manifest against its objects and this host; change nothing.
    Check(Target),
    /// Show what `apply` would do, computed from the manifest and the live kernel.
    Plan {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
    /// Make the kernel match the manifest (a no-op when it already does).
    Apply {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
        /// Testing aid: fail at the first step of this kind and roll back.
        #[arg(long, hide = true)]
        fail_at: Option<String>,
        /// Where a rejected program's whole verifier log is written (default: the temporary directory).
        #[arg(long, value_name = "DIR")]
        verifier_log_dir: Option<PathBuf>,
    },
    /// Each declared map and program: desired against observed. Exit code 2 on drift.
    Status {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
    /// Write a manifest describing what is pinned under a pin root.
    Export {
        /// The deployment's pin root (e.g. /sys/fs/bpf/kiln/quickstart).
        pin_root: PathBuf,
        /// Deployment name (default: the pin root's last component).
        #[arg(long)]
        name: Option<String>,
    },
    /// Inspect or load a single eBPF object file.
    #[command(subcommand)]
    Object(ObjectCommand),
    /// What this kernel supports (program and map types, helpers, BTF, links).
    Probe {
        #[arg(long)]
        json: bool,
    },
    /// Detach and unpin everything the deployment owns, and remove its pin root.
    Destroy {
        /// The manifest (only its name and pin_root are read).
        manifest: PathBuf,
    },
}

#[derive(Subcommand)]
enum ObjectCommand {
    /// Programs, maps, BTF and relocations of an object, without loading it.
    Inspect {
        path: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Load every program of an object (like `bpftool prog loadall`) and report.
    Load {
        path: PathBuf,
        /// Pin maps marked for pinning under this bpffs directory.
        #[arg(long)]
        pin_dir: Option<PathBuf>,
        /// Where a rejected program's whole verifier log is written (default: the temporary directory).
        #[arg(long, value_name = "DIR")]
        verifier_log_dir: Option<PathBuf>,
        /// The BPF program a freplace or fentry/fexit program attaches to: a pinned
        /// program's path or `id:N`, and the function (default: the section's).
        #[arg(long = "attach-target", value_name = "PROG=TARGET[:FUNC]")]
        attach_targets: Vec<object::AttachTarget>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct Target {
    /// The manifest file.
    manifest: PathBuf,
    /// Use this object file for `[objects.NAME]` (what `cargo xtask apply` passes after building).
    #[arg(long = "object", value_name = "NAME=PATH")]
    objects: Vec<String>,
    /// Let the manifest's objects (`path`, `source`) come from outside its directory.
    #[arg(long)]
    allow_outside: bool,
}

impl Target {
    fn load(&self) -> anyhow::Result<Deployment> {
        let mut overrides = BTreeMap::new();
        for o in &self.objects {
            let Some((name, path)) = o.split_once('=') else {
                bail!(
                    "--object {o}: expected NAME=PATH, e.g. --object counter=target/bpf/counter.bpf.o"
                );
            };
            overrides.insert(name.to_string(), PathBuf::from(path));
        }
        Deployment::load_with(&self.manifest, &overrides, self.allow_outside).map_err(invalid)
    }
}

/// Exit codes, documented in manifests/README.md: scripts tell a broken
/// manifest (fix the file) from a refusal of the kernel (fix the host).
mod exit {
    /// The kernel or the system refused (apply rolled back, I/O error).
    pub const FAILURE: u8 = 1;
    /// `kiln status`: the kernel does not run what the manifest says.
    pub const DRIFT: u8 = 2;
    /// The manifest (or an object it names) is invalid; nothing was changed.
    pub const INVALID: u8 = 3;
    /// A privilege is missing (capability, or bpf(2) refused with EPERM).
    pub const PRIVILEGE: u8 = 4;
    /// The command line is wrong (sysexits' EX_USAGE).
    pub const USAGE: u8 = 64;
}

/// A manifest that failed validation (the diagnostics, rendered).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Invalid(String);

fn invalid(d: kiln_manifest::Diagnostics) -> anyhow::Error {
    Invalid(d.to_string()).into()
}

/// The error and its causes, each once: library errors often repeat their
/// source in their own message, which `{:#}` would print twice.
fn render(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The exit code for an error: the most specific kind found in its chain.
fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Invalid>().is_some() {
        return exit::INVALID;
    }
    let privilege = e.chain().any(|c| {
        c.downcast_ref::<kiln_manifest::privilege::MissingPrivilege>()
            .is_some()
            || matches!(
                c.downcast_ref::<kiln_manifest::apply::ApplyError>(),
                Some(kiln_manifest::apply::ApplyError::Privilege(_))
            )
            || c.downcast_ref::<kiln_loader::sys::SysError>()
                .is_some_and(|s| s.errno() == libc::EPERM)
            || matches!(
                c.downcast_ref::<kiln_manifest::live::ObserveError>(),
                Some(kiln_manifest::live::ObserveError::NoBpf(_))
            )
            || matches!(
                c.downcast_ref::<kiln_manifest::apply::ApplyError>(),
                Some(kiln_manifest::apply::ApplyError::Observe(
                    kiln_manifest::live::ObserveError::NoBpf(_)
                ))
            )
    });
    if privilege {
        return exit::PRIVILEGE;
    }
    exit::FAILURE
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::SUCCESS // --help, --version
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = render(&e);
            if msg.starts_with("error:") {
                eprintln!("{msg}");
            } else {
                eprintln!("error: {msg}");
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(target) => {
            let d = target.load()?;
            println!(
                "{}: ok ({} program(s), {} map(s), pin root {})",
                target.manifest.display(),
                d.resolved.desired.programs.len(),
                d.resolved.desired.maps.len(),
                d.manifest.pin_root().display()
            );
        }
        Command::Plan { target, json } => {
            let d = target.load()?;
            let plan = d.plan()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                println!("{plan}");
            }
        }
        Command::Apply {
            target,
            json,
            fail_at,
            verifier_log_dir,
        } => {
            let d = target.load()?;
            // Kernels before 5.11 charge maps and programs to RLIMIT_MEMLOCK;
            // when raising it is refused, an EPERM from the kernel says so.
            let _ = kiln_loader::sys::caps::raise_memlock();
            let mut opts = ApplyOptions {
                verifier_log_dir,
                ..ApplyOptions::default()
            };
            let fail_at = fail_at.or_else(|| {
                // The environment switch exists only in debug builds, so a
                // stray variable can never break a production apply.
                if cfg!(debug_assertions) {
                    std::env::var("KILN_FAIL_AT").ok()
                } else {
                    None
                }
            });
            if cfg!(debug_assertions) {
                // Crash-safety tests SIGKILL the process where it pauses.
                opts.pause_at = std::env::var("KILN_PAUSE_AT").ok();
            }
            if let Some(step) = fail_at {
                opts.fail_at = Some(Step::from_name(&step).with_context(|| {
                    let all: Vec<_> = Step::ALL.iter().map(|s| s.name()).collect();
                    format!("unknown step '{step}' (steps: {})", all.join(", "))
                })?);
            }
            let outcome = d.apply(&opts).context(
                "apply failed; nothing changed (the previous generation, if any, still runs)",
            )?;
            for n in &outcome.notes {
                eprintln!("note: {n}");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&outcome.plan)?);
            } else if outcome.plan.is_noop() {
                println!("deployment {}: no changes", outcome.plan.deployment);
            } else {
                println!("{}", outcome.plan);
                println!("applied.");
            }
            for w in outcome.warnings {
                eprintln!("warning: {w}");
            }
        }
        Command::Status { target, json } => {
            let d = target.load()?;
            let status = d.status()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!("{status}");
            }
            if !status.all_ok() {
                return Ok(ExitCode::from(exit::DRIFT));
            }
        }
        Command::Object(ObjectCommand::Inspect { path, json }) => object::inspect(&path, json)?,
        Command::Object(ObjectCommand::Load {
            path,
            pin_dir,
            verifier_log_dir,
            attach_targets,
            json,
        }) => {
            let _ = kiln_loader::sys::caps::raise_memlock();
            let log_dir = verifier_log_dir.unwrap_or_else(std::env::temp_dir);
            if !object::load(&path, pin_dir.as_deref(), &log_dir, json, &attach_targets)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Probe { json } => probe::run(json)?,
        Command::Export { pin_root, name } => {
            if !pin_root.is_dir() {
                bail!("{}: no such pin root", pin_root.display());
            }
            let name = name.unwrap_or_else(|| {
                pin_root
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            print!("{}", kiln_manifest::export::export(&name, &pin_root)?);
        }
        Command::Destroy { manifest } => {
            let m = Manifest::load(&manifest).map_err(invalid)?;
            let removed = kiln_manifest::apply::destroy(m.name(), &m.pin_root())?;
            for r in &removed {
                println!("- unpinned {r}");
            }
            println!(
                "deployment {}: destroyed ({} pin(s) removed, {} gone)",
                m.name(),
                removed.len(),
                m.pin_root().display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
