//! CO-RE for any kernel type, declared by the program's own crate.
//!
//! A Rust eBPF crate lists the kernel types, fields and enum values it reads
//! in a `core.toml` next to its `Cargo.toml` and calls [`build`] from its
//! `build.rs`:
//!
//! ```text
//! // build.rs
//! fn main() {
//!     kiln_ebpf_build::build_or_exit();
//! }
//! ```
//!
//! ```ignore
//! // src/main.rs
//! mod kernel {
//!     include!(concat!(env!("OUT_DIR"), "/kiln_core.rs"));
//! }
//! let task = kernel::Task::from_ptr(ptr); // the wrappers core.toml names
//! let argv_start = task.mm().arg_start();
//! ```
//!
//! Why a build script and not a macro: stable rustc cannot emit the
//! `llvm.preserve.*.access.index` / `llvm.bpf.preserve.*.info` intrinsics
//! CO-RE relocations come from, clang can. So each declared field becomes a
//! small C function over a *local* struct marked `preserve_access_index`
//! that holds only the declared members (CO-RE matches members by name, not
//! layout), compiled by clang to LLVM bitcode that bpf-linker links into the
//! program (LTO inlines it). Running clang and archiving its output is a
//! build script's job; a proc macro would have to smuggle an archive into
//! the link. The same generator writes the SDK's own accessors
//! (`cargo xtask codegen core`), so there is one implementation.
//!
//! When a kernel BTF is available (`KILN_BTF=FILE`, else
//! `/sys/kernel/btf/vmlinux`) every declaration is checked against it, and a
//! field that does not exist there and is not marked `optional = true` fails
//! the build with an error naming the field, the TOML line and the kernel.
//!
//! The `core.toml` format is described in this crate's README.md; a
//! complete example is `ebpf-sdk/examples/core-tracer`.

pub mod bindgen;
mod check;
mod compile;
mod emit;
mod spec;

use std::path::{Path, PathBuf};

pub use check::{KernelBtf, check};
pub use emit::{Generated, generate};
pub use spec::{Spec, parse};

/// Everything that can go wrong, naming the file, line, type or field.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}")]
    Toml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// A declaration that cannot be generated (bad type, unknown pointee...).
    #[error("{path}:{line}: {what}")]
    Spec {
        path: PathBuf,
        line: usize,
        what: String,
    },
    #[error("{path}: not a valid BTF blob")]
    Btf {
        path: PathBuf,
        #[source]
        source: kiln_obj::btf::BtfError,
    },
    /// Declarations that do not match the kernel checked against.
    #[error("{spec} does not match {kernel}:\n  {}", problems.join("\n  "))]
    Mismatch {
        spec: PathBuf,
        kernel: String,
        problems: Vec<String>,
    },
    #[error("{what}: cannot run {tool} (install clang-22 or set KILN_CLANG)")]
    Tool {
        what: String,
        tool: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {tool} failed ({status})")]
    ToolFailed {
        what: String,
        tool: String,
        status: std::process::ExitStatus,
    },
    #[error("cargo did not set {0}: run this from a build script")]
    NoCargoEnv(&'static str),
}

/// Calls [`build`] and, on error, prints it and exits with status 1, so the
/// build stops with the message instead of a panic's backtrace.
pub fn build_or_exit() {
    if let Err(e) = build() {
        eprintln!("error: kiln-ebpf-build: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            eprintln!("  caused by: {s}");
            source = s.source();
        }
        std::process::exit(1);
    }
}

/// For a build script: reads `$CARGO_MANIFEST_DIR/core.toml`, checks it
/// against the kernel BTF when one is available, writes
/// `$OUT_DIR/kiln_core.rs` (include it), and for the BPF target compiles the
/// C accessors to bitcode and links them.
pub fn build() -> Result<(), Error> {
    let var = |k: &'static str| std::env::var_os(k).ok_or(Error::NoCargoEnv(k));
    let manifest = PathBuf::from(var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(var("OUT_DIR")?);
    let package = var("CARGO_PKG_NAME")?.to_string_lossy().into_owned();
    let spec_path = manifest.join("core.toml");
    println!("cargo:rerun-if-changed={}", spec_path.display());
    for v in ["KILN_BTF", "KILN_CLANG"] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let text = std::fs::read_to_string(&spec_path).map_err(|source| Error::Io {
        path: spec_path.clone(),
        source,
    })?;
    let spec = parse(&text, &spec_path)?;
    match KernelBtf::from_env()? {
        Some(kernel) => {
            for warning in check(&spec, &kernel)? {
                println!("cargo:warning={warning}");
            }
        }
        None => println!(
            "cargo:warning=no kernel BTF (/sys/kernel/btf/vmlinux, or KILN_BTF=FILE): {} not checked against a kernel",
            spec_path.display()
        ),
    }
    let prefix = format!("kiln_core_{}", sanitize(&package));
    let generated = generate(&spec, &prefix)?;
    write(&out.join("kiln_core.rs"), &generated.rust)?;
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("bpf") {
        let c = out.join(format!("{prefix}.c"));
        write(&c, &generated.c)?;
        let big_endian = std::env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() == Ok("big");
        compile::bitcode(&c, &out, &prefix, big_endian)?;
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A C identifier fragment from a package name (`my-prog` → `my_prog`).
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
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
    { name = "me", type = "*sock", optional = true },
    { name = "userlocks", path = "sk_userlocks", type = "u8", bitfield = true },
    { name = "made_up", type = "u32", optional = true },
]

[[struct]]
c = "mm_struct"
rust = "Mm"
fields = [
    { name = "auxv1", path = "saved_auxv[1]", type = "u64" },
    { name = "auxv3", path = "saved_auxv[3]", type = "u64" },
]

[[struct]]
c = "task_struct___old"
rust = "TaskOld"
fields = [{ name = "state", type = "i64", optional = true }]

[[enum]]
c = "sock_type"
rust = "SockType"
values = [
    { name = "stream", c = "SOCK_STREAM" },
    { name = "bogus", c = "SOCK_BOGUS", optional = true },
]

[[kfunc]]
name = "bpf_task_from_pid"
args = ["i32"]
ret = "*task_struct"

[[kfunc]]
name = "bpf_kiln_made_up"
weak = true
"#;

    fn spec(text: &str) -> Spec {
        parse(text, Path::new("core.toml")).unwrap()
    }

    #[test]
    fn emits_local_structs_and_every_relocation_kind() {
        let g = generate(&spec(SPEC), "kiln_core_t").unwrap();
        let c = &g.c;
        // Nested members share one local struct; the root carries the crate's flavor.
        assert!(c.contains(
            "struct kiln__sock____sk_common {\n\t__u16 skc_family;\n\t__u16 skc_num;\n} KILN_CORE;"
        ), "{c}");
        assert!(c.contains("struct sock___kiln_core_t {\n\tstruct kiln__sock____sk_common __sk_common;\n\tstruct sock___kiln_core_t *me;"));
        // Indexed paths size the local array to the largest index.
        assert!(c.contains("__u64 saved_auxv[4];"));
        assert!(c.contains("&((const struct mm_struct___kiln_core_t *)p)->saved_auxv[3]"));
        // A user flavor is kept as written.
        assert!(c.contains("struct task_struct___old {\n\t__s64 state;"));
        // Bitfields: the five field-info kinds.
        for kind in 0..=5 {
            assert!(c.contains(&format!("__builtin_preserve_field_info(((const struct sock___kiln_core_t *)p)->sk_userlocks, {kind})")) || kind == 2, "kind {kind}");
        }
        assert!(c.contains(
            "__builtin_preserve_field_info(((const struct sock___kiln_core_t *)0)->made_up, 2)"
        ));
        assert!(c.contains("__builtin_preserve_type_info(*(struct sock___kiln_core_t *)0, 0)"));
        assert!(c.contains("__builtin_preserve_enum_value(*(enum sock_type *)SOCK_BOGUS, 0)"));
        assert!(c.contains("__builtin_preserve_enum_value(*(enum sock_type *)SOCK_STREAM, 1)"));
        // kfuncs: `.ksyms` externs (weak when optional), the kernel's struct
        // defined (libbpf rejects a FWD in a kfunc prototype).
        assert!(c.contains("struct task_struct {};"));
        assert!(c.contains("extern struct task_struct * bpf_task_from_pid(__s32 a0) __attribute__((section(\".ksyms\")));"), "{c}");
        assert!(c.contains("extern void bpf_kiln_made_up(void) __attribute__((section(\".ksyms\"))) __attribute__((weak));"), "{c}");
        let r = &g.rust;
        for sig in [
            "pub unsafe fn bpf_task_from_pid(a0: i32) -> *mut c_void {",
            "pub fn bpf_kiln_made_up_exists() -> bool {",
            "pub fn me(&self) -> Sock {",
            "pub fn userlocks(&self) -> u8 {",
            "pub fn made_up_exists() -> bool {",
            "pub fn made_up_size() -> u32 {",
            "pub fn type_exists() -> bool {",
            "pub fn stream() -> i64 {",
            "pub fn bogus_exists() -> bool {",
        ] {
            assert!(r.contains(sig), "{sig}");
        }
    }

    #[test]
    fn rejects_inconsistent_specs() {
        let twice = SPEC.replace(
            "{ name = \"me\"",
            "{ name = \"x\", path = \"__sk_common.skc_num\", type = \"u32\" },\n    { name = \"me\"",
        );
        let e = generate(&spec(&twice), "p").err().unwrap().to_string();
        assert!(e.starts_with("core.toml:8: struct sock field x"), "{e}");
        let clash = SPEC.replace("name = \"made_up\"", "name = \"me_exists\"");
        assert!(generate(&spec(&clash), "p").is_err());
        let mixed = SPEC.replace("saved_auxv[3]", "saved_auxv");
        assert!(generate(&spec(&mixed), "p").is_err());
    }

    #[test]
    fn checks_against_the_running_kernel() {
        // Kiln needs kernel BTF on every development machine.
        let kernel = KernelBtf::load(Path::new("/sys/kernel/btf/vmlinux"), "this kernel".into())
            .expect("a kernel with BTF is required");
        // Optional misses are warnings.
        let warnings = check(&spec(SPEC), &kernel).unwrap();
        assert!(
            warnings.iter().any(|w| w.contains("field made_up")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|w| w.contains("no value SOCK_BOGUS")),
            "{warnings:?}"
        );
        // A required miss names the field, its line and the kernel.
        let required = SPEC.replace("type = \"u32\", optional = true", "type = \"u32\"");
        let e = check(&spec(&required), &kernel).err().unwrap().to_string();
        assert!(
            e.contains("core.toml:10: field made_up (sock->made_up): no member made_up"),
            "{e}"
        );
        assert!(e.contains("does not match this kernel"), "{e}");
        // A wrong size or a bitfield read as a plain integer are errors too.
        let wrong = SPEC.replace(
            "path = \"__sk_common.skc_num\", type = \"u16\"",
            "path = \"__sk_common.skc_num\", type = \"u32\"",
        );
        assert!(check(&spec(&wrong), &kernel).is_err());
        let plain = "[[struct]]\nc = \"tcp_sock\"\nrust = \"T\"\nfields = [{ name = \"nonagle\", type = \"u8\" }]\n";
        let e = check(&spec(plain), &kernel).err().unwrap().to_string();
        assert!(e.contains("bitfield = true"), "{e}");
    }
}
