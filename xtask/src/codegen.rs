//! `cargo xtask codegen [helpers|core] [--check]`: generates
//! `ebpf-sdk/kiln-ebpf/src/helpers/generated.rs` (every BPF helper's id and
//! signature) from the kernel's UAPI header, and the CO-RE accessors from
//! `ebpf-sdk/kiln-ebpf/core.toml` (see `core_access`).
//!
//! The source of truth is `linux/bpf.h` from Debian's linux-libc-dev: its
//! `__BPF_FUNC_MAPPER` list gives each helper's id (by position in older
//! headers, `FN(name, id, ...)` in newer ones) and the big doc comment above
//! it gives each prototype. The output is checked in; `--check` fails when it
//! is stale so CI notices a header bump.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

pub mod btf_bindgen;
mod core_access;

#[derive(clap::Args)]
pub struct Args {
    /// What to generate (default: everything).
    #[arg(value_enum)]
    what: Option<What>,
    /// Do not write; fail if a checked-in file differs from what would be generated.
    #[arg(long)]
    check: bool,
    /// The header to read helpers from.
    #[arg(long, default_value = "/usr/include/linux/bpf.h")]
    header: PathBuf,
    /// The kernel BTF that core.toml's field paths are checked against (skipped when absent).
    #[arg(long, default_value = "/sys/kernel/btf/vmlinux")]
    vmlinux: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum What {
    /// helpers/generated.rs from linux/bpf.h.
    Helpers,
    /// CO-RE accessors (shim/kiln_core.c, core_read/generated.rs) from core.toml.
    Core,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = repo_root();
    let mut outputs = Vec::new();
    if args.what.is_none_or(|w| w == What::Helpers) {
        let header = std::fs::read_to_string(&args.header)
            .with_context(|| format!("reading {}", args.header.display()))?;
        outputs.push((
            "ebpf-sdk/kiln-ebpf/src/helpers/generated.rs".to_string(),
            generate(&header, &args.header)?,
        ));
    }
    if args.what.is_none_or(|w| w == What::Core) {
        outputs.extend(core_access::generate(&root, &args.vmlinux)?);
    }
    let mut stale = Vec::new();
    for (rel, generated) in &outputs {
        let out = root.join(rel);
        if args.check {
            let current = std::fs::read_to_string(&out).unwrap_or_default();
            if current != *generated {
                stale.push(out.display().to_string());
            } else {
                println!("codegen: {} is up to date", out.display());
            }
            continue;
        }
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&out, generated).with_context(|| format!("writing {}", out.display()))?;
        println!("codegen: wrote {}", out.display());
    }
    if !stale.is_empty() {
        bail!(
            "stale (or missing): {}; run `cargo xtask codegen` and commit the result",
            stale.join(", ")
        );
    }
    Ok(())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}

/// One helper: `ret name(params)`.
#[derive(Debug, PartialEq)]
struct Proto {
    ret: String,
    params: Vec<(String, String)>,
    variadic: bool,
}

/// Helper names in id order from `__BPF_FUNC_MAPPER` / `___BPF_FUNC_MAPPER`.
fn helper_ids(header: &str) -> anyhow::Result<Vec<(String, u32)>> {
    let start = header
        .find("#define ___BPF_FUNC_MAPPER(")
        .or_else(|| header.find("#define __BPF_FUNC_MAPPER("))
        .context("no __BPF_FUNC_MAPPER in the header")?;
    let mut ids = Vec::new();
    // The macro body: lines ending in a backslash.
    for line in header[start..].lines().skip(1) {
        let t = line
            .trim()
            .trim_end_matches('\\')
            .trim()
            .trim_end_matches(',');
        if let Some(inner) = t.strip_prefix("FN(").and_then(|s| s.strip_suffix(')')) {
            let mut parts = inner.split(',').map(str::trim);
            let name = parts.next().unwrap_or_default().to_string();
            // Newer headers spell the id; older ones rely on the position.
            let id = match parts.next() {
                Some(id) => id
                    .parse::<u32>()
                    .with_context(|| format!("helper {name}: id {id:?} is not a number"))?,
                None => ids.len() as u32,
            };
            ids.push((name, id));
        }
        if !line.trim_end().ends_with('\\') {
            break;
        }
    }
    if ids.len() < 100 {
        bail!(
            "only {} helpers in __BPF_FUNC_MAPPER: parser out of date?",
            ids.len()
        );
    }
    Ok(ids)
}

/// Prototypes from the doc comment: a ` * <proto>` line directly followed by a
/// `Description` line.
fn prototypes(header: &str) -> BTreeMap<String, Proto> {
    let lines: Vec<&str> = header.lines().collect();
    let mut out = BTreeMap::new();
    for pair in lines.windows(2) {
        let (line, next) = (pair[0], pair[1]);
        let is_desc = next
            .strip_prefix(" *")
            .map(|r| r.trim_start().starts_with("Description"))
            .unwrap_or(false);
        let Some(proto) = line.strip_prefix(" * ") else {
            continue;
        };
        if !is_desc || proto.starts_with(['\t', ' ']) {
            continue;
        }
        if let Some((name, p)) = parse_proto(proto) {
            out.insert(name, p);
        }
    }
    out
}

/// Parses `long bpf_map_update_elem(struct bpf_map *map, const void *key, ...)`.
fn parse_proto(s: &str) -> Option<(String, Proto)> {
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let head = s[..open].trim();
    let name_start = head.rfind([' ', '*'])? + 1;
    let name = head[name_start..].strip_prefix("bpf_")?.to_string();
    let ret = head[..name_start].trim().to_string();
    let mut params = Vec::new();
    let mut variadic = false;
    for p in s[open + 1..close].split(',').map(str::trim) {
        match p {
            "void" | "" => {}
            "..." => variadic = true,
            _ => {
                let split = p.rfind([' ', '*'])? + 1;
                params.push((p[..split].trim().to_string(), p[split..].to_string()));
            }
        }
    }
    Some((
        name,
        Proto {
            ret,
            params,
            variadic,
        },
    ))
}

/// The Rust type for a C type of the helper prototypes. Kernel structs become
/// `c_void` pointers: the helpers take them opaquely, and the typed safe
/// wrappers in `helpers/mod.rs` give them meaning.
fn rust_type(c: &str) -> anyhow::Result<String> {
    let c = c.trim();
    if let Some(inner) = c.strip_suffix('*') {
        let inner = inner.trim();
        let (is_const, base) = match inner.strip_prefix("const ") {
            Some(b) => (true, b.trim()),
            None => (false, inner),
        };
        let target = match base {
            "void" => "c_void".to_string(),
            "char" => "c_char".to_string(),
            b if b.starts_with("struct ") || b.starts_with("union ") => "c_void".to_string(),
            b => rust_type(b)?,
        };
        let ptr = if is_const { "*const" } else { "*mut" };
        return Ok(format!("{ptr} {target}"));
    }
    Ok(match c {
        "void" => "()",
        "u8" | "__u8" => "u8",
        "u16" | "__u16" | "__be16" => "u16",
        "u32" | "__u32" | "__be32" | "__wsum" | "unsigned int" => "u32",
        "u64" | "__u64" | "unsigned long" | "unsigned long long" => "u64",
        "s32" | "__s32" | "int" => "i32",
        "s64" | "__s64" | "long" | "long long" => "i64",
        "size_t" => "usize",
        "enum bpf_func_id" => "u32",
        other => bail!("codegen: no Rust type for C type {other:?}"),
    }
    .to_string())
}

/// Rust keywords that helper parameter names sometimes collide with.
fn param_name(n: &str) -> String {
    match n {
        "type" | "ref" | "fn" | "move" | "loop" | "match" | "mod" | "impl" | "in" | "where" => {
            format!("r#{n}")
        }
        _ => n.to_string(),
    }
}

fn generate(header: &str, header_path: &Path) -> anyhow::Result<String> {
    let ids = helper_ids(header)?;
    let protos = prototypes(header);
    let mut out = String::new();
    writeln!(
        out,
        "// @generated by `cargo xtask codegen` from {} ({} helpers). Do not edit.",
        header_path.display(),
        ids.len()
    )?;
    out.push_str(
        "//\n// Each helper is called the way the BPF backend expects: through a function\n\
         // pointer whose address is the helper id, which LLVM lowers to `call <id>`.\n\n\
         #![allow(clippy::missing_safety_doc, clippy::too_many_arguments)]\n\n\
         #[allow(unused_imports)]\n\
         use core::ffi::{c_char, c_void};\n\n",
    );
    for (name, id) in &ids {
        if name == "unspec" {
            continue;
        }
        let Some(proto) = protos.get(name) else {
            bail!("helper bpf_{name} (id {id}) has no prototype in the header's doc comment");
        };
        let mut params: Vec<(String, String)> = proto
            .params
            .iter()
            .map(|(t, n)| Ok((param_name(n), rust_type(t)?)))
            .collect::<anyhow::Result<_>>()?;
        if proto.variadic {
            // The variadic helpers take at most five register arguments in all.
            for i in 0..5usize.saturating_sub(params.len()) {
                params.push((format!("arg{i}"), "u64".to_string()));
            }
        }
        let ret = rust_type(&proto.ret)?;
        let ret_sig = if ret == "()" {
            String::new()
        } else {
            format!(" -> {ret}")
        };
        let decl: Vec<String> = params.iter().map(|(n, t)| format!("{n}: {t}")).collect();
        let types: Vec<&str> = params.iter().map(|(_, t)| t.as_str()).collect();
        let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
        let c_params: Vec<String> = proto
            .params
            .iter()
            .map(|(t, n)| format!("{t} {n}").replace("* ", "*"))
            .collect();
        let c_params = if proto.variadic {
            format!("{}, ...", c_params.join(", "))
        } else {
            c_params.join(", ")
        };
        writeln!(out, "/// Helper id of `bpf_{name}`.")?;
        writeln!(
            out,
            "pub const BPF_FUNC_{}: u32 = {id};",
            name.to_uppercase()
        )?;
        writeln!(out)?;
        writeln!(out, "/// `{} bpf_{name}({c_params})`", proto.ret)?;
        writeln!(out, "#[inline(always)]")?;
        writeln!(
            out,
            "pub unsafe fn bpf_{name}({}){ret_sig} {{",
            decl.join(", ")
        )?;
        writeln!(
            out,
            "    // SAFETY: the BPF backend turns a call through address {id} into the helper call;\n    \
             // the caller upholds the helper's contract for the arguments."
        )?;
        writeln!(out, "    unsafe {{")?;
        writeln!(
            out,
            "        let f: unsafe extern \"C\" fn({}){ret_sig} = core::mem::transmute({id}usize);",
            types.join(", ")
        )?;
        writeln!(out, "        f({})", names.join(", "))?;
        writeln!(out, "    }}")?;
        writeln!(out, "}}")?;
        writeln!(out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prototypes() {
        let (name, p) = parse_proto(
            "long bpf_map_update_elem(struct bpf_map *map, const void *key, u64 flags)",
        )
        .unwrap();
        assert_eq!(name, "map_update_elem");
        assert_eq!(p.ret, "long");
        assert_eq!(p.params[0], ("struct bpf_map *".into(), "map".into()));
        assert_eq!(p.params[2], ("u64".into(), "flags".into()));
        let (name, p) = parse_proto("struct task_struct *bpf_get_current_task_btf(void)").unwrap();
        assert_eq!(name, "get_current_task_btf");
        assert_eq!(p.ret, "struct task_struct *");
        assert!(p.params.is_empty());
        let (_, p) =
            parse_proto("long bpf_trace_printk(const char *fmt, u32 fmt_size, ...)").unwrap();
        assert!(p.variadic);
    }

    #[test]
    fn maps_types() {
        assert_eq!(rust_type("const void *").unwrap(), "*const c_void");
        assert_eq!(rust_type("struct bpf_map *").unwrap(), "*mut c_void");
        assert_eq!(rust_type("u64 *").unwrap(), "*mut u64");
        assert_eq!(rust_type("const char *").unwrap(), "*const c_char");
        assert!(rust_type("struct foo").is_err());
    }

    #[test]
    fn ids_by_position_and_explicit() {
        let old = "#define __BPF_FUNC_MAPPER(FN)\t\\\n\tFN(unspec),\t\\\n\tFN(map_lookup_elem),\t\\\n\tFN(x),\n";
        // Too few to be a real header: the sanity check trips.
        assert!(helper_ids(old).is_err());
        let mut new = String::from("#define ___BPF_FUNC_MAPPER(FN, ctx...)\t\\\n");
        for i in 0..120 {
            new.push_str(&format!("\tFN(h{i}, {}, ##ctx)\t\\\n", i * 2));
        }
        new.push_str("\t/* end */\n");
        let ids = helper_ids(&new).unwrap();
        assert_eq!(ids[3], ("h3".into(), 6));
    }
}
