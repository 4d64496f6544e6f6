//! What the loader does with the per-program BTF data: kernel-layout
//! func_info / line_info buffers, a sanitized BTF blob, and source lines for
//! verifier messages.

use crate::btf::sanitize::sanitize;
use crate::btf::strings::StringTable;
use crate::btf::{Btf, BtfError, BtfFeatures, write};
use crate::{ObjectSpec, ProgramSpec};

/// Size of one `struct bpf_func_info` (`func_info_rec_size` for BPF_PROG_LOAD).
pub const FUNC_INFO_REC_SIZE: u32 = 8;
/// Size of one `struct bpf_line_info` (`line_info_rec_size`).
pub const LINE_INFO_REC_SIZE: u32 = 16;

impl ProgramSpec {
    /// `func_info` as BPF_PROG_LOAD wants it (records of [`FUNC_INFO_REC_SIZE`]).
    pub fn func_info_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.func_info.len() * 8);
        for f in &self.func_info {
            out.extend_from_slice(&f.insn_off.to_ne_bytes());
            out.extend_from_slice(&f.type_id.to_ne_bytes());
        }
        out
    }

    /// `line_info` as BPF_PROG_LOAD wants it (records of [`LINE_INFO_REC_SIZE`]).
    pub fn line_info_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.line_info.len() * 16);
        for l in &self.line_info {
            for v in [l.insn_off, l.file_name_off, l.line_off, l.line_col] {
                out.extend_from_slice(&v.to_ne_bytes());
            }
        }
        out
    }
}

impl ObjectSpec {
    /// The object's BTF rewritten for a kernel with `features` (type ids are
    /// unchanged, so map and func_info ids stay valid). `None` without BTF.
    pub fn btf_for_kernel(&self, features: BtfFeatures) -> Result<Option<Vec<u8>>, BtfError> {
        let Some(raw) = &self.btf else {
            return Ok(None);
        };
        let btf = Btf::parse(raw)?;
        if features == BtfFeatures::ALL {
            return Ok(Some(raw.clone()));
        }
        let mut types = btf.to_types()?;
        let mut strings = StringTable::new(btf.strings().to_vec());
        sanitize(&mut types, &mut strings, features)?;
        Ok(Some(write::encode(&types, strings.as_bytes())))
    }

    /// `file:line: source text` for instruction `insn` of `program`: the last
    /// line_info record at or before it. For naming the code a verifier
    /// error points at. When that line belongs to an inlined function from
    /// another file (a C header's `static inline`, Rust's `core`), the
    /// nearest line of the enclosing function's own file follows on a second
    /// line, `inlined into file:line: text`: that is where the user's mistake
    /// usually is.
    pub fn source_line(&self, program: &str, insn: usize) -> Option<String> {
        let prog = self.program(program)?;
        let btf = Btf::parse(self.btf.as_ref()?).ok()?;
        let lines = &prog.line_info;
        let at = lines.iter().rposition(|l| l.insn_off as usize <= insn)?;
        let show = |l: &crate::LineInfo| {
            let file = btf.str_at(l.file_name_off).ok()?;
            let text = btf.str_at(l.line_off).ok().unwrap_or("");
            let file = file.rsplit('/').next().unwrap_or(file);
            Some(match text.trim() {
                "" => format!("{file}:{}", l.line()),
                text => format!("{file}:{}: {text}", l.line()),
            })
        };
        let failing = show(&lines[at])?;
        let file_of = |l: &crate::LineInfo| btf.str_at(l.file_name_off).ok();
        let function = enclosing_function(prog, insn);
        let in_function = lines.get(function.clone()).unwrap_or_default();
        let own_file = in_function
            .iter()
            .filter_map(file_of)
            .find(|f| !is_library_file(f))
            .or_else(|| in_function.first().and_then(file_of))?;
        if file_of(&lines[at]) == Some(own_file) {
            return Some(failing);
        }
        // The statement that called the inlined code usually resumes right
        // after its body; before it is only the previous statement.
        let is_own = |l: &&crate::LineInfo| file_of(l) == Some(own_file);
        let after = lines.get(at + 1..function.end).unwrap_or_default();
        let before = lines.get(function.start..at).unwrap_or_default();
        let caller = after
            .iter()
            .find(is_own)
            .or_else(|| before.iter().rev().find(is_own));
        Some(match caller.and_then(show) {
            Some(caller) => format!("{failing}\n  inlined into {caller}"),
            None => failing,
        })
    }
}

/// The range of `prog.line_info` that belongs to the function (main program
/// or subprogram, from `func_info`) holding instruction `insn`.
fn enclosing_function(prog: &ProgramSpec, insn: usize) -> std::ops::Range<usize> {
    let start = prog
        .func_info
        .iter()
        .map(|f| f.insn_off as usize)
        .filter(|&off| off <= insn)
        .max()
        .unwrap_or(0);
    let end = prog
        .func_info
        .iter()
        .map(|f| f.insn_off as usize)
        .filter(|&off| off > insn)
        .min()
        .unwrap_or(usize::MAX);
    let lines = &prog.line_info;
    let first = lines.partition_point(|l| (l.insn_off as usize) < start);
    let last = lines.partition_point(|l| (l.insn_off as usize) < end);
    first..last
}

/// Whether a line_info file name is a toolchain's library rather than the
/// program's own code: Rust's `core`/`alloc` (`/rustc/<hash>/library/...`,
/// `/usr/lib/rustlib/...`), a crate from the registry, or a system header.
fn is_library_file(path: &str) -> bool {
    ["/rustc/", "/rustlib/", "/.cargo/registry/", "/usr/include/"]
        .iter()
        .any(|dir| path.contains(dir))
}

#[cfg(test)]
mod tests {
    use super::is_library_file;

    #[test]
    fn library_files_are_toolchain_paths() {
        for lib in [
            "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/ptr/mod.rs",
            "/usr/lib/rustlib/src/rust/library/core/src/slice/index.rs",
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/memchr-2.7.4/src/lib.rs",
            "/usr/include/bpf/bpf_helpers.h",
        ] {
            assert!(is_library_file(lib), "{lib}");
        }
        for own in [
            "/kiln/loader/tests/bpf/loader_bad_inline.h",
            "src/main.rs",
            "/home/me/tracer/tracer-ebpf/src/main.rs",
        ] {
            assert!(!is_library_file(own), "{own}");
        }
    }
}
