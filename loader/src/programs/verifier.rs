//! Loading with the verifier's log: first without (fast, no buffer), then, on
//! rejection, again with a log that grows until the whole story fits.

use std::ffi::CString;
use std::os::fd::OwnedFd;

use kiln_obj::{Insn, ProgramKind};

use super::{LoadOptions, build_load};
use crate::sys::SysError;
use crate::sys::prog::prog_load;

/// How much the verifier writes when asked for a log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VerifierLogLevel {
    /// No log unless the load fails; then level 1 (the failing path).
    #[default]
    OnFailure,
    /// Always log the failing path (level 1).
    Basic,
    /// Every instruction of every path (level 2, large).
    Verbose,
    /// Statistics only (level 4).
    Stats,
}

/// A program the kernel refused.
#[derive(Debug)]
pub enum LoadError {
    /// The verifier (or the load path before it) rejected the program.
    Verifier {
        /// The program's name.
        program: String,
        /// The kernel's answer.
        source: SysError,
        /// The whole log at level 1.
        log: String,
        /// `file:line: text` of the failing instruction, when the object has line info.
        source_line: Option<String>,
    },
    /// BPF_PROG_LOAD failed before the verifier ran (no log).
    Syscall {
        /// The program's name.
        program: String,
        /// The kernel's answer.
        source: SysError,
    },
    /// The program's license string contains a NUL byte, so it cannot be
    /// passed to the kernel (Kiln refused before asking it).
    LicenseNul {
        /// The program's name.
        program: String,
    },
    /// The kernel function or type a tp_btf, fentry/fexit, LSM or iterator
    /// program names as its target could not be resolved in the kernel's BTF
    /// (Kiln refused before asking the kernel).
    AttachTarget {
        /// The program's name.
        program: String,
        /// Why the target was not found.
        source: crate::links::LinkError,
    },
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Verifier {
                program,
                source,
                log,
                source_line,
            } => f.write_str(&verifier_message(
                program,
                source,
                log,
                source_line.as_ref(),
            )),
            LoadError::Syscall { program, .. } => write!(f, "program '{program}': cannot load it"),
            LoadError::LicenseNul { program } => {
                write!(f, "program '{program}': its license contains a NUL byte")
            }
            LoadError::AttachTarget { program, .. } => {
                write!(f, "program '{program}': cannot resolve its attach target")
            }
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // A rejection the verifier explained: the errno is its verdict
            // (EACCES, EINVAL), not a privilege problem, so the syscall
            // error and its capability/lockdown/RLIMIT hint stay out of the
            // chain. With an empty log the load failed before verification
            // (EPERM from a missing capability): then the hint is the point.
            LoadError::Verifier { log, .. } if !log.trim().is_empty() => None,
            LoadError::Verifier { source, .. } | LoadError::Syscall { source, .. } => Some(source),
            LoadError::AttachTarget { source, .. } => Some(source),
            LoadError::LicenseNul { .. } => None,
        }
    }
}

impl LoadError {
    /// The refused program's name.
    pub fn program(&self) -> &str {
        match self {
            LoadError::Verifier { program, .. }
            | LoadError::Syscall { program, .. }
            | LoadError::LicenseNul { program }
            | LoadError::AttachTarget { program, .. } => program,
        }
    }
    /// The verifier's log, when the verifier ran.
    pub fn log(&self) -> Option<&str> {
        match self {
            LoadError::Verifier { log, .. } => Some(log),
            _ => None,
        }
    }
    /// The errno of the failed load.
    pub fn errno(&self) -> Option<i32> {
        match self {
            LoadError::Verifier { source, .. } | LoadError::Syscall { source, .. } => {
                Some(source.errno())
            }
            LoadError::LicenseNul { .. } | LoadError::AttachTarget { .. } => None,
        }
    }
    /// Writes the whole verifier log to `dir/kiln-verifier-<program>-<pid>.log`
    /// (mode 0600: it shows the program's code) and returns the path; `None`
    /// when there is no log to keep. The message shows only its tail.
    pub fn save_log(&self, dir: &std::path::Path) -> std::io::Result<Option<std::path::PathBuf>> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let Some(log) = self.log().filter(|l| !l.trim().is_empty()) else {
            return Ok(None);
        };
        let safe: String = self
            .program()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let path = dir.join(format!("kiln-verifier-{safe}-{}.log", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(log.as_bytes())?;
        Ok(Some(path))
    }

    /// One line saying why: the last meaningful line of the verifier log, or the errno.
    pub fn reason(&self) -> String {
        match self {
            LoadError::Verifier { log, source, .. } => {
                last_reason(log).unwrap_or_else(|| source.source.to_string())
            }
            LoadError::Syscall { source, .. } => source.source.to_string(),
            LoadError::LicenseNul { .. } => "its license contains a NUL byte".into(),
            LoadError::AttachTarget { source, .. } => crate::error_chain(source),
        }
    }
}

const TAIL_LINES: usize = 20;

/// The verifier holds a loader without CAP_PERFMON (nor CAP_SYS_ADMIN) to
/// stricter rules (no pointer arithmetic with unknown scalars, no pointer
/// leaks, no speculative-execution exemptions) and says so with "!root" in
/// its message. That refusal is about privilege, not the program's logic,
/// so it is the one verifier rejection that gets a capability hint.
fn unprivileged_verifier_hint(
    log: &str,
    missing: &[crate::sys::caps::Capability],
) -> Option<&'static str> {
    let strict_rule = log
        .lines()
        .any(|l| l.contains("!root") || l.contains("pointer comparison prohibited"));
    (strict_rule && missing.contains(&crate::sys::caps::Capability::Perfmon)).then_some(
        "\n  help: the verifier allows this only to a loader holding CAP_PERFMON (or CAP_SYS_ADMIN), which this process lacks",
    )
}

fn verifier_message(program: &str, source: &SysError, log: &str, line: Option<&String>) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    // With an empty log the `SysError` is this error's source and prints the
    // errno itself; with a log it is left out of the chain, so say it here.
    let mut s = if lines.is_empty() {
        format!("program '{program}': the kernel refused to load it")
    } else {
        format!(
            "program '{program}': the kernel refused to load it: {}",
            source.source
        )
    };
    if lines.is_empty() {
        s.push_str("\n  (the verifier log is empty: the failure happened before verification, e.g. a missing capability or an unsupported program type)");
    } else {
        let start = lines.len().saturating_sub(TAIL_LINES);
        if start > 0 {
            s.push_str(&format!("\n  ... ({start} earlier log lines omitted)"));
        }
        for l in &lines[start..] {
            s.push_str("\n  ");
            s.push_str(l);
        }
    }
    if let Some(hint) = unprivileged_verifier_hint(
        log,
        &crate::sys::caps::missing(&[crate::sys::caps::Capability::Perfmon]),
    ) {
        s.push_str(hint);
    }
    match line {
        Some(l) => s.push_str(&format!(
            "\n  failing instruction {} is at {}",
            failing_insn(log).map_or("?".to_owned(), |i| i.to_string()),
            l.trim_end_matches([' ', ':'])
        )),
        None => {
            if let Some(text) = last_source_comment(log) {
                s.push_str(&format!("\n  at source line: {text}"));
            }
        }
    }
    s
}

/// The index of the instruction the verifier stopped at: the last log line of
/// the form `N: (op) ...`.
pub fn failing_insn(log: &str) -> Option<u32> {
    log.lines().rev().find_map(|l| {
        let (n, rest) = l.split_once(": ")?;
        (rest.starts_with('(') && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .then(|| n.parse().ok())?
    })
}

/// The last `; source text @ file:line` annotation the kernel printed (present
/// when the program was loaded with line info).
fn last_source_comment(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .find_map(|l| l.strip_prefix("; ").map(|t| t.trim().to_owned()))
}

/// The last log line that explains (not an instruction dump, register state or statistics).
fn last_reason(log: &str) -> Option<String> {
    let is_state = |l: &str| {
        let l = l
            .split_once(": ")
            .filter(|(n, _)| n.bytes().all(|b| b.is_ascii_digit()))
            .map_or(l, |(_, r)| r);
        l.strip_prefix('R')
            .map(|r| r.trim_start_matches(|c: char| c.is_ascii_digit()))
            .is_some_and(|r| r.starts_with('=') || r.starts_with("_w="))
    };
    log.lines()
        .rev()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .find(|l| {
            !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
                && !l.starts_with(';')
                && !l.starts_with("func#")
                && failing_insn(l).is_none()
                && !is_state(l)
        })
        .map(str::to_owned)
}

const LOG_START: usize = 64 * 1024;
/// Kernels before 6.4 refuse a log buffer under 128 bytes with EINVAL
/// instead of truncating it, so a smaller request starts here.
const LOG_MIN: usize = 128;
/// The kernel caps log_size at UINT_MAX >> 2 (>> 8 before 5.2); we stop earlier.
const LOG_MAX: usize = 256 * 1024 * 1024;

pub(super) fn load_with_log(
    name: &str,
    kind: &ProgramKind,
    insns: &[Insn],
    opts: &LoadOptions<'_>,
) -> Result<(OwnedFd, Option<String>), LoadError> {
    let license = CString::new(opts.license).map_err(|_| LoadError::LicenseNul {
        program: name.to_owned(),
    })?;
    let level = match opts.log_level {
        VerifierLogLevel::OnFailure => None,
        VerifierLogLevel::Basic => Some(1),
        VerifierLogLevel::Verbose => Some(2),
        VerifierLogLevel::Stats => Some(4),
    };
    let first_error = if level.is_none() {
        match prog_load(build_load(name, kind, insns, &license, opts)) {
            Ok(fd) => return Ok((fd, None)),
            Err(f) => f.error,
        }
    } else {
        SysError {
            cmd: crate::sys::Cmd::ProgLoad,
            source: std::io::Error::from_raw_os_error(0),
        }
    };
    let level = level.unwrap_or(1);
    let mut size = if opts.initial_log_size > 0 {
        opts.initial_log_size.max(LOG_MIN)
    } else {
        LOG_START
    };
    loop {
        let mut buf = vec![0u8; size];
        let mut load = build_load(name, kind, insns, &license, opts);
        load.log = Some((level, &mut buf));
        match prog_load(load) {
            // With an explicit level the caller wanted the log of a success too.
            Ok(fd) => return Ok((fd, Some(crate::util::c_name(&buf)))),
            Err(f) => {
                let truncated = f.error.errno() == libc::ENOSPC;
                if truncated && size < LOG_MAX {
                    size = (f.log_true_size as usize).max(size * 4).min(LOG_MAX);
                    continue;
                }
                let log = crate::util::c_name(&buf);
                // A truncated final log reports ENOSPC: the real reason is the first load's errno.
                let error = if truncated && first_error.errno() != 0 {
                    first_error
                } else {
                    f.error
                };
                let source_line =
                    failing_insn(&log).and_then(|i| opts.source_line.and_then(|f| f(i)));
                return Err(LoadError::Verifier {
                    program: name.to_owned(),
                    source: error,
                    log,
                    source_line,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privilege_hint_only_for_the_strict_rules_and_without_perfmon() {
        use crate::sys::caps::Capability::Perfmon;
        let strict = "13: (0f) r1 += r3\nR1 pointer arithmetic with it prohibited for !root\n";
        assert!(unprivileged_verifier_hint(strict, &[Perfmon]).is_some());
        assert!(unprivileged_verifier_hint(strict, &[]).is_none());
        let logic = "R1 invalid mem access 'scalar'\n";
        assert!(unprivileged_verifier_hint(logic, &[Perfmon]).is_none());
    }

    const LOG: &str = "func#0 @0\n0: R1=ctx() R10=fp0\n; return *(int *)0; @ bad.bpf.c:7\n0: (b7) r1 = 0                        ; R1_w=0\n1: (61) r0 = *(u32 *)(r1 +0)\nR1 invalid mem access 'scalar'\nprocessed 2 insns (limit 1000000) max_states_per_insn 0\n";

    #[test]
    fn finds_the_failing_instruction_and_reason() {
        assert_eq!(failing_insn(LOG), Some(1));
        assert_eq!(
            last_reason(LOG).as_deref(),
            Some("R1 invalid mem access 'scalar'")
        );
        assert_eq!(
            last_source_comment(LOG).as_deref(),
            Some("return *(int *)0; @ bad.bpf.c:7")
        );
    }

    /// A 5.10 log: register states on their own `N: R..=` lines, `inv`
    /// scalars, source comments without `@ file:line`.
    const LOG_5_10: &str = "func#0 @0
0: R1=ctx(id=0,off=0,imm=0) R10=fp0
; __u32 key = 0;
0: (b7) r1 = 0
1: R1_w=inv0 R10=fp0
1: (63) *(u32 *)(r10 -4) = r1
last_idx 1 first_idx 0
2: R1_w=inv0 R10=fp0 fp-8=0000????
; value = bpf_map_lookup_elem(&m, &key);
2: (bf) r2 = r10
3: (07) r2 += -4
4: (18) r1 = 0xffff888003a5c000
6: (85) call bpf_map_lookup_elem#1
7: R0_w=map_value_or_null(id=1,off=0,ks=4,vs=8,imm=0) R10=fp0 fp-8=mmmm????
; return *value;
7: (61) r0 = *(u32 *)(r0 +0)
R0 invalid mem access 'map_value_or_null'
processed 7 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
";

    /// A 6.x log: states after the instruction on the same line, source
    /// comments with `@ file:line`, timing and stack lines at the end.
    const LOG_6_X: &str = "func#0 @0
0: R1=ctx() R10=fp0
; __u32 key = 0; @ t.bpf.c:12
0: (b7) r1 = 0                        ; R1_w=0
1: (63) *(u32 *)(r10 -4) = r1         ; R1_w=0 R10=fp0 fp-8=0000????
; value = bpf_map_lookup_elem(&m, &key); @ t.bpf.c:13
2: (bf) r2 = r10                      ; R2_w=fp0 R10=fp0
3: (07) r2 += -4                      ; R2_w=fp-4
4: (18) r1 = 0xffff888003a5c000       ; R1_w=map_ptr(ks=4,vs=8)
6: (85) call bpf_map_lookup_elem#1    ; R0_w=map_value_or_null(id=1,ks=4,vs=8)
; return *value; @ t.bpf.c:14
7: (61) r0 = *(u32 *)(r0 +0)
R0 invalid mem access 'map_value_or_null'
verification time 31 usec
stack depth 4
processed 7 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
";

    #[test]
    fn parses_5_10_and_6_x_logs_alike() {
        for (kernel, log, source) in [
            ("5.10", LOG_5_10, "return *value;"),
            ("6.x", LOG_6_X, "return *value; @ t.bpf.c:14"),
        ] {
            assert_eq!(failing_insn(log), Some(7), "{kernel}");
            assert_eq!(
                last_reason(log).as_deref(),
                Some("R0 invalid mem access 'map_value_or_null'"),
                "{kernel}"
            );
            assert_eq!(
                last_source_comment(log).as_deref(),
                Some(source),
                "{kernel}"
            );
        }
    }

    #[test]
    fn reasons_other_than_memory_access() {
        let too_big = "0: (95) exit\nBPF program is too large. Processed 1000001 insn\nprocessed 1000001 insns (limit 1000000) max_states_per_insn 4\n";
        assert_eq!(
            last_reason(too_big).as_deref(),
            Some("BPF program is too large. Processed 1000001 insn")
        );
        let loop_5_10 = "0: (b7) r0 = 0\n1: (05) goto pc-1\nback-edge from insn 1 to 1\n";
        assert_eq!(
            last_reason(loop_5_10).as_deref(),
            Some("back-edge from insn 1 to 1")
        );
        assert_eq!(failing_insn(loop_5_10), Some(1));
        // A log with only states and statistics has no reason line.
        assert_eq!(
            last_reason("0: R1=ctx() R10=fp0\nprocessed 0 insns\n"),
            None
        );
    }

    #[test]
    fn save_log_keeps_the_whole_log_privately() {
        use std::os::unix::fs::PermissionsExt;
        let e = LoadError::Verifier {
            program: "bad/prog".into(),
            source: SysError {
                cmd: crate::sys::Cmd::ProgLoad,
                source: std::io::Error::from_raw_os_error(libc::EACCES),
            },
            log: LOG_6_X.into(),
            source_line: None,
        };
        let dir = std::env::temp_dir();
        let path = e.save_log(&dir).unwrap().unwrap();
        assert_eq!(path.parent(), Some(dir.as_path()));
        assert!(
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("kiln-verifier-bad-prog-")
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), LOG_6_X);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn message_shows_name_tail_and_line() {
        let e = LoadError::Verifier {
            program: "bad".into(),
            source: SysError {
                cmd: crate::sys::Cmd::ProgLoad,
                source: std::io::Error::from_raw_os_error(libc::EACCES),
            },
            log: LOG.into(),
            source_line: Some("bad.bpf.c:7: return *(int *)0;".into()),
        };
        let s = e.to_string();
        assert!(s.starts_with("program 'bad': the kernel refused"), "{s}");
        assert!(s.contains("R1 invalid mem access"), "{s}");
        assert!(s.contains("bad.bpf.c:7: return *(int *)0;"), "{s}");
    }
}
