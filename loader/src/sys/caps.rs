//! Which privileges bpf(2) needs, which this process has, and the
//! `RLIMIT_MEMLOCK` charge of kernels before 5.11. Used to turn an EPERM into
//! a message that names the missing capability.

use std::fmt;

use super::Cmd;

/// The capabilities the kernel checks for eBPF (`include/uapi/linux/capability.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Capability {
    /// Minimum kernel version: 5.8 (before, CAP_SYS_ADMIN covered it).
    Bpf = 39,
    /// Minimum kernel version: 5.8 (before, CAP_SYS_ADMIN covered it).
    Perfmon = 38,
    /// Networking hooks (XDP, tc, netfilter, cgroup socket programs).
    NetAdmin = 12,
    /// Everything, on kernels before 5.8; walking objects by id on all.
    SysAdmin = 21,
    /// Raising `RLIMIT_MEMLOCK` past its hard limit.
    SysResource = 24,
    /// Reading a tracepoint's id from a tracefs that is root's alone (its
    /// default mode, 0700).
    DacReadSearch = 2,
}

impl Capability {
    /// The capability's name as `capabilities(7)` spells it (`CAP_BPF`).
    pub fn name(self) -> &'static str {
        match self {
            Capability::NetAdmin => "CAP_NET_ADMIN",
            Capability::SysAdmin => "CAP_SYS_ADMIN",
            Capability::SysResource => "CAP_SYS_RESOURCE",
            Capability::Perfmon => "CAP_PERFMON",
            Capability::Bpf => "CAP_BPF",
            Capability::DacReadSearch => "CAP_DAC_READ_SEARCH",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The effective capability set (`CapEff` of /proc/self/status), or `None`
/// when it cannot be read.
pub fn effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_cap_eff(&status)
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Whether `cap` is in the effective set `eff`.
pub fn has(eff: u64, cap: Capability) -> bool {
    eff & (1u64 << cap as u32) != 0
}

/// Of `needed`, those this process lacks. CAP_SYS_ADMIN stands in for
/// CAP_BPF and CAP_PERFMON (it is what kernels before 5.8 check, and newer
/// ones still accept it), so with it nothing is reported missing.
pub fn missing(needed: &[Capability]) -> Vec<Capability> {
    let Some(eff) = effective() else {
        return Vec::new();
    };
    missing_from(eff, needed)
}

fn missing_from(eff: u64, needed: &[Capability]) -> Vec<Capability> {
    needed
        .iter()
        .copied()
        .filter(|&c| {
            let covered = has(eff, Capability::SysAdmin)
                && matches!(c, Capability::Bpf | Capability::Perfmon);
            !has(eff, c) && !covered
        })
        .collect()
}

/// What the kernel checks for `cmd` beyond the program's or link's own type
/// (tracing programs add CAP_PERFMON, networking ones CAP_NET_ADMIN).
pub fn needed_for(cmd: Cmd) -> &'static [Capability] {
    match cmd {
        // Reading maps through an fd the caller already holds needs nothing more.
        Cmd::MapLookupElem
        | Cmd::MapUpdateElem
        | Cmd::MapDeleteElem
        | Cmd::MapGetNextKey
        | Cmd::MapLookupAndDeleteElem
        | Cmd::MapFreeze
        | Cmd::MapLookupBatch
        | Cmd::MapLookupAndDeleteBatch
        | Cmd::MapUpdateBatch
        | Cmd::MapDeleteBatch
        | Cmd::ObjGetInfoByFd
        | Cmd::ObjPin
        | Cmd::ObjGet => &[],
        // Walking or opening objects by id is reserved to CAP_SYS_ADMIN.
        Cmd::ProgGetNextId
        | Cmd::MapGetNextId
        | Cmd::BtfGetNextId
        | Cmd::LinkGetNextId
        | Cmd::ProgGetFdById
        | Cmd::MapGetFdById
        | Cmd::BtfGetFdById
        | Cmd::LinkGetFdById
        | Cmd::EnableStats
        | Cmd::TaskFdQuery => &[Capability::SysAdmin],
        Cmd::ProgAttach | Cmd::ProgDetach | Cmd::ProgQuery => {
            &[Capability::Bpf, Capability::NetAdmin]
        }
        _ => &[Capability::Bpf],
    }
}

/// The `RLIMIT_MEMLOCK` soft limit in bytes, `None` when unlimited.
#[allow(
    clippy::useless_conversion,
    reason = "rlim_t is 32 bits on 32-bit arm, 64 on 64-bit hosts"
)]
pub fn memlock_limit() -> Option<u64> {
    // SAFETY: an all-zero rlimit is valid; getrlimit fills it.
    let mut r: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `r` is a valid rlimit we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0 {
        return None;
    }
    (r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur.into())
}

/// `RLIMIT_MEMLOCK` could not be raised to unlimited.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot raise RLIMIT_MEMLOCK ({} KiB) to unlimited; kernels before 5.11 charge eBPF maps and programs to it, so loads may fail with EPERM (grant CAP_SYS_RESOURCE or run `ulimit -l unlimited` first)",
    .limit / 1024
)]
pub struct MemlockError {
    /// The soft limit that stays in force, in bytes.
    pub limit: u64,
    /// Why setrlimit(2) refused.
    #[source]
    pub source: std::io::Error,
}

/// Raises `RLIMIT_MEMLOCK` to unlimited. Kernels before 5.11 charge maps and
/// programs to it (newer ones to the memory cgroup, where this is harmless);
/// raising the hard limit needs CAP_SYS_RESOURCE. On failure, the error says
/// what the limit is and why it matters.
pub fn raise_memlock() -> Result<(), MemlockError> {
    if memlock_limit().is_none() {
        return Ok(());
    }
    let r = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) } == 0 {
        return Ok(());
    }
    Err(MemlockError {
        source: std::io::Error::last_os_error(),
        limit: memlock_limit().unwrap_or(0),
    })
}

/// Whether this process is outside the initial user namespace (whose
/// `uid_map` maps every id to itself), where capabilities do not reach bpf().
pub fn in_child_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|map| {
        let fields: Vec<&str> = map.split_whitespace().collect();
        fields != ["0", "0", "4294967295"]
    })
}

/// The explanation appended to a refusal of `cmd` for want of privilege:
/// which capability the command needs and, when readable, which of them
/// this process lacks. Only EPERM is such a refusal, and EACCES on a pin
/// path (file permissions); a verifier rejection (EACCES or EINVAL from
/// PROG_LOAD) gets no hint: its log says why.
pub fn eperm_hint(cmd: Cmd, errno: i32) -> String {
    match (errno, cmd) {
        (libc::EACCES, Cmd::ObjGet | Cmd::ObjPin) => {
            return " (the pin or its directory is not accessible to this user)".into();
        }
        (libc::EPERM, _) => {}
        _ => return String::new(),
    }
    // A map refuses writes from user space once frozen (BPF_MAP_FREEZE, as
    // the loader does to `.rodata`) or when its fd was opened read-only.
    if matches!(
        cmd,
        Cmd::MapUpdateElem
            | Cmd::MapDeleteElem
            | Cmd::MapLookupAndDeleteElem
            | Cmd::MapUpdateBatch
            | Cmd::MapDeleteBatch
            | Cmd::MapLookupAndDeleteBatch
    ) {
        return " (the map is frozen, or this fd of it was opened read-only: user space cannot write it)".into();
    }
    let needed = needed_for(cmd);
    if needed.is_empty() {
        return " (the pin or object is not accessible to this user)".into();
    }
    let names: Vec<&str> = needed.iter().map(|c| c.name()).collect();
    let mut s = format!(" (needs {}", names.join(" and "));
    if matches!(
        cmd,
        Cmd::ProgLoad | Cmd::LinkCreate | Cmd::RawTracepointOpen
    ) {
        s += "; tracing programs also CAP_PERFMON, networking ones CAP_NET_ADMIN";
    }
    match effective().map(|eff| missing_from(eff, needed)) {
        _ if in_child_user_namespace() => {
            s += "; this process is in a user namespace, where capabilities count for bpf() only through a BPF token from a bpffs that delegates the command, map, program and attach types";
        }
        Some(m) if !m.is_empty() => {
            let names: Vec<&str> = m.iter().map(|c| c.name()).collect();
            s += &format!("; this process lacks {}", names.join(", "));
        }
        Some(_) => {
            s += "; the capabilities are present, so a LSM, lockdown or sysctl kernel.unprivileged_bpf_disabled refused";
        }
        None => {}
    }
    if matches!(cmd, Cmd::MapCreate | Cmd::ProgLoad | Cmd::BtfLoad)
        && let Some(limit) = memlock_limit()
    {
        s += &format!(
            "; or, before 5.11, RLIMIT_MEMLOCK ({} KiB) is too small",
            limit / 1024
        );
    }
    s.push(')');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cap_eff() {
        let status = "Name:\tkiln\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        let eff = parse_cap_eff(status).unwrap();
        assert!(has(eff, Capability::Bpf) && has(eff, Capability::NetAdmin));
        assert_eq!(parse_cap_eff("CapEff:\t0000000000000000\n"), Some(0));
    }

    #[test]
    fn memlock_is_raised_or_explained() {
        match raise_memlock() {
            Ok(()) => assert_eq!(memlock_limit(), None, "raised to unlimited"),
            Err(e) => {
                let e = e.to_string();
                assert!(
                    e.contains("RLIMIT_MEMLOCK") && e.contains("CAP_SYS_RESOURCE"),
                    "{e}"
                );
                let eff = effective().unwrap_or(0);
                assert!(
                    !has(eff, Capability::SysResource),
                    "refused although CAP_SYS_RESOURCE is held: {e}"
                );
            }
        }
    }

    #[test]
    fn hints_only_where_privilege_refused() {
        // A verifier rejection: the log explains it, not the capabilities.
        assert_eq!(eperm_hint(Cmd::ProgLoad, libc::EACCES), "");
        assert_eq!(eperm_hint(Cmd::ProgLoad, libc::EINVAL), "");
        assert_eq!(eperm_hint(Cmd::MapCreate, libc::E2BIG), "");
        assert!(eperm_hint(Cmd::ProgLoad, libc::EPERM).starts_with(" (needs CAP_BPF"));
        assert_eq!(
            eperm_hint(Cmd::MapUpdateElem, libc::EPERM),
            " (the map is frozen, or this fd of it was opened read-only: user space cannot write it)"
        );
        assert_eq!(
            eperm_hint(Cmd::ObjGet, libc::EACCES),
            " (the pin or its directory is not accessible to this user)"
        );
    }

    #[test]
    fn sys_admin_covers_bpf_and_perfmon_only() {
        let sys_admin = 1u64 << Capability::SysAdmin as u32;
        assert_eq!(
            missing_from(
                sys_admin,
                &[Capability::Bpf, Capability::Perfmon, Capability::NetAdmin]
            ),
            vec![Capability::NetAdmin]
        );
        assert_eq!(
            missing_from(0, &[Capability::Bpf]),
            vec![Capability::Bpf],
            "an empty set lacks CAP_BPF"
        );
    }
}
