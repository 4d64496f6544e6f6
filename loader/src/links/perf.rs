//! Programs on perf events: the shared back end of tracepoints, kprobes and
//! uprobes, plus perf_event programs on software/hardware counters.
//!
//! Minimum kernel version: 4.1 (`PERF_EVENT_IOC_SET_BPF`); the `bpf_link`
//! form (`BPF_LINK_CREATE` with `BPF_PERF_EVENT`, pinnable) needs 5.15.

use super::{FdLink, Link, LinkError, Mechanism};
use crate::perf_event::{self, PerfEventAttr, PerfType};
use crate::sys::link_attr::{self, LinkCreateAttr, PerfEventExtra, fd_u32};
use kiln_obj::AttachType;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Something to undo when the perf event goes away (a legacy tracefs probe).
pub(crate) trait Cleanup: std::fmt::Debug + Send + Sync {}

/// A program running on one perf event.
#[derive(Debug)]
pub struct PerfLink {
    mechanism: Mechanism,
    target: String,
    /// The `bpf_link` (5.15+), or `None` when attached with the ioctl.
    link: Option<FdLink>,
    perf: Option<OwnedFd>,
    /// Dropped after `perf` (field order): removes a legacy tracefs probe.
    _cleanup: Option<Box<dyn Cleanup>>,
}

impl PerfLink {
    /// Whether this attachment is a pinnable `bpf_link`.
    pub fn is_bpf_link(&self) -> bool {
        self.link.is_some()
    }
}

/// Attaches `prog` to an open perf event: `BPF_LINK_CREATE` with
/// `BPF_PERF_EVENT` where the kernel has it, else `PERF_EVENT_IOC_SET_BPF`.
/// Enables the event either way.
pub(crate) fn attach_perf_fd(
    prog: BorrowedFd<'_>,
    perf: OwnedFd,
    cookie: u64,
    mechanism: Mechanism,
    target: String,
    cleanup: Option<Box<dyn Cleanup>>,
) -> Result<PerfLink, LinkError> {
    let mut attr = LinkCreateAttr {
        prog_fd: fd_u32(prog),
        target: fd_u32(perf.as_fd()),
        attach_type: AttachType::PERF_EVENT.0,
        ..Default::default()
    };
    attr.extra.perf_event = PerfEventExtra { bpf_cookie: cookie };
    let link = match link_attr::link_create(attr) {
        Ok(fd) => Some(FdLink::new(fd, mechanism, target.clone())),
        // Before 5.15 the kernel has no perf links: EINVAL (unknown attach type).
        Err(e) if matches!(e.errno(), libc::EINVAL | libc::EOPNOTSUPP) && cookie == 0 => {
            perf_event::set_bpf(perf.as_fd(), prog)
                .map_err(|e| LinkError::kernel(mechanism, "attach", target.clone(), e))?;
            None
        }
        Err(e) => return Err(LinkError::sys(mechanism, "attach", target, e)),
    };
    perf_event::enable(perf.as_fd())
        .map_err(|e| LinkError::kernel(mechanism, "enable perf event", target.clone(), e))?;
    Ok(PerfLink {
        mechanism,
        target,
        link,
        perf: Some(perf),
        _cleanup: cleanup,
    })
}

impl Link for PerfLink {
    fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    fn target(&self) -> String {
        self.target.clone()
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.link.as_ref().and_then(|l| l.fd())
    }

    fn pin(&mut self, path: &std::path::Path) -> Result<(), LinkError> {
        match &mut self.link {
            Some(l) => l.pin(path),
            None => Err(LinkError::unsupported(
                self.mechanism,
                "pin",
                "kernel before 5.15 attaches perf events without a bpf_link",
            )),
        }
    }

    /// The kernel cannot swap the program of a perf event (EOPNOTSUPP): attach
    /// the new program to a new event and drop this one instead.
    fn update(
        &mut self,
        new_prog: BorrowedFd<'_>,
        old_prog: Option<BorrowedFd<'_>>,
    ) -> Result<(), LinkError> {
        match &mut self.link {
            Some(l) => l.update(new_prog, old_prog),
            None => Err(LinkError::unsupported(
                self.mechanism,
                "update",
                "perf events attached with PERF_EVENT_IOC_SET_BPF cannot change program",
            )),
        }
    }

    fn detach(&mut self) -> Result<(), LinkError> {
        if let Some(mut l) = self.link.take() {
            l.detach()?;
        }
        if let Some(perf) = self.perf.take() {
            // Disabling first stops the program before the close races with it.
            let _ = perf_event::disable(perf.as_fd());
        }
        self._cleanup = None;
        Ok(())
    }
}

/// Where a perf_event program samples.
#[derive(Clone, Copy, Debug)]
pub enum SampleRate {
    /// Every N events.
    Period(u64),
    /// N times a second.
    Frequency(u64),
}

/// Attaches a `perf_event` program to a counter on every online CPU
/// (`perf_type`/`config`: e.g. [`PerfType::SOFTWARE`] and
/// [`perf_event::sw::CPU_CLOCK`]). Returns one link per CPU.
///
/// Minimum kernel version: 4.9.
pub fn attach_perf_event(
    prog: BorrowedFd<'_>,
    perf_type: PerfType,
    config: u64,
    rate: SampleRate,
    pid: Option<i32>,
) -> Result<Vec<PerfLink>, LinkError> {
    attach_perf_event_with_cookie(prog, perf_type, config, rate, pid, 0)
}

/// [`attach_perf_event`] with a cookie the program reads with
/// `bpf_get_attach_cookie`. Minimum kernel version: 5.15 (cookie != 0).
pub fn attach_perf_event_with_cookie(
    prog: BorrowedFd<'_>,
    perf_type: PerfType,
    config: u64,
    rate: SampleRate,
    pid: Option<i32>,
    cookie: u64,
) -> Result<Vec<PerfLink>, LinkError> {
    let mechanism = Mechanism::PerfEvent;
    let mut attr = PerfEventAttr::new(perf_type, config);
    match rate {
        SampleRate::Period(p) => attr.sample_period = p,
        SampleRate::Frequency(f) => {
            attr.sample_period = f;
            attr.flags |= PerfEventAttr::FLAG_FREQ;
        }
    }
    attr.flags |= PerfEventAttr::FLAG_DISABLED;
    let target = |cpu: i32| format!("perf event type {} config {config} cpu {cpu}", perf_type.0);
    let cpus: Vec<i32> = match pid {
        Some(_) => vec![-1],
        None => crate::util::online_cpus()
            .map_err(|e| LinkError::kernel(mechanism, "list cpus", "online cpus", e))?
            .into_iter()
            .map(|c| c as i32)
            .collect(),
    };
    let mut links = Vec::new();
    for cpu in cpus {
        let perf = perf_event::perf_event_open(&attr, pid.unwrap_or(-1), cpu)
            .map_err(|e| LinkError::kernel(mechanism, "perf_event_open", target(cpu), e))?;
        links.push(attach_perf_fd(
            prog,
            perf,
            cookie,
            mechanism,
            target(cpu),
            None,
        )?);
    }
    Ok(links)
}
