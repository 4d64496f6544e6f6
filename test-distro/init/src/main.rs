//! `kiln-init`: PID 1 of Kiln's test distro.
//!
//! Mounts the pseudo file systems, brings up `lo`, loads the modules the plan
//! names, runs the plan's test binaries with a timeout each, reports every
//! test as one structured console line, then powers the machine off.
//!
//! The plan (`/kiln/plan`) has one step per line, fields separated by tabs:
//! - `module<TAB>PATH`: `finit_module` it (order matters: the host writes
//!   dependencies first; `.ko.xz` uses `MODULE_INIT_COMPRESSED_FILE`).
//! - `test<TAB>TIMEOUT_SECS<TAB>BINARY[<TAB>ARG...]`: a libtest-style binary,
//!   run with `--test-threads=1`.
//! - `exec<TAB>TIMEOUT_SECS<TAB>PROGRAM[<TAB>ARG...]`: any command; its exit
//!   status and output are reported in one `KILN-EXEC` line.
//! - `run<TAB>TIMEOUT_SECS<TAB>CWD<TAB>PROGRAM[<TAB>ARG...]`: any command
//!   run in directory CWD (created if missing; `cargo xtask vm`), its output
//!   streamed as it comes, one `KILN-STDOUT` line per line, then a
//!   `KILN-EXEC` line with its exit status and no output.
//! - `copy<TAB>FROM<TAB>TO`: copies a file of the image to where the
//!   mounts would hide it (a host file under `/tmp` goes to the guest's
//!   `/tmp`, a tmpfs mounted over the image's).
//!
//! Every line this program prints starts with a `KILN-` prefix followed by a
//! JSON object that carries a sequence number (`seq`), so the host can tell
//! our lines from kernel messages interleaved on the console and notice a
//! lost one. The last line is `KILN-DONE`.

mod libtest;
mod sys;

use std::io::{BufRead, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use libtest::{Line, Status};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Prints one protocol line with a single write(2), so that it cannot be
/// split by another write of ours.
fn emit(kind: &str, fields: &[(&str, Json)]) {
    let seq = SEQ.fetch_add(1, Ordering::SeqCst);
    let mut s = format!("\n{kind} {{\"seq\":{seq}");
    for (k, v) in fields {
        s.push_str(&format!(",{}:{}", json_str(k), v.render()));
    }
    s.push_str("}\n");
    sys::write_console(s.as_bytes());
}

enum Json {
    S(String),
    N(i64),
}

impl Json {
    fn render(&self) -> String {
        match self {
            Json::S(s) => json_str(s),
            Json::N(n) => n.to_string(),
        }
    }
}

fn s(v: impl Into<String>) -> Json {
    Json::S(v.into())
}

fn json_str(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn main() {
    std::panic::set_hook(Box::new(|info| {
        emit("KILN-INIT-PANIC", &[("message", s(info.to_string()))]);
        sys::power_off();
    }));
    let boot = Instant::now();
    sys::setup_mounts(|what, err| {
        emit(
            "KILN-EVENT",
            &[
                ("event", s("mount-failed")),
                ("what", s(what)),
                ("error", s(err)),
            ],
        )
    });
    if let Err(e) = sys::loopback_up() {
        emit(
            "KILN-EVENT",
            &[("event", s("lo-failed")), ("error", s(e.to_string()))],
        );
    }
    emit(
        "KILN-EVENT",
        &[
            ("event", s("init-ready")),
            ("uptime_ms", Json::N(sys::uptime_ms())),
        ],
    );

    let plan = std::fs::read_to_string("/kiln/plan")
        .unwrap_or_else(|e| panic!("cannot read /kiln/plan: {e}"));
    let mut results = 0i64;
    for (lineno, line) in plan.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["module", path] => load_module(path),
            ["test", timeout, binary, args @ ..] => {
                results += run_test_binary(binary, args, parse_timeout(timeout, lineno));
            }
            ["exec", timeout, program, args @ ..] => {
                run_exec(program, args, parse_timeout(timeout, lineno))
            }
            ["copy", from, to] => copy_file(from, to),
            ["run", timeout, cwd, program, args @ ..] => {
                run_streamed(program, args, cwd, parse_timeout(timeout, lineno))
            }
            _ => emit(
                "KILN-EVENT",
                &[
                    ("event", s("bad-plan-line")),
                    ("line", Json::N(lineno as i64 + 1)),
                    ("text", s(line)),
                ],
            ),
        }
    }
    let tainted = std::fs::read_to_string("/proc/sys/kernel/tainted")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(-1);
    emit(
        "KILN-DONE",
        &[
            ("results", Json::N(results)),
            ("tainted", Json::N(tainted)),
            ("elapsed_ms", Json::N(boot.elapsed().as_millis() as i64)),
            ("lines", Json::N(SEQ.load(Ordering::SeqCst) as i64 + 1)),
        ],
    );
    sys::power_off();
}

fn parse_timeout(t: &str, lineno: usize) -> Duration {
    Duration::from_secs(
        t.parse()
            .unwrap_or_else(|_| panic!("plan line {}: bad timeout {t:?}", lineno + 1)),
    )
}

fn load_module(path: &str) {
    let name = Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match sys::finit_module(Path::new(path)) {
        Ok(()) => emit(
            "KILN-EVENT",
            &[
                ("event", s("module")),
                ("name", s(name)),
                ("status", s("loaded")),
            ],
        ),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => emit(
            "KILN-EVENT",
            &[
                ("event", s("module")),
                ("name", s(name)),
                ("status", s("present")),
            ],
        ),
        Err(e) => emit(
            "KILN-EVENT",
            &[
                ("event", s("module")),
                ("name", s(name)),
                ("status", s("failed")),
                ("error", s(e.to_string())),
            ],
        ),
    }
}

/// What a child printed, line by line, as it arrived.
struct Captured {
    lines: Vec<String>,
    exit: Option<i32>,
    timed_out: bool,
}

/// Spawns `program` with stdout and stderr on one pipe (so their order is
/// kept), calls `on_line` for each line, kills the process group after `timeout`.
fn run_captured(
    program: &str,
    args: &[String],
    cwd: Option<&str>,
    timeout: Duration,
    mut on_line: impl FnMut(&str),
) -> std::io::Result<Captured> {
    let (read, write) = sys::pipe()?;
    let mut cmd = Command::new(program);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    cmd.args(args)
        .env_clear()
        .env("PATH", "/bin:/usr/bin:/sbin:/usr/sbin")
        .env("HOME", "/")
        .env("KILN_BPF_DIR", "/bpf")
        .env("KILN_REPO_DIR", "/kiln/repo")
        .env("KILN_TEST_STRICT", "1")
        .env("KILN_IN_VM", "1")
        .env("RUST_BACKTRACE", "1")
        // Tests that run the operator binary find it here (see manifests/tests).
        .env("KILN_BIN", "/bin/kiln")
        // C test programs built on the host (xtask's prebuilt.rs): the guest has no `cc`.
        .env("KILN_PREBUILT_DIR", "/kiln/prebuilt")
        .stdin(Stdio::null())
        .stdout(Stdio::from(write.try_clone()?))
        .stderr(Stdio::from(write));
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn()?;
    // Our copies of the write end must go, or the reader never sees EOF.
    drop(cmd);
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(std::fs::File::from(read));
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\n', '\r'])
                        .to_owned();
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
        // Drain anything left so a writer never blocks on a full pipe.
        let _ = r.read_to_end(&mut Vec::new());
    });
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    let mut timed_out = false;
    loop {
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            sys::kill_group(child.id());
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(line) => {
                on_line(&line);
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if timed_out {
        // Collect what is still buffered, briefly.
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            lines.push(line);
        }
    }
    // The reader ends when every holder of the pipe is gone; a grandchild that
    // keeps it open must not hang us, so bound the wait by the deadline too.
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if Instant::now() >= deadline + Duration::from_secs(2) {
            sys::kill_group(child.id());
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if reader.is_finished() {
        let _ = reader.join();
    }
    let exit = status.map(|st| {
        use std::os::unix::process::ExitStatusExt;
        st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
    });
    Ok(Captured {
        lines,
        exit,
        timed_out,
    })
}

/// A console line split into what comes before kiln-testkit's `VERIFIER`
/// line, if any, and that line's fields.
fn split_verifier_stats(line: &str) -> (&str, Option<Vec<(&'static str, Json)>>) {
    match line.find(VERIFIER) {
        Some(at) => (&line[..at], verifier_stats(&line[at..])),
        None => (line, None),
    }
}

const VERIFIER: &str = "kiln-testkit: VERIFIER ";

/// kiln-testkit's `kiln-testkit: VERIFIER <test> <program> insns=N
/// total_states=T peak_states=P` as the fields of a `KILN-VERIFIER` line.
fn verifier_stats(line: &str) -> Option<Vec<(&'static str, Json)>> {
    let rest = line.strip_prefix(VERIFIER)?;
    let mut words = rest.split_whitespace();
    let mut fields = vec![("test", s(words.next()?)), ("program", s(words.next()?))];
    for w in words {
        let (k, v) = w.split_once('=')?;
        let key = match k {
            "insns" => "insns",
            "total_states" => "total_states",
            "peak_states" => "peak_states",
            _ => continue,
        };
        fields.push((key, Json::N(v.parse().ok()?)));
    }
    Some(fields)
}

/// Runs one test binary; returns how many results it reported.
fn run_test_binary(binary: &str, extra: &[&str], timeout: Duration) -> i64 {
    let name = Path::new(binary)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| binary.to_owned());
    emit(
        "KILN-EVENT",
        &[
            ("event", s("binary-start")),
            ("binary", s(&name)),
            ("uptime_ms", Json::N(sys::uptime_ms())),
        ],
    );
    let mut args = vec!["--test-threads=1".to_owned()];
    args.extend(extra.iter().map(|a| a.to_string()));
    let start = Instant::now();
    let mut last = Instant::now();
    let mut parser = libtest::Parser::default();
    let mut count = 0i64;
    let mut failed = Vec::new();
    let captured = run_captured(binary, &args, None, timeout, |line| {
        // stderr shares the pipe with libtest's `test NAME ... ` (its verdict
        // comes later): a stats line may follow it on the same line.
        let (line, stats) = split_verifier_stats(line);
        if let Some(fields) = stats {
            let mut all = vec![("binary", s(&name))];
            all.extend(fields);
            emit("KILN-VERIFIER", &all);
        }
        if line.is_empty() {
            return;
        }
        if let Some(Line::Result { test, status }) = parser.feed(line) {
            let duration = last.elapsed().as_millis() as i64;
            last = Instant::now();
            count += 1;
            let mut fields = vec![
                ("binary", s(&name)),
                ("test", s(&test)),
                ("status", s(status.as_str())),
                ("duration_ms", Json::N(duration)),
            ];
            if status == Status::Skip {
                if let Some(reason) = parser.skip_reason(&test) {
                    fields.push(("reason", s(reason)));
                }
            }
            if status == Status::Fail {
                failed.push(test.clone());
            }
            emit("KILN-RESULT", &fields);
        }
    });
    let captured = match captured {
        Ok(c) => c,
        Err(e) => {
            emit(
                "KILN-RESULT",
                &[
                    ("binary", s(&name)),
                    ("test", s("(spawn)")),
                    ("status", s("fail")),
                    ("duration_ms", Json::N(0)),
                    ("reason", s(format!("cannot run {binary}: {e}"))),
                ],
            );
            return count + 1;
        }
    };
    for test in &failed {
        let section = libtest::failure_section(&captured.lines, test);
        emit(
            "KILN-OUTPUT",
            &[
                ("binary", s(&name)),
                ("test", s(test)),
                ("output", s(section)),
            ],
        );
    }
    let whole_failed = captured.timed_out || captured.exit != Some(0);
    if whole_failed {
        let pending = parser.pending().map(str::to_owned);
        let (test, reason) = if captured.timed_out {
            let during = pending
                .as_ref()
                .map(|p| format!(" during test {p}"))
                .unwrap_or_default();
            (
                "(timeout)".to_owned(),
                format!("killed after {} s{during}", timeout.as_secs()),
            )
        } else if let Some(p) = pending {
            // The binary died inside a test (abort, OOM, signal): that test failed.
            (
                p,
                format!(
                    "the binary died during this test (exit status {:?})",
                    captured.exit
                ),
            )
        } else if failed.is_empty() {
            (
                "(exit)".to_owned(),
                format!("exited with status {:?} and no failed test", captured.exit),
            )
        } else {
            (String::new(), String::new())
        };
        if !test.is_empty() {
            count += 1;
            emit(
                "KILN-RESULT",
                &[
                    ("binary", s(&name)),
                    ("test", s(&test)),
                    ("status", s("fail")),
                    ("duration_ms", Json::N(start.elapsed().as_millis() as i64)),
                    ("reason", s(reason)),
                ],
            );
            emit(
                "KILN-OUTPUT",
                &[
                    ("binary", s(&name)),
                    ("test", s(&test)),
                    ("output", s(tail(&captured.lines, 200))),
                ],
            );
        }
    }
    emit(
        "KILN-EVENT",
        &[
            ("event", s("binary-end")),
            ("binary", s(&name)),
            ("exit", Json::N(captured.exit.map_or(-1, i64::from))),
            ("duration_ms", Json::N(start.elapsed().as_millis() as i64)),
        ],
    );
    count
}

fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn run_exec(program: &str, args: &[&str], timeout: Duration) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    match run_captured(program, &args, None, timeout, |_| {}) {
        Ok(c) => emit(
            "KILN-EXEC",
            &[
                ("program", s(program)),
                ("exit", Json::N(c.exit.map_or(-1, i64::from))),
                ("timed_out", Json::N(c.timed_out as i64)),
                ("output", s(c.lines.join("\n"))),
            ],
        ),
        Err(e) => emit(
            "KILN-EXEC",
            &[
                ("program", s(program)),
                ("exit", Json::N(-1)),
                ("timed_out", Json::N(0)),
                ("output", s(format!("cannot run {program}: {e}"))),
            ],
        ),
    }
}

fn copy_file(from: &str, to: &str) {
    let copied = Path::new(to)
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::copy(from, to));
    if let Err(e) = copied {
        emit(
            "KILN-EVENT",
            &[
                ("event", s("copy-failed")),
                ("what", s(format!("{from} -> {to}"))),
                ("error", s(e.to_string())),
            ],
        );
    }
}

/// Runs a user's command, each output line sent as it arrives.
fn run_streamed(program: &str, args: &[&str], cwd: &str, timeout: Duration) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    // The host's working directory; a missing one would fail the spawn.
    let _ = std::fs::create_dir_all(cwd);
    let result = run_captured(program, &args, Some(cwd), timeout, |line| {
        emit("KILN-STDOUT", &[("line", s(line))])
    });
    let (exit, timed_out, error) = match result {
        Ok(c) => (c.exit.map_or(-1, i64::from), c.timed_out, String::new()),
        Err(e) => (-1, false, format!("cannot run {program}: {e}")),
    };
    emit(
        "KILN-EXEC",
        &[
            ("program", s(program)),
            ("exit", Json::N(exit)),
            ("timed_out", Json::N(timed_out as i64)),
            ("output", s(error)),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::{json_str, split_verifier_stats, verifier_stats};

    #[test]
    fn verifier_stats_lines() {
        let f = verifier_stats(
            "kiln-testkit: VERIFIER load_maps count insns=12 total_states=3 peak_states=2",
        )
        .unwrap();
        let text: Vec<String> = f
            .iter()
            .map(|(k, v)| format!("{k}={}", v.render()))
            .collect();
        assert_eq!(
            text,
            [
                "test=\"load_maps\"",
                "program=\"count\"",
                "insns=12",
                "total_states=3",
                "peak_states=2"
            ]
        );
        assert!(verifier_stats("kiln-testkit: SKIP x: y").is_none());
        // Glued to libtest's `test NAME ... ` on the shared pipe.
        let (before, f) = split_verifier_stats(
            "test load_maps ... kiln-testkit: VERIFIER load_maps count insns=1 peak_states=1",
        );
        assert_eq!(before, "test load_maps ... ");
        assert_eq!(f.map(|f| f.len()), Some(4));
        assert_eq!(split_verifier_stats("ok").0, "ok");
    }

    #[test]
    fn json_escapes_controls() {
        assert_eq!(json_str("a\"b\\c\nd\u{1b}"), "\"a\\\"b\\\\c\\nd\\u001b\"");
    }
}
