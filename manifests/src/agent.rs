//! `kiln agent`: keeps every manifest of a directory applied.
//!
//! The pins are the state, so the agent keeps none of its own: each pass
//! loads every manifest of the directory and applies it, which is a no-op
//! when the kernel already matches and a repair when something drifted.
//! A pass runs at start, after every change in the directory (inotify, with
//! a debounce, so a Kubernetes ConfigMap's `..data` symlink swap or an
//! editor's write-and-rename is one change), and every resync interval.
//!
//! What the agent never does: touch a deployment whose manifest fails to
//! load or apply (its last good generation keeps running, since apply is a
//! transaction), destroy a deployment whose manifest disappeared unless
//! told to (`prune`), or detach anything when it stops.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::Deployment;
use crate::apply::{ApplyError, ApplyOptions};
use kiln_loader::links::AttachPoint;

/// How the agent runs.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// The directory of manifests (`*.toml`; names starting with `.` are
    /// skipped, as a ConfigMap mount's `..data` is).
    pub dir: PathBuf,
    /// How often every manifest is applied again, repairing drift.
    pub resync: Duration,
    /// Quiet time after a change before the pass runs.
    pub debounce: Duration,
    /// Destroy the deployment of a manifest removed from the directory.
    pub prune: bool,
    /// Log lines as JSON objects instead of text.
    pub json_logs: bool,
    /// Hold tracepoint, kprobe and uprobe attachments open in the agent
    /// even where the kernel could pin them (testing; a fleet that wants
    /// them to end with the agent). Where it cannot (no perf-event links,
    /// before 5.15) they are always held.
    pub hold_perf_attachments: bool,
    pub apply: ApplyOptions,
}

/// What the agent knows of one manifest file.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ManifestState {
    /// The file name in the directory.
    pub file: String,
    /// The deployment's name, once the manifest has loaded.
    pub deployment: Option<String>,
    pub pin_root: Option<PathBuf>,
    /// The last pass loaded and applied it (or found nothing to do).
    pub healthy: bool,
    /// Why the last pass failed, with the manifest's own error text.
    pub last_error: Option<String>,
    /// Passes that loaded and applied it, changed or not.
    pub applies: u64,
    pub failures: u64,
    /// Passes whose plan had actions after the manifest or its objects changed.
    pub changes_applied: u64,
    /// Passes whose plan had actions for unchanged inputs: drift found and repaired.
    pub drift_repaired: u64,
    pub last_apply_seconds: f64,
    /// Unix time of the last successful pass.
    pub last_success_unix: Option<u64>,
    /// Per program, as the kernel counts it (zero unless run-time stats are on).
    pub programs: Vec<ProgramStats>,
    /// Attachments the kernel cannot pin here, held open by the agent.
    pub held: Vec<HeldAttachment>,
    /// Digest of the manifest and its objects when last applied: a plan with
    /// actions for unchanged inputs is drift, for changed ones a rollout.
    #[serde(skip)]
    pub applied_inputs: Option<[u8; 32]>,
}

/// An attachment the agent holds open (a perf event before 5.15).
#[derive(Clone, Debug, Serialize)]
pub struct HeldAttachment {
    pub program: String,
    pub prog_id: u32,
    pub target: String,
}

/// The live side of a [`HeldAttachment`]: dropping it detaches.
struct Held {
    prog_id: u32,
    target: String,
    _link: Box<dyn kiln_loader::links::Link>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProgramStats {
    pub name: String,
    pub run_cnt: u64,
    pub run_time_ns: u64,
}

/// The agent's state, shared with the HTTP endpoints.
#[derive(Debug, Default, Serialize)]
pub struct AgentState {
    pub dir: PathBuf,
    /// Every manifest has been through one pass.
    pub ready: bool,
    pub passes: u64,
    pub manifests: BTreeMap<String, ManifestState>,
}

/// Why the agent could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("manifest directory {}", .dir.display())]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("inotify on {}", .dir.display())]
    Watch {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("listening on {addr}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Why one manifest could not be reconciled (the agent logs it and retries
/// on the next pass).
#[derive(Debug, thiserror::Error)]
enum ReconcileError {
    /// The manifest is invalid: its diagnostics, each naming its line.
    #[error("{0}")]
    Invalid(crate::Diagnostics),
    #[error("{}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", .path.display())]
    Toml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// The manifest rewritten with `attach = "none"` for the held programs.
    #[error("{}: rewriting the held programs' attach", .path.display())]
    Derive {
        path: PathBuf,
        #[source]
        source: toml::ser::Error,
    },
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("program '{name}' at {}", .pin.display())]
    Pinned {
        name: String,
        pin: PathBuf,
        #[source]
        source: kiln_loader::programs::ProgramError,
    },
    #[error("program '{name}': holding its attachment: {reason}")]
    Hold { name: String, reason: String },
}

/// The reconciler over one directory.
pub struct Agent {
    opts: AgentOptions,
    state: Arc<Mutex<AgentState>>,
    /// By (manifest file, program).
    held: BTreeMap<(String, String), Held>,
}

impl Agent {
    pub fn new(opts: AgentOptions) -> Self {
        let state = AgentState {
            dir: opts.dir.clone(),
            ..AgentState::default()
        };
        Agent {
            opts,
            state: Arc::new(Mutex::new(state)),
            held: BTreeMap::new(),
        }
    }

    /// The state the endpoints read.
    pub fn state(&self) -> Arc<Mutex<AgentState>> {
        Arc::clone(&self.state)
    }

    /// Runs passes until `stop` is set (a signal handler sets it), then
    /// returns, leaving every program attached: the pins hold them.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), AgentError> {
        if !self.opts.dir.is_dir() {
            return Err(AgentError::Dir {
                dir: self.opts.dir.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not a directory (create it, or mount the ConfigMap there)",
                ),
            });
        }
        let watch = Watch::new(&self.opts.dir)?;
        self.log(
            "info",
            None,
            "started",
            &format!(
                "watching {} (resync every {}s{})",
                self.opts.dir.display(),
                self.opts.resync.as_secs_f64(),
                if self.opts.prune { ", prune" } else { "" }
            ),
        );
        self.pass();
        let mut next_resync = Instant::now() + self.opts.resync;
        // Short slices, so a stop request is seen within one.
        let slice = Duration::from_millis(200);
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= next_resync {
                self.pass();
                next_resync = Instant::now() + self.opts.resync;
                continue;
            }
            if !watch.wait((next_resync - now).min(slice)) {
                continue;
            }
            // A change: wait for the directory to be quiet, then one pass.
            while !stop.load(Ordering::Relaxed) && watch.wait(self.opts.debounce) {}
            if stop.load(Ordering::Relaxed) {
                break;
            }
            self.pass();
        }
        let held = self.held.len();
        self.log(
            "info",
            None,
            "stopped",
            &if held == 0 {
                "stopping; every applied program stays attached (the pins hold it)".to_string()
            } else {
                format!("stopping; pinned attachments stay, the {held} held by the agent end with it (this kernel cannot pin them); they come back when it starts again")
            },
        );
        Ok(())
    }

    /// One pass over the directory.
    pub fn pass(&mut self) {
        let files = match manifest_files(&self.opts.dir) {
            Ok(f) => f,
            Err(e) => {
                self.log(
                    "error",
                    None,
                    "list_failed",
                    &format!("{}: {e}", self.opts.dir.display()),
                );
                return;
            }
        };
        for (file, path) in &files {
            self.reconcile(file, path);
        }
        self.forget_removed(&files);
        let mut st = self.lock();
        st.passes += 1;
        st.ready = st.manifests.values().all(|m| m.applies + m.failures > 0);
    }

    fn reconcile(&mut self, file: &str, path: &Path) {
        let started = Instant::now();
        let result = self.load(path).and_then(|(d, hold)| {
            let outcome = d.apply(&self.opts.apply)?;
            self.hold(file, &d, &hold)?;
            Ok((d, outcome))
        });
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok((d, outcome)) => {
                let programs = program_stats(&d);
                let changed = !outcome.plan.is_noop();
                let name = d.manifest.name().to_string();
                let inputs = inputs_digest(path, &d);
                let drift = {
                    let mut st = self.lock();
                    let m = st.manifests.entry(file.to_string()).or_default();
                    let drift = changed && m.applied_inputs.is_some() && m.applied_inputs == inputs;
                    m.applied_inputs = inputs;
                    m.file = file.to_string();
                    m.deployment = Some(name.clone());
                    m.pin_root = Some(d.manifest.pin_root());
                    m.healthy = true;
                    m.last_error = None;
                    m.applies += 1;
                    m.last_apply_seconds = seconds;
                    m.last_success_unix = Some(unix_now());
                    m.programs = programs;
                    m.held = self
                        .held
                        .iter()
                        .filter(|((f, _), _)| f == file)
                        .map(|((_, program), h)| HeldAttachment {
                            program: program.clone(),
                            prog_id: h.prog_id,
                            target: h.target.clone(),
                        })
                        .collect();
                    if drift {
                        m.drift_repaired += 1;
                    } else if changed {
                        m.changes_applied += 1;
                    }
                    drift
                };
                if changed {
                    let what = if drift { "drift_repaired" } else { "applied" };
                    let actions: Vec<String> =
                        outcome.plan.actions.iter().map(|a| a.to_string()).collect();
                    self.log("info", Some(file), what, &actions.join("; "));
                }
                for w in &outcome.warnings {
                    self.log("warn", Some(file), "warning", w);
                }
            }
            Err(e) => {
                // One line for the log and the status: the whole chain.
                let message = kiln_loader::error_chain(&e);
                let first_failure = {
                    let mut st = self.lock();
                    let m = st.manifests.entry(file.to_string()).or_default();
                    m.file = file.to_string();
                    let first = m.healthy || m.last_error.as_deref() != Some(message.as_str());
                    m.healthy = false;
                    m.last_error = Some(message.clone());
                    m.failures += 1;
                    m.last_apply_seconds = seconds;
                    first
                };
                // Every resync fails again the same way: say it once per new error.
                if first_failure {
                    self.log(
                        "error",
                        Some(file),
                        "apply_failed",
                        &format!("{message} (its last good generation, if any, keeps running)"),
                    );
                }
            }
        }
    }

    /// The deployment to apply, and the perf-event attachments the agent
    /// must hold itself: where the kernel cannot pin them, those programs
    /// are applied with `attach = "none"` (loaded and pinned) and attached
    /// by [`Agent::hold`].
    fn load(
        &self,
        path: &Path,
    ) -> Result<(Deployment, Vec<(String, AttachPoint)>), ReconcileError> {
        let plain = || Deployment::load(path, &BTreeMap::new()).map_err(ReconcileError::Invalid);
        if !self.opts.hold_perf_attachments && crate::features::can_pin_perf_attachments() {
            return plain().map(|d| (d, Vec::new()));
        }
        let offline = Deployment::load_offline(path, &BTreeMap::new(), false)
            .map_err(ReconcileError::Invalid)?;
        let hold: Vec<(String, AttachPoint)> = offline
            .resolved
            .builds
            .iter()
            .filter_map(|(name, b)| match &b.attach {
                Some(a) if a.uses_perf_event() => Some((name.clone(), a.clone())),
                _ => None,
            })
            .collect();
        if hold.is_empty() {
            return plain().map(|d| (d, hold));
        }
        let text = std::fs::read_to_string(path).map_err(|source| ReconcileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut doc: toml::Table = text.parse().map_err(|source| ReconcileError::Toml {
            path: path.to_owned(),
            source,
        })?;
        for (name, _) in &hold {
            if let Some(program) = doc
                .get_mut("programs")
                .and_then(|p| p.get_mut(name))
                .and_then(toml::Value::as_table_mut)
            {
                program.insert("attach".into(), toml::Value::String("none".into()));
            }
        }
        let derived = toml::to_string(&doc).map_err(|source| ReconcileError::Derive {
            path: path.to_owned(),
            source,
        })?;
        let d = Deployment::from_text(path, &derived).map_err(ReconcileError::Invalid)?;
        Ok((d, hold))
    }

    /// Attaches each program of `hold` (pinned by the apply) and keeps the
    /// attachment open; a program replaced by the apply is attached anew
    /// before the old attachment is dropped.
    fn hold(
        &mut self,
        file: &str,
        d: &Deployment,
        hold: &[(String, AttachPoint)],
    ) -> Result<(), ReconcileError> {
        let root = d.manifest.pin_root();
        for (name, how) in hold {
            let pin = root.join(crate::live::PROGS).join(name);
            let prog = kiln_loader::Program::from_pin(&pin, None).map_err(|source| {
                ReconcileError::Pinned {
                    name: name.clone(),
                    pin: pin.clone(),
                    source,
                }
            })?;
            let key = (file.to_string(), name.clone());
            if self.held.get(&key).is_some_and(|h| h.prog_id == prog.id()) {
                continue;
            }
            let link = crate::apply::attach(prog.fd(), how, "kiln").map_err(|reason| {
                ReconcileError::Hold {
                    name: name.clone(),
                    reason,
                }
            })?;
            let target = how.to_string();
            self.log(
                "info",
                Some(file),
                "holding",
                &format!(
                    "program '{name}' (id {}) attached to {target}, held by the agent (this kernel cannot pin it)",
                    prog.id()
                ),
            );
            // The old attachment, if any, detaches here: after the new one runs.
            self.held.insert(
                key,
                Held {
                    prog_id: prog.id(),
                    target,
                    _link: link,
                },
            );
        }
        self.held
            .retain(|(f, program), _| f != file || hold.iter().any(|(n, _)| n == program));
        Ok(())
    }

    /// Manifests that left the directory: destroyed with `prune`, else left
    /// running and forgotten.
    fn forget_removed(&mut self, files: &[(String, PathBuf)]) {
        let gone: Vec<ManifestState> = {
            let mut st = self.lock();
            let names: Vec<String> = st
                .manifests
                .keys()
                .filter(|k| !files.iter().any(|(f, _)| f == *k))
                .cloned()
                .collect();
            names
                .iter()
                .filter_map(|n| st.manifests.remove(n))
                .collect()
        };
        for m in gone {
            let (Some(name), Some(root)) = (&m.deployment, &m.pin_root) else {
                continue;
            };
            if !self.opts.prune {
                self.log(
                    "info",
                    Some(&m.file),
                    "removed",
                    &format!(
                        "manifest removed; deployment {name} keeps running (destroy it with `kiln destroy`, or run the agent with --prune)"
                    ),
                );
                continue;
            }
            self.held.retain(|(f, _), _| f != &m.file);
            match crate::apply::destroy(name, root) {
                Ok(removed) => self.log(
                    "info",
                    Some(&m.file),
                    "destroyed",
                    &format!(
                        "manifest removed: deployment {name} destroyed ({} pin(s))",
                        removed.len()
                    ),
                ),
                Err(e) => self.log(
                    "error",
                    Some(&m.file),
                    "destroy_failed",
                    &format!("deployment {name}: {}", kiln_loader::error_chain(&e)),
                ),
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AgentState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log(&self, level: &str, file: Option<&str>, event: &str, message: &str) {
        let line = if self.opts.json_logs {
            let mut o = serde_json::Map::new();
            o.insert("ts".into(), unix_now().into());
            o.insert("level".into(), level.into());
            o.insert("event".into(), event.into());
            if let Some(f) = file {
                o.insert("manifest".into(), f.into());
            }
            o.insert("message".into(), message.into());
            serde_json::Value::Object(o).to_string()
        } else {
            match file {
                Some(f) => format!("kiln agent: {level}: {f}: {event}: {message}"),
                None => format!("kiln agent: {level}: {event}: {message}"),
            }
        };
        // A closed stderr must not stop the reconciler.
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

/// SHA-256 of the manifest's bytes and of each object file it names.
fn inputs_digest(manifest: &Path, d: &Deployment) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(std::fs::read(manifest).ok()?);
    for (name, path) in &d.resolved.objects.paths {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(std::fs::read(path).ok()?);
    }
    Some(h.finalize().into())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Run counts of the deployment's pinned programs, from the kernel.
fn program_stats(d: &Deployment) -> Vec<ProgramStats> {
    let Ok(observed) = crate::live::observe(&d.manifest.pin_root()) else {
        return Vec::new();
    };
    observed
        .programs
        .iter()
        .map(|(name, p)| ProgramStats {
            name: name.clone(),
            run_cnt: p.run_cnt,
            run_time_ns: p.run_time_ns,
        })
        .collect()
}

/// `(file name, path)` of every manifest in `dir`, sorted.
pub fn manifest_files(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".toml") {
            continue;
        }
        // Follows symlinks: a ConfigMap's files are links into `..data`.
        if entry.path().is_file() {
            files.push((name, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// An inotify watch on the manifest directory.
struct Watch {
    fd: OwnedFd,
}

impl Watch {
    fn new(dir: &Path) -> Result<Self, AgentError> {
        let err = |source| AgentError::Watch {
            dir: dir.to_path_buf(),
            source,
        };
        // SAFETY: inotify_init1 takes flags only and returns a new fd or -1.
        let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if raw < 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
        let mask = libc::IN_CLOSE_WRITE
            | libc::IN_CREATE
            | libc::IN_DELETE
            | libc::IN_MOVED_TO
            | libc::IN_MOVED_FROM
            | libc::IN_MODIFY
            | libc::IN_ATTRIB;
        // SAFETY: `fd` is an inotify descriptor and `path` a NUL-terminated string.
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) } < 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        Ok(Watch { fd })
    }

    /// Waits up to `timeout` for events; true when some arrived (all drained).
    fn wait(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n <= 0 {
            return false;
        }
        let mut buf = [0u8; 4096];
        // The events themselves do not matter: any change means a pass.
        // SAFETY: reads into a live buffer of the given length; the fd is
        // non-blocking, so the loop ends when the queue is empty.
        while unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
        true
    }
}

/// Serves `/healthz`, `/readyz`, `/metrics` (Prometheus text) and `/status`
/// (JSON) on `addr` from a background thread.
pub fn serve(
    addr: &str,
    state: Arc<Mutex<AgentState>>,
) -> Result<std::net::SocketAddr, AgentError> {
    let listener = std::net::TcpListener::bind(addr).map_err(|source| AgentError::Listen {
        addr: addr.to_string(),
        source,
    })?;
    let local = listener.local_addr().map_err(|source| AgentError::Listen {
        addr: addr.to_string(),
        source,
    })?;
    std::thread::Builder::new()
        .name("kiln-agent-http".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = answer(conn, &state);
            }
        })
        .map_err(|source| AgentError::Listen {
            addr: addr.to_string(),
            source,
        })?;
    Ok(local)
}

fn answer(mut conn: std::net::TcpStream, state: &Mutex<AgentState>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    // Only the request line matters; stop at the end of the headers or 8 KiB.
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&request);
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let (code, content_type, body) = {
        let st = state.lock().unwrap_or_else(|e| e.into_inner());
        route(path, &st)
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        _ => "Service Unavailable",
    };
    write!(
        conn,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The response to a GET of `path`: status code, content type, body.
pub fn route(path: &str, st: &AgentState) -> (u16, &'static str, String) {
    match path {
        "/healthz" => (200, "text/plain", "ok\n".into()),
        "/readyz" if st.ready => (200, "text/plain", "ready\n".into()),
        "/readyz" => (
            503,
            "text/plain",
            "not every manifest has been applied once yet\n".into(),
        ),
        "/metrics" => (200, "text/plain; version=0.0.4", metrics(st)),
        "/status" => (
            200,
            "application/json",
            serde_json::to_string_pretty(st).unwrap_or_default() + "\n",
        ),
        _ => (
            404,
            "text/plain",
            "not found: /healthz /readyz /metrics /status\n".into(),
        ),
    }
}

/// Prometheus text exposition of the agent's state.
pub fn metrics(st: &AgentState) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, value) in rows {
            out.push_str(&format!("{name}{{{labels}}} {value}\n"));
        }
    };
    let labels = |m: &ManifestState| {
        format!(
            "manifest=\"{}\",deployment=\"{}\"",
            escape(&m.file),
            escape(m.deployment.as_deref().unwrap_or(""))
        )
    };
    let per = |f: &dyn Fn(&ManifestState) -> String| -> Vec<(String, String)> {
        st.manifests.values().map(|m| (labels(m), f(m))).collect()
    };
    family(
        "kiln_agent_ready",
        "gauge",
        "1 once every manifest has been through one pass.",
        vec![(String::new(), u8::from(st.ready).to_string())],
    );
    family(
        "kiln_agent_passes_total",
        "counter",
        "Reconcile passes over the directory.",
        vec![(String::new(), st.passes.to_string())],
    );
    family(
        "kiln_deployment_healthy",
        "gauge",
        "1 when the manifest's last pass loaded and applied it.",
        per(&|m| u8::from(m.healthy).to_string()),
    );
    family(
        "kiln_deployment_applies_total",
        "counter",
        "Passes that applied the manifest (changed or not).",
        per(&|m| m.applies.to_string()),
    );
    family(
        "kiln_deployment_failures_total",
        "counter",
        "Passes where the manifest failed to load or apply.",
        per(&|m| m.failures.to_string()),
    );
    family(
        "kiln_deployment_changes_applied_total",
        "counter",
        "Passes after a manifest change whose plan had actions.",
        per(&|m| m.changes_applied.to_string()),
    );
    family(
        "kiln_deployment_drift_repaired_total",
        "counter",
        "Resync passes that found drift and repaired it.",
        per(&|m| m.drift_repaired.to_string()),
    );
    family(
        "kiln_deployment_apply_duration_seconds",
        "gauge",
        "Duration of the last pass of the manifest.",
        per(&|m| format!("{:.6}", m.last_apply_seconds)),
    );
    family(
        "kiln_deployment_held_attachments",
        "gauge",
        "Attachments held open by the agent because the kernel cannot pin them.",
        per(&|m| m.held.len().to_string()),
    );
    let programs = |f: &dyn Fn(&ProgramStats) -> String| -> Vec<(String, String)> {
        st.manifests
            .values()
            .flat_map(|m| {
                m.programs.iter().map(move |p| {
                    (
                        format!("{},program=\"{}\"", labels(m), escape(&p.name)),
                        f(p),
                    )
                })
            })
            .collect()
    };
    family(
        "kiln_program_run_count",
        "counter",
        "Runs of the program as the kernel counts them (needs kernel.bpf_stats_enabled).",
        programs(&|p| p.run_cnt.to_string()),
    );
    family(
        "kiln_program_run_time_seconds",
        "counter",
        "Time spent in the program as the kernel counts it (needs kernel.bpf_stats_enabled).",
        programs(&|p| format!("{:.9}", p.run_time_ns as f64 / 1e9)),
    );
    out
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> AgentState {
        let mut st = AgentState {
            ready: true,
            passes: 3,
            ..AgentState::default()
        };
        st.manifests.insert(
            "a.toml".into(),
            ManifestState {
                file: "a.toml".into(),
                deployment: Some("alpha".into()),
                healthy: true,
                applies: 3,
                changes_applied: 1,
                drift_repaired: 1,
                programs: vec![ProgramStats {
                    name: "count_exec".into(),
                    run_cnt: 5,
                    run_time_ns: 1500,
                }],
                ..ManifestState::default()
            },
        );
        st.manifests.insert(
            "b\"ad.toml".into(),
            ManifestState {
                file: "b\"ad.toml".into(),
                failures: 2,
                last_error: Some("b.toml:1:1: expected a table".into()),
                ..ManifestState::default()
            },
        );
        st
    }

    #[test]
    fn metrics_name_each_deployment_and_program() {
        let text = metrics(&state());
        for line in [
            "kiln_agent_ready{} 1",
            "kiln_deployment_healthy{manifest=\"a.toml\",deployment=\"alpha\"} 1",
            "kiln_deployment_healthy{manifest=\"b\\\"ad.toml\",deployment=\"\"} 0",
            "kiln_deployment_failures_total{manifest=\"b\\\"ad.toml\",deployment=\"\"} 2",
            "kiln_deployment_drift_repaired_total{manifest=\"a.toml\",deployment=\"alpha\"} 1",
            "kiln_program_run_count{manifest=\"a.toml\",deployment=\"alpha\",program=\"count_exec\"} 5",
            "kiln_program_run_time_seconds{manifest=\"a.toml\",deployment=\"alpha\",program=\"count_exec\"} 0.000001500",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn routes() {
        let mut st = state();
        assert_eq!(route("/healthz", &st).0, 200);
        assert_eq!(route("/readyz", &st).0, 200);
        st.ready = false;
        assert_eq!(route("/readyz", &st).0, 503);
        assert_eq!(route("/nope", &st).0, 404);
        let (code, kind, body) = route("/status", &st);
        assert_eq!((code, kind), (200, "application/json"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["manifests"]["b\"ad.toml"]["last_error"],
            "b.toml:1:1: expected a table"
        );
    }

    #[test]
    fn lists_manifests_not_configmap_internals() {
        let dir = std::env::temp_dir().join(format!("kiln-agent-list-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("..2026_12_07")).unwrap();
        std::fs::write(dir.join("..2026_12_07/a.toml"), "").unwrap();
        std::os::unix::fs::symlink("..2026_12_07", dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/a.toml", dir.join("a.toml")).unwrap();
        std::fs::write(dir.join("notes.txt"), "").unwrap();
        std::fs::write(dir.join("b.toml"), "").unwrap();
        let names: Vec<String> = manifest_files(&dir)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["a.toml", "b.toml"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
