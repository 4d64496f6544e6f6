//! `kiln agent` as an operator runs it: a directory of manifests, the agent
//! process in the background, its HTTP endpoints, edits, drift, a broken
//! manifest, SIGKILL and SIGTERM. Each step is checked in the kernel (status
//! computed from the pins) and by a real trigger (an exec counted by the
//! programs).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_manifest::Deployment;
use kiln_testkit::{Need, TestResult};

mod common;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A tracepoint-only deployment (several can run at once, unlike XDP on lo).
fn manifest(name: &str, root: &Path, exec_extra: &str) -> Result<String, Error> {
    let object = kiln_testkit::bpf_object("manifest_counter.bpf.o")?;
    Ok(format!(
        r#"[deployment]
name = "{name}"
pin_root = "{root}"
allow_outside = true

[objects.counter]
path = "{obj}"

[programs.count_exec]
object = "counter"
attach = {{ tracepoint = {{ category = "sched", name = "sched_process_exec" }} }}
{exec_extra}

[maps.COUNTERS]
object = "counter"
"#,
        root = root.display(),
        obj = object.display(),
    ))
}

/// Test deployments under one bpffs directory, removed on drop.
struct Fleet {
    dir: PathBuf,
    /// Where the tests' own copies of manifests go: a write into `dir`
    /// would be a change the agent reacts to.
    scratch: PathBuf,
    base: PathBuf,
    names: Vec<String>,
}

impl Fleet {
    fn new(tag: &str) -> Result<Self, Error> {
        let id = format!("{tag}-{}", std::process::id());
        let dir = std::env::temp_dir().join(format!("kiln-agent-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let scratch = dir.with_extension("expect");
        std::fs::create_dir_all(&scratch)?;
        Ok(Fleet {
            dir,
            scratch,
            base: PathBuf::from(format!("/sys/fs/bpf/kiln-test-agent-{id}")),
            names: Vec::new(),
        })
    }

    fn root(&self, short: &str) -> PathBuf {
        self.base.join(short)
    }

    fn name(&self, short: &str) -> String {
        format!("agent-{short}-{}", std::process::id())
    }

    /// Writes `SHORT.toml` into the directory; returns its text.
    fn write(&mut self, short: &str, exec_extra: &str) -> Result<String, Error> {
        let name = self.name(short);
        if !self.names.contains(&name) {
            self.names.push(name.clone());
        }
        let text = manifest(&name, &self.root(short), exec_extra)?;
        std::fs::write(self.dir.join(format!("{short}.toml")), &text)?;
        Ok(text)
    }

    /// The kernel's view of deployment `short`, judged against `text`.
    fn status(&self, short: &str, text: &str) -> Result<kiln_manifest::status::Status, Error> {
        let path = self.scratch.join(format!("{short}.toml"));
        std::fs::write(&path, text)?;
        let d = Deployment::load(&path, &BTreeMap::new()).map_err(|e| e.to_string())?;
        Ok(d.status()?)
    }

    fn counter(&self, short: &str) -> Result<u64, Error> {
        Ok(common::counter(&self.root(short), 0)?)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (short, name) in ["a", "b", "c"].iter().zip(&self.names) {
            common::remove_deployment(name, &self.root(short), &self.dir);
        }
        let _ = std::fs::remove_dir(&self.base);
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// The agent process, its stderr collected, killed on drop.
struct AgentProcess {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl AgentProcess {
    fn start(dir: &Path, extra: &[&str]) -> Result<Self, Error> {
        let mut child = Command::new(common::kiln_bin())
            .args(["agent", "--dir"])
            .arg(dir)
            .args(["--resync", "2", "--debounce-ms", "100"])
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.split("http://").nth(1) {
                    let _ = tx.send(at.trim().to_string());
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the agent never said where it listens:\n{}",
                    log.lock().unwrap()
                )
                .into());
            }
        };
        Ok(AgentProcess { child, addr, log })
    }

    fn get(&self, path: &str) -> Result<(u16, String), Error> {
        let mut s = std::net::TcpStream::connect(&self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: agent\r\n\r\n")?;
        let mut response = String::new();
        s.read_to_string(&mut response)?;
        let code = response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("not an HTTP response: {response}"))?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((code, body))
    }

    fn metric(&self, line_start: &str) -> Result<Option<f64>, Error> {
        let (_, body) = self.get("/metrics")?;
        Ok(body
            .lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok()))
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn signal(&mut self, signal: libc::c_int) -> Result<(), Error> {
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, signal) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(())
    }

    fn wait_exit(&mut self, within: Duration) -> Result<std::process::ExitStatus, Error> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            if Instant::now() > deadline {
                return Err(
                    format!("the agent did not exit within {within:?}:\n{}", self.log()).into(),
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `what` until it holds; the deadline is generous (a loaded CI
/// machine, TCG guests): this checks convergence, not speed.
fn eventually(
    what: &str,
    agent: &AgentProcess,
    mut check: impl FnMut() -> Result<bool, Error>,
) -> Result<Duration, Error> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let mut last = String::new();
    loop {
        match check() {
            Ok(true) => return Ok(started.elapsed()),
            Ok(false) => {}
            Err(e) => last = e.to_string(),
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{what}: not within 60 s (last error: {last})\nagent log:\n{}",
                agent.log()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn all_ok(fleet: &Fleet, short: &str, text: &str) -> Result<bool, Error> {
    let st = fleet.status(short, text)?;
    Ok(st.all_ok())
}

fn agent_keeps_a_directory_applied() -> TestResult {
    let mut fleet = Fleet::new("dir")?;
    let mut texts = BTreeMap::new();
    for short in ["a", "b", "c"] {
        texts.insert(short, fleet.write(short, "")?);
    }
    let mut agent = AgentProcess::start(&fleet.dir, &[])?;
    eventually("/readyz answers 200", &agent, || {
        Ok(agent.get("/readyz")?.0 == 200)
    })?;
    assert_eq!(agent.get("/healthz")?.0, 200);
    for short in ["a", "b", "c"] {
        let st = fleet.status(short, &texts[short])?;
        assert!(st.all_ok(), "{short} after the first pass:\n{st}");
    }
    let before = fleet.counter("a")?;
    common::exec_true()?;
    assert!(
        fleet.counter("a")? > before,
        "an exec was not counted under the agent"
    );

    // A change of the manifest is rolled out.
    let changed = fleet.write("a", "globals = { step = 5 }")?;
    let took = eventually("the edited manifest applied", &agent, || {
        all_ok(&fleet, "a", &changed)
    })?;
    eprintln!("agent: the change was applied after {took:?}");
    // Every exec on the machine counts (builds run beside the tests): with
    // the new step each adds 5. A tracepoint's perf link cannot swap its
    // program, so the upgrade attaches the new one before the old is
    // detached, and the kernel frees the old link a moment after its last
    // reference: an exec in that window is counted by both (+6). Measure
    // again until the old program is gone.
    let mut added = 0;
    for _ in 0..30 {
        let before = fleet.counter("a")?;
        common::exec_true()?;
        added = fleet.counter("a")? - before;
        if added >= 5 && added % 5 == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        added >= 5 && added % 5 == 0,
        "the new step did not take effect within 3 s: +{added}"
    );
    texts.insert("a", changed);

    // Drift: a link unpinned behind the agent's back is restored by a resync.
    // First let the pass that rolled out the change end, so that only a
    // resync can see the drift.
    let passes = agent.metric("kiln_agent_passes_total")?.unwrap_or(0.0);
    eventually("the rollout's pass ended", &agent, || {
        Ok(agent.metric("kiln_agent_passes_total")?.unwrap_or(0.0) > passes)
    })?;
    std::fs::remove_file(fleet.root("b").join("links/count_exec"))?;
    eventually("the removed link restored", &agent, || {
        all_ok(&fleet, "b", &texts["b"])
    })?;
    let repaired = format!(
        "kiln_deployment_drift_repaired_total{{manifest=\"b.toml\",deployment=\"{}\"}}",
        fleet.name("b")
    );
    eventually("drift counted on /metrics", &agent, || {
        Ok(agent.metric(&repaired)?.unwrap_or(0.0) >= 1.0)
    })?;

    // A broken manifest keeps its last good generation running and is reported.
    let good_c = texts["c"].clone();
    std::fs::write(fleet.dir.join("c.toml"), "[deployment\nname = ")?;
    let unhealthy = format!(
        "kiln_deployment_healthy{{manifest=\"c.toml\",deployment=\"{}\"}}",
        fleet.name("c")
    );
    eventually("the broken manifest reported unhealthy", &agent, || {
        Ok(agent.metric(&unhealthy)? == Some(0.0))
    })?;
    let (_, status) = agent.get("/status")?;
    let v: serde_json::Value = serde_json::from_str(&status)?;
    let error = v["manifests"]["c.toml"]["last_error"]
        .as_str()
        .unwrap_or("");
    assert!(
        error.contains("c.toml"),
        "/status does not name the file: {error}"
    );
    let st = fleet.status("c", &good_c)?;
    assert!(st.all_ok(), "the last good generation of c stopped:\n{st}");
    let before = fleet.counter("c")?;
    common::exec_true()?;
    assert!(fleet.counter("c")? > before, "c no longer counts");

    // SIGKILL, then a new agent converges with nothing stray or duplicated.
    std::fs::write(fleet.dir.join("c.toml"), &good_c)?;
    agent.signal(libc::SIGKILL)?;
    agent.wait_exit(Duration::from_secs(10))?;
    let mut agent = AgentProcess::start(&fleet.dir, &[])?;
    eventually("/readyz after a restart", &agent, || {
        Ok(agent.get("/readyz")?.0 == 200)
    })?;
    for short in ["a", "b", "c"] {
        let st = fleet.status(short, &texts[short])?;
        assert!(st.all_ok(), "{short} after SIGKILL and restart:\n{st}");
        assert!(st.extra.is_empty(), "{short}: strays {:?}", st.extra);
    }

    // SIGTERM: a clean exit, every program still attached.
    agent.signal(libc::SIGTERM)?;
    let exit = agent.wait_exit(Duration::from_secs(20))?;
    assert!(
        exit.success(),
        "the agent exited with {exit} on SIGTERM:\n{}",
        agent.log()
    );
    for short in ["a", "b", "c"] {
        let st = fleet.status(short, &texts[short])?;
        assert!(st.all_ok(), "{short} after the agent stopped:\n{st}");
        let before = fleet.counter(short)?;
        common::exec_true()?;
        assert!(
            fleet.counter(short)? > before,
            "{short} stopped counting with the agent"
        );
    }
    Ok(())
}

fn removed_manifest_is_destroyed_only_with_prune() -> TestResult {
    let mut fleet = Fleet::new("prune")?;
    fleet.write("a", "")?;
    let agent = AgentProcess::start(&fleet.dir, &[])?;
    eventually("/readyz", &agent, || Ok(agent.get("/readyz")?.0 == 200))?;
    std::fs::remove_file(fleet.dir.join("a.toml"))?;
    eventually("the removal noticed", &agent, || {
        Ok(agent.log().contains("keeps running"))
    })?;
    assert!(
        fleet.root("a").join("links/count_exec").exists(),
        "the deployment was destroyed without --prune"
    );
    drop(agent);

    fleet.write("a", "")?;
    let agent = AgentProcess::start(&fleet.dir, &["--prune"])?;
    eventually("/readyz", &agent, || Ok(agent.get("/readyz")?.0 == 200))?;
    std::fs::remove_file(fleet.dir.join("a.toml"))?;
    eventually("the deployment destroyed", &agent, || {
        Ok(!fleet.root("a").exists())
    })?;
    Ok(())
}

/// The agent holds tracepoint and kprobe attachments itself: on kernels
/// that cannot pin them (no perf-event links, before 5.15) because it must,
/// elsewhere because it is asked to (`--hold-perf-attachments`). They count
/// for real, end with the agent, and come back when it starts again.
fn held_attachments(with_kprobe: bool) -> TestResult {
    let mut fleet = Fleet::new(if with_kprobe { "heldk" } else { "held" })?;
    let object = kiln_testkit::bpf_object("agent_probes.bpf.o")?;
    let name = fleet.name("a");
    fleet.names.push(name.clone());
    let kprobe = if with_kprobe {
        "[programs.count_open]\nobject = \"probes\"\nattach = { kprobe = { function = \"do_sys_openat2\" } }\n"
    } else {
        ""
    };
    let text = format!(
        r#"[deployment]
name = "{name}"
pin_root = "{root}"
allow_outside = true

[objects.probes]
path = "{obj}"

[programs.count_exec]
object = "probes"
attach = {{ tracepoint = {{ category = "sched", name = "sched_process_exec" }} }}

{kprobe}
[maps.COUNTERS]
object = "probes"
"#,
        root = fleet.root("a").display(),
        obj = object.display(),
    );
    std::fs::write(fleet.dir.join("a.toml"), &text)?;
    // Where the kernel pins perf events, ask for holding; where it cannot,
    // the agent must decide it by itself.
    let forced: &[&str] = if common::no_perf_link().is_some() {
        &[]
    } else {
        &["--hold-perf-attachments"]
    };
    let count = |key: u32| -> Result<u64, Error> { Ok(common::counter(&fleet.root("a"), key)?) };
    let mut agent = AgentProcess::start(&fleet.dir, forced)?;
    eventually("/readyz", &agent, || Ok(agent.get("/readyz")?.0 == 200))?;
    let (_, status) = agent.get("/status")?;
    let v: serde_json::Value = serde_json::from_str(&status)?;
    let held = v["manifests"]["a.toml"]["held"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        held.len(),
        1 + usize::from(with_kprobe),
        "held attachments: {status}"
    );
    assert!(
        !fleet.root("a").join("links/count_exec").exists(),
        "a held attachment was pinned"
    );
    let triggers = |what: &str| -> Result<(u64, u64), Error> {
        let before = (count(0)?, count(1)?);
        common::exec_true()?;
        std::fs::read_to_string("/proc/self/status")?;
        let after = (count(0)?, count(1)?);
        eprintln!(
            "{what}: execs {} -> {}, opens {} -> {}",
            before.0, after.0, before.1, after.1
        );
        Ok((after.0 - before.0, after.1 - before.1))
    };
    let (execs, opens) = triggers("held")?;
    assert!(execs >= 1, "the held tracepoint did not count");
    assert!(!with_kprobe || opens >= 1, "the held kprobe did not count");

    // They end with the agent (the kernel cannot keep them)...
    agent.signal(libc::SIGTERM)?;
    assert!(agent.wait_exit(Duration::from_secs(20))?.success());
    let (execs, _) = triggers("agent stopped")?;
    assert_eq!(execs, 0, "a held attachment outlived the agent");
    // ...and come back when it starts again.
    let agent = AgentProcess::start(&fleet.dir, forced)?;
    eventually("/readyz after a restart", &agent, || {
        Ok(agent.get("/readyz")?.0 == 200)
    })?;
    let (execs, opens) = triggers("restarted")?;
    assert!(
        execs >= 1,
        "the tracepoint did not come back with the agent"
    );
    assert!(
        !with_kprobe || opens >= 1,
        "the kprobe did not come back with the agent"
    );
    Ok(())
}

fn main() {
    let perf_links = Need::Probe("perf_link", common::no_perf_link);
    let needs = &[Need::Root, Need::Bpf, perf_links];
    let kprobe_target = Need::Probe("do_sys_openat2", || {
        let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        (!kallsyms
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some("do_sys_openat2")))
        .then(|| "kernel has no do_sys_openat2 to kprobe".into())
    });
    kiln_testkit::run(vec![
        kiln_testkit::test(
            "agent_holds_tracepoint_attachments",
            &[Need::Root, Need::Bpf],
            || held_attachments(false),
        ),
        kiln_testkit::test(
            "agent_holds_kprobe_attachments",
            &[Need::Root, Need::Bpf, Need::Kprobes, kprobe_target],
            || held_attachments(true),
        ),
        kiln_testkit::test(
            "agent_keeps_a_directory_applied",
            needs,
            agent_keeps_a_directory_applied,
        ),
        kiln_testkit::test(
            "removed_manifest_is_destroyed_only_with_prune",
            needs,
            removed_manifest_is_destroyed_only_with_prune,
        ),
    ]);
}
