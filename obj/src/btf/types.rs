//! BTF type records (`struct btf_type` and the data that follows each kind),
//! decoded into plain Rust values. Names stay as offsets into the string
//! table so types can be rewritten and written back without re-interning.

/// A BTF type id. `0` is `void`.
pub type TypeId = u32;

/// `BTF_KIND_*`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Kind {
    /// `void` (type id 0; never in the type section).
    Void = 0,
    /// `BTF_KIND_INT`: an integer.
    ///
    /// Minimum kernel version: 4.18.
    Int = 1,
    /// `BTF_KIND_PTR`: a pointer.
    ///
    /// Minimum kernel version: 4.18.
    Ptr = 2,
    /// `BTF_KIND_ARRAY`: an array.
    ///
    /// Minimum kernel version: 4.18.
    Array = 3,
    /// `BTF_KIND_STRUCT`: a struct.
    ///
    /// Minimum kernel version: 4.18.
    Struct = 4,
    /// `BTF_KIND_UNION`: a union.
    ///
    /// Minimum kernel version: 4.18.
    Union = 5,
    /// `BTF_KIND_ENUM`: an enum of up to 32-bit values.
    ///
    /// Minimum kernel version: 4.18.
    Enum = 6,
    /// `BTF_KIND_FWD`: a forward declaration of a struct or union.
    ///
    /// Minimum kernel version: 4.18.
    Fwd = 7,
    /// `BTF_KIND_TYPEDEF`: a typedef.
    ///
    /// Minimum kernel version: 4.18.
    Typedef = 8,
    /// `BTF_KIND_VOLATILE`: the `volatile` modifier.
    ///
    /// Minimum kernel version: 4.18.
    Volatile = 9,
    /// `BTF_KIND_CONST`: the `const` modifier.
    ///
    /// Minimum kernel version: 4.18.
    Const = 10,
    /// `BTF_KIND_RESTRICT`: the `restrict` modifier.
    ///
    /// Minimum kernel version: 4.18.
    Restrict = 11,
    /// `BTF_KIND_FUNC`: a function.
    ///
    /// Minimum kernel version: 5.0.
    Func = 12,
    /// `BTF_KIND_FUNC_PROTO`: a function signature.
    ///
    /// Minimum kernel version: 5.0.
    FuncProto = 13,
    /// `BTF_KIND_VAR`: a global variable.
    ///
    /// Minimum kernel version: 5.2.
    Var = 14,
    /// `BTF_KIND_DATASEC`: a data section and its variables.
    ///
    /// Minimum kernel version: 5.2.
    DataSec = 15,
    /// `BTF_KIND_FLOAT`: a floating-point type.
    ///
    /// Minimum kernel version: 5.13.
    Float = 16,
    /// `BTF_KIND_DECL_TAG`: a `btf_decl_tag` attribute.
    ///
    /// Minimum kernel version: 5.16.
    DeclTag = 17,
    /// `BTF_KIND_TYPE_TAG`: a `btf_type_tag` attribute.
    ///
    /// Minimum kernel version: 5.17.
    TypeTag = 18,
    /// `BTF_KIND_ENUM64`: an enum of 64-bit values.
    ///
    /// Minimum kernel version: 6.0.
    Enum64 = 19,
}

impl Kind {
    /// The kind a type's `info` word names; `None` for a kind this version does not know.
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
/// `BTF_FUNC_GLOBAL`: a global function, verified on its own.
pub const FUNC_GLOBAL: u16 = 1;
/// `BTF_FUNC_EXTERN`: a function defined elsewhere.
pub const FUNC_EXTERN: u16 = 2;
/// `BTF_VAR_STATIC`, `BTF_VAR_GLOBAL_ALLOCATED`, `BTF_VAR_GLOBAL_EXTERN`.
pub const VAR_STATIC: u32 = 0;
/// `BTF_VAR_GLOBAL_ALLOCATED`: a global variable.
pub const VAR_GLOBAL: u32 = 1;
/// `BTF_VAR_GLOBAL_EXTERN`: a variable defined elsewhere (`.kconfig`, `.ksyms`).
pub const VAR_EXTERN: u32 = 2;

/// A member of a STRUCT or UNION.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Member {
    /// The member's name, an offset in the string section (0: anonymous).
    pub name_off: u32,
    /// The member's type.
    pub type_id: TypeId,
    /// The raw `offset` word: with the parent's kind_flag set, the top 8 bits
    /// are the bitfield size and the low 24 the bit offset.
    pub offset: u32,
}

impl Member {
    /// The member's offset from the start of its struct, in bits.
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
    /// The value's name, an offset in the string section.
    pub name_off: u32,
    /// The value.
    pub value: u64,
}

/// A FUNC_PROTO parameter.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Param {
    /// The parameter's name, an offset in the string section (0: unnamed).
    pub name_off: u32,
    /// The parameter's type (0 with name 0: a trailing `...`).
    pub type_id: TypeId,
}

/// A DATASEC entry: a VAR (or FUNC for `.ksyms`) placed at `offset`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VarSecInfo {
    /// The VAR (or FUNC) placed here.
    pub type_id: TypeId,
    /// Its offset in the section, in bytes.
    pub offset: u32,
    /// Its size in bytes.
    pub size: u32,
}

/// One decoded BTF type.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Type {
    /// `void` (type id 0; never in the type section).
    Void,
    /// `BTF_KIND_INT`: an integer.
    Int {
        /// The name, an offset in the string section (0: anonymous).
        name_off: u32,
        /// Size in bytes.
        size: u32,
        /// `INT_SIGNED | INT_CHAR | INT_BOOL`.
        encoding: u8,
        /// Offset of the value's bits (`BTF_INT_OFFSET`; 0 in practice).
        bit_offset: u8,
        /// Number of value bits (`BTF_INT_BITS`).
        bits: u8,
    },
    /// `BTF_KIND_PTR`: a pointer.
    Ptr {
        /// The name, an offset in the string section (0: anonymous).
        name_off: u32,
        /// The type it refers to.
        target: TypeId,
    },
    /// `BTF_KIND_ARRAY`: an array.
    Array {
        /// The name, an offset in the string section (0: anonymous).
        name_off: u32,
        /// The element type.
        elem: TypeId,
        /// The index type.
        index: TypeId,
        /// Number of elements.
        nelems: u32,
    },
    /// `BTF_KIND_STRUCT`: a struct.
    Struct {
        /// The name, an offset in the string section (0: anonymous).
        name_off: u32,
        /// Size in bytes.
        size: u32,
        /// Set when members carry bitfield sizes in their offset word.
        kind_flag: bool,
        /// The members, in order.
        members: Vec<Member>,
    },
    /// `BTF_KIND_UNION`: a union.
    Union {
        /// The name, an offset in the string section (0: anonymous).
        name_off: u32,
        /// Size in bytes.
        size: u32,
        /// Set when members carry bitfield sizes in their offset word.
        kind_flag: bool,
        /// The members, in order.
        members: Vec<Member>,
    },
    /// `BTF_KIND_ENUM`: an enum of up to 32-bit values.
    Enum {
        /// The name, an offset in the string section (0: anonymous).
        name_off: u32,
        /// Size in bytes.
        size: u32,
        /// Whether the values are signed.
        signed: bool,
        /// The values, in order.
        values: Vec<EnumValue>,
    },
    /// `BTF_KIND_FWD`: a forward declaration of a struct or union.
    Fwd {
        /// The name, an offset in the string section (0: anonymous).
        name_off: u32,
        /// A union rather than a struct.
        union: bool,
    },
    /// `BTF_KIND_TYPEDEF`: a typedef.
    Typedef {
        /// The name, an offset in the string section (0: anonymous).
        name_off: u32,
        /// The type it refers to.
        target: TypeId,
    },
    /// `BTF_KIND_VOLATILE`: the `volatile` modifier.
    Volatile {
        /// The name, an offset in the string section (0: anonymous).
        name_off: u32,
        /// The type it refers to.
        target: TypeId,
    },
    /// `BTF_KIND_CONST`: the `const` modifier.
    Const {
        /// The name, an offset in the string section (0: anonymous).
        name_off: u32,
        /// The type it refers to.
        target: TypeId,
    },
    /// `BTF_KIND_RESTRICT`: the `restrict` modifier.
    Restrict {
        /// The name, an offset in the string section (0: anonymous).
        name_off: u32,
        /// The type it refers to.
        target: TypeId,
    },
    /// `BTF_KIND_FUNC`: a function.
    Func {
        /// The name, an offset in the string section (0: anonymous).
        name_off: u32,
        /// The FUNC_PROTO of its signature.
        proto: TypeId,
        /// `FUNC_STATIC`, `FUNC_GLOBAL`, `FUNC_EXTERN`.
        linkage: u16,
    },
    /// `BTF_KIND_FUNC_PROTO`: a function signature.
    FuncProto {
        /// The name, an offset in the string section (0: anonymous).
        name_off: u32,
        /// The return type (0: void).
        ret: TypeId,
        /// The parameters, in order.
        params: Vec<Param>,
    },
    /// `BTF_KIND_VAR`: a global variable.
    Var {
        /// The name, an offset in the string section (0: anonymous).
        name_off: u32,
        /// The variable's type.
        type_id: TypeId,
        /// `VAR_STATIC`, `VAR_GLOBAL` or `VAR_EXTERN`.
        linkage: u32,
    },
    /// `BTF_KIND_DATASEC`: a data section and its variables.
    DataSec {
        /// The name, an offset in the string section (0: anonymous).
        name_off: u32,
        /// Size in bytes.
        size: u32,
        /// The variables of the section, by offset.
        vars: Vec<VarSecInfo>,
    },
    /// `BTF_KIND_FLOAT`: a floating-point type.
    Float {
        /// The name, an offset in the string section (0: anonymous).
        name_off: u32,
        /// Size in bytes.
        size: u32,
    },
    /// `BTF_KIND_DECL_TAG`: a `btf_decl_tag` attribute.
    DeclTag {
        /// The name, an offset in the string section (0: anonymous).
        name_off: u32,
        /// The type it refers to.
        target: TypeId,
        /// -1 for the type itself, otherwise a member or parameter index.
        component_idx: i32,
    },
    /// `BTF_KIND_TYPE_TAG`: a `btf_type_tag` attribute.
    TypeTag {
        /// The name, an offset in the string section (0: anonymous).
        name_off: u32,
        /// The type it refers to.
        target: TypeId,
    },
    /// `BTF_KIND_ENUM64`: an enum of 64-bit values.
    Enum64 {
        /// The name, an offset in the string section (0: anonymous).
        name_off: u32,
        /// Size in bytes.
        size: u32,
        /// Whether the values are signed.
        signed: bool,
        /// The values, in order.
        values: Vec<EnumValue>,
    },
}

impl Type {
    /// The type's `BTF_KIND_*`.
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

    /// The type's name, an offset in the string section (0: anonymous).
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

    /// Whether this is a STRUCT or UNION.
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
