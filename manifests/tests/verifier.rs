//! A program the verifier rejects: `kiln apply` names the program, shows the
//! verifier's last lines, the failing instruction and its source line, keeps
//! the whole log in a file whose path it prints, and changes nothing.

use std::path::PathBuf;
use std::process::Command;

use kiln_testkit::{Need, TestResult};

fn apply_of_a_rejected_program_explains_itself() -> TestResult {
    let name = format!("kiln-verifier-{}", std::process::id());
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir)?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let root = PathBuf::from("/sys/fs/bpf").join(&name);
    let obj = kiln_testkit::bpf_object("loader_bad.bpf.o")?;
    let manifest = dir.join("m.toml");
    std::fs::write(
        &manifest,
        format!(
            "[deployment]\nname = \"{name}\"\npin_root = \"{}\"\nallow_outside = true\n\n[objects.bad]\npath = \"{}\"\n\n[programs.unchecked]\nobject = \"bad\"\nattach = \"none\"\n",
            root.display(),
            obj.display()
        ),
    )?;
    let kiln = std::env::var_os("KILN_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kiln")), PathBuf::from);
    let out = Command::new(kiln)
        .arg("apply")
        .arg(&manifest)
        .arg("--verifier-log-dir")
        .arg(&logs)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let result = (|| -> TestResult {
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        // The chain on one line, the errno once, and no capability,
        // lockdown or RLIMIT hint: the verifier said why.
        assert_eq!(
            stderr.lines().find(|l| l.starts_with("error: ")),
            Some(
                "error: apply failed; nothing changed (the previous generation, if any, still \
                 runs): load program 'unchecked' (function 'unchecked' of object 'bad'): program \
                 'unchecked': the kernel refused to load it: Permission denied (os error 13)"
            ),
            "{stderr}"
        );
        assert_eq!(stderr.matches("Permission denied").count(), 1, "{stderr}");
        for hint in ["CAP_", "lockdown", "RLIMIT"] {
            assert!(
                !stderr.contains(hint),
                "hint {hint:?} on a rejection:\n{stderr}"
            );
        }
        for want in [
            "program 'unchecked'",
            "R0 invalid mem access 'map_value_or_null'",
            "failing instruction 7 is at loader_bad.bpf.c:13",
        ] {
            assert!(stderr.contains(want), "no `{want}` in:\n{stderr}");
        }
        let path = stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix("full verifier log: "))
            .ok_or_else(|| format!("no log path in:\n{stderr}"))?;
        assert!(path.starts_with(&logs.display().to_string()), "{path}");
        let log = std::fs::read_to_string(path)?;
        assert!(
            log.contains("func#0") || log.contains("0: "),
            "the kept log lacks its beginning:\n{log}"
        );
        assert!(log.contains("invalid mem access"), "{log}");
        assert!(
            !root.join("progs/unchecked").exists(),
            "a rejected program was pinned"
        );
        Ok(())
    })();
    let _ = kiln_manifest::apply::destroy(&name, &root);
    let _ = std::fs::remove_file(kiln_manifest::lock::lock_dir().join(format!("{name}.lock")));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn main() {
    kiln_testkit::run(vec![kiln_testkit::test(
        "apply_of_a_rejected_program_explains_itself",
        &[Need::Root, Need::Bpf],
        apply_of_a_rejected_program_explains_itself,
    )]);
}
