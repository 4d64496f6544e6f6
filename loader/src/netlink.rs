//! A small rtnetlink client: just what XDP (`IFLA_XDP`) and cls_bpf (clsact
//! qdisc, `bpf` filters) attachment needs. The socket works in the network
//! namespace of the thread that opened it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `RTM_GETLINK`: Reads interfaces.
pub const RTM_GETLINK: u16 = 18;
/// `RTM_SETLINK`: Changes an interface (XDP attach).
pub const RTM_SETLINK: u16 = 19;
/// `RTM_NEWQDISC`: Adds a qdisc (clsact).
pub const RTM_NEWQDISC: u16 = 36;
/// `RTM_DELQDISC`: Removes a qdisc.
pub const RTM_DELQDISC: u16 = 37;
/// `RTM_NEWTFILTER`: Adds a tc filter (cls_bpf).
pub const RTM_NEWTFILTER: u16 = 44;
/// `RTM_DELTFILTER`: Removes a tc filter.
pub const RTM_DELTFILTER: u16 = 45;
/// `RTM_GETTFILTER`: Lists tc filters.
pub const RTM_GETTFILTER: u16 = 46;

/// `NLM_F_REQUEST`: A request.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_MULTI`: Part of a multi-message reply.
pub const NLM_F_MULTI: u16 = 0x2;
/// `NLM_F_ACK`: Asks for an acknowledgement.
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_REPLACE`: Replaces an existing object.
pub const NLM_F_REPLACE: u16 = 0x100;
/// `NLM_F_EXCL`: Fails if the object exists.
pub const NLM_F_EXCL: u16 = 0x200;
/// `NLM_F_CREATE`: Creates the object if missing.
pub const NLM_F_CREATE: u16 = 0x400;
/// `NLM_F_DUMP`: Dumps every object (`NLM_F_ROOT | NLM_F_MATCH`).
pub const NLM_F_DUMP: u16 = 0x300;
/// On an `NLMSG_ERROR`: extended-ack attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLA_F_NESTED`: Marks a nested attribute.
pub const NLA_F_NESTED: u16 = 0x8000;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;
const HDR: usize = 16;

/// A netlink request under construction: header, fixed payload, attributes.
#[derive(Debug, Clone)]
pub struct Message {
    buf: Vec<u8>,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

impl Message {
    /// A request of `msg_type` (`RTM_*`) with `flags` (`NLM_F_*`; `NLM_F_REQUEST` is added).
    pub fn new(msg_type: u16, flags: u16) -> Self {
        let mut buf = vec![0u8; HDR];
        buf[4..6].copy_from_slice(&msg_type.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        Message { buf }
    }

    /// Appends a fixed header (`ifinfomsg`, `tcmsg`), padded to 4 bytes.
    pub fn push(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    /// Appends attribute `kind` with `data`.
    pub fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.push(data)
    }

    /// Appends a `u32` attribute.
    pub fn attr_u32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.attr(kind, &v.to_ne_bytes())
    }

    /// Appends a NUL-terminated string attribute.
    pub fn attr_str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v)
    }

    /// Opens a nested attribute; close it with [`Message::end_nest`].
    pub fn begin_nest(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.attr(kind | NLA_F_NESTED, &[]);
        at
    }

    /// Closes the nested attribute opened at `at` by [`Message::begin_nest`].
    pub fn end_nest(&mut self, at: usize) -> &mut Self {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn finish(&mut self, seq: u32) -> &[u8] {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        &self.buf
    }
}

/// One message of a reply: its type and payload (after the 16-byte header).
#[derive(Debug, Clone)]
pub struct Reply {
    /// The message type.
    pub msg_type: u16,
    /// Everything after the header.
    pub payload: Vec<u8>,
}

/// Iterates over the attributes in `data`: `(type without flags, value)`.
pub fn attrs(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let kind = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < 4 || len > data.len() {
            return None;
        }
        let value = &data[4..len];
        data = &data[align4(len).min(data.len())..];
        Some((kind, value))
    })
}

/// The first attribute of `kind` in `data`.
pub fn find_attr(data: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(data).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

/// The first attribute of `kind` in `data`, as a `u32`.
pub fn attr_u32(data: &[u8], kind: u16) -> Option<u32> {
    find_attr(data, kind)
        .and_then(|v| v.get(..4))
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// A NETLINK_ROUTE socket.
#[derive(Debug)]
pub struct RouteSocket {
    fd: OwnedFd,
    seq: u32,
}

/// A netlink error: errno plus the kernel's extended-ack text, when it gave one.
#[derive(Debug, thiserror::Error)]
#[error("the kernel refused the netlink request{}", .message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
pub struct NetlinkError {
    /// The errno.
    #[source]
    pub source: io::Error,
    /// The kernel's extended-ack text.
    pub message: Option<String>,
}

impl NetlinkError {
    fn io(source: io::Error) -> Self {
        NetlinkError {
            source,
            message: None,
        }
    }

    /// The errno of the failure.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }

    /// The error as an `io::Error` carrying the extended-ack text.
    pub fn into_io(self) -> io::Error {
        match self.message {
            Some(m) => io::Error::new(self.source.kind(), format!("{} ({m})", self.source)),
            None => self.source,
        }
    }
}

impl RouteSocket {
    /// Opens a `NETLINK_ROUTE` socket with extended acknowledgements.
    pub fn open() -> Result<Self, NetlinkError> {
        // SAFETY: plain socket(2) call with constant arguments.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(NetlinkError::io(io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        for opt in [NETLINK_EXT_ACK, NETLINK_CAP_ACK] {
            let one: libc::c_int = 1;
            // SAFETY: `one` is a live c_int and its size is passed. Failure
            // only loses error text on old kernels, so it is ignored.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_NETLINK,
                    opt,
                    &one as *const libc::c_int as *const libc::c_void,
                    size_of::<libc::c_int>() as u32,
                )
            };
        }
        Ok(RouteSocket { fd, seq: 1 })
    }

    /// Sends `msg` and collects every reply message until the ACK (or the
    /// end of a dump). A negative ACK becomes an error with the kernel's text.
    pub fn request(&mut self, msg: &mut Message) -> Result<Vec<Reply>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = msg.finish(seq);
        // SAFETY: `bytes` is a live buffer of the given length; the kernel
        // address is the zeroed sockaddr_nl default (pid 0).
        let sent = unsafe {
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                self.fd.as_raw_fd(),
                bytes.as_ptr() as *const libc::c_void,
                bytes.len(),
                0,
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(NetlinkError::io(io::Error::last_os_error()));
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: `buf` is a live, writable buffer of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(NetlinkError::io(e));
            }
            let mut data = &buf[..n as usize];
            while data.len() >= HDR {
                let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
                let msg_type = u16::from_ne_bytes([data[4], data[5]]);
                let flags = u16::from_ne_bytes([data[6], data[7]]);
                let rseq = u32::from_ne_bytes([data[8], data[9], data[10], data[11]]);
                if len < HDR || len > data.len() {
                    return Err(NetlinkError::io(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "truncated netlink message",
                    )));
                }
                let payload = &data[HDR..len];
                data = &data[align4(len).min(data.len())..];
                if rseq != seq {
                    continue;
                }
                match msg_type {
                    NLMSG_ERROR => {
                        let errno = payload
                            .get(..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .unwrap_or(-libc::EIO);
                        if errno == 0 {
                            return Ok(out);
                        }
                        // With NETLINK_CAP_ACK only the request's header is echoed.
                        let message = (flags & NLM_F_ACK_TLVS != 0)
                            .then(|| payload.get(4 + HDR..))
                            .flatten()
                            .and_then(|tlvs| find_attr(tlvs, NLMSGERR_ATTR_MSG))
                            .map(|m| {
                                String::from_utf8_lossy(m)
                                    .trim_end_matches('\0')
                                    .to_string()
                            });
                        return Err(NetlinkError {
                            source: io::Error::from_raw_os_error(-errno),
                            message,
                        });
                    }
                    NLMSG_DONE => return Ok(out),
                    _ => {
                        out.push(Reply {
                            msg_type,
                            payload: payload.to_vec(),
                        });
                        if flags & NLM_F_MULTI == 0 && msg.buf_flags() & NLM_F_ACK == 0 {
                            return Ok(out);
                        }
                    }
                }
            }
        }
    }
}

impl Message {
    fn buf_flags(&self) -> u16 {
        u16::from_ne_bytes([self.buf[6], self.buf[7]])
    }
}

/// `struct ifinfomsg` for a given interface.
pub fn ifinfomsg(ifindex: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = libc::AF_UNSPEC as u8;
    b[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    b
}

/// `struct tcmsg`.
pub fn tcmsg(ifindex: u32, handle: u32, parent: u32, info: u32) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[0] = libc::AF_UNSPEC as u8;
    b[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    b[8..12].copy_from_slice(&handle.to_ne_bytes());
    b[12..16].copy_from_slice(&parent.to_ne_bytes());
    b[16..20].copy_from_slice(&info.to_ne_bytes());
    b
}

/// The fields of a `struct tcmsg` reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcMsg {
    /// The interface.
    pub ifindex: u32,
    /// The object's handle.
    pub handle: u32,
    /// The parent qdisc or class.
    pub parent: u32,
    /// Filters: priority (high 16 bits) and protocol (low 16 bits, network order).
    pub info: u32,
}

/// Splits a tc reply into its `struct tcmsg` and the attributes after it.
pub fn parse_tcmsg(payload: &[u8]) -> Option<(TcMsg, &[u8])> {
    let b = payload.get(..20)?;
    let u = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let msg = TcMsg {
        ifindex: u(4),
        handle: u(8),
        parent: u(12),
        info: u(16),
    };
    Some((msg, &payload[20..]))
}

/// The index of a network interface by name, in the caller's namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    // SAFETY: `c` is a NUL-terminated string alive across the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_roundtrip() {
        let mut m = Message::new(RTM_SETLINK, NLM_F_ACK);
        m.push(&ifinfomsg(7));
        let n = m.begin_nest(43);
        m.attr_u32(1, 5).attr_u32(3, 2);
        m.end_nest(n);
        let bytes = m.finish(9).to_vec();
        assert_eq!(bytes.len(), 16 + 16 + 4 + 8 + 8);
        let body = &bytes[32..];
        let (kind, nest) = attrs(body).next().unwrap();
        assert_eq!(kind, 43);
        assert_eq!(attr_u32(nest, 1), Some(5));
        assert_eq!(attr_u32(nest, 3), Some(2));
    }

    #[test]
    fn truncated_attributes_stop() {
        assert_eq!(attrs(&[8, 0, 1, 0, 1]).count(), 0);
    }
}
