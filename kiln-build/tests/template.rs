//! A newcomer's first ten minutes: `kiln new` writes a project outside this
//! repository, `cargo build` builds its eBPF crate through kiln-build, and
//! the binary, run as root, prints counts that move when programs start.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kiln_build::template::{self, KilnSource};
use kiln_testkit::{Need, TestResult, test};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("kiln-build lives one level below the repository root")
        .to_path_buf()
}

/// The stable eBPF route, looked for without kiln-build: Debian's rustc with
/// its BPF `core`, and a bpf-linker where `cargo xtask setup` or the user put it.
fn ebpf_toolchain_missing() -> Option<String> {
    if !Path::new("/usr/lib/rustlib/bpfel-unknown-none/lib").is_dir() {
        return Some("no Debian rustc core for bpfel (cargo xtask setup installs it)".into());
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    let cache = std::env::var_os("KILN_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(&home).join(".cache/kiln"));
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("bpf-linker").is_file()));
    if cache.join("bpf-linker/bin/bpf-linker").is_file()
        || on_path
        || std::env::var_os("KILN_BPF_LINKER").is_some()
    {
        None
    } else {
        Some("no bpf-linker (cargo xtask setup installs it)".into())
    }
}

/// Removes the project directory however the test ends.
struct TempProject(PathBuf);

impl Drop for TempProject {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn template_project_builds_and_counts_execs() -> TestResult {
    // Outside the repository: nothing may resolve through the checkout's
    // workspace or .cargo directory.
    // One fixed path: cargo keys the build script's OUT_DIR (and the eBPF
    // crate's target dir in it) on the package's path, so a warm rerun
    // recompiles only the project's own crates.
    let dir = TempProject(std::env::temp_dir().join("kiln-new-template-test"));
    let _ = std::fs::remove_dir_all(&dir.0);
    let project = dir.0.join("hello");
    std::fs::create_dir_all(&dir.0)?;
    template::create("hello", &project, &KilnSource::Checkout(repo_root()))?;
    // A target dir in the checkout's target/ keeps the dependencies warm
    // across runs; the project itself stays outside.
    let target_dir = repo_root().join("target/template-project");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .arg("build")
        .arg("--manifest-path")
        .arg(project.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .current_dir(&project)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "cargo build of the new project failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let copied = project.join("target/bpf/hello-ebpf.bpf.o");
    if !copied.is_file() {
        return Err(format!("build.rs did not copy the object to {}", copied.display()).into());
    }
    kiln_loader::EbpfLoader::new()
        .load_file(&copied)
        .map_err(|e| format!("the copied object does not load: {e}"))?;
    // The manifest names that object, its program and its map (`kiln check`).
    let manifest = project.join("manifest.toml");
    let deployment = kiln_manifest::Deployment::load(&manifest, &Default::default())
        .map_err(|e| format!("{}: {e}", manifest.display()))?;
    let desired = &deployment.resolved.desired;
    if desired.programs.len() != 1 || desired.maps.len() != 1 {
        return Err(format!(
            "{}: {} programs and {} maps, expected 1 and 1",
            manifest.display(),
            desired.programs.len(),
            desired.maps.len()
        )
        .into());
    }

    let mut child = Command::new(target_dir.join("debug/hello"))
        .arg("3")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().transpose()?.unwrap_or_default();
    if !first.starts_with("counting exec()s") {
        let _ = child.kill();
        let out = child.wait_with_output()?;
        return Err(format!(
            "first line {first:?}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    // The trigger: five execs as this test's user, after the attach.
    for _ in 0..5 {
        Command::new("/bin/true").status()?;
    }
    let rest: Vec<String> = lines.collect::<Result<_, _>>()?;
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("hello exited with {status}; stdout: {rest:?}").into());
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let last = rest.last().ok_or("hello printed no counts")?;
    let counted = last
        .trim_start_matches("execs: ")
        .split(", ")
        .find_map(|entry| {
            let (who, n) = entry.split_once(": ")?;
            (who == format!("uid {uid}")).then(|| n.parse::<u64>().ok())?
        })
        .ok_or_else(|| format!("no count for uid {uid} in {last:?}"))?;
    if counted < 5 {
        return Err(format!("uid {uid} counted {counted} execs after 5: {rest:?}").into());
    }
    Ok(())
}

fn main() {
    kiln_testkit::run(vec![test(
        "template_project_builds_and_counts_execs",
        &[
            Need::Root,
            Need::Bpf,
            Need::Probe("the stable eBPF Rust toolchain", ebpf_toolchain_missing),
        ],
        template_project_builds_and_counts_execs,
    )]);
}
