//! `kiln`: the operator's front door. No cargo, no sources: a manifest and
//! prebuilt objects are enough.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use kiln_manifest::apply::{ApplyOptions, Step};
use kiln_manifest::{Deployment, Manifest};

/// Prints a line on stdout without panicking (see [`output`]).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Prints on stdout without panicking, no newline.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!($($arg)*))
    };
}

/// Prints a line on stderr without panicking.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::write_err(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod agent;
mod compat;
mod object;
mod output;
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
    /// Parse and validate a manifest against its objects and this host, and say which privileges applying it needs; change nothing.
    /// With --kernels: whether its programs find what they need in other kernels (offline).
    Check {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        kernels: compat::KernelArgs,
        /// The result and the privileges as JSON (`--kernels-json` for the --kernels report).
        #[arg(long = "json", id = "check_json")]
        json: bool,
    },
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
        /// On a pin root holding pins but no Kiln record: take over the pins at this manifest's paths (only those).
        #[arg(long)]
        adopt: bool,
        /// Load maps, BTF and programs through a BPF token (6.9+) created from the bpffs mounted at BPFFS with delegate_* options (inside a user namespace).
        #[arg(long, value_name = "BPFFS")]
        token: Option<PathBuf>,
    },
    /// Each declared map and program: desired against observed. Exit code 2 on drift.
    Status {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
        /// As for `apply --token`: where bpf() answers only through a BPF token (a user namespace).
        #[arg(long, value_name = "BPFFS")]
        token: Option<PathBuf>,
    },
    /// Write a manifest describing what is pinned under a pin root.
    Export {
        /// The deployment's pin root (e.g. /sys/fs/bpf/kiln/quickstart).
        pin_root: PathBuf,
        /// Deployment name (default, for a pin root under /sys/fs/bpf/kiln: its last component).
        #[arg(long)]
        name: Option<String>,
        /// The manifest as a JSON string field, with the deployment's name and pin root.
        #[arg(long)]
        json: bool,
    },
    /// Inspect or load a single eBPF object file.
    #[command(subcommand)]
    Object(ObjectCommand),
    /// What this kernel supports (program and map types, helpers, BTF, links).
    Probe {
        #[arg(long)]
        json: bool,
    },
    /// Keep every manifest of a directory applied: on start, on every change, and every resync.
    Agent(agent::AgentArgs),
    /// Detach and unpin everything the deployment owns, and remove its pin root.
    Destroy {
        /// The manifest (only its name and pin_root are read).
        manifest: PathBuf,
        /// What was removed and what was left alone, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start a project: an eBPF crate, a userspace crate that builds and
    /// loads it, and a manifest, in a new directory (its README says the rest).
    New {
        /// The project's name (lowercase letters, digits, '-', '_').
        name: String,
        /// Where to write it (default: ./NAME); must not exist.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// A Kiln checkout to take the crates from by path (default: the one
        /// this kiln was built from, if present, else Kiln's git repository).
        #[arg(long, value_name = "CHECKOUT")]
        kiln_path: Option<PathBuf>,
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
        let overrides = self.overrides()?;
        input_file(&self.manifest, "manifest file")?;
        Deployment::load_with(&self.manifest, &overrides, self.allow_outside).map_err(invalid)
    }

    /// `--object NAME=PATH` pairs.
    fn overrides(&self) -> anyhow::Result<BTreeMap<String, PathBuf>> {
        let mut overrides = BTreeMap::new();
        for o in &self.objects {
            let Some((name, path)) = o.split_once('=') else {
                bail!(
                    "--object {o}: expected NAME=PATH, e.g. --object counter=target/bpf/counter.bpf.o"
                );
            };
            overrides.insert(name.to_string(), PathBuf::from(path));
        }
        Ok(overrides)
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
    /// A file or directory named on the command line is missing or is not
    /// what the command reads (sysexits' EX_NOINPUT).
    pub const NO_INPUT: u8 = 66;
}

/// A command line that cannot work (beyond what clap checks).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

/// A file named on the command line that cannot be the command's input.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NoInput(String);

/// Checks that `path`, named on the command line as a `what`, is a file.
fn input_file(path: &std::path::Path, what: &str) -> anyhow::Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            Err(NoInput(format!("{}: is a directory, not a {what}", path.display())).into())
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(NoInput(format!("{}: no such {what}", path.display())).into())
        }
        Err(e) => Err(NoInput(format!("{}: cannot read the {what}: {e}", path.display())).into()),
    }
}

/// A manifest that failed validation.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Invalid(kiln_manifest::Diagnostics);

fn invalid(d: kiln_manifest::Diagnostics) -> anyhow::Error {
    Invalid(d).into()
}

/// The error and its causes on one line. Kiln's errors name only their own
/// context and leave the cause to `source()`, so each cause prints once.
fn render(e: &anyhow::Error) -> String {
    format!("{e:#}")
}

/// The exit code for an error: the most specific kind found in its chain.
fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Invalid>().is_some() {
        return exit::INVALID;
    }
    if e.downcast_ref::<NoInput>().is_some() {
        return exit::NO_INPUT;
    }
    if e.downcast_ref::<Usage>().is_some() {
        return exit::USAGE;
    }
    if e.downcast_ref::<kiln_manifest::privilege::TokenRefusal>()
        .is_some()
    {
        return exit::PRIVILEGE;
    }
    let privilege = e.chain().any(|c| {
        c.downcast_ref::<kiln_manifest::privilege::MissingPrivilege>()
            .is_some()
            || matches!(
                c.downcast_ref::<kiln_manifest::apply::ApplyError>(),
                Some(kiln_manifest::apply::ApplyError::Privilege(_))
            )
            || kiln_loader::permission_denied(c)
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

/// The error as JSON, for `--json` callers that read stdout only: the
/// message, the exit code, and for an invalid manifest each diagnostic
/// (file, line, col, message, help).
fn error_json(e: &anyhow::Error, code: u8) -> serde_json::Value {
    let diagnostics = e
        .downcast_ref::<Invalid>()
        .map(|Invalid(d)| serde_json::to_value(&d.0).unwrap_or_default());
    serde_json::json!({
        "error": {
            "message": render(e),
            "exit_code": code,
            "diagnostics": diagnostics.unwrap_or_else(|| serde_json::json!([])),
        }
    })
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
    let json = cli.command.json();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let code = exit_code(&e);
            if json {
                outln!("{:#}", error_json(&e, code));
            }
            let msg = render(&e);
            if msg.starts_with("error:") {
                errln!("{msg}");
            } else {
                errln!("error: {msg}");
            }
            return ExitCode::from(code);
        }
    };
    // A closed pipe ends the output quietly (as `ls | head`); any other
    // failure to write (a full disk) is an error, after the work was done.
    if let Some(e) = output::write_failure() {
        errln!(
            "error: cannot write the output: {e} (the command itself completed; `kiln status` shows the kernel's state)"
        );
        return ExitCode::from(exit::FAILURE);
    }
    code
}

impl Command {
    /// Whether the command was asked for JSON on stdout.
    fn json(&self) -> bool {
        match self {
            Command::Plan { json, .. }
            | Command::Apply { json, .. }
            | Command::Status { json, .. }
            | Command::Probe { json }
            | Command::Export { json, .. }
            | Command::Destroy { json, .. }
            | Command::Object(ObjectCommand::Inspect { json, .. })
            | Command::Object(ObjectCommand::Load { json, .. }) => *json,
            Command::Check { kernels, json, .. } => *json || kernels.json(),
            Command::Agent(_) | Command::New { .. } => false,
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check {
            target, kernels, ..
        } if kernels.wanted() => {
            return compat::run(&target, &kernels);
        }
        Command::Check { target, json, .. } => {
            let d = target.load()?;
            let problems = d.live_problems();
            if !problems.is_empty() {
                return Err(invalid(kiln_manifest::Diagnostics(problems)));
            }
            let reasons = kiln_manifest::privilege::reasons(&d.resolved);
            let token = kiln_manifest::privilege::delegation(&d.resolved);
            let root = d.manifest.pin_root();
            // Where a non-root apply must be able to write: the pin root, or
            // the directory it is created in.
            let writable = root
                .ancestors()
                .find(|a| a.exists())
                .unwrap_or(&root)
                .to_path_buf();
            if json {
                let v = serde_json::json!({
                    "manifest": target.manifest,
                    "programs": d.resolved.desired.programs.len(),
                    "maps": d.resolved.desired.maps.len(),
                    "pin_root": root,
                    "capabilities": reasons,
                    "writable": writable,
                    "token_delegation": token,
                });
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                outln!(
                    "{}: ok ({} program(s), {} map(s), pin root {})",
                    target.manifest.display(),
                    d.resolved.desired.programs.len(),
                    d.resolved.desired.maps.len(),
                    root.display()
                );
                outln!("privileges to apply it as a non-root user:");
                // One column for the names, as wide as the longest.
                let width = reasons
                    .iter()
                    .map(|r| r.capability.len())
                    .chain(["write access".len()])
                    .max()
                    .unwrap_or(0);
                for r in &reasons {
                    let when = if r.only_when_deployed {
                        " (once deployed)"
                    } else {
                        ""
                    };
                    out!("  {:<width$} {}{when}", r.capability, r.why);
                    if !r.programs.is_empty() {
                        out!(": {}", r.programs.join(", "));
                    }
                    outln!("");
                }
                outln!("  {:<width$} to {}", "write access", writable.display());
                let caps: Vec<&str> = reasons.iter().map(|r| r.capability).collect();
                outln!(
                    "  {:<width$} AmbientCapabilities={}",
                    "systemd:",
                    caps.join(" ")
                );
                outln!(
                    "a BPF token (6.9+, `kiln apply --token BPFFS`) for these loads needs a bpffs mounted with:"
                );
                outln!("  -o {}", token.mount_options());
                let perf = kiln_manifest::privilege::beyond_token(&d.resolved);
                if !perf.is_empty() {
                    outln!(
                        "  through perf_event_open, beyond what a token grants (kernel.perf_event_paranoid=-1 or CAP_PERFMON in the initial namespace; a raw_tracepoint needs neither): {}",
                        perf.join(", ")
                    );
                }
            }
        }
        Command::Plan { target, json } => {
            let d = target.load()?;
            let plan = d.plan()?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                outln!("{plan}");
            }
        }
        Command::Apply {
            target,
            json,
            fail_at,
            verifier_log_dir,
            adopt,
            token,
        } => {
            let d = target.load()?;
            let token = token
                .map(|bpffs| kiln_loader::Token::from_bpffs(&bpffs))
                .transpose()?;
            // Kernels before 5.11 charge maps and programs to RLIMIT_MEMLOCK;
            // when raising it is refused, an EPERM from the kernel says so.
            let _ = kiln_loader::caps::raise_memlock();
            let mut opts = ApplyOptions {
                verifier_log_dir,
                adopt,
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
            let outcome = match &token {
                Some(token) => token.scope(|| d.apply(&opts)).map_err(|e| {
                    let refused = kiln_loader::token::take_refusal().is_some();
                    let why = kiln_manifest::privilege::token_refusal(
                        &d.resolved,
                        token.bpffs(),
                        refused,
                    );
                    match why {
                        Some(why) => anyhow::Error::new(e).context(why),
                        None => anyhow::Error::new(e),
                    }
                }),
                None => d.apply(&opts).map_err(anyhow::Error::new),
            }
            .context(
                "apply failed; nothing changed (the previous generation, if any, still runs)",
            )?;
            for n in &outcome.notes {
                errln!("note: {n}");
            }
            if json {
                outln!("{}", serde_json::to_string_pretty(&outcome.plan)?);
            } else if outcome.plan.is_noop() {
                outln!("deployment {}: no changes", outcome.plan.deployment);
            } else {
                outln!("{}", outcome.plan);
                outln!("applied.");
            }
            for w in outcome.warnings {
                errln!("warning: {w}");
            }
        }
        Command::Status {
            target,
            json,
            token,
        } => {
            let d = target.load()?;
            let status = match token {
                Some(bpffs) => kiln_loader::Token::from_bpffs(&bpffs)?.scope(|| d.status())?,
                None => d.status()?,
            };
            if json {
                outln!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                outln!("{status}");
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
            let _ = kiln_loader::caps::raise_memlock();
            let log_dir = verifier_log_dir.unwrap_or_else(std::env::temp_dir);
            if !object::load(&path, pin_dir.as_deref(), &log_dir, json, &attach_targets)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Probe { json } => probe::run(json)?,
        Command::New {
            name,
            dir,
            kiln_path,
        } => {
            use kiln_build::template::{self, KilnSource};
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let source = match kiln_path {
                Some(p) => KilnSource::Checkout(std::path::absolute(&p)?),
                None => KilnSource::default_for_this_build(),
            };
            template::create(&name, &dir, &source)?;
            println!(
                "{}: created; `cd {} && cargo build`, then see README.md",
                dir.display(),
                dir.display()
            );
        }
        Command::Agent(args) => agent::run(args)?,
        Command::Export {
            pin_root,
            name,
            json,
        } => {
            if !pin_root.is_dir() {
                return Err(NoInput(format!("{}: no such pin root", pin_root.display())).into());
            }
            // The name picks the lock and the default pin root: guessing it
            // from a custom pin root would make the exported manifest take
            // another deployment's lock.
            let default_base = std::path::Path::new(kiln_manifest::manifest::DEFAULT_PIN_BASE);
            let name = match name {
                Some(n) => n,
                None if pin_root.parent() == Some(default_base) => pin_root
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                None => {
                    return Err(Usage(format!(
                        "{}: not under {}, so the deployment's name cannot be read from it; pass --name NAME (the [deployment] name of the manifest that applied it)",
                        pin_root.display(),
                        default_base.display()
                    ))
                    .into());
                }
            };
            let text = kiln_manifest::export::export(&name, &pin_root)?;
            if json {
                let v = serde_json::json!({
                    "deployment": name,
                    "pin_root": pin_root,
                    "manifest": text,
                });
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                outln!("{}", text.trim_end());
            }
        }
        Command::Destroy { manifest, json } => {
            input_file(&manifest, "manifest file")?;
            let m = Manifest::load(&manifest).map_err(invalid)?;
            let done = kiln_manifest::apply::destroy_owned(m.name(), &m.pin_root())?;
            if json {
                let v = serde_json::json!({
                    "deployment": m.name(),
                    "pin_root": m.pin_root(),
                    "removed": done.removed,
                    "left": done.left,
                    "root_removed": done.root_removed || !m.pin_root().exists(),
                });
                outln!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            for r in &done.removed {
                outln!("- unpinned {r}");
            }
            for p in &done.left {
                outln!("= left alone {} (not this deployment's)", p.display());
            }
            if done.left.is_empty() {
                outln!(
                    "deployment {}: destroyed ({} pin(s) removed, {} {})",
                    m.name(),
                    done.removed.len(),
                    m.pin_root().display(),
                    if done.root_removed || !m.pin_root().exists() {
                        "gone"
                    } else {
                        "stays (it was there before Kiln)"
                    }
                );
            } else {
                outln!(
                    "deployment {}: destroyed ({} pin(s) removed); {} stays, holding {} foreign item(s)",
                    m.name(),
                    done.removed.len(),
                    m.pin_root().display(),
                    done.left.len()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
