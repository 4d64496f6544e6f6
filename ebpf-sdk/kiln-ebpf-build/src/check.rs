//! Checks declarations against a kernel's BTF, so a typo or a field the
//! kernel lacks fails the build rather than the load.

use std::path::{Path, PathBuf};

use kiln_obj::btf::{Btf, Kind, Type, TypeId, essential_name};

use crate::Error;
use crate::spec::{Field, FieldType, Spec};

/// A kernel BTF and what to call it in messages.
pub struct KernelBtf {
    pub btf: Btf,
    /// `kernel 6.18.44 (/sys/kernel/btf/vmlinux)` or the file's path.
    pub label: String,
}

const RUNNING: &str = "/sys/kernel/btf/vmlinux";

impl KernelBtf {
    /// Reads a BTF file; `label` names it in messages.
    pub fn load(path: &Path, label: String) -> Result<KernelBtf, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let btf = Btf::from_bytes(bytes).map_err(|source| Error::Btf {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(KernelBtf { btf, label })
    }

    /// `KILN_BTF=FILE` (which must exist), else the running kernel's BTF
    /// when it has one, else `None`.
    pub fn from_env() -> Result<Option<KernelBtf>, Error> {
        if let Some(file) = std::env::var_os("KILN_BTF") {
            let path = PathBuf::from(file);
            let label = format!("the BTF of KILN_BTF={}", path.display());
            return KernelBtf::load(&path, label).map(Some);
        }
        let running = Path::new(RUNNING);
        if !running.exists() {
            return Ok(None);
        }
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let label = format!("kernel {} ({RUNNING})", release.trim());
        KernelBtf::load(running, label).map(Some)
    }
}

/// Checks `spec` against `kernel`. Missing declarations marked optional come
/// back as warnings; anything else wrong is an [`Error::Mismatch`] listing
/// every problem with its TOML line.
pub fn check(spec: &Spec, kernel: &KernelBtf) -> Result<Vec<String>, Error> {
    let btf = &kernel.btf;
    let file = spec.path.display();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut report = |line: usize, optional: bool, what: String| {
        if optional {
            warnings.push(format!(
                "{file}:{line}: {what} in {} (optional: its accessors read zeroes there)",
                kernel.label
            ));
        } else {
            problems.push(format!(
                "{file}:{line}: {what}; mark it `optional = true` if kernels may lack it"
            ));
        }
    };
    for s in &spec.structs {
        let Some(root) = find_type(btf, &s.c, &[Kind::Struct, Kind::Union]) else {
            report(
                s.line,
                s.optional,
                format!("struct {} does not exist", essential_name(&s.c)),
            );
            continue;
        };
        for f in &s.fields {
            match check_field(btf, root, f) {
                Ok(()) => {}
                Err(Problem::Missing(what)) => report(
                    f.line,
                    f.optional,
                    format!("field {} ({}->{}): {what}", f.name, s.c, f.c_path()),
                ),
                Err(Problem::Wrong(what)) => report(
                    f.line,
                    false,
                    format!("field {} ({}->{}): {what}", f.name, s.c, f.c_path()),
                ),
            }
        }
    }
    for e in &spec.enums {
        let Some(id) = find_type(btf, &e.c, &[Kind::Enum, Kind::Enum64]) else {
            report(
                e.line,
                e.optional,
                format!("enum {} does not exist", essential_name(&e.c)),
            );
            continue;
        };
        let names = enumerators(btf, id);
        for v in &e.values {
            if !names.iter().any(|n| n == essential_name(&v.c)) {
                report(
                    v.line,
                    v.optional,
                    format!("enum {} has no value {}", essential_name(&e.c), v.c),
                );
            }
        }
    }
    for k in &spec.kfuncs {
        if btf.find_by_name(Kind::Func, &k.name).is_none() {
            report(k.line, k.weak, format!("kfunc {} does not exist", k.name));
        }
    }
    if problems.is_empty() {
        Ok(warnings)
    } else {
        Err(Error::Mismatch {
            spec: spec.path.clone(),
            kernel: kernel.label.clone(),
            problems,
        })
    }
}

enum Problem {
    /// The kernel lacks it (fine when optional).
    Missing(String),
    /// It exists with another shape: always an error.
    Wrong(String),
}

impl From<kiln_obj::btf::BtfError> for Problem {
    fn from(e: kiln_obj::btf::BtfError) -> Self {
        Problem::Wrong(format!("malformed kernel BTF: {e}"))
    }
}

/// A named type of one of `kinds`, by its name without `___flavor`.
fn find_type(btf: &Btf, name: &str, kinds: &[Kind]) -> Option<TypeId> {
    let name = essential_name(name);
    btf.ids_by_name(name)
        .into_iter()
        .find(|id| btf.kind_of(*id).is_ok_and(|k| kinds.contains(&k)))
}

fn enumerators(btf: &Btf, id: TypeId) -> Vec<String> {
    let offs: Vec<u32> = match btf.type_by_id(id) {
        Ok(Type::Enum { values, .. }) => values.iter().map(|v| v.name_off).collect(),
        Ok(Type::Enum64 { values, .. }) => values.iter().map(|v| v.name_off).collect(),
        _ => Vec::new(),
    };
    offs.into_iter()
        .filter_map(|o| btf.str_at(o).ok().map(str::to_owned))
        .collect()
}

fn check_field(btf: &Btf, root: TypeId, f: &Field) -> Result<(), Problem> {
    let mut cur = root;
    for (i, seg) in f.path.iter().enumerate() {
        let (member_ty, bitfield_bits) = find_member(btf, cur, &seg.name)?
            .ok_or_else(|| Problem::Missing(format!("no member {}", seg.name)))?;
        let bits = bitfield_bits;
        let (mut id, mut t) = btf.skip_modifiers(member_ty)?;
        if let Some(index) = seg.index {
            let Type::Array { elem, nelems, .. } = t else {
                return Err(Problem::Wrong(format!("{} is not an array", seg.name)));
            };
            if nelems != 0 && index >= nelems {
                return Err(Problem::Wrong(format!(
                    "{}[{index}] is out of bounds (it has {nelems})",
                    seg.name
                )));
            }
            (id, t) = btf.skip_modifiers(elem)?;
        }
        if i + 1 < f.path.len() {
            if !t.is_composite() {
                return Err(Problem::Wrong(format!(
                    "{} is not a struct or union",
                    seg.name
                )));
            }
            cur = id;
            continue;
        }
        if bits != 0 && !f.bitfield {
            return Err(Problem::Wrong(format!(
                "it is a {bits}-bit bitfield here: declare it with `bitfield = true`"
            )));
        }
        let ok = match (&f.ty, &t) {
            (
                FieldType::Int(it),
                Type::Int { size, .. } | Type::Enum { size, .. } | Type::Enum64 { size, .. },
            ) => {
                match (f.bitfield, bits) {
                    // The value must fit the declared type.
                    (true, 0) => *size <= it.size,
                    (true, bits) => bits <= it.size * 8,
                    (false, _) => *size == it.size,
                }
            }
            (FieldType::Array(it, n), Type::Array { nelems, elem, .. }) => {
                nelems == n && btf.resolve_size(*elem)? == it.size
            }
            (FieldType::PtrBytes, Type::Ptr { target, .. }) => {
                btf.resolve_size(*target).is_ok_and(|s| s == 1)
            }
            (FieldType::PtrStruct(name), Type::Ptr { target, .. }) => {
                let (_, pointee) = btf.skip_modifiers(*target)?;
                matches!(pointee.kind(), Kind::Struct | Kind::Union | Kind::Fwd)
                    && btf.str_at(pointee.name_off())? == essential_name(name)
            }
            _ => false,
        };
        if !ok {
            let size = btf
                .resolve_size(id)
                .map(|s| format!(" of {s} bytes"))
                .unwrap_or_default();
            return Err(Problem::Wrong(format!(
                "the kernel has a {:?}{size}{}, which does not fit `{}`",
                t.kind(),
                if bits != 0 {
                    format!(" ({bits}-bit bitfield)")
                } else {
                    String::new()
                },
                describe(&f.ty)
            )));
        }
    }
    Ok(())
}

fn describe(ty: &FieldType) -> String {
    match ty {
        FieldType::Int(t) => t.rust.to_string(),
        FieldType::Array(t, n) => format!("[{}; {n}]", t.rust),
        FieldType::PtrBytes => "*u8".into(),
        FieldType::PtrStruct(s) => format!("*{s}"),
    }
}

/// The type of member `name` of composite `id` and its bitfield size (0 when
/// not a bitfield), looking inside anonymous members the way CO-RE does.
fn find_member(btf: &Btf, id: TypeId, name: &str) -> Result<Option<(TypeId, u32)>, Problem> {
    let (_, t) = btf.skip_modifiers(id)?;
    let (members, kind_flag) = match &t {
        Type::Struct {
            members, kind_flag, ..
        }
        | Type::Union {
            members, kind_flag, ..
        } => (members, *kind_flag),
        _ => return Ok(None),
    };
    for m in members {
        let mname = btf.str_at(m.name_off)?;
        if mname == name {
            return Ok(Some((m.type_id, m.bitfield_size(kind_flag))));
        }
        if mname.is_empty() {
            if let Some(found) = find_member(btf, m.type_id, name)? {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}
