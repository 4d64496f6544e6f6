//! BTF type records (`struct btf_type` and the data that follows each kind),
//! decoded into plain Rust values. Names stay as offsets into the string
//! table so types can be rewritten and written back without re-interning.

/// A BTF type id. `0` is `void`.
pub type TypeId = u32;

/// `BTF_KIND_*`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Kind {
    Void = 0,
    Int = 1,
    Ptr = 2,
    Array = 3,
    Struct = 4,
    Union = 5,
    Enum = 6,
    Fwd = 7,
    Typedef = 8,
    Volatile = 9,
    Const = 10,
    Restrict = 11,
    Func = 12,
    FuncProto = 13,
    Var = 14,
    DataSec = 15,
    Float = 16,
    DeclTag = 17,
    TypeTag = 18,
    Enum64 = 19,
}

impl Kind {
    pub const fn from_u32(v: u32) -> Option<Self> {
        use Kind::*;
        Some(match v {
            0 => Void,
            1 => Int,
            2 => Ptr,
            3 => Array,
            4 => Struct,
            5 => Union,
            6 => Enum,
            7 => Fwd,
            8 => Typedef,
            9 => Volatile,
            10 => Const,
            11 => Restrict,
            12 => Func,
            13 => FuncProto,
            14 => Var,
            15 => DataSec,
            16 => Float,
            17 => DeclTag,
            18 => TypeTag,
            19 => Enum64,
            _ => return None,
        })
    }

    /// What follows the 12-byte common header of a type of this kind, in
    /// bytes: a fixed part and a part per `vlen` entry. The one table both
    /// the reader (bounds) and [`Kind::extra_len`] use.
    pub const fn record_layout(self) -> (usize, usize) {
        match self {
            Kind::Int | Kind::Var | Kind::DeclTag => (4, 0),
            Kind::Array => (12, 0),
            Kind::Struct | Kind::Union | Kind::DataSec | Kind::Enum64 => (0, 12),
            Kind::Enum | Kind::FuncProto => (0, 8),
            _ => (0, 0),
        }
    }

    /// Bytes that follow the 12-byte common header for a type of this kind with `vlen` entries.
    pub fn extra_len(self, vlen: u32) -> usize {
        let (fixed, per) = self.record_layout();
        fixed + per * vlen as usize
    }
}

/// `BTF_INT_SIGNED` in an INT's encoding.
pub const INT_SIGNED: u8 = 1;
/// `BTF_INT_CHAR`.
pub const INT_CHAR: u8 = 2;
/// `BTF_INT_BOOL`.
pub const INT_BOOL: u8 = 4;

/// `BTF_FUNC_STATIC`, `BTF_FUNC_GLOBAL`, `BTF_FUNC_EXTERN` (FUNC's vlen).
pub const FUNC_STATIC: u16 = 0;
pub const FUNC_GLOBAL: u16 = 1;
pub const FUNC_EXTERN: u16 = 2;
/// `BTF_VAR_STATIC`, `BTF_VAR_GLOBAL_ALLOCATED`, `BTF_VAR_GLOBAL_EXTERN`.
pub const VAR_STATIC: u32 = 0;
pub const VAR_GLOBAL: u32 = 1;
pub const VAR_EXTERN: u32 = 2;

/// A member of a STRUCT or UNION.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Member {
    pub name_off: u32,
    pub type_id: TypeId,
    /// The raw `offset` word: with the parent's kind_flag set, the top 8 bits
    /// are the bitfield size and the low 24 the bit offset.
    pub offset: u32,
}

impl Member {
    pub fn bit_offset(&self, kind_flag: bool) -> u32 {
        if kind_flag {
            self.offset & 0x00ff_ffff
        } else {
            self.offset
        }
    }
    /// Bitfield size in bits, 0 when the member is not a bitfield.
    pub fn bitfield_size(&self, kind_flag: bool) -> u32 {
        if kind_flag { self.offset >> 24 } else { 0 }
    }
}

/// An ENUM or ENUM64 value. For 32-bit enums the value is sign-extended as
/// libbpf does (`__s32` widened to 64 bits).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EnumValue {
    pub name_off: u32,
    pub value: u64,
}

/// A FUNC_PROTO parameter.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Param {
    pub name_off: u32,
    pub type_id: TypeId,
}

/// A DATASEC entry: a VAR (or FUNC for `.ksyms`) placed at `offset`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VarSecInfo {
    pub type_id: TypeId,
    pub offset: u32,
    pub size: u32,
}

/// One decoded BTF type.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Type {
    Void,
    Int {
        name_off: u32,
        size: u32,
        /// `INT_SIGNED | INT_CHAR | INT_BOOL`.
        encoding: u8,
        bit_offset: u8,
        bits: u8,
    },
    Ptr {
        name_off: u32,
        target: TypeId,
    },
    Array {
        name_off: u32,
        elem: TypeId,
        index: TypeId,
        nelems: u32,
    },
    Struct {
        name_off: u32,
        size: u32,
        kind_flag: bool,
        members: Vec<Member>,
    },
    Union {
        name_off: u32,
        size: u32,
        kind_flag: bool,
        members: Vec<Member>,
    },
    Enum {
        name_off: u32,
        size: u32,
        signed: bool,
        values: Vec<EnumValue>,
    },
    Fwd {
        name_off: u32,
        union: bool,
    },
    Typedef {
        name_off: u32,
        target: TypeId,
    },
    Volatile {
        name_off: u32,
        target: TypeId,
    },
    Const {
        name_off: u32,
        target: TypeId,
    },
    Restrict {
        name_off: u32,
        target: TypeId,
    },
    Func {
        name_off: u32,
        proto: TypeId,
        /// `FUNC_STATIC`, `FUNC_GLOBAL`, `FUNC_EXTERN`.
        linkage: u16,
    },
    FuncProto {
        name_off: u32,
        ret: TypeId,
        params: Vec<Param>,
    },
    Var {
        name_off: u32,
        type_id: TypeId,
        linkage: u32,
    },
    DataSec {
        name_off: u32,
        size: u32,
        vars: Vec<VarSecInfo>,
    },
    Float {
        name_off: u32,
        size: u32,
    },
    DeclTag {
        name_off: u32,
        target: TypeId,
        /// -1 for the type itself, otherwise a member or parameter index.
        component_idx: i32,
    },
    TypeTag {
        name_off: u32,
        target: TypeId,
    },
    Enum64 {
        name_off: u32,
        size: u32,
        signed: bool,
        values: Vec<EnumValue>,
    },
}

impl Type {
    pub fn kind(&self) -> Kind {
        match self {
            Type::Void => Kind::Void,
            Type::Int { .. } => Kind::Int,
            Type::Ptr { .. } => Kind::Ptr,
            Type::Array { .. } => Kind::Array,
            Type::Struct { .. } => Kind::Struct,
            Type::Union { .. } => Kind::Union,
            Type::Enum { .. } => Kind::Enum,
            Type::Fwd { .. } => Kind::Fwd,
            Type::Typedef { .. } => Kind::Typedef,
            Type::Volatile { .. } => Kind::Volatile,
            Type::Const { .. } => Kind::Const,
            Type::Restrict { .. } => Kind::Restrict,
            Type::Func { .. } => Kind::Func,
            Type::FuncProto { .. } => Kind::FuncProto,
            Type::Var { .. } => Kind::Var,
            Type::DataSec { .. } => Kind::DataSec,
            Type::Float { .. } => Kind::Float,
            Type::DeclTag { .. } => Kind::DeclTag,
            Type::TypeTag { .. } => Kind::TypeTag,
            Type::Enum64 { .. } => Kind::Enum64,
        }
    }

    pub fn name_off(&self) -> u32 {
        match self {
            Type::Void => 0,
            Type::Int { name_off, .. }
            | Type::Ptr { name_off, .. }
            | Type::Array { name_off, .. }
            | Type::Struct { name_off, .. }
            | Type::Union { name_off, .. }
            | Type::Enum { name_off, .. }
            | Type::Fwd { name_off, .. }
            | Type::Typedef { name_off, .. }
            | Type::Volatile { name_off, .. }
            | Type::Const { name_off, .. }
            | Type::Restrict { name_off, .. }
            | Type::Func { name_off, .. }
            | Type::FuncProto { name_off, .. }
            | Type::Var { name_off, .. }
            | Type::DataSec { name_off, .. }
            | Type::Float { name_off, .. }
            | Type::DeclTag { name_off, .. }
            | Type::TypeTag { name_off, .. }
            | Type::Enum64 { name_off, .. } => *name_off,
        }
    }

    /// The type a modifier, pointer, typedef, var or tag refers to.
    pub fn target(&self) -> Option<TypeId> {
        match self {
            Type::Ptr { target, .. }
            | Type::Typedef { target, .. }
            | Type::Volatile { target, .. }
            | Type::Const { target, .. }
            | Type::Restrict { target, .. }
            | Type::TypeTag { target, .. }
            | Type::DeclTag { target, .. } => Some(*target),
            Type::Var { type_id, .. } => Some(*type_id),
            Type::Func { proto, .. } => Some(*proto),
            _ => None,
        }
    }

    /// The byte size carried by the type itself (INT, STRUCT, ENUM, DATASEC, FLOAT...).
    pub fn own_size(&self) -> Option<u32> {
        match self {
            Type::Int { size, .. }
            | Type::Struct { size, .. }
            | Type::Union { size, .. }
            | Type::Enum { size, .. }
            | Type::DataSec { size, .. }
            | Type::Float { size, .. }
            | Type::Enum64 { size, .. } => Some(*size),
            _ => None,
        }
    }

    /// Members of a STRUCT or UNION, with the kind_flag.
    pub fn members(&self) -> Option<(&[Member], bool)> {
        match self {
            Type::Struct {
                members, kind_flag, ..
            }
            | Type::Union {
                members, kind_flag, ..
            } => Some((members, *kind_flag)),
            _ => None,
        }
    }

    /// Values of an ENUM or ENUM64.
    pub fn enum_values(&self) -> Option<&[EnumValue]> {
        match self {
            Type::Enum { values, .. } | Type::Enum64 { values, .. } => Some(values),
            _ => None,
        }
    }

    pub fn is_composite(&self) -> bool {
        matches!(self, Type::Struct { .. } | Type::Union { .. })
    }

    /// Modifiers that CO-RE and size resolution look through.
    pub fn is_modifier(&self) -> bool {
        matches!(
            self,
            Type::Typedef { .. }
                | Type::Volatile { .. }
                | Type::Const { .. }
                | Type::Restrict { .. }
                | Type::TypeTag { .. }
        )
    }
}
