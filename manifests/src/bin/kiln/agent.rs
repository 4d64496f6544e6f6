//! `kiln agent`: the reconciler's command line, signals and HTTP endpoints.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, ValueEnum};
use kiln_manifest::agent::{Agent, AgentOptions};
use kiln_manifest::apply::ApplyOptions;

#[derive(Args)]
pub struct AgentArgs {
    /// Directory of manifests (`*.toml`, objects beside them): a ConfigMap
    /// mount, or /etc/kiln/manifests.d on a plain host.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Apply every manifest again this often (seconds), repairing drift.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    resync: f64,
    /// Quiet time after a change in the directory before applying (milliseconds).
    #[arg(long, value_name = "MS", default_value_t = 300)]
    debounce_ms: u64,
    /// Destroy the deployment of a manifest removed from the directory
    /// (default: leave it running).
    #[arg(long)]
    prune: bool,
    /// Serve /healthz, /readyz, /metrics and /status on this address (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Hold tracepoint, kprobe and uprobe attachments open in the agent
    /// instead of pinning them (always so where the kernel cannot pin them,
    /// before 5.15); they end when the agent stops.
    #[arg(long)]
    hold_perf_attachments: bool,
    /// Where a rejected program's whole verifier log is written (default: the temporary directory).
    #[arg(long, value_name = "DIR")]
    verifier_log_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Set by SIGTERM and SIGINT; the agent stops at its next slice.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.resync.is_finite() && args.resync >= 0.1,
        "--resync {}: give a number of seconds, at least 0.1",
        args.resync
    );
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, request_stop as *const () as libc::sighandler_t) };
    }
    let _ = kiln_loader::caps::raise_memlock();
    let mut agent = Agent::new(AgentOptions {
        dir: args.dir,
        resync: Duration::from_secs_f64(args.resync),
        debounce: Duration::from_millis(args.debounce_ms),
        prune: args.prune,
        json_logs: args.log_format == LogFormat::Json,
        hold_perf_attachments: args.hold_perf_attachments,
        apply: ApplyOptions {
            verifier_log_dir: args.verifier_log_dir,
            ..ApplyOptions::default()
        },
    });
    if let Some(addr) = &args.listen {
        let local = kiln_manifest::agent::serve(addr, agent.state())?;
        errln!("kiln agent: serving /healthz /readyz /metrics /status on http://{local}");
    }
    agent.run(&STOP)?;
    Ok(())
}
