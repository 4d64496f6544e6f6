//! kprobe.multi and uprobe.multi links with per-probe cookies, and the
//! legacy tracefs `kprobe_events` path. kprobes run in the VMs only (the
//! host kernel has none); uprobe.multi runs wherever the kernel has it (6.6+).

mod attach_util;

use attach_util::*;
use kiln_loader::links::kprobe::{attach_kprobe_tracefs, syscall_symbol};
use kiln_loader::links::multi::{
    attach_kprobe_multi, attach_uprobe_multi, resolve_elf_glob, resolve_kernel_glob,
};
use kiln_loader::links::{Link, LinkType};
use kiln_obj::{AttachType, ProgramKind, ProgramType};
use kiln_testkit::{Need, test};

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn kiln_multi_target_a(x: u64) -> u64 {
    std::hint::black_box(x + 1)
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn kiln_multi_target_b(x: u64) -> u64 {
    std::hint::black_box(x + 2)
}

fn kind(at: AttachType) -> ProgramKind {
    ProgramKind::Other {
        program_type: ProgramType::KPROBE,
        attach_type: Some(at),
    }
}

/// Whether a trivial program attaches with `attach`: the kernel's own answer.
fn can_attach(
    at: AttachType,
    attach: impl FnOnce(std::os::fd::BorrowedFd<'_>) -> Result<(), kiln_loader::links::LinkError>,
    what: &str,
) -> Option<String> {
    let map = match counters("probe") {
        Ok(m) => m,
        Err(e) => return Some(format!("cannot create a map: {e}")),
    };
    let p = match counter_prog(kind(at), map.fd(), 0, 0) {
        Ok(p) => p,
        Err(e) => return Some(format!("kernel refuses {what} programs: {e}")),
    };
    attach(p.fd())
        .err()
        .map(|e| format!("kernel cannot attach {what}: {e}"))
}

fn no_kprobe_multi() -> Option<String> {
    if !std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        return Some("kernel has no kprobes (CONFIG_KPROBES off); runs in the VMs".into());
    }
    can_attach(
        AttachType::TRACE_KPROBE_MULTI,
        |p| {
            let sym = syscall_symbol("getpid")?;
            attach_kprobe_multi(p, &[&sym], false, None).map(drop)
        },
        "kprobe.multi (needs 5.18 and fprobe)",
    )
}

fn no_uprobe_multi() -> Option<String> {
    can_attach(
        AttachType::TRACE_UPROBE_MULTI,
        |p| {
            let exe =
                std::env::current_exe().map_err(|e| kiln_loader::links::LinkError::Kernel {
                    mechanism: kiln_loader::links::Mechanism::UprobeMulti,
                    op: "current_exe",
                    target: String::new(),
                    source: e,
                })?;
            attach_uprobe_multi(p, &exe, &["kiln_multi_target_a"], false, None, None).map(drop)
        },
        "uprobe.multi (needs 6.6)",
    )
}

fn no_kprobe_events() -> Option<String> {
    if !std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        return Some("kernel has no kprobes (CONFIG_KPROBES off); runs in the VMs".into());
    }
    let root = kiln_loader::links::tracepoint::tracefs_root().ok()?;
    (!root.join("kprobe_events").exists()).then(|| "tracefs has no kprobe_events".into())
}

fn syscall_n(nr: libc::c_long, n: usize) {
    for _ in 0..n {
        // SAFETY: getppid/getpgid(0) have no preconditions and no side effects.
        unsafe { libc::syscall(nr, 0) };
    }
}

/// A function that runs on every 64-bit `name` syscall and that fprobe can
/// attach to, found by a glob over available_filter_functions (or kallsyms):
/// the arch entry (`__x64_sys_getppid`) where ftrace lists it, else the
/// common body (`__do_sys_getppid`; 6.12 x86 does not list the entries).
fn traceable_syscall(name: &str) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let suffix = format!("sys_{name}");
    let resolved = resolve_kernel_glob(&format!("*{suffix}"))?;
    check(resolved.iter().all(|f| f.ends_with(&suffix)), || {
        format!("*{suffix} matched {resolved:?}")
    })?;
    let entry = syscall_symbol(name)?;
    [entry, format!("__do_{suffix}"), format!("__se_{suffix}")]
        .into_iter()
        .find(|f| resolved.contains(f))
        .ok_or_else(|| format!("no traceable {suffix} in {resolved:?}").into())
}

fn kprobe_multi_cookies_per_function() -> TestResult {
    let (_, ebpf) = load_object("attach_cookie")?;
    let cookies = map(&ebpf, "cookies")?;
    let p = prog(&ebpf, "kmulti_cookie")?;
    let (a, b) = (traceable_syscall("getppid")?, traceable_syscall("getpgid")?);
    let mut link = attach_kprobe_multi(p.fd(), &[&a, &b], false, Some(&[101, 102]))?;
    check(link.info()?.link_type == LinkType::KprobeMulti, || {
        format!("{:?}", link.info())
    })?;
    syscall_n(libc::SYS_getppid, 3);
    syscall_n(libc::SYS_getpgid, 4);
    check(hash_count(cookies, 101) >= 3, || {
        format!("getppid cookie: {}", hash_count(cookies, 101))
    })?;
    check(hash_count(cookies, 102) >= 4, || {
        format!("getpgid cookie: {}", hash_count(cookies, 102))
    })?;
    // kprobe.multi links cannot swap programs.
    check(link.update(p.fd(), None).is_err(), || {
        "kprobe.multi update succeeded".into()
    })?;
    link.detach()?;
    let snap = (hash_count(cookies, 101), hash_count(cookies, 102));
    syscall_n(libc::SYS_getppid, 3);
    let now = (hash_count(cookies, 101), hash_count(cookies, 102));
    check(snap == now, || "runs after detach".into())
}

fn uprobe_multi_glob_with_cookies() -> TestResult {
    let (_, ebpf) = load_object("attach_cookie")?;
    let cookies = map(&ebpf, "cookies")?;
    let p = prog(&ebpf, "umulti_cookie")?;
    let exe = std::env::current_exe()?;
    let names = resolve_elf_glob(&exe, "kiln_multi_target_?")?;
    check(
        names == ["kiln_multi_target_a", "kiln_multi_target_b"],
        || format!("{names:?}"),
    )?;
    let pid = Some(std::process::id() as i32);
    let mut link = attach_uprobe_multi(
        p.fd(),
        &exe,
        &["kiln_multi_target_?"],
        false,
        pid,
        Some(&[201, 202]),
    )?;
    check(link.info()?.link_type == LinkType::UprobeMulti, || {
        format!("{:?}", link.info())
    })?;
    let call = |na: u64, nb: u64| {
        for i in 0..na {
            std::hint::black_box(kiln_multi_target_a(std::hint::black_box(i)));
        }
        for i in 0..nb {
            std::hint::black_box(kiln_multi_target_b(std::hint::black_box(i)));
        }
    };
    call(2, 5);
    check(
        hash_count(cookies, 201) == 2 && hash_count(cookies, 202) == 5,
        || {
            format!(
                "cookies 201/202: {}/{}",
                hash_count(cookies, 201),
                hash_count(cookies, 202)
            )
        },
    )?;
    check(link.update(p.fd(), None).is_err(), || {
        "uprobe.multi update succeeded".into()
    })?;
    link.detach()?;
    call(2, 2);
    check(
        hash_count(cookies, 201) == 2 && hash_count(cookies, 202) == 5,
        || "runs after detach".into(),
    )
}

fn kprobe_tracefs_fallback_counts_and_cleans_up() -> TestResult {
    let map = counters("kp_legacy")?;
    let kind = ProgramKind::Kprobe {
        function: None,
        offset: 0,
        retprobe: false,
    };
    let p0 = counter_prog(kind.clone(), map.fd(), 0, 0)?;
    let p1 = counter_prog(kind, map.fd(), 1, 0)?;
    let sym = syscall_symbol("getppid")?;
    let mut link = attach_kprobe_tracefs(p0.fd(), &sym, 0, false, 0)?;
    let events = kiln_loader::links::tracepoint::tracefs_root()?.join("kprobe_events");
    let mine = format!("kiln_kprobe_{}_", std::process::id());
    check(std::fs::read_to_string(&events)?.contains(&mine), || {
        "no kiln probe in kprobe_events".into()
    })?;
    counts_updates_detaches(&mut link, &map, (&p0, &p1), Update::Refused, 3, &|| {
        syscall_n(libc::SYS_getppid, 3);
        Ok(())
    })?;
    drop(link);
    let left = std::fs::read_to_string(&events)?;
    check(!left.contains(&mine), || {
        format!("probe left behind in kprobe_events:\n{left}")
    })
}

fn main() {
    kiln_testkit::run(vec![
        test(
            "kprobe_multi_cookies_per_function",
            &[
                Need::Root,
                Need::Bpf,
                Need::Probe("kprobe.multi", no_kprobe_multi),
            ],
            kprobe_multi_cookies_per_function,
        ),
        test(
            "uprobe_multi_glob_with_cookies",
            &[
                Need::Root,
                Need::Bpf,
                Need::Probe("uprobe.multi", no_uprobe_multi),
            ],
            uprobe_multi_glob_with_cookies,
        ),
        test(
            "kprobe_tracefs_fallback_counts_and_cleans_up",
            &[
                Need::Root,
                Need::Bpf,
                Need::Probe("kprobe_events", no_kprobe_events),
            ],
            kprobe_tracefs_fallback_counts_and_cleans_up,
        ),
    ]);
}
