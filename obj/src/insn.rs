//! One eBPF instruction in the kernel's `struct bpf_insn` layout.

/// `struct bpf_insn`: 8 bytes, `code`, `dst_reg:4 | src_reg:4`, `off`, `imm`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Insn {
    /// The opcode: class, size or source, and mode or operation.
    pub code: u8,
    /// Low nibble `dst_reg`, high nibble `src_reg` (little-endian layout).
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

    /// The destination register (0 to 10).
    pub fn dst_reg(self) -> u8 {
        self.regs & 0x0f
    }
    /// The source register, or the pseudo kind of an `ld_imm64` or call.
    pub fn src_reg(self) -> u8 {
        self.regs >> 4
    }
    /// Sets the source register (or pseudo kind).
    pub fn set_src_reg(&mut self, src: u8) {
        self.regs = (self.regs & 0x0f) | (src << 4);
    }
    /// Sets the destination register.
    pub fn set_dst_reg(&mut self, dst: u8) {
        self.regs = (self.regs & 0xf0) | (dst & 0x0f);
    }
    /// Whether this is the first half of a 16-byte `ld_imm64`.
    pub fn is_ld_imm64(self) -> bool {
        self.code == LD_IMM64
    }

    /// Decodes little-endian bytes (the only byte order Kiln loads).
    ///
    /// ```
    /// use kiln_obj::Insn;
    ///
    /// // r0 = 2; (BPF_ALU64 | BPF_MOV | BPF_K)
    /// let insn = Insn::from_le_bytes([0xb7, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00]);
    /// assert_eq!((insn.code, insn.dst_reg(), insn.imm), (0xb7, 0, 2));
    /// assert_eq!(Insn::from_le_bytes(insn.to_le_bytes()), insn);
    /// ```
    pub fn from_le_bytes(b: [u8; 8]) -> Self {
        Insn {
            code: b[0],
            regs: b[1],
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// Encodes to little-endian bytes, the kernel's layout on little-endian machines.
    pub fn to_le_bytes(self) -> [u8; 8] {
        let off = self.off.to_le_bytes();
        let imm = self.imm.to_le_bytes();
        [
            self.code, self.regs, off[0], off[1], imm[0], imm[1], imm[2], imm[3],
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
