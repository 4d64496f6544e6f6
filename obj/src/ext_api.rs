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
    /// error points at.
    pub fn source_line(&self, program: &str, insn: usize) -> Option<String> {
        let prog = self.program(program)?;
        let btf = Btf::parse(self.btf.as_ref()?).ok()?;
        let li = prog
            .line_info
            .iter()
            .rev()
            .find(|l| l.insn_off as usize <= insn)?;
        let file = btf.str_at(li.file_name_off).ok()?;
        let text = btf.str_at(li.line_off).ok().unwrap_or("");
        let file = file.rsplit('/').next().unwrap_or(file);
        Some(format!("{file}:{}: {}", li.line(), text.trim()))
    }
}
