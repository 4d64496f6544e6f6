//! Traffic control: tcx links (`BPF_LINK_CREATE` with `BPF_TCX_INGRESS`/
//! `EGRESS`; minimum kernel version 6.6) and, before them, a `cls_bpf` filter
//! in direct-action mode on a `clsact` qdisc over netlink (minimum kernel
//! version 4.5). The netlink filter outlives the process; it is found and
//! removed again by (ifindex, direction, priority, handle).

use super::{FdLink, Link, LinkError, Mechanism};
use crate::netlink::{self, Message, RouteSocket};
use crate::sys::link_attr::{self, AttachFlags, LinkCreateAttr, MprogExtra, fd_u32};
use kiln_obj::{AttachType, Direction};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Where a tcx program goes among the others on the same hook.
#[derive(Clone, Copy, Debug, Default)]
pub enum TcxAnchor<'a> {
    /// After every program already there.
    #[default]
    Last,
    /// Before every program already there.
    First,
    /// Right before this program.
    BeforeProgram(BorrowedFd<'a>),
    /// Right after this program.
    AfterProgram(BorrowedFd<'a>),
    /// Right before the program of this link.
    BeforeLink(BorrowedFd<'a>),
    /// Right after the program of this link.
    AfterLink(BorrowedFd<'a>),
}

impl TcxAnchor<'_> {
    fn flags_and_fd(self) -> (AttachFlags, u32) {
        match self {
            TcxAnchor::Last => (AttachFlags::empty(), 0),
            TcxAnchor::First => (AttachFlags::BEFORE, 0),
            TcxAnchor::BeforeProgram(fd) => (AttachFlags::BEFORE, fd_u32(fd)),
            TcxAnchor::AfterProgram(fd) => (AttachFlags::AFTER, fd_u32(fd)),
            TcxAnchor::BeforeLink(fd) => (AttachFlags::BEFORE | AttachFlags::LINK, fd_u32(fd)),
            TcxAnchor::AfterLink(fd) => (AttachFlags::AFTER | AttachFlags::LINK, fd_u32(fd)),
        }
    }
}

fn dir_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

/// Attaches a sched_cls program as a tcx link. Minimum kernel version: 6.6.
pub fn attach_tcx(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    direction: Direction,
    anchor: TcxAnchor<'_>,
) -> Result<FdLink, LinkError> {
    let target = format!("interface index {ifindex} {}", dir_name(direction));
    let attach_type = match direction {
        Direction::Ingress => AttachType::TCX_INGRESS,
        Direction::Egress => AttachType::TCX_EGRESS,
    };
    mprog_link(prog, ifindex, attach_type, anchor, Mechanism::Tcx, target)
}

/// `BPF_LINK_CREATE` on a device's multi-program hook (tcx, netkit), placed by `anchor`.
pub(crate) fn mprog_link(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    attach_type: AttachType,
    anchor: TcxAnchor<'_>,
    mechanism: Mechanism,
    target: String,
) -> Result<FdLink, LinkError> {
    let (flags, relative) = anchor.flags_and_fd();
    let mut attr = LinkCreateAttr {
        prog_fd: fd_u32(prog),
        target: ifindex,
        attach_type: attach_type.0,
        flags: flags.bits(),
        ..Default::default()
    };
    attr.extra.mprog = MprogExtra {
        relative_fd_or_id: relative,
        ..Default::default()
    };
    let fd = link_attr::link_create(attr)
        .map_err(|e| LinkError::sys(mechanism, "attach", &target, e))?;
    Ok(FdLink::new(fd, mechanism, target))
}

/// Attaches a sched_cls program the best way the kernel offers: a tcx link,
/// else a cls_bpf filter (priority chosen by the kernel) over netlink.
pub fn attach_tc(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    direction: Direction,
) -> Result<Box<dyn Link>, LinkError> {
    // Probed once: no tcx attach types before 6.6.
    if super::attach_point::tc_uses_tcx() {
        Ok(Box::new(attach_tcx(
            prog,
            ifindex,
            direction,
            TcxAnchor::Last,
        )?))
    } else {
        Ok(Box::new(attach_cls_bpf(
            prog,
            ifindex,
            direction,
            &ClsBpfOptions::default(),
        )?))
    }
}

const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_BPF_FD: u16 = 6;
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_FLAGS: u16 = 8;
const TCA_BPF_ID: u16 = 11;
const TCA_BPF_FLAG_ACT_DIRECT: u32 = 1;
const TC_H_CLSACT: u32 = 0xFFFF_FFF1;
const CLSACT_HANDLE: u32 = 0xFFFF_0000;
const TC_H_MIN_INGRESS: u32 = 0xFFF2;
const TC_H_MIN_EGRESS: u32 = 0xFFF3;
const ETH_P_ALL: u16 = 0x0003;
const NLM_F_ECHO: u16 = 0x8;

fn parent(direction: Direction) -> u32 {
    CLSACT_HANDLE
        | match direction {
            Direction::Ingress => TC_H_MIN_INGRESS,
            Direction::Egress => TC_H_MIN_EGRESS,
        }
}

/// `tcm_info` of a filter: priority in the upper half, protocol (network order) below.
fn filter_info(priority: u16) -> u32 {
    ((priority as u32) << 16) | ETH_P_ALL.to_be() as u32
}

/// How to install a cls_bpf filter.
#[derive(Clone, Debug)]
pub struct ClsBpfOptions {
    /// 0: the kernel picks one (read back from its echo).
    pub priority: u16,
    /// 0: the kernel picks one.
    pub handle: u32,
    /// Shown by `tc filter show`.
    pub name: String,
}

impl Default for ClsBpfOptions {
    fn default() -> Self {
        ClsBpfOptions {
            priority: 0,
            handle: 0,
            name: "kiln".into(),
        }
    }
}

/// A cls_bpf filter as the kernel lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClsBpfFilter {
    /// The interface.
    pub ifindex: u32,
    /// Ingress or egress.
    pub direction: Direction,
    /// The filter's priority (lower runs first).
    pub priority: u16,
    /// The filter's handle.
    pub handle: u32,
    /// The attached program's id.
    pub prog_id: u32,
    /// The name the filter was given (`<object>:[<section>]` by libbpf, the program name by Kiln).
    pub name: String,
}

fn nl_err<'a>(
    op: &'static str,
    target: &'a str,
) -> impl Fn(netlink::NetlinkError) -> LinkError + 'a {
    move |e| LinkError::kernel(Mechanism::Tc, op, target, e.into_io())
}

/// Adds a `clsact` qdisc to `ifindex` unless it has one. Minimum kernel version: 4.5.
pub fn ensure_clsact(ifindex: u32) -> Result<(), LinkError> {
    let target = format!("interface index {ifindex}");
    let mut sock = RouteSocket::open().map_err(nl_err("open netlink", &target))?;
    let mut m = Message::new(
        netlink::RTM_NEWQDISC,
        netlink::NLM_F_ACK | netlink::NLM_F_CREATE | netlink::NLM_F_EXCL,
    );
    m.push(&netlink::tcmsg(ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0));
    m.attr_str(TCA_KIND, "clsact");
    match sock.request(&mut m) {
        Ok(_) => Ok(()),
        Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(nl_err("add clsact qdisc", &target)(e)),
    }
}

/// Removes the `clsact` qdisc of `ifindex` and every filter on it.
pub fn remove_clsact(ifindex: u32) -> Result<(), LinkError> {
    let target = format!("interface index {ifindex}");
    let mut sock = RouteSocket::open().map_err(nl_err("open netlink", &target))?;
    let mut m = Message::new(netlink::RTM_DELQDISC, netlink::NLM_F_ACK);
    m.push(&netlink::tcmsg(ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0));
    m.attr_str(TCA_KIND, "clsact");
    sock.request(&mut m)
        .map(drop)
        .map_err(nl_err("remove clsact qdisc", &target))
}

fn filter_message(
    msg_type: u16,
    flags: u16,
    ifindex: u32,
    direction: Direction,
    priority: u16,
    handle: u32,
) -> Message {
    let mut m = Message::new(msg_type, flags);
    m.push(&netlink::tcmsg(
        ifindex,
        handle,
        parent(direction),
        filter_info(priority),
    ));
    m.attr_str(TCA_KIND, "bpf");
    m
}

fn parse_filter(payload: &[u8], direction: Direction) -> Option<ClsBpfFilter> {
    let (msg, attrs) = netlink::parse_tcmsg(payload)?;
    if netlink::find_attr(attrs, TCA_KIND)? != b"bpf\0" {
        return None;
    }
    let opts = netlink::find_attr(attrs, TCA_OPTIONS)?;
    Some(ClsBpfFilter {
        ifindex: msg.ifindex,
        direction,
        priority: (msg.info >> 16) as u16,
        handle: msg.handle,
        prog_id: netlink::attr_u32(opts, TCA_BPF_ID).unwrap_or(0),
        name: netlink::find_attr(opts, TCA_BPF_NAME)
            .map(|n| {
                String::from_utf8_lossy(n)
                    .trim_end_matches('\0')
                    .to_string()
            })
            .unwrap_or_default(),
    })
}

fn install_filter(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    direction: Direction,
    opts: &ClsBpfOptions,
    replace: bool,
) -> Result<ClsBpfFilter, LinkError> {
    let target = format!(
        "interface index {ifindex} {} priority {} handle {:#x}",
        dir_name(direction),
        opts.priority,
        opts.handle
    );
    let mut sock = RouteSocket::open().map_err(nl_err("open netlink", &target))?;
    let flags = netlink::NLM_F_ACK
        | NLM_F_ECHO
        | netlink::NLM_F_CREATE
        | if replace {
            netlink::NLM_F_REPLACE
        } else {
            netlink::NLM_F_EXCL
        };
    let mut m = filter_message(
        netlink::RTM_NEWTFILTER,
        flags,
        ifindex,
        direction,
        opts.priority,
        opts.handle,
    );
    let nest = m.begin_nest(TCA_OPTIONS);
    m.attr_u32(TCA_BPF_FD, prog.as_raw_fd() as u32)
        .attr_str(TCA_BPF_NAME, &opts.name)
        .attr_u32(TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT);
    m.end_nest(nest);
    let replies = sock
        .request(&mut m)
        .map_err(nl_err("add cls_bpf filter", &target))?;
    replies
        .iter()
        .filter(|r| r.msg_type == netlink::RTM_NEWTFILTER)
        .find_map(|r| parse_filter(&r.payload, direction))
        .ok_or_else(|| {
            LinkError::target(
                Mechanism::Tc,
                target,
                "the kernel did not echo the new filter",
            )
        })
}

/// Adds a cls_bpf filter (direct action) on the clsact qdisc of `ifindex`,
/// creating the qdisc if needed. Minimum kernel version: 4.5.
pub fn attach_cls_bpf(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    direction: Direction,
    opts: &ClsBpfOptions,
) -> Result<ClsBpfLink, LinkError> {
    ensure_clsact(ifindex)?;
    let f = install_filter(prog, ifindex, direction, opts, false)?;
    Ok(ClsBpfLink {
        filter: f,
        attached: true,
    })
}

/// Lists the cls_bpf filters on one side of `ifindex`'s clsact qdisc (empty
/// when there is no clsact qdisc).
pub fn list_cls_bpf(ifindex: u32, direction: Direction) -> Result<Vec<ClsBpfFilter>, LinkError> {
    let target = format!("interface index {ifindex} {}", dir_name(direction));
    let mut sock = RouteSocket::open().map_err(nl_err("open netlink", &target))?;
    let mut m = Message::new(netlink::RTM_GETTFILTER, netlink::NLM_F_DUMP);
    m.push(&netlink::tcmsg(ifindex, 0, parent(direction), 0));
    match sock.request(&mut m) {
        Ok(replies) => Ok(replies
            .iter()
            .filter_map(|r| parse_filter(&r.payload, direction))
            // A dump lists one entry per filter chain head without options; skip those.
            .filter(|f| f.prog_id != 0)
            .collect()),
        Err(e) if matches!(e.errno(), Some(libc::EINVAL) | Some(libc::ENOENT)) => Ok(Vec::new()),
        Err(e) => Err(nl_err("list filters", &target)(e)),
    }
}

/// Every cls_bpf filter on every interface of the caller's network
/// namespace, both directions: what a later process searches to find the
/// filters an earlier one installed (by their name, see [`ClsBpfOptions::name`]).
pub fn list_all_cls_bpf() -> Result<Vec<ClsBpfFilter>, LinkError> {
    let mut out = Vec::new();
    for ifindex in interface_indexes() {
        for direction in [Direction::Ingress, Direction::Egress] {
            match list_cls_bpf(ifindex, direction) {
                Ok(f) => out.extend(f),
                // Gone between the listing and the dump.
                Err(e) if e.errno() == Some(libc::ENODEV) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

/// The indexes of the interfaces of the calling thread's network namespace
/// (`if_nameindex` asks the kernel over netlink, unlike `/sys/class/net`,
/// which shows the namespace sysfs was mounted in).
fn interface_indexes() -> Vec<u32> {
    // SAFETY: if_nameindex takes no arguments; it returns NULL or an array
    // terminated by an entry with index 0, freed below.
    let list = unsafe { libc::if_nameindex() };
    if list.is_null() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for i in 0.. {
        // SAFETY: the array is terminated by an index-0 entry, not passed yet.
        let entry = unsafe { &*list.add(i) };
        if entry.if_index == 0 {
            break;
        }
        out.push(entry.if_index);
    }
    // SAFETY: `list` came from if_nameindex and is freed once.
    unsafe { libc::if_freenameindex(list) };
    out
}

/// Finds the filter at (ifindex, direction, priority, handle), e.g. one a
/// previous process installed; [`ClsBpfLink::adopt`] takes charge of it.
pub fn find_cls_bpf(
    ifindex: u32,
    direction: Direction,
    priority: u16,
    handle: u32,
) -> Result<Option<ClsBpfFilter>, LinkError> {
    Ok(list_cls_bpf(ifindex, direction)?
        .into_iter()
        .find(|f| f.priority == priority && f.handle == handle))
}

/// Removes the filter at (ifindex, direction, priority, handle).
pub fn detach_cls_bpf(
    ifindex: u32,
    direction: Direction,
    priority: u16,
    handle: u32,
) -> Result<(), LinkError> {
    let target = format!(
        "interface index {ifindex} {} priority {priority} handle {handle:#x}",
        dir_name(direction)
    );
    let mut sock = RouteSocket::open().map_err(nl_err("open netlink", &target))?;
    let mut m = filter_message(
        netlink::RTM_DELTFILTER,
        netlink::NLM_F_ACK,
        ifindex,
        direction,
        priority,
        handle,
    );
    sock.request(&mut m)
        .map(drop)
        .map_err(nl_err("remove cls_bpf filter", &target))
}

/// A cls_bpf filter this handle manages. Dropping it removes the filter
/// unless [`Link::keep`] was called.
#[derive(Debug)]
pub struct ClsBpfLink {
    filter: ClsBpfFilter,
    attached: bool,
}

impl ClsBpfLink {
    /// Takes charge of an existing filter (see [`find_cls_bpf`]): dropping the
    /// returned link removes it, unless [`Link::keep`] is called.
    pub fn adopt(filter: ClsBpfFilter) -> Self {
        ClsBpfLink {
            filter,
            attached: true,
        }
    }

    /// Where the filter is: enough to find or remove it from another process.
    pub fn filter(&self) -> &ClsBpfFilter {
        &self.filter
    }
}

impl Link for ClsBpfLink {
    fn mechanism(&self) -> Mechanism {
        Mechanism::Tc
    }

    fn target(&self) -> String {
        let f = &self.filter;
        format!(
            "interface index {} {} priority {} handle {:#x}",
            f.ifindex,
            dir_name(f.direction),
            f.priority,
            f.handle
        )
    }

    /// Replaces the filter's program in place (`NLM_F_REPLACE`, atomic for
    /// packets). With `old_prog`, first checks that it is the current program.
    fn update(
        &mut self,
        new_prog: BorrowedFd<'_>,
        old_prog: Option<BorrowedFd<'_>>,
    ) -> Result<(), LinkError> {
        if let Some(old) = old_prog {
            let old_id = link_attr::prog_id(old)
                .map_err(|e| LinkError::sys(Mechanism::Tc, "read program id", self.target(), e))?;
            let current = find_cls_bpf(
                self.filter.ifindex,
                self.filter.direction,
                self.filter.priority,
                self.filter.handle,
            )?;
            if current.map(|c| c.prog_id) != Some(old_id) {
                return Err(LinkError::target(
                    Mechanism::Tc,
                    self.target(),
                    format!("update refused: the filter no longer runs program id {old_id}"),
                ));
            }
        }
        let opts = ClsBpfOptions {
            priority: self.filter.priority,
            handle: self.filter.handle,
            name: self.filter.name.clone(),
        };
        self.filter = install_filter(
            new_prog,
            self.filter.ifindex,
            self.filter.direction,
            &opts,
            true,
        )?;
        Ok(())
    }

    fn detach(&mut self) -> Result<(), LinkError> {
        if !std::mem::take(&mut self.attached) {
            return Ok(());
        }
        let f = &self.filter;
        detach_cls_bpf(f.ifindex, f.direction, f.priority, f.handle)
    }

    fn keep(&mut self) -> Result<(), LinkError> {
        self.attached = false;
        Ok(())
    }
}

impl Drop for ClsBpfLink {
    fn drop(&mut self) {
        let _ = self.detach();
    }
}
