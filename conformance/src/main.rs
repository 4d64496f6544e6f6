//! `kiln-conformance [--json] [--jobs N] [--known FILE] [--not-built FILE] [--report FILE] PATH...`
//!
//! Compares every `*.o` under the PATHs (files or directories; `LABEL=PATH`
//! names its objects `LABEL/file.o` in the report), each in a
//! child process of its own (`--one OBJ`, which prints that object's report
//! as JSON), prints the table (or everything as JSON) and exits 1 when a
//! difference is not in the known differences file.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, bail};
use kiln_conformance::compare;
use kiln_conformance::report::{self, NotBuilt, ObjectReport};

struct Args {
    json: bool,
    jobs: usize,
    known: Option<PathBuf>,
    not_built: Option<PathBuf>,
    /// Where to write the JSON report as well (whatever prints).
    report: Option<PathBuf>,
    one: Option<PathBuf>,
    paths: Vec<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        json: false,
        jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
        known: None,
        not_built: None,
        report: None,
        one: None,
        paths: Vec::new(),
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .map(PathBuf::from)
                .with_context(|| format!("{what} needs a value"))
        };
        match arg.to_str() {
            Some("--json") => a.json = true,
            Some("--jobs") => {
                let v = value("--jobs")?;
                a.jobs = v
                    .to_str()
                    .and_then(|s| s.parse().ok())
                    .filter(|&n| n > 0)
                    .with_context(|| format!("--jobs {}: not a positive number", v.display()))?;
            }
            Some("--known") => a.known = Some(value("--known")?),
            Some("--not-built") => a.not_built = Some(value("--not-built")?),
            Some("--report") => a.report = Some(value("--report")?),
            Some("--one") => a.one = Some(value("--one")?),
            Some(s) if s.starts_with("--") => bail!("unknown option {s}"),
            _ => a.paths.push(PathBuf::from(arg)),
        }
    }
    Ok(a)
}

/// Every object under `paths`, with the prefix its report names it by: a
/// `LABEL=PATH` argument names its objects `LABEL/file.o`, so two corpora
/// can hold objects of the same file name.
fn objects(paths: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, Option<String>)>> {
    let mut v = Vec::new();
    for arg in paths {
        let text = arg.to_string_lossy();
        let (label, p) = match text.split_once('=') {
            Some((label, rest)) if !label.contains('/') && !label.is_empty() => {
                (Some(label.to_owned()), PathBuf::from(rest))
            }
            _ => (None, arg.clone()),
        };
        if p.is_dir() {
            for e in std::fs::read_dir(&p).with_context(|| format!("reading {}", p.display()))? {
                let e = e?.path();
                if e.extension().is_some_and(|x| x == "o") {
                    v.push((e, label.clone()));
                }
            }
        } else {
            v.push((p, label));
        }
    }
    v.sort();
    Ok(v)
}

/// Runs `--one` for `obj` in a child process: a crash or a hang in one
/// object's load never takes the whole run with it.
fn compare_in_child(exe: &Path, obj: &Path) -> ObjectReport {
    let start = Instant::now();
    let out = Command::new(exe).arg("--one").arg(obj).output();
    let fail = |msg: String| {
        let mut r = ObjectReport {
            object: obj
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ..ObjectReport::default()
        };
        r.differences
            .push(report::Difference::new(None, "harness", msg));
        r.seconds = start.elapsed().as_secs_f64();
        r
    };
    match out {
        Ok(o) if o.status.success() => serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| fail(format!("unreadable report: {e}"))),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let tail: Vec<&str> = err.lines().rev().take(3).collect();
            fail(format!(
                "comparer exited with {}: {}",
                o.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ))
        }
        Err(e) => fail(format!("cannot run the comparer: {e}")),
    }
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    if let Some(obj) = &args.one {
        compare::isolate().context("private mount namespace with its own bpffs (needs root)")?;
        let r = compare::compare_object(obj);
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    if args.paths.is_empty() {
        bail!(
            "usage: kiln-conformance [--json] [--jobs N] [--known FILE] [--not-built FILE] PATH..."
        );
    }
    // Checked once here rather than failing every object the same way.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "kiln-conformance needs root: it loads programs and mounts a private bpffs per object"
        );
    }
    if Command::new("bpftool").arg("version").output().is_err() {
        bail!(
            "kiln-conformance needs bpftool (libbpf's side of the comparison); install it (Debian: bpftool)"
        );
    }
    let known = match &args.known {
        Some(p) => report::read_known(p)?,
        None => Vec::new(),
    };
    let not_built: Vec<NotBuilt> = match &args.not_built {
        Some(p) => serde_json::from_slice(
            &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("parsing {}", p.display()))?,
        None => Vec::new(),
    };
    let objs = objects(&args.paths)?;
    let exe = std::env::current_exe()?;
    let start = Instant::now();
    let next = Mutex::new(0usize);
    let results = Mutex::new(Vec::with_capacity(objs.len()));
    std::thread::scope(|s| {
        for _ in 0..args.jobs.min(objs.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some((obj, label)) = objs.get(i) else {
                        break;
                    };
                    let mut r = compare_in_child(&exe, obj);
                    if let Some(label) = label {
                        r.object = format!("{label}/{}", r.object);
                    }
                    if !args.json {
                        eprint!(".");
                        let _ = std::io::stderr().flush();
                    }
                    results.lock().unwrap_or_else(|e| e.into_inner()).push(r);
                }
            });
        }
    });
    let mut reports = results.into_inner().unwrap_or_else(|e| e.into_inner());
    reports.sort_by(|a, b| a.object.cmp(&b.object));
    report::apply_known(&mut reports, &known);
    let stale: Vec<_> = report::stale_known(&reports, &known)
        .into_iter()
        .map(|k| {
            format!(
                "{} {} [{}]",
                k.object,
                k.program.as_deref().unwrap_or("*"),
                k.class
            )
        })
        .collect();
    let seconds = start.elapsed().as_secs_f64();
    let summary = report::summarize(&reports, &not_built);
    {
        let kinds: Vec<_> = report::kinds(&reports)
            .into_iter()
            .map(|(class, kind, count, example)| {
                serde_json::json!({"class": class, "kind": kind, "count": count, "example": example})
            })
            .collect();
        let v = serde_json::json!({
            "summary": summary,
            "seconds": seconds,
            "kinds": kinds,
            "objects": reports,
            "not_built": not_built,
            "stale_known": stale,
        });
        let text = serde_json::to_string_pretty(&v)?;
        if let Some(p) = &args.report {
            std::fs::write(p, &text).with_context(|| format!("writing {}", p.display()))?;
        }
        if args.json {
            println!("{text}");
        }
    }
    if !args.json {
        eprintln!();
        print!("{}", report::render_table(&reports, &not_built));
        for k in &stale {
            println!("known difference no longer seen (remove it from the file): {k}");
        }
        println!(
            "compared {} objects in {seconds:.1} s ({} jobs)",
            reports.len(),
            args.jobs
        );
    }
    if summary.unlisted > 0 {
        if !args.json {
            eprintln!(
                "{} differences are not in the known differences file{}",
                summary.unlisted,
                args.known
                    .as_ref()
                    .map(|p| format!(" ({})", p.display()))
                    .unwrap_or_default()
            );
        }
        std::process::exit(1);
    }
    Ok(())
}
