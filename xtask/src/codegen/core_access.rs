//! `cargo xtask codegen core`: CO-RE accessors for the kernel struct fields
//! listed in `ebpf-sdk/kiln-ebpf/core.toml`.
//!
//! Stable rustc cannot emit the `preserve_access_index` intrinsics CO-RE
//! relocations come from, clang can; so each field becomes a small C function
//! over a *local* struct that declares only the listed members (CO-RE matches
//! members by name, not by layout) and a Rust wrapper calling it. The C is
//! compiled to bitcode by kiln-ebpf's build script and linked into Rust
//! programs by bpf-linker, which inlines it.
//!
//! The list is the source of truth (so the output does not depend on the
//! machine's kernel); when a vmlinux BTF is available every path is checked
//! against it, so a typo or a wrong type fails here rather than at load time.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, bail};
use kiln_obj::btf::{Btf, Kind, Type, TypeId};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    #[serde(rename = "struct")]
    structs: Vec<StructSpec>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StructSpec {
    c: String,
    rust: String,
    doc: Option<String>,
    fields: Vec<FieldSpec>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldSpec {
    name: String,
    path: Option<String>,
    #[serde(rename = "type")]
    ty: String,
    doc: Option<String>,
}

/// What a field is, for C and Rust.
#[derive(Clone, Debug, PartialEq)]
enum FieldType {
    /// `(rust, c, size)`.
    Int(&'static str, &'static str, u32),
    /// `[u8; N]`.
    Bytes(u32),
    /// `*u8`: a kernel pointer to bytes.
    PtrBytes,
    /// `*<struct>`.
    PtrStruct(String),
}

impl FieldType {
    fn parse(s: &str) -> anyhow::Result<FieldType> {
        let ints = [
            ("u8", "__u8", 1),
            ("u16", "__u16", 2),
            ("u32", "__u32", 4),
            ("u64", "__u64", 8),
            ("i8", "__s8", 1),
            ("i16", "__s16", 2),
            ("i32", "__s32", 4),
            ("i64", "__s64", 8),
        ];
        if let Some((r, c, n)) = ints.iter().find(|(r, _, _)| *r == s) {
            return Ok(FieldType::Int(r, c, *n));
        }
        if s == "*u8" {
            return Ok(FieldType::PtrBytes);
        }
        if let Some(name) = s.strip_prefix('*') {
            if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.is_empty() {
                return Ok(FieldType::PtrStruct(name.to_owned()));
            }
        }
        if let Some(n) = s
            .strip_prefix("[u8;")
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|n| n.trim().parse::<u32>().ok())
        {
            return Ok(FieldType::Bytes(n));
        }
        bail!("type {s:?}: expected u8..u64, i8..i64, [u8; N], *u8 or *<struct>")
    }

    /// The C declaration of a member of this type called `name`.
    fn c_member(&self, name: &str) -> String {
        match self {
            FieldType::Int(_, c, _) => format!("{c} {name};"),
            FieldType::Bytes(n) => format!("__u8 {name}[{n}];"),
            FieldType::PtrBytes => format!("const __u8 *{name};"),
            FieldType::PtrStruct(s) => format!("struct {s} *{name};"),
        }
    }
}

/// A parsed field: the Rust method name, member path and type.
struct Field {
    name: String,
    path: Vec<String>,
    ty: FieldType,
    doc: Option<String>,
}

struct Struct {
    c: String,
    rust: String,
    doc: Option<String>,
    fields: Vec<Field>,
}

fn parse_spec(text: &str, origin: &Path) -> anyhow::Result<Vec<Struct>> {
    let spec: Spec =
        toml::from_str(text).with_context(|| format!("parsing {}", origin.display()))?;
    let mut out = Vec::new();
    for s in spec.structs {
        let mut fields = Vec::new();
        for f in s.fields {
            let ty = FieldType::parse(&f.ty).with_context(|| {
                format!("{}: struct {} field {}", origin.display(), s.c, f.name)
            })?;
            let path: Vec<String> = f
                .path
                .as_deref()
                .unwrap_or(&f.name)
                .split('.')
                .map(str::to_owned)
                .collect();
            if path.iter().any(|p| p.is_empty()) {
                bail!(
                    "{}: struct {} field {}: empty path segment",
                    origin.display(),
                    s.c,
                    f.name
                );
            }
            fields.push(Field {
                name: f.name,
                path,
                ty,
                doc: f.doc,
            });
        }
        out.push(Struct {
            c: s.c,
            rust: s.rust,
            doc: s.doc,
            fields,
        });
    }
    // Pointers to structs must name a struct of the file (it gets a wrapper).
    for s in &out {
        for f in &s.fields {
            if let FieldType::PtrStruct(t) = &f.ty {
                if !out.iter().any(|o| &o.c == t) {
                    bail!(
                        "{}: struct {} field {}: *{t} names a struct this file does not list",
                        origin.display(),
                        s.c,
                        f.name
                    );
                }
            }
        }
    }
    Ok(out)
}

/// Members of a local struct: leaves and nested (embedded) structs.
#[derive(Default)]
struct Node {
    members: Vec<(String, Member)>,
}

enum Member {
    Leaf(FieldType),
    Nested(Node),
}

impl Node {
    fn insert(&mut self, path: &[String], ty: &FieldType) -> anyhow::Result<()> {
        let (head, rest) = path.split_first().context("empty path")?;
        let pos = self.members.iter().position(|(n, _)| n == head);
        match (rest.is_empty(), pos) {
            (true, None) => self.members.push((head.clone(), Member::Leaf(ty.clone()))),
            (true, Some(i)) => match &self.members[i].1 {
                Member::Leaf(t) if t == ty => {}
                _ => bail!("member {head} is declared twice with different types"),
            },
            (false, None) => {
                let mut n = Node::default();
                n.insert(rest, ty)?;
                self.members.push((head.clone(), Member::Nested(n)));
            }
            (false, Some(i)) => match &mut self.members[i].1 {
                Member::Nested(n) => n.insert(rest, ty)?,
                Member::Leaf(_) => bail!("member {head} is both a field and a struct"),
            },
        }
        Ok(())
    }

    /// Emits the struct definitions this node needs (nested ones first) and
    /// returns nothing; `name` is this node's C struct name.
    fn emit(&self, name: &str, out: &mut String) {
        for (m, member) in &self.members {
            if let Member::Nested(n) = member {
                n.emit(&format!("{name}__{m}"), out);
            }
        }
        let _ = writeln!(out, "struct {name} {{");
        for (m, member) in &self.members {
            let decl = match member {
                Member::Leaf(t) => t.c_member(m),
                Member::Nested(_) => format!("struct {name}__{m} {m};"),
            };
            let _ = writeln!(out, "\t{decl}");
        }
        out.push_str("} KILN_CORE;\n\n");
    }
}

/// Local names of nested structs: `kiln__<root>__<member>`; the root keeps
/// the kernel's name, which is what CO-RE matches.
fn emit_root(s: &Struct, out: &mut String) -> anyhow::Result<()> {
    let mut root = Node::default();
    for f in &s.fields {
        root.insert(&f.path, &f.ty)
            .with_context(|| format!("struct {} field {}", s.c, f.name))?;
    }
    for (m, member) in &root.members {
        if let Member::Nested(n) = member {
            n.emit(&format!("kiln__{}__{m}", s.c), out);
        }
    }
    let _ = writeln!(out, "struct {} {{", s.c);
    for (m, member) in &root.members {
        let decl = match member {
            Member::Leaf(t) => t.c_member(m),
            Member::Nested(_) => format!("struct kiln__{}__{m} {m};", s.c),
        };
        let _ = writeln!(out, "\t{decl}");
    }
    out.push_str("} KILN_CORE;\n\n");
    Ok(())
}

fn c_fn(s: &Struct, f: &Field) -> String {
    format!("kiln_core_{}_{}", s.c, f.name)
}

fn generate_c(structs: &[Struct]) -> anyhow::Result<String> {
    let mut out = String::from(
        "// @generated by `cargo xtask codegen` from core.toml. Do not edit.\n\
         //\n\
         // CO-RE accessors for Rust programs. Stable rustc cannot emit the\n\
         // `llvm.preserve.*.access.index` intrinsics behind CO-RE relocations, but\n\
         // clang can: each function reads one member of a local struct marked\n\
         // `preserve_access_index` that declares only the members listed (CO-RE\n\
         // matches by name, not layout). kiln-ebpf's build script compiles this to\n\
         // bitcode, bpf-linker links it into the program, the BPF backend records\n\
         // the relocations in .BTF.ext, and the loader rewrites each offset for the\n\
         // running kernel. Every read goes through bpf_probe_read_kernel and\n\
         // yields zeroes when it fails.\n\
         #include <linux/types.h>\n\n\
         #define KILN_INLINE __attribute__((always_inline))\n\
         #define KILN_CORE __attribute__((preserve_access_index))\n\n\
         static long (*const probe_read_kernel)(void *dst, __u32 size, const void *src) = (void *)113;\n\n",
    );
    for s in structs {
        let _ = writeln!(out, "struct {};", s.c);
    }
    out.push('\n');
    for s in structs {
        emit_root(s, &mut out)?;
    }
    for s in structs {
        for f in &s.fields {
            let member = format!("((const struct {} *)p)->{}", s.c, f.path.join("."));
            let access = format!("&{member}");
            let name = c_fn(s, f);
            match &f.ty {
                FieldType::Bytes(_) => {
                    let _ = write!(
                        out,
                        "KILN_INLINE long {name}(const void *p, void *dst)\n{{\n\
                         \treturn probe_read_kernel(dst, sizeof({member}), {access});\n}}\n\n"
                    );
                }
                ty => {
                    let c_ty = match ty {
                        FieldType::Int(_, c, _) => c.to_string(),
                        _ => "const void *".to_string(),
                    };
                    let _ = write!(
                        out,
                        "KILN_INLINE {c_ty} {name}(const void *p)\n{{\n\
                         \t{c_ty} v = 0;\n\
                         \tprobe_read_kernel((void *)&v, sizeof(v), {access});\n\
                         \treturn v;\n}}\n\n"
                    );
                }
            }
        }
    }
    Ok(out.trim_end().to_string() + "\n")
}

fn rust_wrapper(structs: &[Struct], c: &str) -> String {
    structs
        .iter()
        .find(|s| s.c == c)
        .map(|s| s.rust.clone())
        .unwrap_or_else(|| unreachable!("checked by parse_spec"))
}

fn generate_rust(structs: &[Struct]) -> String {
    let mut out = String::from(
        "// @generated by `cargo xtask codegen` from core.toml. Do not edit.\n\
         //\n\
         // Wrappers over the C accessors of shim/kiln_core.c; see core_read.rs.\n\n\
         #![allow(clippy::len_without_is_empty, reason = \"accessors are named after kernel fields\")]\n\n\
         use core::ffi::c_void;\n\n\
         #[cfg(target_arch = \"bpf\")]\n\
         mod sys {\n    use core::ffi::c_void;\n    unsafe extern \"C\" {\n",
    );
    let mut host = String::new();
    for s in structs {
        for f in &s.fields {
            let name = c_fn(s, f);
            let (params, ret) = match &f.ty {
                FieldType::Int(r, _, _) => ("p: *const c_void".to_string(), r.to_string()),
                FieldType::Bytes(_) => (
                    "p: *const c_void, dst: *mut c_void".to_string(),
                    "i64".to_string(),
                ),
                _ => ("p: *const c_void".to_string(), "*const c_void".to_string()),
            };
            let _ = writeln!(out, "        pub fn {name}({params}) -> {ret};");
            let body = if ret == "*const c_void" {
                "core::ptr::null()"
            } else {
                "0"
            };
            let params_unused = params.replace("p:", "_p:").replace("dst:", "_dst:");
            let _ = writeln!(
                host,
                "    pub unsafe fn {name}({params_unused}) -> {ret} {{\n        {body}\n    }}"
            );
        }
    }
    out.push_str("    }\n}\n\n");
    out.push_str(
        "/// Host stand-ins with the same signatures, so `cargo check` and unit\n\
         /// tests build; there is no kernel memory to read on the host.\n\
         #[cfg(not(target_arch = \"bpf\"))]\n\
         mod sys {\n    use core::ffi::c_void;\n",
    );
    out.push_str(&host);
    out.push_str("}\n");
    for s in structs {
        let _ = write!(
            out,
            "\n/// {}\n///\n/// Minimum kernel version: 5.5 (`bpf_probe_read_kernel`), with kernel BTF.\n\
             #[derive(Clone, Copy)]\n\
             pub struct {}(pub *const c_void);\n\n\
             impl {} {{\n\
             \x20   /// Whether the pointer is null (e.g. a read that failed).\n\
             \x20   #[inline(always)]\n\
             \x20   pub fn is_null(&self) -> bool {{\n\
             \x20       self.0.is_null()\n\
             \x20   }}\n",
            s.doc.as_deref().unwrap_or("A kernel struct pointer."),
            s.rust,
            s.rust
        );
        for f in &s.fields {
            let name = c_fn(s, f);
            let what = format!("`{}->{}`", s.c, f.path.join("."));
            let doc = match &f.doc {
                Some(d) => format!("    /// {what}, CO-RE relocated. {d}\n"),
                None => format!("    /// {what}, CO-RE relocated.\n"),
            };
            let safety = "        // SAFETY: the accessor reads only through bpf_probe_read_kernel, which\n        \
                          // never faults (any pointer is fine) and yields zeroes on failure.\n";
            let body = match &f.ty {
                FieldType::Int(r, _, _) => format!(
                    "    pub fn {}(&self) -> {r} {{\n{safety}        unsafe {{ sys::{name}(self.0) }}\n    }}\n",
                    f.name
                ),
                FieldType::Bytes(n) => format!(
                    "    pub fn {}(&self) -> [u8; {n}] {{\n        let mut v = [0u8; {n}];\n{safety}        \
                     unsafe {{ sys::{name}(self.0, v.as_mut_ptr().cast()) }};\n        v\n    }}\n",
                    f.name
                ),
                FieldType::PtrBytes => format!(
                    "    pub fn {}(&self) -> *const u8 {{\n{safety}        unsafe {{ sys::{name}(self.0) }}.cast()\n    }}\n",
                    f.name
                ),
                FieldType::PtrStruct(t) => format!(
                    "    pub fn {}(&self) -> {} {{\n{safety}        {}(unsafe {{ sys::{name}(self.0) }})\n    }}\n",
                    f.name,
                    rust_wrapper(structs, t),
                    rust_wrapper(structs, t)
                ),
            };
            let _ = write!(out, "\n{doc}    #[inline(always)]\n{body}");
        }
        out.push_str("}\n");
    }
    out
}

/// Checks every path against a kernel's BTF; returns the problems found.
fn validate(structs: &[Struct], btf: &Btf) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for s in structs {
        let Some(root) = btf.id_by_name(&s.c, Kind::Struct) else {
            problems.push(format!("struct {} is not in the kernel's BTF", s.c));
            continue;
        };
        for f in &s.fields {
            if let Err(e) = check_field(btf, root, f) {
                problems.push(format!("{}->{}: {e}", s.c, f.path.join(".")));
            }
        }
    }
    Ok(problems)
}

fn check_field(btf: &Btf, root: TypeId, f: &Field) -> anyhow::Result<()> {
    let mut cur = root;
    for (i, seg) in f.path.iter().enumerate() {
        let member_ty = find_member(btf, cur, seg)?.with_context(|| format!("no member {seg}"))?;
        let (id, t) = btf.skip_modifiers(member_ty)?;
        if i + 1 < f.path.len() {
            if !t.is_composite() {
                bail!("{seg} is not a struct or union");
            }
            cur = id;
            continue;
        }
        let ok = match (&f.ty, &t) {
            (FieldType::Int(_, _, n), Type::Int { size, .. } | Type::Enum { size, .. }) => {
                size == n
            }
            (FieldType::Bytes(n), Type::Array { nelems, elem, .. }) => {
                nelems == n && btf.resolve_size(*elem)? == 1
            }
            (FieldType::PtrBytes, Type::Ptr { target, .. }) => {
                btf.resolve_size(*target).is_ok_and(|s| s == 1)
            }
            (FieldType::PtrStruct(name), Type::Ptr { target, .. }) => {
                let (_, pointee) = btf.skip_modifiers(*target)?;
                matches!(pointee.kind(), Kind::Struct | Kind::Fwd)
                    && btf.str_at(pointee.name_off())? == name
            }
            _ => false,
        };
        if !ok {
            bail!("the kernel's {:?} does not match {:?}", t.kind(), f.ty);
        }
    }
    Ok(())
}

/// The type of member `name` of composite `id`, looking inside anonymous
/// members the way CO-RE does.
fn find_member(btf: &Btf, id: TypeId, name: &str) -> anyhow::Result<Option<TypeId>> {
    let (_, t) = btf.skip_modifiers(id)?;
    let members = match &t {
        Type::Struct { members, .. } | Type::Union { members, .. } => members,
        _ => return Ok(None),
    };
    for m in members {
        let mname = btf.str_at(m.name_off)?;
        if mname == name {
            return Ok(Some(m.type_id));
        }
        if mname.is_empty() {
            if let Some(found) = find_member(btf, m.type_id, name)? {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}

/// The generated files, as `(path relative to the repository, contents)`.
/// Validates against `vmlinux` when it exists.
pub fn generate(root: &Path, vmlinux: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let spec_path = root.join("ebpf-sdk/kiln-ebpf/core.toml");
    let text = std::fs::read_to_string(&spec_path)
        .with_context(|| format!("reading {}", spec_path.display()))?;
    let structs = parse_spec(&text, &spec_path)?;
    if vmlinux.exists() {
        let bytes =
            std::fs::read(vmlinux).with_context(|| format!("reading {}", vmlinux.display()))?;
        let btf = Btf::from_bytes(bytes)
            .map_err(|e| anyhow::anyhow!("parsing {}: {e}", vmlinux.display()))?;
        let problems = validate(&structs, &btf)?;
        if !problems.is_empty() {
            bail!(
                "{} does not match {}:\n  {}",
                spec_path.display(),
                vmlinux.display(),
                problems.join("\n  ")
            );
        }
    } else {
        eprintln!(
            "codegen: {} is missing; core.toml not checked against a kernel",
            vmlinux.display()
        );
    }
    Ok(vec![
        (
            "ebpf-sdk/kiln-ebpf/shim/kiln_core.c".into(),
            generate_c(&structs)?,
        ),
        (
            "ebpf-sdk/kiln-ebpf/src/core_read/generated.rs".into(),
            generate_rust(&structs),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
[[struct]]
c = "sock"
rust = "Sock"
fields = [
    { name = "family", path = "__sk_common.skc_family", type = "u16" },
    { name = "num", path = "__sk_common.skc_num", type = "u16" },
    { name = "me", type = "*sock" },
    { name = "name", type = "[u8; 8]" },
]
"#;

    #[test]
    fn nested_members_share_one_local_struct() {
        let s = parse_spec(SPEC, Path::new("t.toml")).unwrap();
        let c = generate_c(&s).unwrap();
        assert!(c.contains(
            "struct kiln__sock____sk_common {\n\t__u16 skc_family;\n\t__u16 skc_num;\n} KILN_CORE;"
        ));
        assert!(c.contains("struct sock {\n\tstruct kiln__sock____sk_common __sk_common;"));
        assert!(c.contains("&((const struct sock *)p)->__sk_common.skc_num"));
        let r = generate_rust(&s);
        assert!(r.contains("pub fn me(&self) -> Sock {"));
        assert!(r.contains("pub fn name(&self) -> [u8; 8] {"));
    }

    #[test]
    fn rejects_bad_specs() {
        let bad_type = SPEC.replace("\"u16\" }", "\"u17\" }");
        assert!(parse_spec(&bad_type, Path::new("t")).is_err());
        let unknown_ptr = SPEC.replace("*sock", "*nope");
        assert!(parse_spec(&unknown_ptr, Path::new("t")).is_err());
        let s = parse_spec(
            &SPEC.replace(
                "{ name = \"me\"",
                "{ name = \"x\", path = \"__sk_common.skc_num\", type = \"u32\" },\n{ name = \"me\"",
            ),
            Path::new("t"),
        )
        .unwrap();
        assert!(generate_c(&s).is_err(), "one member, two types");
    }

    #[test]
    fn checks_against_the_running_kernel() {
        // Kiln needs kernel BTF on every development machine.
        let vmlinux = Path::new("/sys/kernel/btf/vmlinux");
        let bytes = std::fs::read(vmlinux).unwrap_or_else(|e| {
            panic!("{}: {e} (a kernel with BTF is required)", vmlinux.display())
        });
        let btf = Btf::from_bytes(bytes).unwrap();
        let s = parse_spec(SPEC, Path::new("t")).unwrap();
        let problems = validate(&s, &btf).unwrap();
        // `name` and `me` are made up: exactly those two are reported.
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|p| p.contains("no member")));
    }
}
