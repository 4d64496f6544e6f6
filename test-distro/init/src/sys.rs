//! The few system calls PID 1 needs, each wrapped once.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in fixed strings")
}

/// Writes all of `buf` to stdout (the console the kernel gave PID 1).
pub fn write_console(mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: buf is a live slice; fd 1 is ours for the life of the process.
        let n = unsafe { libc::write(1, buf.as_ptr().cast(), buf.len()) };
        if n <= 0 {
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        buf = &buf[n as usize..];
    }
}

pub fn power_off() -> ! {
    // SAFETY: sync and reboot take no pointers; PID 1 may power off.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    // reboot() returned: nothing more can be done, and PID 1 must not exit
    // (that would panic the kernel and hide the real outcome).
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

fn mount(source: &str, target: &str, fstype: &str) -> io::Result<()> {
    std::fs::create_dir_all(target)?;
    let (s, t, f) = (cstr(source), cstr(target), cstr(fstype));
    // SAFETY: all three are NUL-terminated strings that outlive the call; data is null.
    let rc = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Mounts what tests expect; reports (but survives) a mount that fails,
/// except /proc, /sys and /dev, without which nothing works.
pub fn setup_mounts(mut report: impl FnMut(&str, String)) {
    for (src, target, fs, essential) in [
        ("proc", "/proc", "proc", true),
        ("sysfs", "/sys", "sysfs", true),
        ("devtmpfs", "/dev", "devtmpfs", true),
        ("bpf", "/sys/fs/bpf", "bpf", false),
        ("debugfs", "/sys/kernel/debug", "debugfs", false),
        ("tracefs", "/sys/kernel/tracing", "tracefs", false),
        ("cgroup2", "/sys/fs/cgroup", "cgroup2", false),
        ("tmpfs", "/tmp", "tmpfs", false),
        ("tmpfs", "/run", "tmpfs", false),
    ] {
        if let Err(e) = mount(src, target, fs) {
            if essential {
                panic!("mounting {fs} on {target}: {e}");
            }
            report(target, e.to_string());
        }
    }
}

/// `ip link set lo up`, by SIOCSIFFLAGS.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket takes no pointers; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket() and nobody else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: req is a live ifreq naming "lo"; the ioctl fills ifru_flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS just initialised the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: as above, with the flags to set.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn uptime_ms() -> i64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(-1, |s| (s * 1000.0) as i64)
}

/// `MODULE_INIT_COMPRESSED_FILE`: the kernel decompresses (5.17+, with
/// CONFIG_MODULE_DECOMPRESS).
const MODULE_INIT_COMPRESSED_FILE: libc::c_int = 4;

pub fn finit_module(path: &Path) -> io::Result<()> {
    let file = std::fs::File::open(path)?;
    let compressed = path
        .extension()
        .is_some_and(|e| e == "xz" || e == "zst" || e == "gz");
    let flags = if compressed {
        MODULE_INIT_COMPRESSED_FILE
    } else {
        0
    };
    let params = cstr("");
    // SAFETY: the fd is open for the call's duration; params is a NUL-terminated string.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            params.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a live array of two ints for the kernel to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are fresh descriptors owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// SIGKILL to the process group `pgid` (children are spawned as group leaders).
pub fn kill_group(pgid: u32) {
    // SAFETY: kill takes no pointers; a stale group only yields ESRCH.
    unsafe { libc::kill(-(pgid as libc::pid_t), libc::SIGKILL) };
}
