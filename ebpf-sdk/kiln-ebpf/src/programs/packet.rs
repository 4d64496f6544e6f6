//! Packet contexts (XDP and `__sk_buff` programs) with bounds-checked access
//! in the shape the verifier understands: `data + offset + size <= data_end`.

use super::{context, ctx_field};
use crate::bindings::{__sk_buff, xdp_md};

/// Bounds-checked packet access shared by the packet contexts.
macro_rules! packet_access {
    ($name:ident) => {
        impl $name {
            /// The packet's first byte (as an address).
            #[inline(always)]
            pub fn data(&self) -> usize {
                self.raw_data() as usize
            }

            /// One past the packet's last byte.
            #[inline(always)]
            pub fn data_end(&self) -> usize {
                self.raw_data_end() as usize
            }

            /// Bytes in the linear packet data.
            #[inline(always)]
            pub fn len(&self) -> usize {
                self.data_end() - self.data()
            }

            /// Whether the linear packet data is empty.
            #[inline(always)]
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// A pointer to a `T` at `offset`, when the whole `T` lies inside
            /// the packet.
            #[inline(always)]
            pub fn ptr_at<T>(&self, offset: usize) -> Option<*const T> {
                let start = self.data() + offset;
                // The comparison against data_end is what the verifier needs
                // to see before any access through the pointer.
                if start + core::mem::size_of::<T>() > self.data_end() {
                    return None;
                }
                Some(start as *const T)
            }

            /// As [`Self::ptr_at`], for writing.
            #[inline(always)]
            pub fn ptr_at_mut<T>(&self, offset: usize) -> Option<*mut T> {
                self.ptr_at::<T>(offset).map(|p| p.cast_mut())
            }

            /// A copy of the `T` at `offset` (any alignment).
            #[inline(always)]
            pub fn load<T: Copy>(&self, offset: usize) -> Option<T> {
                // SAFETY: ptr_at checked that size_of::<T>() bytes are inside the packet.
                self.ptr_at::<T>(offset)
                    .map(|p| unsafe { p.read_unaligned() })
            }

            /// A reference to the `T` at `offset`. `T` must have alignment 1
            /// (packet headers are declared `#[repr(C, packed)]`), since
            /// packet data has no alignment guarantee.
            #[inline(always)]
            pub fn get<T>(&self, offset: usize) -> Option<&T> {
                const {
                    assert!(
                        core::mem::align_of::<T>() == 1,
                        "packet headers must be #[repr(C, packed)]"
                    )
                };
                // SAFETY: in bounds (ptr_at), alignment 1 (asserted), and the
                // packet outlives the program invocation that borrows `self`.
                self.ptr_at::<T>(offset).map(|p| unsafe { &*p })
            }
        }
    };
}

context! {
    /// An XDP program's context (`struct xdp_md`).
    XdpContext, ctx: xdp_md
}
packet_access!(XdpContext);

impl XdpContext {
    fn raw_data(&self) -> u32 {
        ctx_field!(self.ctx, data)
    }
    fn raw_data_end(&self) -> u32 {
        ctx_field!(self.ctx, data_end)
    }

    /// The interface the packet arrived on.
    #[inline(always)]
    pub fn ingress_ifindex(&self) -> u32 {
        ctx_field!(self.ctx, ingress_ifindex)
    }

    /// The receive queue.
    #[inline(always)]
    pub fn rx_queue_index(&self) -> u32 {
        ctx_field!(self.ctx, rx_queue_index)
    }
}

context! {
    /// The context of every `__sk_buff` program: socket filter, cgroup_skb,
    /// sk_skb, flow dissector and TC.
    SkBuffContext, skb: __sk_buff
}
packet_access!(SkBuffContext);

/// TC classifiers (`#[classifier]`, `#[tc]`, `#[tcx]`) see an `__sk_buff`.
pub type TcContext = SkBuffContext;

impl SkBuffContext {
    fn raw_data(&self) -> u32 {
        ctx_field!(self.skb, data)
    }
    fn raw_data_end(&self) -> u32 {
        ctx_field!(self.skb, data_end)
    }

    /// Whole packet length, including non-linear data.
    #[inline(always)]
    pub fn skb_len(&self) -> u32 {
        ctx_field!(self.skb, len)
    }

    /// `skb->protocol` (network byte order EtherType).
    #[inline(always)]
    pub fn protocol(&self) -> u32 {
        ctx_field!(self.skb, protocol)
    }

    /// `skb->ifindex`.
    #[inline(always)]
    pub fn ifindex(&self) -> u32 {
        ctx_field!(self.skb, ifindex)
    }

    /// `skb->mark`.
    #[inline(always)]
    pub fn mark(&self) -> u32 {
        ctx_field!(self.skb, mark)
    }

    /// Sets `skb->mark` (TC programs).
    #[inline(always)]
    pub fn set_mark(&self, mark: u32) {
        // SAFETY: `mark` is writable from TC programs; the verifier rejects
        // the store for program types where it is not.
        unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!((*self.skb).mark), mark) }
    }

    /// Copies bytes at `offset` into `dst`, including non-linear data
    /// (`bpf_skb_load_bytes`; the way socket filters read packets).
    #[inline(always)]
    pub fn load_bytes(&self, offset: u32, dst: &mut [u8]) -> Result<(), i64> {
        // SAFETY: `dst` is writable for its length; skb is our context.
        let ret = unsafe {
            crate::helpers::bpf_skb_load_bytes(
                self.skb.cast(),
                offset,
                dst.as_mut_ptr().cast(),
                dst.len() as u32,
            )
        };
        if ret < 0 { Err(ret) } else { Ok(()) }
    }
}
