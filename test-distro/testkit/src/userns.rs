//! Running a command the way a container runs it under BPF tokens: as an
//! unprivileged user, inside new user, mount and network namespaces (the
//! network one owned by the user namespace, so that networking hooks on its
//! interfaces are the container's to attach), with a bpffs
//! created in that user namespace and delegated by this (privileged) process.
//!
//! The steps follow the kernel's token selftests: the child unshares and
//! opens a bpffs context (`fsopen`), which makes the user namespace its
//! owner; the parent, which alone may grant delegation, sets the
//! `delegate_*` options, creates the superblock and mounts it (`fsmount`);
//! the child moves that mount into its own view and runs the command. The
//! file descriptors travel over a socket pair (SCM_RIGHTS).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

/// What a delegated run left: the command's output, and the bpffs, which
/// stays alive (with its pins) for as long as this value does.
pub struct DelegatedRun {
    pub output: Output,
    bpffs: OwnedFd,
}

impl DelegatedRun {
    /// A path to the bpffs's root from this process (it is mounted only in the
    /// child's namespace): pins are read under it.
    pub fn bpffs_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.bpffs.as_raw_fd()))
    }
}

/// Whether this process can create user, mount and network namespaces (as the
/// delegated runs do), answered by trying it in a throwaway child.
pub fn userns_unavailable_reason() -> Option<String> {
    let mut probe = Command::new("/bin/true");
    // SAFETY: the closure calls only unshare, which is async-signal-safe.
    unsafe {
        probe.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    match probe.status() {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("/bin/true in a new user namespace: {s}")),
        Err(e) => Some(format!(
            "cannot create a user, mount and network namespace: {e} (user.max_user_namespaces, a LSM or seccomp refuse it)"
        )),
    }
}

/// Runs `cmd` as `uid:gid` (mapped to root inside new user, mount and
/// network namespaces, so it holds no capability outside them) with a bpffs mounted
/// at `mount_at` (in its view) that delegates `options`
/// (`("delegate_cmds", "map_create:prog_load")`, ...).
pub fn run_delegated(
    mut cmd: Command,
    uid: u32,
    gid: u32,
    mount_at: &Path,
    options: &[(&str, &str)],
) -> Result<DelegatedRun, String> {
    let (parent_sock, child_sock) = socket_pair()?;
    let mount_at = CString::new(mount_at.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    let options: Vec<(CString, CString)> = options
        .iter()
        .map(|(k, v)| Ok((CString::new(*k)?, CString::new(*v)?)))
        .collect::<Result<_, std::ffi::NulError>>()
        .map_err(|e| e.to_string())?;
    let child_raw = child_sock.as_raw_fd();
    // SAFETY: between fork and exec the closure makes only raw syscalls on
    // memory it owns (no allocation, no locks): unshare, sendmsg/recvmsg,
    // setgroups/setresgid/setresuid, fsopen, mount, move_mount, close.
    unsafe {
        cmd.pre_exec(move || child_side(child_raw, &mount_at));
    }
    let server = std::thread::spawn(move || parent_side(parent_sock, uid, gid, &options));
    let output = cmd.output();
    drop(child_sock);
    let served = server
        .join()
        .map_err(|_| "the delegating thread panicked".to_string())?;
    let output = output.map_err(|e| format!("running {cmd:?} delegated: {e}"))?;
    let bpffs = served?;
    Ok(DelegatedRun { output, bpffs })
}

fn socket_pair() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into `fds`.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(format!("socketpair: {}", io::Error::last_os_error()));
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// In the child, before exec. Returns the errno of the first failed step.
fn child_side(sock: RawFd, mount_at: &CString) -> io::Result<()> {
    let check = |r: libc::c_long| {
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    };
    // SAFETY (whole block): raw syscalls on integers, the NUL-terminated
    // strings above and stack buffers, each valid for its call.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWNET).into())?;
        send_fd(sock, &libc::getpid().to_ne_bytes(), None)?;
        let mut ack = [0u8; 1];
        if recv_fd(sock, &mut ack)?.0 != 1 {
            return Err(io::Error::from_raw_os_error(libc::EPIPE));
        }
        // Root inside, `uid:gid` outside; no supplementary group of the parent's.
        check(libc::setgroups(0, std::ptr::null()).into())?;
        check(libc::setresgid(0, 0, 0).into())?;
        check(libc::setresuid(0, 0, 0).into())?;
        let fs = check(libc::syscall(
            libc::SYS_fsopen,
            c"bpf".as_ptr(),
            FSOPEN_CLOEXEC,
        ))? as RawFd;
        send_fd(sock, b"o", Some(fs))?;
        libc::close(fs);
        let (_, mnt) = recv_fd(sock, &mut ack)?;
        let mnt = mnt.ok_or_else(|| io::Error::from_raw_os_error(libc::EPIPE))?;
        check(
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
            .into(),
        )?;
        check(libc::syscall(
            libc::SYS_move_mount,
            mnt,
            c"".as_ptr(),
            libc::AT_FDCWD,
            mount_at.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        ))?;
        libc::close(mnt);
    }
    Ok(())
}

/// In this process: maps the child's ids, delegates and mounts its bpffs.
fn parent_side(
    sock: OwnedFd,
    uid: u32,
    gid: u32,
    options: &[(CString, CString)],
) -> Result<OwnedFd, String> {
    let sock = sock.as_raw_fd();
    let mut pid = [0u8; 4];
    match recv_fd(sock, &mut pid) {
        Ok((4, _)) => {}
        Ok(_) => return Err("the child ended before unsharing its namespaces".into()),
        Err(e) => return Err(format!("waiting for the child: {e}")),
    }
    let pid = i32::from_ne_bytes(pid);
    for (file, line) in [
        ("uid_map", format!("0 {uid} 1\n")),
        ("gid_map", format!("0 {gid} 1\n")),
    ] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, line).map_err(|e| format!("writing {path}: {e}"))?;
    }
    send_fd(sock, b"m", None).map_err(|e| format!("telling the child: {e}"))?;
    let (_, fs) =
        recv_fd(sock, &mut [0u8; 1]).map_err(|e| format!("receiving the bpffs context: {e}"))?;
    let fs = fs.ok_or("the child sent no bpffs context")?;
    // SAFETY: the descriptor just arrived with SCM_RIGHTS; nothing else owns it.
    let fs = unsafe { OwnedFd::from_raw_fd(fs) };
    let config = |cmd: libc::c_uint, key: *const libc::c_char, value: *const libc::c_char| {
        // SAFETY: `fs` is a live fs context; key and value are NUL-terminated or null.
        unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, key, value, 0) }
    };
    for (key, value) in options {
        if config(FSCONFIG_SET_STRING, key.as_ptr(), value.as_ptr()) != 0 {
            return Err(format!(
                "fsconfig {}={}: {}",
                key.to_string_lossy(),
                value.to_string_lossy(),
                io::Error::last_os_error()
            ));
        }
    }
    if config(FSCONFIG_CMD_CREATE, std::ptr::null(), std::ptr::null()) != 0 {
        return Err(format!(
            "creating the bpffs: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: fsmount on the live context; the result is a new descriptor.
    let mnt = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
    if mnt < 0 {
        return Err(format!("fsmount: {}", io::Error::last_os_error()));
    }
    // SAFETY: fresh descriptor owned by nobody else.
    let mnt = unsafe { OwnedFd::from_raw_fd(mnt as RawFd) };
    send_fd(sock, b"f", Some(mnt.as_raw_fd())).map_err(|e| format!("sending the mount: {e}"))?;
    Ok(mnt)
}

/// Room for one descriptor's control message, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct FdControl([u8; 32]);

/// Sends `data` and, with `fd`, a copy of the descriptor. No allocation.
fn send_fd(sock: RawFd, data: &[u8], fd: Option<RawFd>) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut control = FdControl([0; 32]);
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive sendmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE/CMSG_LEN are arithmetic; CMSG_FIRSTHDR points into
        // `control`, which is larger than one descriptor's control message.
        unsafe {
            msg.msg_control = control.0.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(4) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(4) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
    }
    // SAFETY: `msg` describes live buffers.
    if unsafe { libc::sendmsg(sock, &msg, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives into `data` and the descriptor sent beside it, if any: the
/// length (0 when the peer closed) and the descriptor (raw, to be owned by
/// the caller).
fn recv_fd(sock: RawFd, data: &mut [u8]) -> io::Result<(usize, Option<RawFd>)> {
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut control = FdControl([0; 32]);
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive recvmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    // SAFETY: `msg` describes live, writable buffers.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled `control` up to `msg_controllen`; the header
    // is checked for SCM_RIGHTS before its data is read.
    let fd = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (!cmsg.is_null()
            && (*cmsg).cmsg_level == libc::SOL_SOCKET
            && (*cmsg).cmsg_type == libc::SCM_RIGHTS)
            .then(|| std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>()))
    };
    Ok((n as usize, fd))
}

/// Why BPF tokens are unavailable here, or `None` on a kernel that knows
/// BPF_TOKEN_CREATE (6.9+): an invalid bpffs fd is EBADF there, EINVAL before.
pub fn tokens_unavailable_reason() -> Option<String> {
    // union bpf_attr for BPF_TOKEN_CREATE: flags, bpffs_fd.
    let mut attr = [0u32; 2];
    attr[1] = u32::MAX;
    // SAFETY: BPF_TOKEN_CREATE (36) reads `size` bytes of `attr`, a live buffer of that size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            36,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr) as u32,
        )
    };
    let err = io::Error::last_os_error();
    match (r, err.raw_os_error()) {
        (r, _) if r >= 0 => None,
        (_, Some(libc::EBADF)) => None,
        _ => Some(format!(
            "the kernel has no BPF tokens (BPF_TOKEN_CREATE: {err}; 6.9+)"
        )),
    }
}
