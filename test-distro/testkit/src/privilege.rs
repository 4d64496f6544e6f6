//! Running a command with fewer privileges, from Rust: what `setpriv
//! --reuid --regid --clear-groups` and `capsh --drop` do, without needing
//! either tool (the test distro has neither).
//!
//! Both act in the child between fork and exec ([`CommandExt::pre_exec`](std::os::unix::process::CommandExt::pre_exec)),
//! so the test process keeps its own privileges.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// A capability, by its number in `<linux/capability.h>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap(pub u32);

impl Cap {
    pub const NET_ADMIN: Cap = Cap(12);
    pub const SYS_ADMIN: Cap = Cap(21);
    pub const PERFMON: Cap = Cap(38);
    pub const BPF: Cap = Cap(39);
}

/// User and group `nobody` on Debian (and in the test distro, which has no
/// passwd file: the number is all the kernel needs).
pub const NOBODY: u32 = 65534;

/// Makes `cmd` run as uid and gid [`NOBODY`] with no supplementary groups.
/// Changing every uid away from 0 clears the permitted, effective and
/// ambient capabilities, as for any unprivileged user.
pub fn as_nobody(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (setgroups, setresgid, setresuid) on
    // values it owns; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            // Groups and gid first: once the uid is not 0, they can no longer change.
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setresgid(NOBODY, NOBODY, NOBODY))?;
            check(libc::setresuid(NOBODY, NOBODY, NOBODY))?;
            Ok(())
        })
    }
}

/// Makes `cmd` run without `caps`, whoever runs it: each is dropped from the
/// bounding set (which caps what root gains at exec) and the ambient set is
/// cleared, so the program starts without them, as under `capsh --drop=...`.
pub fn without_caps<'a>(cmd: &'a mut Command, caps: &[Cap]) -> &'a mut Command {
    let caps: Vec<libc::c_ulong> = caps.iter().map(|c| libc::c_ulong::from(c.0)).collect();
    // SAFETY: the closure runs in the forked child before exec and only makes
    // prctl calls (async-signal-safe system calls) with integer arguments
    // from a vector allocated before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for cap in &caps {
                check(libc::prctl(libc::PR_CAPBSET_DROP, *cap, 0, 0, 0))?;
            }
            let clear_all = libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong;
            check(libc::prctl(libc::PR_CAP_AMBIENT, clear_all, 0, 0, 0))?;
            Ok(())
        })
    }
}

/// Makes `cmd` run as `uid:gid` (no supplementary groups) holding exactly
/// `caps`, as a systemd service with `User=` and `AmbientCapabilities=`
/// does: the capabilities are kept across the uid change
/// (`PR_SET_KEEPCAPS`), then made the ambient set, which alone survives the
/// exec of a program without file capabilities.
pub fn as_user_with_caps<'a>(
    cmd: &'a mut Command,
    uid: u32,
    gid: u32,
    caps: &[Cap],
) -> &'a mut Command {
    let mask = caps
        .iter()
        .filter(|c| c.0 < 64)
        .fold(0u64, |m, c| m | (1 << c.0));
    let caps: Vec<libc::c_ulong> = caps.iter().map(|c| libc::c_ulong::from(c.0)).collect();
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (prctl, setgroups, setresgid, setresuid,
    // capset) on values it owns or that were allocated before the fork; it
    // allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0))?;
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setresgid(gid, gid, gid))?;
            check(libc::setresuid(uid, uid, uid))?;
            set_caps(mask)?;
            let clear_all = libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong;
            check(libc::prctl(libc::PR_CAP_AMBIENT, clear_all, 0, 0, 0))?;
            let raise = libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong;
            for cap in &caps {
                check(libc::prctl(libc::PR_CAP_AMBIENT, raise, *cap, 0, 0))?;
            }
            Ok(())
        })
    }
}

/// Sets this thread's effective, permitted and inheritable sets to `mask`
/// (capset(2), version 3: two 32-bit halves).
fn set_caps(mask: u64) -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let half = |bits: u32| Data {
        effective: bits,
        permitted: bits,
        inheritable: bits,
    };
    let data = [half(mask as u32), half((mask >> 32) as u32)];
    // SAFETY: the header and the two data structs have the layout capset(2)
    // reads for version 3 and live across the call.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn check(ret: libc::c_int) -> std::io::Result<()> {
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Whether the capability is in this process's effective set, from
/// `/proc/self/status` (`CapEff`).
pub fn has_effective(cap: Cap) -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|mask| cap.0 < 64 && mask & (1 << cap.0) != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The child's `CapEff` line, as the kernel reports it.
    fn child_cap_eff(cmd: &mut Command) -> u64 {
        let out = cmd
            .args(["-c", "grep CapEff /proc/self/status"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let hex = text.trim().strip_prefix("CapEff:").unwrap().trim();
        u64::from_str_radix(hex, 16).unwrap()
    }

    #[test]
    fn dropped_caps_are_gone_after_exec() {
        // Only meaningful with the capabilities to drop (root); a plain user
        // has none, and then the child's set is empty either way.
        if !has_effective(Cap::NET_ADMIN) {
            return;
        }
        let mut sh = Command::new("sh");
        let eff = child_cap_eff(without_caps(&mut sh, &[Cap::NET_ADMIN, Cap::BPF]));
        assert_eq!(eff & (1 << Cap::NET_ADMIN.0), 0, "{eff:#x}");
        assert_eq!(eff & (1 << Cap::BPF.0), 0, "{eff:#x}");
        assert_ne!(eff & (1 << Cap::SYS_ADMIN.0), 0, "{eff:#x}");
        let mut sh = Command::new("sh");
        assert_eq!(child_cap_eff(as_nobody(&mut sh)), 0);
    }
}
