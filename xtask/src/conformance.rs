//! `cargo xtask conformance [--json] [--jobs N]`: Kiln against libbpf on
//! objects nobody here wrote (issue 13).
//!
//! The corpus comes through package registries only: the kernel's BPF
//! selftests programs from Debian's `linux-source-6.1` (fetched with
//! `apt-get download`, only the BPF subtree unpacked), built here with the
//! flags of their own Makefile by clang-22 against a `vmlinux.h` of the
//! running kernel, plus the statically linked objects of that Makefile
//! (`bpftool gen object`); and the sched_ext schedulers published on
//! crates.io (fetched with `cargo fetch`), built with `scx_cargo`'s flags and
//! headers. Sources and objects are cached under
//! `~/.cache/kiln/conformance/`, keyed by package version, flags, compiler
//! and `vmlinux.h`, so a second run builds nothing. A source clang refuses
//! is counted as "not built" with clang's first error line.
//!
//! The comparison itself is the `kiln-conformance` binary (it takes any
//! directory of objects, so a guest with bpftool can run it too), with the
//! known differences of `conformance/known-differences.toml`; the whole
//! report is also written to `target/conformance.json`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use kiln_conformance::report::NotBuilt;

use crate::apt::{cache_root, hex};
use crate::build_ebpf::repo_root;

#[derive(clap::Args)]
pub struct Args {
    /// Print every object's comparison as JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Parallel compiles and comparisons (default: the CPUs available).
    #[arg(long)]
    jobs: Option<usize>,
    /// Also the selftests of trixie's `linux-source-6.12` (through an
    /// isolated apt; about twice the objects, so not part of the default run).
    #[arg(long)]
    with_6_12: bool,
}

/// A Debian package whose kernel tree holds selftests programs.
struct KernelSource {
    package: &'static str,
    /// `None`: the system's own apt (bookworm and bookworm-security);
    /// otherwise an isolated apt on this suite and its security suite.
    suite: Option<&'static str>,
}

const LINUX_6_1: KernelSource = KernelSource {
    package: "linux-source-6.1",
    suite: None,
};
const LINUX_6_12: KernelSource = KernelSource {
    package: "linux-source-6.12",
    suite: Some("trixie"),
};
const SELFTESTS: &str = "tools/testing/selftests/bpf";

/// One source tree of the corpus, ready to build.
struct Corpus {
    /// Short name, also the object directory's prefix.
    name: String,
    /// What the cache key covers besides the compiler and vmlinux.h.
    identity: String,
    /// `(source, object file name, extra flags)`.
    sources: Vec<(PathBuf, String, Vec<String>)>,
    /// Flags common to every source of the tree.
    flags: Vec<String>,
    /// Statically linked objects: `(object file name, the objects linked)`.
    links: Vec<(String, Vec<String>)>,
    /// Prefix of its objects' names in the report (`linux-6.12/x.bpf.o`).
    label: Option<String>,
}

pub fn run(args: Args) -> Result<()> {
    let tc = crate::setup::ensure()?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let root = cache_root().join("conformance");
    let start = Instant::now();

    let vmlinux = vmlinux_h(&tc.bpftool, &root.join("include"))?;
    let mut corpora = vec![selftests(&root, &vmlinux, &LINUX_6_1)?];
    if args.with_6_12 {
        corpora.push(selftests(&root, &vmlinux, &LINUX_6_12)?);
    }
    // The sched_ext schedulers are a second corpus; without them the
    // selftests still run (say why, never fail the whole suite on a fetch).
    match scx(&root) {
        Ok(c) => corpora.push(c),
        Err(e) => eprintln!("conformance: sched_ext schedulers left out: {e:#}"),
    }

    let clang_version = output(Command::new(&tc.clang).arg("--version"))?;
    let vmlinux_hash = hex(&Sha256::digest(std::fs::read(&vmlinux)?));
    let mut dirs = Vec::new();
    let mut not_built = Vec::new();
    for c in &corpora {
        let key = hex(&Sha256::digest(format!(
            "{}\n{}\n{clang_version}\n{vmlinux_hash}",
            c.identity,
            c.flags.join(" ")
        )))[..16]
            .to_owned();
        let dir = root.join("objects").join(format!("{}-{key}", c.name));
        let mut refused = build(&tc.clang, c, &dir, jobs)?;
        refused.extend(link(&tc.bpftool, c, &dir)?);
        // The default corpora name objects by file name alone (what the
        // known differences file says); an extra kernel tree is labelled.
        let label = c.label.as_deref();
        for r in &mut refused {
            if let Some(l) = label {
                r.object = format!("{l}/{}", r.object);
            }
        }
        not_built.extend(refused);
        dirs.push(match label {
            Some(l) => format!("{l}={}", dir.display()).into(),
            None => dir,
        });
    }
    let built_in = start.elapsed();
    if !args.json {
        println!(
            "corpus ready in {:.1} s: {}",
            built_in.as_secs_f64(),
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let not_built_file = root.join("not-built.json");
    std::fs::write(&not_built_file, serde_json::to_vec(&not_built)?)?;
    let repo = repo_root();
    let st = Command::new("cargo")
        .current_dir(&repo)
        .args(["build", "--quiet", "-p", "kiln-conformance"])
        .status()
        .context("running cargo build -p kiln-conformance")?;
    if !st.success() {
        bail!("building kiln-conformance failed");
    }
    let mut cmd = Command::new(repo.join("target/debug/kiln-conformance"));
    cmd.arg("--jobs")
        .arg(jobs.to_string())
        .arg("--known")
        .arg(repo.join("conformance/known-differences.toml"))
        .arg("--not-built")
        .arg(&not_built_file)
        .arg("--report")
        .arg(repo.join("target/conformance.json"))
        .args(&dirs);
    if args.json {
        cmd.arg("--json");
    }
    let st = cmd.status().context("running kiln-conformance")?;
    if !args.json {
        println!(
            "conformance: {:.1} s in all (corpus {:.1} s)",
            start.elapsed().as_secs_f64(),
            built_in.as_secs_f64()
        );
    }
    if !st.success() {
        bail!(
            "conformance: Kiln differs from libbpf where the known differences file does not say so"
        );
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `vmlinux.h` of the running kernel (regenerated when its BTF changes).
fn vmlinux_h(bpftool: &Path, dir: &Path) -> Result<PathBuf> {
    let btf = Path::new("/sys/kernel/btf/vmlinux");
    let stamp = hex(&Sha256::digest(
        std::fs::read(btf).with_context(|| format!("reading {}", btf.display()))?,
    ));
    let header = dir.join("vmlinux.h");
    let stamp_file = dir.join("vmlinux.h.btf-sha256");
    if header.is_file() && std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp) {
        return Ok(header);
    }
    std::fs::create_dir_all(dir)?;
    let text = output(
        Command::new(bpftool)
            .args(["btf", "dump", "file"])
            .arg(btf)
            .args(["format", "c"]),
    )?;
    std::fs::write(&header, text)?;
    std::fs::write(&stamp_file, stamp)?;
    Ok(header)
}

/// The selftests programs of Debian's kernel source, with the include tree
/// their Makefile sets up (`tools/include` with libbpf's headers installed
/// in it, the selftests directory, the tools' uapi headers).
fn selftests(root: &Path, vmlinux: &Path, source: &KernelSource) -> Result<Corpus> {
    let pkg = source.package;
    let (version, deb) = fetch_kernel_source(root, source)?;
    let tree = root.join("src").join(format!("{pkg}_{version}"));
    let done = tree.join(".unpacked");
    if !done.exists() {
        unpack_kernel_source(&deb, pkg, &tree)?;
        std::fs::write(&done, "")?;
    }
    let top = tree.join(pkg);
    let st = top.join(SELFTESTS);
    // `make install_headers` of libbpf, plus the generated helper definitions.
    let include = tree.join("include");
    let bpf_inc = include.join("bpf");
    if !bpf_inc.join("bpf_helper_defs.h").exists() {
        std::fs::create_dir_all(&bpf_inc)?;
        for e in std::fs::read_dir(top.join("tools/lib/bpf"))? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "h") {
                std::fs::copy(&p, bpf_inc.join(p.file_name().unwrap_or_default()))?;
            }
        }
        let defs = Command::new("python3")
            .arg(top.join("scripts/bpf_doc.py"))
            .args(["--header", "--file"])
            .arg(top.join("include/uapi/linux/bpf.h"))
            .output();
        match defs {
            Ok(o) if o.status.success() => {
                std::fs::write(bpf_inc.join("bpf_helper_defs.h"), o.stdout)?
            }
            // Without python3, libbpf-dev's generated header (libbpf 1.1, the
            // same era as 6.1) stands in.
            _ => {
                std::fs::copy(
                    "/usr/include/bpf/bpf_helper_defs.h",
                    bpf_inc.join("bpf_helper_defs.h"),
                )
                .context("no python3 to generate bpf_helper_defs.h, and no libbpf-dev copy")?;
            }
        }
    }
    std::fs::copy(vmlinux, include.join("vmlinux.h"))?;

    // The Makefile's BPF_CFLAGS + CLANG_CFLAGS of the test_progs flavour and
    // its CLANG_BPF_BUILD_RULE (-O2 -mcpu=v3), less -Werror: clang-22 warns
    // where the clang of 2022 did not, and warnings do not change the code.
    let mut flags: Vec<String> = [
        "-g",
        "-O2",
        "--target=bpfel",
        "-mcpu=v3",
        "-D__TARGET_ARCH_x86",
        "-mlittle-endian",
        "-Wno-compare-distinct-pointer-types",
        "-DENABLE_ATOMICS_TESTS",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in [&include, &st, &top.join("tools/include/uapi")] {
        flags.push(format!("-I{}", i.display()));
    }
    let makefile = std::fs::read_to_string(st.join("Makefile"))
        .with_context(|| format!("reading {}/Makefile", st.display()))?;
    // Later Makefiles add these to BPF_CFLAGS.
    for f in ["-std=gnu11", "-fno-strict-aliasing"] {
        if makefile.contains(f) {
            flags.push(f.to_owned());
        }
    }
    flags.extend(sys_includes()?);
    let mut sources = Vec::new();
    for e in std::fs::read_dir(st.join("progs"))? {
        let p = e?.path();
        if p.extension().is_none_or(|x| x != "c") {
            continue;
        }
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let extra = if stem == "test_l4lb_noinline" || stem == "test_xdp_noinline" {
            vec!["-fno-inline".to_owned()]
        } else {
            Vec::new()
        };
        sources.push((p, format!("{stem}.bpf.o"), extra));
    }
    sources.sort();
    Ok(Corpus {
        links: linked_skeletons(&makefile),
        name: format!("selftests-{}", pkg.trim_start_matches("linux-source-")),
        label: source.suite.map(|_| pkg.replace("linux-source-", "linux-")),
        identity: format!("{pkg} {version}"),
        sources,
        flags,
    })
}

/// The selftests Makefile's statically linked skeletons
/// (`linked_funcs.skel.h-deps := linked_funcs1.bpf.o linked_funcs2.bpf.o`).
fn linked_skeletons(makefile: &str) -> Vec<(String, Vec<String>)> {
    makefile
        .lines()
        .filter_map(|l| {
            let (lhs, rhs) = l.split_once(":=")?;
            let skel = lhs.trim().strip_suffix(".skel.h-deps")?;
            let deps: Vec<String> = rhs.split_whitespace().map(str::to_owned).collect();
            (!deps.is_empty()).then(|| (format!("{skel}.linked.bpf.o"), deps))
        })
        .collect()
}

/// Links each statically linked object as the selftests build does
/// (`bpftool gen object`, three times over, the last result kept).
fn link(bpftool: &Path, corpus: &Corpus, dir: &Path) -> Result<Vec<NotBuilt>> {
    let mut refused = Vec::new();
    for (name, deps) in &corpus.links {
        let obj = dir.join(name);
        let marker = dir.join(format!("{name}.refused"));
        if let Ok(error) = std::fs::read_to_string(&marker) {
            refused.push(NotBuilt {
                object: name.clone(),
                error,
            });
            continue;
        }
        if obj.exists() {
            continue;
        }
        let mut inputs: Vec<PathBuf> = deps.iter().map(|d| dir.join(d)).collect();
        let mut error = inputs
            .iter()
            .find(|p| !p.exists())
            .map(|p| format!("input {} was not built", p.display()));
        for pass in 1..=3 {
            if error.is_some() {
                break;
            }
            let out = dir.join(format!("{name}.pass{pass}"));
            let o = Command::new(bpftool)
                .args(["gen", "object"])
                .arg(&out)
                .args(&inputs)
                .output()
                .with_context(|| format!("running {} gen object", bpftool.display()))?;
            if !o.status.success() {
                let e = String::from_utf8_lossy(&o.stderr);
                error = Some(
                    e.lines()
                        .find(|l| l.contains("rror"))
                        .unwrap_or("bpftool gen object failed")
                        .to_owned(),
                );
            }
            inputs = vec![out];
        }
        match error {
            None => std::fs::rename(&inputs[0], &obj)?,
            Some(error) => {
                std::fs::write(&marker, &error)?;
                refused.push(NotBuilt {
                    object: name.clone(),
                    error,
                });
            }
        }
        for pass in 1..=3 {
            let _ = std::fs::remove_file(dir.join(format!("{name}.pass{pass}")));
        }
    }
    Ok(refused)
}

/// The newest version of the kernel source package and its downloaded .deb.
fn fetch_kernel_source(root: &Path, source: &KernelSource) -> Result<(String, PathBuf)> {
    let pkg = source.package;
    let dl = root.join("dl");
    std::fs::create_dir_all(&dl)?;
    if let Some(suite) = source.suite {
        let apt = crate::apt::IsolatedApt::new(&[suite], true, "amd64")?;
        apt.update(false)?;
        let mut versions = apt.show(pkg)?;
        versions.sort_by(|a, b| crate::apt::compare_versions(&b.version, &a.version));
        let newest = versions
            .first()
            .with_context(|| format!("{suite} has no {pkg}"))?;
        let deb = apt.download(newest, &dl)?;
        return Ok((newest.version.clone(), deb));
    }
    let policy = output(Command::new("apt-cache").args(["policy", pkg]))?;
    let version = policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate: "))
        .filter(|v| *v != "(none)")
        .with_context(|| format!("apt knows no {pkg} (is bookworm-security in the sources?)"))?
        .to_owned();
    let deb = dl.join(format!("{pkg}_{}_all.deb", version.replace(':', "%3a")));
    if !deb.exists() {
        let st = Command::new("apt-get")
            .current_dir(&dl)
            .args(["download", &format!("{pkg}={version}")])
            .status()
            .context("running apt-get download")?;
        if !st.success() || !deb.exists() {
            bail!("apt-get download {pkg}={version} failed");
        }
    }
    Ok((version, deb))
}

/// Unpacks only the BPF subtree and the headers it includes from the kernel
/// tarball inside the package.
fn unpack_kernel_source(deb: &Path, pkg: &str, tree: &Path) -> Result<()> {
    let partial = tree.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial)?;
    let script = format!(
        "set -o pipefail; dpkg-deb --fsys-tarfile '{deb}' | tar -xO ./usr/src/{pkg}.tar.xz | xz -dc | \
         tar -x -C '{out}' --wildcards '{pkg}/{SELFTESTS}/*' '{pkg}/tools/lib/bpf/*' \
         '{pkg}/tools/include/*' '{pkg}/include/uapi/linux/bpf.h' '{pkg}/scripts/bpf_doc.py'",
        deb = deb.display(),
        out = partial.display()
    );
    let st = Command::new("bash")
        .args(["-c", &script])
        .status()
        .context("unpacking the kernel source")?;
    if !st.success() {
        bail!("unpacking {} failed", deb.display());
    }
    let _ = std::fs::remove_dir_all(tree);
    std::fs::rename(&partial, tree)?;
    Ok(())
}

/// The sched_ext schedulers published on crates.io, at one version.
const SCX_VERSION: &str = "1.1.4";
const SCX_SCHEDULERS: &[&str] = &[
    "scx_rusty",
    "scx_lavd",
    "scx_bpfland",
    "scx_flash",
    "scx_layered",
    "scx_p2dq",
    "scx_cosmos",
];

/// The sched_ext schedulers' BPF sources, fetched with cargo (a throwaway
/// manifest that depends on them), built the way `scx_cargo::BpfBuilder`
/// builds them: its flags, its header tree (`bpf_h` plus the vmlinux.h it
/// ships per arch), libbpf's headers from `libbpf-sys`, every source of a
/// scheduler compiled then linked into one object.
fn scx(root: &Path) -> Result<Corpus> {
    let dir = root.join("crates");
    std::fs::create_dir_all(dir.join("src"))?;
    let mut manifest = String::from(
        "[package]\nname = \"kiln-conformance-corpus\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n[dependencies]\nscx_cargo = \"=VERSION\"\n",
    );
    for s in SCX_SCHEDULERS {
        manifest.push_str(&format!("{s} = \"=VERSION\"\n"));
    }
    let manifest = manifest.replace("VERSION", SCX_VERSION);
    if std::fs::read_to_string(dir.join("Cargo.toml"))
        .ok()
        .as_deref()
        != Some(manifest.as_str())
    {
        std::fs::write(dir.join("Cargo.toml"), &manifest)?;
    }
    std::fs::write(dir.join("src/lib.rs"), "")?;
    output(
        Command::new("cargo")
            .args(["fetch", "--quiet", "--manifest-path"])
            .arg(dir.join("Cargo.toml")),
    )?;
    let meta = output(
        Command::new("cargo")
            .args(["metadata", "--format-version", "1", "--manifest-path"])
            .arg(dir.join("Cargo.toml")),
    )?;
    let meta: serde_json::Value = serde_json::from_str(&meta)?;
    let listed = |name: &str| -> Result<PathBuf> {
        meta["packages"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .and_then(|p| p["manifest_path"].as_str())
            .and_then(|m| Path::new(m).parent().map(Path::to_path_buf))
            .with_context(|| format!("cargo metadata does not list {name}"))
    };
    let scx_cargo = listed("scx_cargo")?;
    let libbpf_sys = listed("libbpf-sys")?;
    // Binary-only crates (most schedulers) are fetched but left out of the
    // metadata ("missing a lib target"): they sit beside scx_cargo's source.
    let crate_dir = |name: &str| -> Result<PathBuf> {
        listed(name).or_else(|_| {
            let d = scx_cargo
                .parent()
                .map(|p| p.join(format!("{name}-{SCX_VERSION}")))
                .filter(|d| d.join("build.rs").is_file());
            d.with_context(|| format!("{name} {SCX_VERSION} was not fetched"))
        })
    };

    // BpfBuilder's header tree: bpf_h, then the vmlinux/ of vmlinux.tar.zst.
    let headers = dir.join(format!("bpf_h-{SCX_VERSION}"));
    if !headers.join(".unpacked").exists() {
        let _ = std::fs::remove_dir_all(&headers);
        std::fs::create_dir_all(headers.join("libbpf/bpf"))?;
        let script = format!(
            "set -e; cp -a '{h}/.' '{out}/'; tmp=$(mktemp -d); tar --zstd -xf '{v}' -C \"$tmp\"; \
             cp -a \"$tmp/vmlinux/.\" '{out}/'; rm -rf \"$tmp\"; cp '{l}'/*.h '{out}/libbpf/bpf/'",
            h = scx_cargo.join("bpf_h").display(),
            v = scx_cargo.join("vmlinux.tar.zst").display(),
            l = libbpf_sys.join("libbpf/src").display(),
            out = headers.display()
        );
        let st = Command::new("bash").args(["-c", &script]).status()?;
        if !st.success() {
            bail!("unpacking scx_cargo's headers failed (is zstd installed?)");
        }
        std::fs::write(headers.join(".unpacked"), "")?;
    }
    let mut flags: Vec<String> = [
        "-g",
        "-O2",
        "-Wall",
        "-Wno-compare-distinct-pointer-types",
        "-D__TARGET_ARCH_x86",
        "-mcpu=v4",
        "-mllvm",
        "-disable-ldsx",
        "-mllvm",
        "-disable-gotox",
        "-mlittle-endian",
        "--target=bpfel",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    flags.extend(sys_includes()?);
    for i in ["arch/x86", "", "bpf-compat", "libbpf"] {
        flags.push(format!("-I{}", headers.join(i).display()));
    }
    flags.push("-D__SCX_TARGET_ARCH_x86".into());

    let (mut sources, mut links) = (Vec::new(), Vec::new());
    for sched in SCX_SCHEDULERS {
        let cdir = crate_dir(sched)?;
        let build_rs = std::fs::read_to_string(cdir.join("build.rs"))?;
        let srcs = builder_sources(&build_rs);
        if srcs.len() == 1 {
            sources.push((cdir.join(&srcs[0]), format!("{sched}.bpf.o"), Vec::new()));
            continue;
        }
        let mut parts = Vec::new();
        for src in &srcs {
            let stem = src.trim_end_matches(".bpf.c").replace('/', "-");
            // Not `.o`: only the linked object is compared.
            let part = format!("{sched}-{stem}.part");
            sources.push((cdir.join(src), part.clone(), Vec::new()));
            parts.push(part);
        }
        links.push((format!("{sched}.bpf.o"), parts));
    }
    Ok(Corpus {
        name: format!("scx-{SCX_VERSION}"),
        label: None,
        identity: format!(
            "sched_ext schedulers {SCX_VERSION}: {}",
            SCX_SCHEDULERS.join(" ")
        ),
        sources,
        flags,
        links,
    })
}

/// The sources a scheduler's build.rs hands to `BpfBuilder`
/// (`enable_skel("src/bpf/main.bpf.c", ..)`, then each `add_source(..)`).
fn builder_sources(build_rs: &str) -> Vec<String> {
    let mut v = Vec::new();
    for call in [".enable_skel(\"", ".add_source(\""] {
        let mut rest = build_rs;
        while let Some(at) = rest.find(call) {
            rest = &rest[at + call.len()..];
            if let Some(end) = rest.find('"') {
                v.push(rest[..end].to_owned());
            }
        }
    }
    v
}

/// The system include directories, as the selftests Makefile passes them
/// (`-idirafter`), from what clang itself searches.
fn sys_includes() -> Result<Vec<String>> {
    let out = Command::new("clang-22")
        .args(["-v", "-E", "-x", "c", "-"])
        .stdin(std::process::Stdio::null())
        .output()
        .context("running clang-22 -v")?;
    let text = String::from_utf8_lossy(&out.stderr);
    let mut in_list = false;
    let mut v = Vec::new();
    for l in text.lines() {
        if l.starts_with("#include <...> search starts here:") {
            in_list = true;
        } else if l.starts_with("End of search list.") {
            break;
        } else if in_list {
            v.push(format!("-idirafter{}", l.trim()));
        }
    }
    Ok(v)
}

/// Builds every source not built yet into `dir`; a refusal is kept as
/// `<object>.refused` (clang's first error line), so it is not retried.
/// Returns the refused ones.
fn build(clang: &Path, corpus: &Corpus, dir: &Path, jobs: usize) -> Result<Vec<NotBuilt>> {
    std::fs::create_dir_all(dir)?;
    let next = Mutex::new(0usize);
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                        *n += 1;
                        *n - 1
                    };
                    let Some((src, name, extra)) = corpus.sources.get(i) else {
                        break;
                    };
                    if let Err(e) = build_one(clang, corpus, src, name, extra, dir) {
                        errors
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(format!("{name}: {e:#}"));
                    }
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = errors.first() {
        bail!("building the corpus: {e}");
    }
    let mut refused = Vec::new();
    for (_, name, _) in &corpus.sources {
        let r = dir.join(format!("{name}.refused"));
        if let Ok(error) = std::fs::read_to_string(&r) {
            refused.push(NotBuilt {
                object: name.clone(),
                error,
            });
        }
    }
    Ok(refused)
}

fn build_one(
    clang: &Path,
    corpus: &Corpus,
    src: &Path,
    name: &str,
    extra: &[String],
    dir: &Path,
) -> Result<()> {
    let obj = dir.join(name);
    let refused = dir.join(format!("{name}.refused"));
    if obj.exists() || refused.exists() {
        return Ok(());
    }
    let tmp = dir.join(format!("{name}.tmp"));
    let out = Command::new(clang)
        .args(&corpus.flags)
        .args(extra)
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(&tmp)
        .output()
        .with_context(|| format!("running {}", clang.display()))?;
    if out.status.success() {
        std::fs::rename(&tmp, &obj)?;
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .find(|l| l.contains("error:"))
            .or_else(|| err.lines().next())
            .unwrap_or("clang failed")
            .replace(&format!("{}/", src.parent().unwrap_or(src).display()), "");
        std::fs::write(&refused, first)?;
    }
    Ok(())
}
