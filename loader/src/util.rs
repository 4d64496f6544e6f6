//! Small facts about the running system the loader needs.

use std::sync::OnceLock;

/// Parses a CPU list such as `0-3,5,7-8` (the format of
/// `/sys/devices/system/cpu/possible`) into the CPU numbers it names.
pub fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if b < a {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// The possible CPUs: the per-CPU map value slots and perf buffer rings.
pub fn possible_cpus() -> Result<&'static [u32], std::io::Error> {
    static CPUS: OnceLock<Result<Vec<u32>, String>> = OnceLock::new();
    let r = CPUS.get_or_init(|| {
        let path = "/sys/devices/system/cpu/possible";
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        parse_cpu_list(&text).ok_or_else(|| format!("{path}: cannot parse {text:?}"))
    });
    match r {
        Ok(v) => Ok(v),
        Err(e) => Err(std::io::Error::other(e.clone())),
    }
}

/// Number of slots per-CPU maps have: the highest possible CPU plus one.
pub fn nr_possible_cpus() -> Result<usize, std::io::Error> {
    Ok(possible_cpus()?.iter().max().map_or(1, |m| *m as usize + 1))
}

/// The CPUs online now (`/sys/devices/system/cpu/online`).
pub fn online_cpus() -> Result<Vec<u32>, std::io::Error> {
    let path = "/sys/devices/system/cpu/online";
    let text = std::fs::read_to_string(path)?;
    parse_cpu_list(&text)
        .ok_or_else(|| std::io::Error::other(format!("{path}: cannot parse {text:?}")))
}

/// The system's page size in bytes.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n <= 0 { 4096 } else { n as usize }
}

/// `LINUX_VERSION_CODE` of the running kernel, from uname's release string.
/// Only old kernels (before 5.0) check it, for kprobe programs.
pub fn kernel_version_code() -> u32 {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return 0;
    };
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b, c) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    (a << 16) | (b << 8) | c.min(255)
}

/// A C string field (NUL-padded) as a Rust string.
pub fn c_name(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The name the kernel keeps for a map or program created under `name`
/// (what its info reports): at most 15 bytes, only ASCII alphanumerics, `_`
/// and `.`.
pub fn kernel_object_name(name: &str) -> String {
    c_name(&crate::sys::attr::object_name(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3\n"), Some(vec![0, 1, 2, 3]));
        assert_eq!(parse_cpu_list("0,2-3,7"), Some(vec![0, 2, 3, 7]));
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }
}
