//! Attaching straight from a loaded [`Program`]: `prog.auto_attach()` and
//! one `attach_*` method per runtime target, each using what the program's
//! [`ProgramKind`] already says (attach type, direction, hook), so callers
//! write `ebpf.program("x").unwrap().auto_attach()?`.

use super::cgroup;
use super::iter::{self, IterLink, IterTarget};
use super::netns;
use super::perf::{self, PerfLink, SampleRate};
use super::socket_filter::{self, SocketFilterLink};
use super::sockmap::{self, SockMapHook};
use super::tc::{self, TcxAnchor};
use super::usdt::{self, UsdtLink, UsdtOptions};
use super::xdp::{self, XdpFlags};
use super::{Link, LinkError, Mechanism, auto};
use crate::perf_event::PerfType;
use crate::{Ebpf, Program};
use kiln_obj::{AttachType, Direction, ProgramKind};
use std::os::fd::BorrowedFd;
use std::path::Path;

/// Attach methods on [`Program`]. Import it (`use kiln_loader::links::ProgramAttach`)
/// to call them.
pub trait ProgramAttach {
    /// Attaches to the target the program's section names (`tracepoint/C/N`,
    /// `kprobe/F`, `uprobe/PATH:SYM`, `tp_btf/T`, `fentry/F`, `iter/T`, ...);
    /// `sk_lookup` and `flow_dissector` go to the caller's network namespace.
    /// Hooks needing a runtime target fail with an error naming the method to use.
    fn auto_attach(&self) -> Result<Box<dyn Link>, LinkError>;
    /// XDP on `ifindex` (link, else netlink).
    fn attach_xdp(&self, ifindex: u32, flags: XdpFlags) -> Result<Box<dyn Link>, LinkError>;
    /// tc on `ifindex`: `tcx/ingress|egress` sections know their direction;
    /// plain `tc`/`classifier` programs take `direction`.
    fn attach_tc(
        &self,
        ifindex: u32,
        direction: Option<Direction>,
    ) -> Result<Box<dyn Link>, LinkError>;
    /// A cgroup hook with the attach type of the section (`cgroup_skb/ingress`, `sockops`, ...).
    fn attach_cgroup(&self, cgroup: BorrowedFd<'_>) -> Result<Box<dyn Link>, LinkError>;
    /// `socket`: a socket filter on `socket` (`SO_ATTACH_BPF`).
    fn attach_socket_filter(&self, socket: BorrowedFd<'_>) -> Result<SocketFilterLink, LinkError>;
    /// `sk_msg` / `sk_skb/...` on a sockmap or sockhash.
    fn attach_sockmap(&self, map: BorrowedFd<'_>) -> Result<Box<dyn Link>, LinkError>;
    /// `sk_lookup` / `flow_dissector` on a network namespace fd.
    fn attach_netns(&self, netns: BorrowedFd<'_>) -> Result<Box<dyn Link>, LinkError>;
    /// An iterator over everything of its kind, or over one map's elements.
    fn attach_iter(&self, target: IterTarget<'_>) -> Result<IterLink, LinkError>;
    /// `perf_event` programs on a counter of every online CPU.
    fn attach_perf_event(
        &self,
        perf_type: PerfType,
        config: u64,
        rate: SampleRate,
    ) -> Result<Vec<PerfLink>, LinkError>;
    /// A `usdt` program of `ebpf` on every `provider:name` site of the
    /// binary at `path` (its argument specs go to `ebpf`'s usdt.bpf.h maps).
    fn attach_usdt(
        &self,
        ebpf: &Ebpf,
        path: &Path,
        provider: &str,
        name: &str,
        opts: &UsdtOptions,
    ) -> Result<UsdtLink, LinkError>;
}

fn wrong_kind(m: Mechanism, op: &'static str, p: &Program) -> LinkError {
    LinkError::unsupported(
        m,
        op,
        format!("program '{}' is a {:?} program", p.name(), p.kind()),
    )
}

impl ProgramAttach for Program {
    fn auto_attach(&self) -> Result<Box<dyn Link>, LinkError> {
        auto::auto_attach(self.fd(), self.kind())
    }

    fn attach_xdp(&self, ifindex: u32, flags: XdpFlags) -> Result<Box<dyn Link>, LinkError> {
        xdp::attach_xdp(self.fd(), ifindex, flags)
    }

    fn attach_tc(
        &self,
        ifindex: u32,
        direction: Option<Direction>,
    ) -> Result<Box<dyn Link>, LinkError> {
        match (self.kind(), direction) {
            (ProgramKind::Tcx { direction }, _) => Ok(Box::new(tc::attach_tcx(
                self.fd(),
                ifindex,
                *direction,
                TcxAnchor::Last,
            )?)),
            (ProgramKind::SchedCls, Some(d)) => tc::attach_tc(self.fd(), ifindex, d),
            (ProgramKind::SchedCls, None) => Err(LinkError::target(
                Mechanism::Tc,
                format!("program '{}'", self.name()),
                "a tc/classifier section names no direction: pass one",
            )),
            _ => Err(wrong_kind(Mechanism::Tc, "attach_tc", self)),
        }
    }

    fn attach_cgroup(&self, cgroup: BorrowedFd<'_>) -> Result<Box<dyn Link>, LinkError> {
        let at = match self.kind() {
            ProgramKind::SockOps => AttachType::CGROUP_SOCK_OPS,
            k => k.expected_attach_type().ok_or_else(|| {
                LinkError::target(
                    Mechanism::Cgroup,
                    format!("program '{}'", self.name()),
                    "its section names no cgroup hook (e.g. cgroup_skb/ingress)",
                )
            })?,
        };
        cgroup::attach_cgroup(self.fd(), cgroup, at)
    }

    fn attach_socket_filter(&self, socket: BorrowedFd<'_>) -> Result<SocketFilterLink, LinkError> {
        socket_filter::attach_socket_filter(self.fd(), socket)
    }

    fn attach_sockmap(&self, map: BorrowedFd<'_>) -> Result<Box<dyn Link>, LinkError> {
        let hook = self
            .kind()
            .expected_attach_type()
            .and_then(SockMapHook::from_attach_type)
            .ok_or_else(|| wrong_kind(Mechanism::SockMap, "attach_sockmap", self))?;
        sockmap::attach_sockmap(self.fd(), map, hook)
    }

    fn attach_netns(&self, netns_fd: BorrowedFd<'_>) -> Result<Box<dyn Link>, LinkError> {
        match self.kind() {
            ProgramKind::SkLookup => Ok(Box::new(netns::attach_sk_lookup(self.fd(), netns_fd)?)),
            ProgramKind::FlowDissector => netns::attach_flow_dissector(self.fd(), netns_fd),
            _ => Err(wrong_kind(Mechanism::SkLookup, "attach_netns", self)),
        }
    }

    fn attach_iter(&self, target: IterTarget<'_>) -> Result<IterLink, LinkError> {
        iter::attach_iter(self.fd(), target)
    }

    fn attach_perf_event(
        &self,
        perf_type: PerfType,
        config: u64,
        rate: SampleRate,
    ) -> Result<Vec<PerfLink>, LinkError> {
        perf::attach_perf_event(self.fd(), perf_type, config, rate, None)
    }

    fn attach_usdt(
        &self,
        ebpf: &Ebpf,
        path: &Path,
        provider: &str,
        name: &str,
        opts: &UsdtOptions,
    ) -> Result<UsdtLink, LinkError> {
        if !matches!(
            self.kind(),
            ProgramKind::Uprobe {
                retprobe: false,
                ..
            }
        ) {
            return Err(wrong_kind(Mechanism::Uprobe, "attach_usdt", self));
        }
        usdt::attach_usdt(self.fd(), ebpf, path, provider, name, opts)
    }
}
