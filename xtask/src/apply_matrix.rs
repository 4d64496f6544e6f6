//! `cargo xtask apply --matrix MANIFEST [--kernel V] [--arch A] [--kernel-image PATH]`:
//! will the manifest run on the kernels its users run?
//!
//! For each kernel × arch (default: the whole catalog on every arch) this
//! builds the manifest's objects for that arch, boots the test distro with
//! the manifest, its objects, `kiln` and `kiln-grid` inside, and there:
//! creates what the manifest names that a bare guest lacks (a veth pair for
//! each named interface, the cgroups, the uprobe binaries of the user's
//! tree), loads every program of every object on its own (the verifier's
//! verdict and statistics), runs `kiln check`, `plan`, `apply` and `status`,
//! then the `[test]` commands and expectations.
//!
//! The grid has one row per program, map and expectation and one column per
//! VM, printed and written as `target/matrix-report.{json,junit.xml,html}`
//! by the same JUnit and HTML writers as `cargo xtask test` (`--report-dir`
//! moves them). The verifier's instruction counts are kept per manifest in
//! `target/matrix-verifier-<deployment>.json`, and each cell shows the
//! change since the previous run. The exit status is 1 when anything was
//! refused, not attached, or not as expected on any VM.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::junit::{Case, Outcome, Suite};
use crate::kernels::{Catalog, KernelFiles, repo_root};
use crate::vm::{self, Arch, BootSpec, KernelArgs, Plan, Verdict};

/// Where the manifest and its objects are in the guest.
const GUEST_DIR: &str = "/kiln/apply";
const GUEST_MANIFEST: &str = "/kiln/apply/manifest.toml";
/// Marks a step's output in the guest's stream: `@@kiln-grid begin NAME`,
/// then its output, then `@@kiln-grid end NAME STATUS`.
const MARK: &str = "@@kiln-grid";

/// One VM of the grid.
#[derive(Clone)]
struct Target {
    kernel: KernelArgs,
    arch: Arch,
    /// `6.1-x86_64`, or the image's release and arch.
    label: String,
    /// The options that boot this VM again.
    rerun: String,
}

/// What the manifest asks of a guest, read from its TOML.
#[derive(Default, Debug)]
struct Manifest {
    deployment: String,
    pin_root: String,
    /// `[objects.NAME]` → the object on the host (per arch for sources).
    objects: Vec<ObjectRef>,
    programs: Vec<ProgramRef>,
    maps: Vec<String>,
    interfaces: Vec<String>,
    cgroups: Vec<String>,
    /// Uprobe targets that are files of the user's tree: (host, guest path).
    binaries: Vec<(PathBuf, String)>,
    test: kiln_manifest::schema::TestDecl,
    /// The file as the user wrote it (the guest gets it unchanged).
    source: Vec<u8>,
}

#[derive(Debug)]
struct ProgramRef {
    name: String,
    object: String,
    /// The function in the object (default: the program's name).
    function: String,
}

#[derive(Debug)]
struct ObjectRef {
    name: String,
    /// A prebuilt object (`path`), the same for every arch.
    path: Option<PathBuf>,
    /// The stem a `source` builds to (`target/bpf/<arch>/<stem>.bpf.o`).
    stem: Option<String>,
}

impl Manifest {
    /// A light read of the TOML (`kiln check` in the guest validates it
    /// and cites lines); `[test]` through the manifest crate's own schema.
    fn read(path: &Path) -> Result<Self> {
        let source = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let value: toml::Value = toml::from_str(&String::from_utf8_lossy(&source))
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let str_at =
            |v: &toml::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        let deployment = value
            .get("deployment")
            .and_then(|d| str_at(d, "name"))
            .with_context(|| format!("{}: [deployment] has no name", path.display()))?;
        let pin_root = value
            .get("deployment")
            .and_then(|d| str_at(d, "pin_root"))
            .unwrap_or_else(|| format!("/sys/fs/bpf/kiln/{deployment}"));
        let mut m = Manifest {
            deployment,
            pin_root,
            source: source.clone(),
            ..Default::default()
        };
        let table = |k: &str| {
            value
                .get(k)
                .and_then(|t| t.as_table())
                .cloned()
                .unwrap_or_default()
        };
        for (name, decl) in table("objects") {
            let stem = str_at(&decl, "source").map(|s| {
                let file = Path::new(&s)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                file.strip_suffix(".bpf.c")
                    .or_else(|| file.strip_suffix(".c"))
                    .unwrap_or(&file)
                    .to_owned()
            });
            m.objects.push(ObjectRef {
                name,
                path: str_at(&decl, "path").map(|p| dir.join(p)),
                stem,
            });
        }
        for (name, decl) in table("programs") {
            m.programs.push(ProgramRef {
                object: str_at(&decl, "object").unwrap_or_default(),
                function: str_at(&decl, "function").unwrap_or_else(|| name.clone()),
                name,
            });
            let Some(attach) = decl.get("attach").and_then(|a| a.as_table()) else {
                continue;
            };
            for (kind, spec) in attach {
                if let Some(i) = str_at(spec, "interface") {
                    m.interfaces.push(i);
                }
                match (kind.as_str(), str_at(spec, "path")) {
                    ("cgroup", Some(cg)) => m.cgroups.push(cg),
                    ("uprobe" | "uretprobe", Some(bin)) => {
                        // A binary of the user's tree comes along at the path
                        // the manifest names; a system one is the guest's own.
                        let host = dir.join(&bin);
                        if host.is_file() && host.starts_with(dir) {
                            let guest = if Path::new(&bin).is_absolute() {
                                bin.clone()
                            } else {
                                format!("{GUEST_DIR}/{bin}")
                            };
                            m.binaries.push((host, guest));
                        }
                    }
                    _ => {}
                }
            }
        }
        m.maps = table("maps").keys().cloned().collect();
        m.interfaces.sort();
        m.interfaces.dedup();
        m.cgroups.sort();
        m.cgroups.dedup();
        if let Some(t) = value.get("test") {
            m.test = t
                .clone()
                .try_into()
                .with_context(|| format!("{}: [test]", path.display()))?;
        }
        for e in &m.test.expect {
            if let kiln_manifest::schema::Expectation::Map {
                map,
                at_least: None,
                equals: None,
                ..
            } = e
            {
                bail!(
                    "{}: [[test.expect]] on map '{map}' says neither at_least nor equals",
                    path.display()
                );
            }
        }
        Ok(m)
    }

    /// The objects for `arch`: (name, host path).
    fn objects_for(&self, arch: Arch) -> Result<Vec<(String, PathBuf)>> {
        let dir = crate::build_ebpf::bpf_dir_for(arch.bpf());
        let mut out = Vec::new();
        for o in &self.objects {
            let host = match (&o.path, &o.stem) {
                (Some(p), _) => p.clone(),
                (None, Some(stem)) => dir.join(format!("{stem}.bpf.o")),
                (None, None) => bail!("object '{}' has neither path nor source", o.name),
            };
            if !host.is_file() {
                bail!(
                    "object '{}': {} is missing (a `source` must be a Rust eBPF crate or .bpf.c file of this repository; outside it, give `path` to a built object)",
                    o.name,
                    host.display()
                );
            }
            out.push((o.name.clone(), host));
        }
        Ok(out)
    }
}

/// Runs the grid; exits 1 when any cell failed.
pub fn run(
    manifest: &Path,
    kernel: &KernelArgs,
    jobs: Option<usize>,
    report_dir: Option<&Path>,
) -> Result<()> {
    let report_dir = report_dir.map_or_else(|| repo_root().join("target"), Path::to_path_buf);
    vm::stop_on_signals();
    let m = Manifest::read(manifest)?;
    let targets = targets(kernel)?;
    let arches: Vec<Arch> = {
        let mut a: Vec<Arch> = targets.iter().map(|t| t.arch).collect();
        a.sort();
        a.dedup();
        a
    };
    crate::build_ebpf::build_all().context("building the eBPF programs")?;
    for a in &arches {
        crate::build_ebpf::build_all_for(a.bpf())
            .with_context(|| format!("building the eBPF programs for {a}"))?;
        m.objects_for(*a)?;
    }
    let catalog = Catalog::load()?;
    // Kernels before minutes of cross builds.
    for t in &targets {
        if t.kernel.kernel_image.is_none() {
            vm::resolve_kernel(&t.kernel)?;
        }
    }
    let mut bins = BTreeMap::new();
    for a in &arches {
        let b = crate::cross::build_guest_bins(*a)?;
        if b.kiln.is_none() || b.grid.is_none() {
            bail!("the {a} guest needs /bin/kiln and /bin/kiln-grid, and they did not build");
        }
        bins.insert(*a, b);
    }
    let _ = catalog;
    // The previous run's report must not pass for this one's if this run
    // is killed before it writes its own.
    for ext in ["json", "junit.xml", "html"] {
        let _ = std::fs::remove_file(report_dir.join(format!("matrix-report.{ext}")));
    }
    let started = std::time::Instant::now();
    let runs = vm::in_parallel(&targets, jobs, |t| {
        let run = run_one(&m, t, &bins[&t.arch]).unwrap_or_else(|e| Run {
            error: Some(format!("{e:#}")),
            ..Run::empty(t)
        });
        eprintln!("[{}] done in {:.0} s", t.label, run.elapsed.as_secs_f64());
        run
    });
    let grid = Grid::of(&m, &runs, &verifier_last(&m, &report_dir));
    print!("{}", grid.text(&runs));
    println!(
        "{} VM(s) in {:.0} s",
        runs.len(),
        started.elapsed().as_secs_f64()
    );
    write_reports(&m, manifest, &runs, &grid, &report_dir)?;
    if let Some(sig) = vm::interrupted() {
        println!("INTERRUPTED by signal {sig}: the report is marked interrupted");
        std::process::exit(128 + sig);
    }
    if grid.failures > 0 {
        println!("{} cell(s) failed", grid.failures);
        std::process::exit(1);
    }
    println!("every program loaded and attached, every expectation met");
    Ok(())
}

/// The VMs: one image, or every asked kernel on every asked arch.
fn targets(k: &KernelArgs) -> Result<Vec<Target>> {
    if let Some(path) = &k.kernel_image {
        let image = crate::image::check_custom(path, k.modules.as_deref(), k.arch)?;
        let release = image.release.clone().unwrap_or_else(|| "custom".into());
        let modules = k
            .modules
            .as_ref()
            .map(|m| format!(" --modules {}", m.display()))
            .unwrap_or_default();
        return Ok(vec![Target {
            kernel: KernelArgs {
                arch: Some(image.arch),
                ..k.clone()
            },
            arch: image.arch,
            label: format!("{release}-{}", image.arch),
            rerun: format!(
                "--kernel-image {}{modules} --arch {}",
                path.display(),
                image.arch
            ),
        }]);
    }
    let catalog = Catalog::load()?;
    // `--kernel 5.10,6.1` as `kiln check --kernels` takes them.
    let versions: Vec<String> = match &k.kernel {
        Some(list) => {
            let v: Vec<String> = list.split(',').map(|v| v.trim().to_owned()).collect();
            for one in &v {
                catalog.entry(one)?;
            }
            v
        }
        None => catalog.versions().into_iter().map(str::to_owned).collect(),
    };
    let arches = match k.arch {
        Some(a) => vec![a],
        None => catalog.arches()?,
    };
    let mut out = Vec::new();
    for v in &versions {
        for a in &arches {
            out.push(Target {
                kernel: KernelArgs {
                    kernel: Some(v.clone()),
                    arch: Some(*a),
                    ..Default::default()
                },
                arch: *a,
                label: format!("{v}-{a}"),
                rerun: format!("--kernel {v} --arch {a}"),
            });
        }
    }
    Ok(out)
}

/// One VM's answers, step by step.
struct Run {
    target: Target,
    /// Step name → (exit status, output lines).
    steps: BTreeMap<String, (i32, Vec<String>)>,
    problems: Vec<String>,
    error: Option<String>,
    elapsed: Duration,
    log: PathBuf,
    release: String,
}

impl Run {
    fn empty(t: &Target) -> Run {
        Run {
            target: t.clone(),
            steps: BTreeMap::new(),
            problems: Vec::new(),
            error: None,
            elapsed: Duration::ZERO,
            log: vm::log_path(&format!("matrix-{}", t.label)),
            release: String::new(),
        }
    }

    fn step(&self, name: &str) -> Option<&(i32, Vec<String>)> {
        self.steps.get(name)
    }
}

/// `'text'` for `/bin/sh`.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The guest's script: environment, loads, kiln's four verbs, the tests.
fn script(m: &Manifest, objects: &[(String, String)]) -> String {
    let mut s = String::from("#!/bin/sh\n");
    let _ = writeln!(
        s,
        "step() {{ n=$1; shift; echo \"{MARK} begin $n\"; \"$@\" 2>&1; rc=$?; echo \"{MARK} end $n $rc\"; return $rc; }}"
    );
    let _ = writeln!(s, "cd {GUEST_DIR}");
    // What the manifest names that a bare guest lacks. A veth pair, so a
    // test can send packets through the named side from its peer.
    for (i, ifname) in m.interfaces.iter().enumerate() {
        let q = quote(ifname);
        let _ = writeln!(
            s,
            "step env-interface-{i} sh -c \"ip link show {q} >/dev/null 2>&1 || {{ ip link add {q} type veth peer name kgrid{i} && ip link set kgrid{i} up; }}; ip link set {q} up\""
        );
    }
    for (i, cg) in m.cgroups.iter().enumerate() {
        let _ = writeln!(s, "step env-cgroup-{i} mkdir -p {}", quote(cg));
    }
    let object_args: String = objects
        .iter()
        .map(|(name, guest)| format!(" --object {}", quote(&format!("{name}={guest}"))))
        .collect();
    for (name, guest) in objects {
        let _ = writeln!(s, "step load-{name} /bin/kiln-grid load {}", quote(guest));
    }
    let _ = writeln!(
        s,
        "step check /bin/kiln check {GUEST_MANIFEST}{object_args}"
    );
    let _ = writeln!(s, "step plan /bin/kiln plan {GUEST_MANIFEST}{object_args}");
    let _ = writeln!(
        s,
        "step apply /bin/kiln apply {GUEST_MANIFEST}{object_args} --verifier-log-dir /tmp"
    );
    let _ = writeln!(
        s,
        "step status /bin/kiln status --json {GUEST_MANIFEST}{object_args}"
    );
    let timeout = m.test.timeout_secs.unwrap_or(30);
    for (i, cmd) in m.test.run.iter().enumerate() {
        let _ = writeln!(s, "step run-{i} timeout {timeout} sh -c {}", quote(cmd));
    }
    for (i, e) in m.test.expect.iter().enumerate() {
        use kiln_manifest::schema::Expectation;
        let line = match e {
            Expectation::Map { map, key, .. } => {
                let key = match key {
                    toml::Value::Integer(n) => format!("int:{n}"),
                    toml::Value::String(h) => h.clone(),
                    other => format!("{other}"),
                };
                format!(
                    "/bin/kiln-grid map {} {}",
                    quote(&format!("{}/maps/{map}", m.pin_root)),
                    quote(&key)
                )
            }
            Expectation::RingBuffer {
                ring_buffer,
                within_ms,
            } => format!(
                "/bin/kiln-grid ringbuf {} {within_ms}",
                quote(&format!("{}/maps/{ring_buffer}", m.pin_root))
            ),
        };
        let _ = writeln!(s, "step expect-{i} {line}");
    }
    s
}

fn run_one(m: &Manifest, t: &Target, bins: &crate::cross::GuestBinaries) -> Result<Run> {
    let (kernel, arch): (KernelFiles, Arch) = vm::resolve_kernel(&t.kernel)?;
    let mut plan = Plan::default();
    let mut guest_objects = Vec::new();
    let mut files = Vec::new();
    for (name, host) in m.objects_for(arch)? {
        let guest = format!("{GUEST_DIR}/objects/{name}.bpf.o");
        files.push((host, guest.clone()));
        guest_objects.push((name, guest));
    }
    let script = script(m, &guest_objects);
    let commands = m.test.run.len() as u64 * m.test.timeout_secs.unwrap_or(30);
    let timeout = Duration::from_secs(120 + commands);
    plan.run(
        timeout,
        GUEST_DIR,
        &["/bin/sh".into(), format!("{GUEST_DIR}/grid.sh")],
    )?;
    let mut image = vm::guest_image(&kernel, bins, crate::modules::TEST_MODULES, &mut plan)?;
    image.add_bytes(GUEST_MANIFEST, m.source.clone(), 0o644)?;
    image.add_bytes(&format!("{GUEST_DIR}/grid.sh"), script.into_bytes(), 0o755)?;
    for (host, guest) in files.iter().chain(&m.binaries) {
        image
            .add_file(guest, host, 0o755)
            .with_context(|| format!("adding {}", host.display()))?;
    }
    image.add_bytes("/kiln/plan", plan.text.clone(), 0o644)?;
    let initrd = image.build_cached(&vm::initramfs_cache())?;
    let label = format!("matrix-{}", t.label);
    eprintln!(
        "[{}] booting {} ({})",
        t.label,
        kernel.vmlinuz.display(),
        kernel.release
    );
    let spec = BootSpec::of(&kernel, initrd, timeout, label);
    let mut lines = Vec::new();
    let boot = vm::boot(&spec, &mut |e| {
        if e.kind == "KILN-STDOUT" {
            lines.push(e.json["line"].as_str().unwrap_or_default().to_owned());
        }
    })?;
    let verdict = Verdict::of(&boot, 0);
    let mut run = Run::empty(t);
    run.steps = parse_steps(&lines);
    run.problems = verdict.problems;
    run.elapsed = boot.elapsed;
    run.log = boot.log.clone();
    run.release = kernel.release.clone();
    Ok(run)
}

/// Step name → (status, output), from the guest's marked stream.
fn parse_steps(lines: &[String]) -> BTreeMap<String, (i32, Vec<String>)> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for l in lines {
        if let Some(rest) = l.strip_prefix(MARK) {
            let words: Vec<&str> = rest.split_whitespace().collect();
            match words.as_slice() {
                ["begin", name] => current = Some(((*name).to_owned(), Vec::new())),
                ["end", name, rc] => {
                    let output = match current.take() {
                        Some((n, o)) if n == *name => o,
                        _ => Vec::new(),
                    };
                    out.insert((*name).to_owned(), (rc.parse().unwrap_or(-1), output));
                }
                _ => {}
            }
        } else if let Some((_, o)) = &mut current {
            o.push(l.clone());
        }
    }
    out
}

/// One cell: how the row's item fared on one VM.
struct Cell {
    outcome: Outcome,
    /// A few words for the printed grid (`ok`, `REFUSED`, ...).
    short: String,
    /// Instructions the verifier processed, for program rows that loaded.
    insns: Option<u64>,
    /// The verifier's statistics in words, for program rows that loaded.
    stats: Option<String>,
    /// The whole story: statistics, attachment, value read.
    detail: String,
}

impl Cell {
    fn pass(short: &str, detail: String) -> Cell {
        Cell {
            outcome: Outcome::Pass,
            short: short.into(),
            insns: None,
            stats: None,
            detail,
        }
    }

    fn fail(short: &str, message: String, output: String) -> Cell {
        Cell {
            outcome: Outcome::Fail {
                message: message.clone(),
                output,
            },
            short: short.into(),
            insns: None,
            stats: None,
            detail: message,
        }
    }
}

/// Rows (`program NAME`, `map NAME`, `expect ...`, `kiln apply`, ...) by
/// VMs, in the order the report shows them.
struct Grid {
    rows: Vec<(String, Vec<Cell>)>,
    failures: usize,
}

impl Grid {
    fn of(m: &Manifest, runs: &[Run], last: &crate::verifier_trend::Numbers) -> Grid {
        let mut rows: Vec<(String, Vec<Cell>)> = Vec::new();
        let mut push = |name: String, f: &dyn Fn(&Run) -> Cell| {
            rows.push((name, runs.iter().map(f).collect()));
        };
        push("(vm)".into(), &vm_cell);
        for p in &m.programs {
            push(format!("program {}", p.name), &|r| program_cell(r, p, last));
        }
        for map in &m.maps {
            push(format!("map {map}"), &|r| status_cell(r, "map", map));
        }
        for step in ["check", "plan", "apply", "status"] {
            push(format!("kiln {step}"), &|r| step_cell(r, step));
        }
        for (i, cmd) in m.test.run.iter().enumerate() {
            push(format!("run `{cmd}`"), &|r| {
                step_cell(r, &format!("run-{i}"))
            });
        }
        for (i, e) in m.test.expect.iter().enumerate() {
            push(format!("expect {}", describe(e)), &|r| expect_cell(r, i, e));
        }
        let failures = rows
            .iter()
            .flat_map(|(_, cells)| cells)
            .filter(|c| !matches!(c.outcome, Outcome::Pass | Outcome::Skip(_)))
            .count();
        Grid { rows, failures }
    }

    /// The grid as text: a mark per cell, then each failure's reason and
    /// the VMs it holds on, then the verifier's statistics.
    fn text(&self, runs: &[Run]) -> String {
        let mut out = String::new();
        let width = self.rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        let _ = write!(out, "\n{:width$}", "");
        for r in runs {
            let _ = write!(out, " {:>14}", r.target.label);
        }
        out.push('\n');
        for (name, cells) in &self.rows {
            let _ = write!(out, "{name:width$}");
            for c in cells {
                let _ = write!(out, " {:>14}", c.short);
            }
            out.push('\n');
            let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
            for (i, c) in cells.iter().enumerate() {
                if matches!(c.outcome, Outcome::Pass) {
                    continue;
                }
                match reasons.iter_mut().find(|(d, _)| *d == c.detail) {
                    Some((_, vms)) => vms.push(&runs[i].target.label),
                    None => reasons.push((&c.detail, vec![&runs[i].target.label])),
                }
            }
            for (reason, vms) in reasons {
                let _ = writeln!(out, "    {}: {reason}", vms.join(", "));
            }
        }
        let stats: Vec<&(String, Vec<Cell>)> = self
            .rows
            .iter()
            .filter(|(_, cells)| cells.iter().any(|c| c.insns.is_some()))
            .collect();
        if !stats.is_empty() {
            let _ = writeln!(
                out,
                "\nverifier: instructions processed, states, verification time (change since the last run):"
            );
            for (name, cells) in stats {
                let _ = writeln!(out, "  {name}");
                for (i, c) in cells.iter().enumerate() {
                    if let Some(stats) = &c.stats {
                        let _ = writeln!(out, "    {:<14} {stats}", runs[i].target.label);
                    }
                }
            }
        }
        out
    }

    /// One JUnit suite per VM, a case per row (class: the row's kind).
    fn suites(&self, runs: &[Run]) -> Vec<Suite> {
        runs.iter()
            .enumerate()
            .map(|(i, r)| Suite {
                name: r.target.label.clone(),
                properties: vec![
                    ("kernel".into(), r.target.label.clone()),
                    ("release".into(), r.release.clone()),
                    ("arch".into(), r.target.arch.as_str().into()),
                    ("console_log".into(), r.log.display().to_string()),
                    (
                        "rerun_command".into(),
                        format!("cargo xtask apply --matrix MANIFEST {}", r.target.rerun),
                    ),
                ],
                time: r.elapsed,
                cases: self
                    .rows
                    .iter()
                    .map(|(name, cells)| {
                        let (class, item) = name.split_once(' ').unwrap_or(("vm", name));
                        Case {
                            classname: class.to_owned(),
                            name: item.to_owned(),
                            time: Duration::ZERO,
                            outcome: cells[i].outcome.clone(),
                        }
                    })
                    .collect(),
            })
            .collect()
    }
}

/// The VM itself: booted, ran the script to the end, kernel healthy.
fn vm_cell(r: &Run) -> Cell {
    let mut problems: Vec<String> = r.error.iter().cloned().collect();
    problems.extend(r.problems.iter().cloned());
    for (name, (rc, out)) in &r.steps {
        if name.starts_with("env-") && *rc != 0 {
            problems.push(format!(
                "preparing the guest ({name}) failed: {}",
                out.join(" | ")
            ));
        }
    }
    if problems.is_empty() {
        return Cell::pass("ok", format!("booted {}", r.release));
    }
    let first = problems[0].lines().next().unwrap_or_default().to_owned();
    Cell {
        outcome: Outcome::Error {
            message: first.clone(),
            output: format!("{}\nconsole log: {}", problems.join("\n"), r.log.display()),
        },
        short: "BROKEN".into(),
        insns: None,
        stats: None,
        detail: first,
    }
}

/// `kiln status --json` as the guest printed it.
fn status_json(r: &Run) -> Option<serde_json::Value> {
    let (_, out) = r.step("status")?;
    serde_json::from_str(&out.join("\n")).ok()
}

/// The first line of what a failed step said that is not a note.
fn step_error(r: &Run, step: &str) -> Option<String> {
    let (rc, out) = r.step(step)?;
    (*rc != 0).then(|| {
        out.iter()
            .find(|l| l.starts_with("error"))
            .or_else(|| out.iter().rev().find(|l| !l.trim().is_empty()))
            .cloned()
            .unwrap_or_else(|| format!("exit status {rc}"))
    })
}

fn status_cell(r: &Run, kind: &str, name: &str) -> Cell {
    let item = status_json(r).and_then(|s| {
        s["items"]
            .as_array()?
            .iter()
            .find(|i| i["kind"] == kind && i["name"] == name)
            .cloned()
    });
    match item {
        Some(i) if i["state"] == "ok" => {
            Cell::pass("ok", i["detail"].as_str().unwrap_or_default().to_owned())
        }
        // The reason is on the `kiln apply` row, once.
        _ if step_error(r, "apply").is_some() => Cell::fail(
            "-",
            "not deployed (kiln apply failed)".into(),
            String::new(),
        ),
        Some(i) => Cell::fail(
            "MISSING",
            format!(
                "{}: {}",
                i["state"],
                i["detail"].as_str().unwrap_or_default()
            ),
            String::new(),
        ),
        None => Cell::fail("-", "kiln status did not report it".into(), String::new()),
    }
}

fn program_cell(r: &Run, p: &ProgramRef, last: &crate::verifier_trend::Numbers) -> Cell {
    let load = r.step(&format!("load-{}", p.object)).and_then(|(_, out)| {
        out.iter()
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .find(|w| w.len() > 2 && w[0] == "program" && w[1] == p.function)
            .map(|w| w.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>())
    });
    let Some(load) = load else {
        let why = r
            .step(&format!("load-{}", p.object))
            .map(|(_, out)| out.join(" | "))
            .unwrap_or_else(|| "not run".into());
        return Cell::fail(
            "-",
            format!("object '{}' did not load: {why}", p.object),
            String::new(),
        );
    };
    let num = |i: usize| load.get(i).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    if load[2] == "refused" {
        let source = load.get(5).filter(|s| !s.is_empty());
        let message = match source {
            Some(src) => format!("refused: {} (at {src})", load[4]),
            None => format!("refused: {}", load[4]),
        };
        return Cell::fail("REFUSED", message, load.join("\t"));
    }
    let insns = num(3);
    let before = last
        .get(&r.target.label)
        .and_then(|progs| progs.get(&p.name))
        .copied();
    let change = match before {
        Some(b) if b != insns => format!(" ({:+})", insns as i64 - b as i64),
        Some(_) => " (same)".into(),
        None => " (new)".into(),
    };
    let stats = format!(
        "{insns} insns{change}, {} states (peak {}), {} us",
        num(4),
        num(5),
        num(6)
    );
    let mut cell = match status_cell(r, "program", &p.name) {
        c if matches!(c.outcome, Outcome::Pass) => {
            Cell::pass("ok", format!("{stats}; {}", c.detail))
        }
        c => Cell::fail(
            "NOT ATTACHED",
            format!("loads, not attached: {}", c.detail),
            String::new(),
        ),
    };
    cell.insns = Some(insns);
    cell.stats = Some(stats);
    cell
}

fn step_cell(r: &Run, step: &str) -> Cell {
    match r.step(step) {
        Some((0, _)) => Cell::pass("ok", String::new()),
        Some((rc, out)) => {
            let error = step_error(r, step).unwrap_or_default();
            // plan, apply and status refuse a manifest as check does: once is enough.
            let why = if step != "check" && step_error(r, "check").as_ref() == Some(&error) {
                "as kiln check".to_owned()
            } else {
                error
            };
            Cell::fail("FAILED", format!("exit {rc}: {why}"), out.join("\n"))
        }
        None => Cell::fail("-", "not run".into(), String::new()),
    }
}

fn describe(e: &kiln_manifest::schema::Expectation) -> String {
    use kiln_manifest::schema::Expectation;
    match e {
        Expectation::Map {
            map,
            key,
            at_least,
            equals,
        } => {
            let key = match key {
                toml::Value::String(s) => format!("0x{s}"),
                other => other.to_string(),
            };
            match (at_least, equals) {
                (_, Some(n)) => format!("{map}[{key}] = {n}"),
                (Some(n), None) => format!("{map}[{key}] >= {n}"),
                (None, None) => format!("{map}[{key}]"),
            }
        }
        Expectation::RingBuffer {
            ring_buffer,
            within_ms,
        } => format!("a record in {ring_buffer} within {within_ms} ms"),
    }
}

fn expect_cell(r: &Run, i: usize, e: &kiln_manifest::schema::Expectation) -> Cell {
    use kiln_manifest::schema::Expectation;
    let Some((_, out)) = r.step(&format!("expect-{i}")) else {
        return Cell::fail("-", "not run".into(), String::new());
    };
    if step_error(r, "apply").is_some() {
        return Cell::fail(
            "-",
            "not deployed (kiln apply failed)".into(),
            String::new(),
        );
    }
    let words: Vec<&str> = out
        .last()
        .map(|l| l.split('\t').collect())
        .unwrap_or_default();
    match (e, words.as_slice()) {
        (_, ["error", why]) => Cell::fail("ERROR", (*why).to_owned(), out.join("\n")),
        (Expectation::Map { .. }, ["absent"]) => {
            Cell::fail("ABSENT", "the key is not in the map".into(), String::new())
        }
        (
            Expectation::Map {
                at_least, equals, ..
            },
            ["value", n, hex],
        ) => {
            let n: u64 = n.parse().unwrap_or(0);
            let ok = equals.is_none_or(|e| n == e) && at_least.is_none_or(|a| n >= a);
            let detail = format!("value {n} (bytes {hex})");
            if ok {
                Cell::pass(&n.to_string(), detail)
            } else {
                Cell::fail(&format!("{n}"), detail, String::new())
            }
        }
        (Expectation::RingBuffer { within_ms, .. }, ["records", n]) => {
            if *n != "0" {
                Cell::pass(&format!("{n} rec"), format!("{n} record(s)"))
            } else {
                Cell::fail(
                    "NONE",
                    format!("no record within {within_ms} ms"),
                    String::new(),
                )
            }
        }
        _ => Cell::fail(
            "ERROR",
            format!("unexpected answer: {}", out.join(" | ")),
            String::new(),
        ),
    }
}

fn verifier_path(m: &Manifest, dir: &Path) -> PathBuf {
    dir.join(format!("matrix-verifier-{}.json", m.deployment))
}

/// The previous run's instruction counts (empty on the first run).
fn verifier_last(m: &Manifest, dir: &Path) -> crate::verifier_trend::Numbers {
    std::fs::read(verifier_path(m, dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_reports(
    m: &Manifest,
    manifest: &Path,
    runs: &[Run],
    grid: &Grid,
    target: &Path,
) -> Result<()> {
    std::fs::create_dir_all(target)?;
    let interrupted = vm::interrupted().is_some();
    let mut suites = grid.suites(runs);
    for s in &mut suites {
        for (k, v) in &mut s.properties {
            if k == "rerun_command" {
                *v = v.replace("MANIFEST", &manifest.display().to_string());
            }
        }
    }
    let title = format!(
        "Kiln grid of {}{}",
        manifest.display(),
        if interrupted { " (INTERRUPTED)" } else { "" }
    );
    std::fs::write(
        target.join("matrix-report.junit.xml"),
        crate::junit::render(&format!("kiln-grid {}", m.deployment), &suites),
    )?;
    std::fs::write(
        target.join("matrix-report.html"),
        crate::html::render(&title, &suites),
    )?;
    let vms: Vec<serde_json::Value> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let rows: serde_json::Map<String, serde_json::Value> = grid
                .rows
                .iter()
                .map(|(name, cells)| {
                    let c = &cells[i];
                    let status = match c.outcome {
                        Outcome::Pass => "pass",
                        Outcome::Skip(_) => "skip",
                        Outcome::Fail { .. } => "fail",
                        Outcome::Error { .. } => "error",
                    };
                    (
                        name.clone(),
                        serde_json::json!({
                            "status": status, "detail": c.detail, "insns": c.insns,
                        }),
                    )
                })
                .collect();
            serde_json::json!({
                "vm": r.target.label,
                "release": r.release,
                "arch": r.target.arch.as_str(),
                "elapsed_ms": r.elapsed.as_millis() as u64,
                "console_log": r.log,
                "rows": rows,
                "steps": r.steps.iter().map(|(k, (rc, out))| (k.clone(), serde_json::json!({"status": rc, "output": out}))).collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    let doc = serde_json::json!({
        "manifest": manifest.display().to_string(),
        "deployment": m.deployment,
        "interrupted": interrupted,
        "failures": grid.failures,
        "vms": vms,
    });
    std::fs::write(
        target.join("matrix-report.json"),
        serde_json::to_string_pretty(&doc)?,
    )?;
    // The instruction counts for the next run's comparison (what grew by
    // more than 10% is printed).
    let mut now = crate::verifier_trend::Numbers::new();
    for (i, r) in runs.iter().enumerate() {
        let progs: BTreeMap<String, u64> = m
            .programs
            .iter()
            .zip(grid.rows.iter().filter(|(n, _)| n.starts_with("program ")))
            .filter_map(|(p, (_, cells))| Some((p.name.clone(), cells[i].insns?)))
            .collect();
        now.insert(r.target.label.clone(), progs);
    }
    crate::verifier_trend::compare_and_store(&verifier_path(m, target), &now)?;
    println!(
        "report: {} (and .junit.xml, .html)",
        target.join("matrix-report.json").display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> (Manifest, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("kiln-matrix-{}-{}", std::process::id(), text.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("manifest.toml");
        std::fs::write(&path, text).unwrap();
        (Manifest::read(&path).unwrap(), dir)
    }

    const QUICK: &str = r#"
[deployment]
name = "q"
[objects.counter]
path = "counter.bpf.o"
[programs.count_packets]
object = "counter"
attach = { xdp = { interface = "veth-a", mode = "generic" } }
[programs.egress]
object = "counter"
function = "count_egress"
attach = { cgroup = { path = "/sys/fs/cgroup/kiln-test" } }
[maps.COUNTERS]
object = "counter"
[test]
run = ["ping -c 1 10.0.0.2"]
[[test.expect]]
map = "COUNTERS"
key = 1
at_least = 1
[[test.expect]]
ring_buffer = "events"
"#;

    #[test]
    fn the_guest_gets_what_the_manifest_names() {
        let (m, dir) = manifest(QUICK);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(m.pin_root, "/sys/fs/bpf/kiln/q");
        assert_eq!(m.interfaces, ["veth-a"]);
        assert_eq!(m.cgroups, ["/sys/fs/cgroup/kiln-test"]);
        assert_eq!(m.programs[1].function, "count_egress");
        let s = script(
            &m,
            &[("counter".into(), "/kiln/apply/objects/counter.bpf.o".into())],
        );
        for want in [
            "ip link add 'veth-a' type veth peer name kgrid0",
            "step env-cgroup-0 mkdir -p '/sys/fs/cgroup/kiln-test'",
            "step load-counter /bin/kiln-grid load '/kiln/apply/objects/counter.bpf.o'",
            "step apply /bin/kiln apply /kiln/apply/manifest.toml --object 'counter=/kiln/apply/objects/counter.bpf.o'",
            "step run-0 timeout 30 sh -c 'ping -c 1 10.0.0.2'",
            "step expect-0 /bin/kiln-grid map '/sys/fs/bpf/kiln/q/maps/COUNTERS' 'int:1'",
            "step expect-1 /bin/kiln-grid ringbuf '/sys/fs/bpf/kiln/q/maps/events' 2000",
        ] {
            assert!(s.contains(want), "{want}\nnot in\n{s}");
        }
    }

    #[test]
    fn uprobe_targets_of_the_users_tree_come_along() {
        let dir = std::env::temp_dir().join(format!("kiln-matrix-uprobe-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("bin/server"), b"\x7fELF").unwrap();
        let path = dir.join("manifest.toml");
        std::fs::write(
            &path,
            r#"[deployment]
name = "u"
[programs.mine]
object = "o"
attach = { uprobe = { path = "bin/server", symbol = "handle" } }
[programs.system]
object = "o"
attach = { uprobe = { path = "/usr/lib/libc-not-here.so.6", symbol = "malloc" } }
"#,
        )
        .unwrap();
        let m = Manifest::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            m.binaries,
            [(dir.join("bin/server"), "/kiln/apply/bin/server".to_owned())]
        );
    }

    #[test]
    fn an_expectation_without_a_bound_is_refused() {
        let dir = std::env::temp_dir().join(format!("kiln-matrix-bound-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.toml");
        std::fs::write(
            &path,
            "[deployment]\nname = \"x\"\n[[test.expect]]\nmap = \"m\"\nkey = 0\n",
        )
        .unwrap();
        let e = Manifest::read(&path).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(format!("{e:#}").contains("map 'm' says neither at_least nor equals"));
    }

    #[test]
    fn cells_from_the_guest_stream() {
        let (m, dir) = manifest(QUICK);
        std::fs::remove_dir_all(&dir).unwrap();
        let t = Target {
            kernel: KernelArgs::default(),
            arch: Arch::X86_64,
            label: "5.10-x86_64".into(),
            rerun: String::new(),
        };
        let stream: Vec<String> = [
            "@@kiln-grid begin load-counter",
            "program\tcount_packets\tloaded\t28\t2\t2\t19",
            "program\tcount_egress\trefused\t13\tinvalid mem access 'scalar'\tegress.bpf.c:7",
            "@@kiln-grid end load-counter 0",
            "@@kiln-grid begin apply",
            "error: apply failed; nothing changed: program 'egress': refused",
            "@@kiln-grid end apply 3",
            "@@kiln-grid begin status",
            r#"{"items":[{"kind":"program","name":"count_packets","state":"missing","detail":"not pinned"}]}"#,
            "@@kiln-grid end status 2",
            "@@kiln-grid begin expect-0",
            "value\t0\t0000000000000000",
            "@@kiln-grid end expect-0 0",
            "@@kiln-grid begin expect-1",
            "records\t3",
            "@@kiln-grid end expect-1 0",
        ]
        .map(String::from)
        .to_vec();
        let run = Run {
            steps: parse_steps(&stream),
            ..Run::empty(&t)
        };
        let mut last = crate::verifier_trend::Numbers::new();
        last.insert(
            "5.10-x86_64".into(),
            [("count_packets".to_owned(), 30u64)].into(),
        );
        let grid = Grid::of(&m, std::slice::from_ref(&run), &last);
        let cell = |row: &str| {
            &grid
                .rows
                .iter()
                .find(|(n, _)| n == row)
                .unwrap_or_else(|| panic!("no row {row}"))
                .1[0]
        };
        let packets = cell("program count_packets");
        assert_eq!(packets.short, "NOT ATTACHED");
        assert_eq!(
            packets.stats.as_deref(),
            Some("28 insns (-2), 2 states (peak 2), 19 us")
        );
        assert!(
            packets.detail.contains("not deployed (kiln apply failed)"),
            "{}",
            packets.detail
        );
        let egress = cell("program egress");
        assert_eq!(
            egress.detail,
            "refused: invalid mem access 'scalar' (at egress.bpf.c:7)"
        );
        assert_eq!(cell("expect COUNTERS[1] >= 1").short, "-");

        // Deployed: the expectations are read.
        let mut deployed = stream.clone();
        deployed[6] = "@@kiln-grid end apply 0".into();
        let run_ok = Run {
            steps: parse_steps(&deployed),
            ..Run::empty(&t)
        };
        let ok = Grid::of(&m, std::slice::from_ref(&run_ok), &last);
        let cell_ok = |row: &str| &ok.rows.iter().find(|(n, _)| n == row).unwrap().1[0];
        assert_eq!(cell_ok("expect COUNTERS[1] >= 1").short, "0");
        assert_eq!(
            cell_ok("expect COUNTERS[1] >= 1").detail,
            "value 0 (bytes 0000000000000000)"
        );
        assert!(matches!(
            cell_ok("expect a record in events within 2000 ms").outcome,
            Outcome::Pass
        ));
        assert!(matches!(cell("(vm)").outcome, Outcome::Pass));
        assert!(grid.failures >= 4, "{}", grid.failures);
        let text = grid.text(std::slice::from_ref(&run));
        assert!(
            text.contains("5.10-x86_64: refused: invalid mem access"),
            "{text}"
        );
    }
}
