//! perf_event programs on the cpu-clock of every CPU, and BPF cookies on
//! perf-event-based attachments (tracepoint, uprobe) read back by the
//! program with bpf_get_attach_cookie.

mod attach_util;

use attach_util::*;
use kiln_loader::links::perf::{SampleRate, attach_perf_event_with_cookie};
use kiln_loader::links::tracepoint::attach_tracepoint;
use kiln_loader::links::uprobe::{attach_uprobe_offset, symbol_file_offset};
use kiln_loader::links::{Link, LinkType};
use kiln_loader::perf_event::{PerfType, sw};
use kiln_testkit::{Need, test};
use std::time::{Duration, Instant};

/// Keeps `cpu` busy for `d` (pinned thread), so its clock surely ticks.
fn spin_on(cpu: u32, d: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut set);
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
        }
        let end = Instant::now() + d;
        let mut x = 0u64;
        while Instant::now() < end {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    })
}

fn online() -> Result<Vec<u32>, Box<dyn std::error::Error + Send + Sync>> {
    Ok(kiln_loader::util::online_cpus()?)
}

fn perf_event_cpu_clock_runs_on_every_cpu() -> TestResult {
    let (_, ebpf) = load_object("attach_cookie")?;
    let hits = map(&ebpf, "per_cpu_hits")?;
    let cookies = map(&ebpf, "cookies")?;
    let p = prog(&ebpf, "on_clock")?;
    const COOKIE: u64 = 0xC0FFEE;
    let mut links = attach_perf_event_with_cookie(
        p.fd(),
        PerfType::SOFTWARE,
        sw::CPU_CLOCK,
        SampleRate::Frequency(1000),
        None,
        COOKIE,
    )?;
    let cpus = online()?;
    check(links.len() == cpus.len(), || {
        format!("{} links for {} cpus", links.len(), cpus.len())
    })?;
    if links[0].is_bpf_link() {
        let info = links[0].info()?;
        check(info.link_type == LinkType::PerfEvent, || {
            format!("{info:?}")
        })?;
    }
    let spinners: Vec<_> = cpus
        .iter()
        .map(|c| spin_on(*c, Duration::from_millis(300)))
        .collect();
    for s in spinners {
        let _ = s.join();
    }
    for cpu in &cpus {
        check(count(hits, *cpu) > 0, || {
            format!("cpu {cpu}: the cpu-clock program never ran")
        })?;
    }
    check(hash_count(cookies, COOKIE) > 0, || {
        "the program did not see the link's cookie".into()
    })?;
    // perf links cannot swap programs in place.
    check(links[0].update(p.fd(), None).is_err(), || {
        "perf link update succeeded".into()
    })?;
    for l in &mut links {
        l.detach()?;
    }
    let before: Vec<u64> = cpus.iter().map(|c| count(hits, *c)).collect();
    let s = spin_on(cpus[0], Duration::from_millis(100));
    let _ = s.join();
    let after: Vec<u64> = cpus.iter().map(|c| count(hits, *c)).collect();
    check(before == after, || {
        format!("runs after detach: {before:?} -> {after:?}")
    })
}

fn getppid_n(n: usize) {
    for _ in 0..n {
        // SAFETY: getppid has no preconditions.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
}

fn tracepoint_cookies_reach_the_program() -> TestResult {
    let (_, ebpf) = load_object("attach_cookie")?;
    let cookies = map(&ebpf, "cookies")?;
    let p = prog(&ebpf, "tp_cookie")?;
    // One program, attached with one cookie, then with another: each run
    // sees the cookie of the attachment it runs under.
    let mut a = attach_tracepoint(p.fd(), "syscalls", "sys_enter_getppid", 41)?;
    getppid_n(5);
    check(hash_count(cookies, 41) >= 5, || {
        format!("cookie 41: {} hits", hash_count(cookies, 41))
    })?;
    a.detach()?;
    let a0 = hash_count(cookies, 41);
    let mut b = attach_tracepoint(p.fd(), "syscalls", "sys_enter_getppid", 42)?;
    getppid_n(5);
    check(hash_count(cookies, 42) >= 5, || {
        format!("cookie 42: {} hits", hash_count(cookies, 42))
    })?;
    check(hash_count(cookies, 41) == a0, || {
        "detached link still runs".into()
    })?;
    check(hash_count(cookies, 0) == 0, || {
        "a hit without the cookie".into()
    })?;
    b.detach()?;
    let b0 = hash_count(cookies, 42);
    getppid_n(5);
    check(hash_count(cookies, 42) == b0, || "runs after detach".into())
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn kiln_cookie_target(x: u64) -> u64 {
    std::hint::black_box(x ^ 0x55)
}

fn no_uprobe_pmu() -> Option<String> {
    (!std::path::Path::new("/sys/bus/event_source/devices/uprobe").exists())
        .then(|| "kernel has no uprobe PMU (CONFIG_UPROBE_EVENTS off)".into())
}

fn uprobe_cookie_reaches_the_program() -> TestResult {
    let (_, ebpf) = load_object("attach_cookie")?;
    let cookies = map(&ebpf, "cookies")?;
    let p = prog(&ebpf, "uprobe_cookie")?;
    let exe = std::env::current_exe()?;
    let off = symbol_file_offset(&exe, "kiln_cookie_target")?;
    let pid = Some(std::process::id() as i32);
    let mut link = attach_uprobe_offset(p.fd(), &exe, off, false, pid, 77)?;
    for i in 0..4 {
        std::hint::black_box(kiln_cookie_target(std::hint::black_box(i)));
    }
    check(hash_count(cookies, 77) >= 4, || {
        format!("cookie 77: {} hits", hash_count(cookies, 77))
    })?;
    link.detach()?;
    let n = hash_count(cookies, 77);
    std::hint::black_box(kiln_cookie_target(1));
    check(hash_count(cookies, 77) == n, || "runs after detach".into())
}

fn main() {
    let needs = [
        Need::Root,
        Need::Bpf,
        Need::Probe("bpf_get_attach_cookie", no_bpf_cookie),
    ];
    kiln_testkit::run(vec![
        test(
            "perf_event_cpu_clock_runs_on_every_cpu",
            &needs,
            perf_event_cpu_clock_runs_on_every_cpu,
        ),
        test(
            "tracepoint_cookies_reach_the_program",
            &needs,
            tracepoint_cookies_reach_the_program,
        ),
        test(
            "uprobe_cookie_reaches_the_program",
            &[
                Need::Root,
                Need::Bpf,
                Need::Probe("bpf_get_attach_cookie", no_bpf_cookie),
                Need::Probe("uprobe PMU", no_uprobe_pmu),
            ],
            uprobe_cookie_reaches_the_program,
        ),
    ]);
}
