//! One eBPF instruction in the kernel's `struct bpf_insn` layout.

use crate::ByteOrder;

/// `struct bpf_insn`: 8 bytes, `code`, `dst_reg:4 | src_reg:4`, `off`, `imm`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Insn {
    /// The opcode: class, size or source, and mode or operation.
    pub code: u8,
    /// `dst_reg` and `src_reg` as the C bitfields lay them out on this
    /// machine: `dst_reg` is the low nibble on little-endian hosts and the
    /// high nibble on big-endian ones. Use [`Insn::dst_reg`] and
    /// [`Insn::src_reg`] rather than reading it.
    pub regs: u8,
    /// The signed offset (jumps, memory accesses).
    pub off: i16,
    /// The signed immediate.
    pub imm: i32,
}

/// `BPF_LD | BPF_IMM | BPF_DW`: the first half of a 16-byte `ld_imm64`.
pub const LD_IMM64: u8 = 0x18;
/// `BPF_JMP | BPF_CALL`.
pub const CALL: u8 = 0x85;
/// `BPF_PSEUDO_MAP_FD`: `ld_imm64` whose imm is a map fd.
pub const PSEUDO_MAP_FD: u8 = 1;
/// `BPF_PSEUDO_MAP_VALUE`: `ld_imm64` whose imm is a map fd and whose second imm is an offset into the value.
pub const PSEUDO_MAP_VALUE: u8 = 2;
/// `BPF_PSEUDO_CALL`: a call whose imm is a relative instruction offset to a subprogram.
pub const PSEUDO_CALL: u8 = 1;
/// `BPF_PSEUDO_FUNC`: `ld_imm64` of a subprogram address (callbacks).
pub const PSEUDO_FUNC: u8 = 4;

impl Insn {
    /// The size of one instruction in bytes.
    pub const SIZE: usize = 8;

    /// Where `dst_reg` sits in [`Insn::regs`] on this machine.
    const DST_SHIFT: u8 = if cfg!(target_endian = "big") { 4 } else { 0 };
    const SRC_SHIFT: u8 = 4 - Self::DST_SHIFT;

    /// The destination register (0 to 10).
    pub fn dst_reg(self) -> u8 {
        (self.regs >> Self::DST_SHIFT) & 0x0f
    }
    /// The source register, or the pseudo kind of an `ld_imm64` or call.
    pub fn src_reg(self) -> u8 {
        (self.regs >> Self::SRC_SHIFT) & 0x0f
    }
    /// Sets the source register (or pseudo kind).
    pub fn set_src_reg(&mut self, src: u8) {
        self.regs = (self.regs & (0x0f << Self::DST_SHIFT)) | ((src & 0x0f) << Self::SRC_SHIFT);
    }
    /// Sets the destination register.
    pub fn set_dst_reg(&mut self, dst: u8) {
        self.regs = (self.regs & (0x0f << Self::SRC_SHIFT)) | ((dst & 0x0f) << Self::DST_SHIFT);
    }
    /// Whether this is the first half of a 16-byte `ld_imm64`.
    pub fn is_ld_imm64(self) -> bool {
        self.code == LD_IMM64
    }

    /// Decodes an instruction stored in `order` (an object's code section).
    /// A big-endian object keeps `dst_reg` in the high nibble, so the
    /// nibbles swap when `order` is not this machine's.
    ///
    /// ```
    /// use kiln_obj::{ByteOrder, Insn};
    ///
    /// // r0 = 2; (BPF_ALU64 | BPF_MOV | BPF_K), as bpfel and bpfeb store it
    /// let el = Insn::from_bytes([0xb7, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00], ByteOrder::Little);
    /// let eb = Insn::from_bytes([0xb7, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02], ByteOrder::Big);
    /// assert_eq!((el.code, el.dst_reg(), el.imm), (0xb7, 0, 2));
    /// assert_eq!(el, eb);
    /// assert_eq!(Insn::from_bytes(el.to_bytes(ByteOrder::Big), ByteOrder::Big), el);
    /// ```
    #[inline]
    pub fn from_bytes(b: [u8; 8], order: ByteOrder) -> Self {
        let native = Self::from_native_bytes(b);
        if order.is_native() {
            native
        } else {
            Insn {
                code: native.code,
                regs: native.regs.rotate_left(4),
                off: native.off.swap_bytes(),
                imm: native.imm.swap_bytes(),
            }
        }
    }

    /// Decodes an instruction in this machine's byte order (what the
    /// kernel reads and returns), the layout of `struct bpf_insn` in memory.
    #[inline]
    pub fn from_native_bytes(b: [u8; 8]) -> Self {
        Insn {
            code: b[0],
            regs: b[1],
            off: i16::from_ne_bytes([b[2], b[3]]),
            imm: i32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// Encodes the instruction in `order`, the inverse of [`Insn::from_bytes`].
    pub fn to_bytes(self, order: ByteOrder) -> [u8; 8] {
        let (regs, off, imm) = match order {
            ByteOrder::Little => (
                self.src_reg() << 4 | self.dst_reg(),
                self.off.to_le_bytes(),
                self.imm.to_le_bytes(),
            ),
            ByteOrder::Big => (
                self.dst_reg() << 4 | self.src_reg(),
                self.off.to_be_bytes(),
                self.imm.to_be_bytes(),
            ),
        };
        [
            self.code, regs, off[0], off[1], imm[0], imm[1], imm[2], imm[3],
        ]
    }
}

impl std::fmt::Debug for Insn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Insn {{ code: {:#04x}, dst: r{}, src: r{}, off: {}, imm: {} }}",
            self.code,
            self.dst_reg(),
            self.src_reg(),
            self.off,
            self.imm
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `r3 = *(u32 *)(r7 - 2)` in both byte orders: bpfeb keeps `dst_reg`
    /// in the high nibble and its numbers big-endian.
    #[test]
    fn decodes_both_byte_orders() {
        let le = [0x61, 0x73, 0xfe, 0xff, 0x01, 0x02, 0x03, 0x04];
        let be = [0x61, 0x37, 0xff, 0xfe, 0x04, 0x03, 0x02, 0x01];
        for (bytes, order) in [(le, ByteOrder::Little), (be, ByteOrder::Big)] {
            let i = Insn::from_bytes(bytes, order);
            assert_eq!((i.code, i.dst_reg(), i.src_reg()), (0x61, 3, 7), "{order}");
            assert_eq!((i.off, i.imm), (-2, 0x0403_0201), "{order}");
            assert_eq!(i.to_bytes(order), bytes, "{order}");
        }
        let mut i = Insn::from_bytes(le, ByteOrder::Little);
        i.set_src_reg(10);
        i.set_dst_reg(1);
        assert_eq!((i.dst_reg(), i.src_reg()), (1, 10));
        assert_eq!(i.to_bytes(ByteOrder::Big)[1], 0x1a);
    }
}
