//! `core.toml`: the kernel types, fields and enum values a crate reads.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::Error;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(default, rename = "struct")]
    structs: Vec<RawStruct>,
    #[serde(default, rename = "enum")]
    enums: Vec<RawEnum>,
    #[serde(default, rename = "kfunc")]
    kfuncs: Vec<RawKfunc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKfunc {
    name: Spanned<String>,
    #[serde(default)]
    args: Vec<String>,
    ret: Option<String>,
    doc: Option<String>,
    #[serde(default)]
    weak: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStruct {
    c: Spanned<String>,
    rust: String,
    doc: Option<String>,
    #[serde(default)]
    optional: bool,
    #[serde(default)]
    fields: Vec<RawField>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: Spanned<String>,
    path: Option<String>,
    #[serde(rename = "type")]
    ty: String,
    doc: Option<String>,
    #[serde(default)]
    optional: bool,
    #[serde(default)]
    bitfield: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnum {
    c: Spanned<String>,
    rust: String,
    doc: Option<String>,
    #[serde(default)]
    optional: bool,
    values: Vec<RawEnumValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnumValue {
    name: Spanned<String>,
    c: String,
    doc: Option<String>,
    #[serde(default)]
    optional: bool,
}

/// A parsed, consistent `core.toml`.
pub struct Spec {
    pub(crate) path: PathBuf,
    pub(crate) structs: Vec<Struct>,
    pub(crate) enums: Vec<Enum>,
    pub(crate) kfuncs: Vec<Kfunc>,
}

/// A kernel function (kfunc) the program calls: an extern in `.ksyms` the
/// loader resolves against the kernel's BTF.
pub(crate) struct Kfunc {
    pub name: String,
    pub args: Vec<KType>,
    pub ret: KType,
    pub doc: Option<String>,
    /// May be missing: the call is then never made (check `<name>_exists()`).
    pub weak: bool,
    pub line: usize,
}

/// A kfunc argument or return type.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum KType {
    Void,
    Int(IntType),
    /// `*<int>`.
    PtrInt(IntType),
    /// `*void`.
    PtrVoid,
    /// `*<struct name>`: the kernel's struct, by its name.
    PtrStruct(String),
}

impl KType {
    fn parse(s: &str) -> Option<KType> {
        let s = s.trim();
        let int = |s: &str| INTS.iter().find(|t| t.rust == s).copied();
        Some(match s.strip_prefix('*') {
            None if s == "void" => KType::Void,
            None => KType::Int(int(s)?),
            Some("void") => KType::PtrVoid,
            Some(t) => match int(t) {
                Some(i) => KType::PtrInt(i),
                None if is_ident(t) => KType::PtrStruct(t.to_owned()),
                None => return None,
            },
        })
    }

    pub fn c(&self) -> String {
        match self {
            KType::Void => "void".into(),
            KType::Int(t) => t.c.into(),
            KType::PtrInt(t) => format!("{} *", t.c),
            KType::PtrVoid => "void *".into(),
            KType::PtrStruct(s) => format!("struct {s} *"),
        }
    }

    pub fn rust(&self) -> String {
        match self {
            KType::Void => "()".into(),
            KType::Int(t) => t.rust.into(),
            KType::PtrInt(t) => format!("*mut {}", t.rust),
            KType::PtrVoid | KType::PtrStruct(_) => "*mut c_void".into(),
        }
    }
}

impl Spec {
    /// The file this came from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

pub(crate) struct Struct {
    /// The kernel's name, possibly with a `___flavor` suffix.
    pub c: String,
    pub rust: String,
    pub doc: Option<String>,
    pub optional: bool,
    pub line: usize,
    pub fields: Vec<Field>,
}

pub(crate) struct Field {
    pub name: String,
    pub path: Vec<Segment>,
    pub ty: FieldType,
    pub doc: Option<String>,
    pub optional: bool,
    pub bitfield: bool,
    pub line: usize,
}

impl Field {
    /// `a.b[2].c`, as written in C after `->`.
    pub fn c_path(&self) -> String {
        self.path
            .iter()
            .map(|s| match s.index {
                Some(i) => format!("{}[{i}]", s.name),
                None => s.name.clone(),
            })
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// One step of a member path: `name` or `name[index]`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Segment {
    pub name: String,
    pub index: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct IntType {
    pub rust: &'static str,
    pub c: &'static str,
    pub size: u32,
    pub signed: bool,
}

const INTS: [IntType; 8] = [
    IntType {
        rust: "u8",
        c: "__u8",
        size: 1,
        signed: false,
    },
    IntType {
        rust: "u16",
        c: "__u16",
        size: 2,
        signed: false,
    },
    IntType {
        rust: "u32",
        c: "__u32",
        size: 4,
        signed: false,
    },
    IntType {
        rust: "u64",
        c: "__u64",
        size: 8,
        signed: false,
    },
    IntType {
        rust: "i8",
        c: "__s8",
        size: 1,
        signed: true,
    },
    IntType {
        rust: "i16",
        c: "__s16",
        size: 2,
        signed: true,
    },
    IntType {
        rust: "i32",
        c: "__s32",
        size: 4,
        signed: true,
    },
    IntType {
        rust: "i64",
        c: "__s64",
        size: 8,
        signed: true,
    },
];

/// What a field holds, for C and Rust.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum FieldType {
    Int(IntType),
    /// `[T; N]`, read whole.
    Array(IntType, u32),
    /// `*u8`: a kernel pointer to bytes (a string).
    PtrBytes,
    /// `*<struct>`: a pointer to another struct of the file, returned as its wrapper.
    PtrStruct(String),
}

impl FieldType {
    fn parse(s: &str) -> Result<FieldType, String> {
        let s = s.trim();
        let int = |s: &str| INTS.iter().find(|t| t.rust == s.trim()).copied();
        if let Some(t) = int(s) {
            return Ok(FieldType::Int(t));
        }
        if s == "*u8" {
            return Ok(FieldType::PtrBytes);
        }
        if let Some(name) = s.strip_prefix('*') {
            if is_ident(name) {
                return Ok(FieldType::PtrStruct(name.to_owned()));
            }
        }
        if let Some((elem, n)) = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|r| r.split_once(';'))
        {
            if let (Some(t), Ok(n)) = (int(elem), n.trim().parse::<u32>()) {
                if n > 0 {
                    return Ok(FieldType::Array(t, n));
                }
            }
        }
        Err(format!(
            "type {s:?}: expected u8..u64, i8..i64, [<int>; N], *u8 or *<struct of this file>"
        ))
    }

    /// The C declaration of a member of this type called `name`, with an
    /// extra array dimension when the path indexes it.
    pub fn c_member(&self, name: &str, dim: Option<u32>, prefix: &str) -> String {
        let dim = dim.map(|d| format!("[{d}]")).unwrap_or_default();
        match self {
            FieldType::Int(t) => format!("{} {name}{dim};", t.c),
            FieldType::Array(t, n) => format!("{} {name}{dim}[{n}];", t.c),
            FieldType::PtrBytes => format!("const __u8 *{name}{dim};"),
            FieldType::PtrStruct(s) => format!("struct {} *{name}{dim};", local_name(s, prefix)),
        }
    }
}

pub(crate) struct Enum {
    pub c: String,
    pub rust: String,
    pub doc: Option<String>,
    pub optional: bool,
    pub line: usize,
    pub values: Vec<EnumVal>,
}

pub(crate) struct EnumVal {
    pub name: String,
    pub c: String,
    pub doc: Option<String>,
    pub optional: bool,
    pub line: usize,
}

/// The C name of a declared struct's local definition. CO-RE matches types
/// by their name up to a `___flavor` suffix; each crate gives its structs
/// its own flavor, because LLVM's BPF backend keys the relocations it emits
/// by type name and access path: the SDK's `struct sock` and a program's
/// would otherwise share (wrong) relocations once linked into one object.
/// A name that already has a flavor keeps it.
pub(crate) fn local_name(c: &str, prefix: &str) -> String {
    if c.contains("___") {
        c.to_owned()
    } else {
        format!("{c}___{prefix}")
    }
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_segment(s: &str) -> Option<Segment> {
    let (name, index) = match s.split_once('[') {
        Some((name, rest)) => (name, Some(rest.strip_suffix(']')?.trim().parse().ok()?)),
        None => (s, None),
    };
    is_ident(name).then(|| Segment {
        name: name.to_owned(),
        index,
    })
}

/// Parses and checks a `core.toml` (`origin` names it in errors).
pub fn parse(text: &str, origin: &Path) -> Result<Spec, Error> {
    let raw: RawSpec = toml::from_str(text).map_err(|source| Error::Toml {
        path: origin.to_path_buf(),
        source,
    })?;
    let line_of =
        |span: std::ops::Range<usize>| text[..span.start.min(text.len())].lines().count().max(1);
    let err = |line: usize, what: String| Error::Spec {
        path: origin.to_path_buf(),
        line,
        what,
    };
    let mut structs = Vec::new();
    let mut rust_names: Vec<String> = Vec::new();
    for s in raw.structs {
        let line = line_of(s.c.span());
        let c = s.c.into_inner();
        if !is_ident(&c) || !is_ident(&s.rust) {
            return Err(err(
                line,
                format!("struct {c:?} / rust {:?}: not identifiers", s.rust),
            ));
        }
        let mut fields: Vec<Field> = Vec::new();
        for f in s.fields {
            let line = line_of(f.name.span());
            let name = f.name.into_inner();
            let at = |what: String| err(line, format!("struct {c} field {name}: {what}"));
            if !is_ident(&name) {
                return Err(at("the name is not a Rust identifier".into()));
            }
            let ty = FieldType::parse(&f.ty).map_err(at)?;
            let path: Option<Vec<Segment>> = f
                .path
                .as_deref()
                .unwrap_or(&name)
                .split('.')
                .map(parse_segment)
                .collect();
            let path = path.ok_or_else(|| {
                at("path must be dotted member names, each optionally indexed: a.b[2].c".into())
            })?;
            if f.bitfield && !matches!(ty, FieldType::Int(_)) {
                return Err(at("a bitfield must have an integer type".into()));
            }
            if fields.iter().any(|o| o.name == name) {
                return Err(at("declared twice".into()));
            }
            fields.push(Field {
                name,
                path,
                ty,
                doc: f.doc,
                optional: f.optional,
                bitfield: f.bitfield,
                line,
            });
        }
        if rust_names.contains(&s.rust) {
            return Err(err(line, format!("rust name {} is used twice", s.rust)));
        }
        rust_names.push(s.rust.clone());
        structs.push(Struct {
            c,
            rust: s.rust,
            doc: s.doc,
            optional: s.optional,
            line,
            fields,
        });
    }
    let mut enums = Vec::new();
    for e in raw.enums {
        let line = line_of(e.c.span());
        let c = e.c.into_inner();
        if !is_ident(&c) || !is_ident(&e.rust) {
            return Err(err(
                line,
                format!("enum {c:?} / rust {:?}: not identifiers", e.rust),
            ));
        }
        if rust_names.contains(&e.rust) {
            return Err(err(line, format!("rust name {} is used twice", e.rust)));
        }
        rust_names.push(e.rust.clone());
        let mut values: Vec<EnumVal> = Vec::new();
        for v in e.values {
            let line = line_of(v.name.span());
            let name = v.name.into_inner();
            if !is_ident(&name) || !is_ident(&v.c) {
                return Err(err(line, format!("enum {c} value {name}: not identifiers")));
            }
            if values.iter().any(|o| o.name == name || o.c == v.c) {
                return Err(err(line, format!("enum {c} value {name}: declared twice")));
            }
            values.push(EnumVal {
                name,
                c: v.c,
                doc: v.doc,
                optional: v.optional,
                line,
            });
        }
        enums.push(Enum {
            c,
            rust: e.rust,
            doc: e.doc,
            optional: e.optional,
            line,
            values,
        });
    }
    // Enumerator names share one C namespace.
    let mut all: Vec<&str> = enums
        .iter()
        .flat_map(|e| e.values.iter().map(|v| v.c.as_str()))
        .collect();
    all.sort_unstable();
    if let Some(w) = all.windows(2).find(|w| w[0] == w[1]) {
        return Err(err(
            1,
            format!("enumerator {} is declared in two enums", w[0]),
        ));
    }
    for s in &structs {
        for f in &s.fields {
            if let FieldType::PtrStruct(t) = &f.ty {
                if !structs.iter().any(|o| &o.c == t) {
                    return Err(err(
                        f.line,
                        format!(
                            "struct {} field {}: *{t} names a struct this file does not list",
                            s.c, f.name
                        ),
                    ));
                }
            }
        }
    }
    let mut kfuncs: Vec<Kfunc> = Vec::new();
    for k in raw.kfuncs {
        let line = line_of(k.name.span());
        let name = k.name.into_inner();
        let at = |what: String| err(line, format!("kfunc {name}: {what}"));
        if !is_ident(&name) {
            return Err(at("not an identifier".into()));
        }
        if kfuncs.iter().any(|o| o.name == name) {
            return Err(at("declared twice".into()));
        }
        let ty = |s: &str| {
            KType::parse(s).ok_or_else(|| {
                at(format!(
                    "type {s:?}: expected void, u8..i64, *<int>, *void or *<struct>"
                ))
            })
        };
        let args = k
            .args
            .iter()
            .map(|a| ty(a))
            .collect::<Result<Vec<_>, _>>()?;
        if args.contains(&KType::Void) || args.len() > 5 {
            return Err(at("up to five arguments, none void".into()));
        }
        let ret = ty(k.ret.as_deref().unwrap_or("void"))?;
        kfuncs.push(Kfunc {
            name,
            args,
            ret,
            doc: k.doc,
            weak: k.weak,
            line,
        });
    }
    Ok(Spec {
        path: origin.to_path_buf(),
        structs,
        enums,
        kfuncs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_paths() {
        assert_eq!(
            FieldType::parse("[u32; 4]").unwrap(),
            FieldType::Array(INTS[2], 4)
        );
        assert!(FieldType::parse("[u8; 0]").is_err());
        assert!(FieldType::parse("u17").is_err());
        assert_eq!(
            parse_segment("saved_auxv[3]"),
            Some(Segment {
                name: "saved_auxv".into(),
                index: Some(3)
            })
        );
        assert_eq!(parse_segment("a[x]"), None);
        assert_eq!(parse_segment("1a"), None);
    }

    #[test]
    fn errors_name_the_line() {
        let text = "[[struct]]\nc = \"sock\"\nrust = \"Sock\"\nfields = [\n  { name = \"a\", type = \"u8\" },\n  { name = \"b\", type = \"*nope\" },\n]\n";
        let e = parse(text, Path::new("core.toml"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("core.toml:6: struct sock field b: *nope"),
            "{e}"
        );
        let bad = text.replace("*nope", "u8\", bitfield = true, path = \"x..y");
        let e = parse(&bad, Path::new("core.toml"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("core.toml:6") && e.contains("path must be"),
            "{e}"
        );
    }
}
