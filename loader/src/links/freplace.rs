//! freplace: an `EXT` program that replaces one global function of another,
//! already loaded program (its "target"). The extension is verified against
//! the target function's BTF prototype at load time, so it is loaded here
//! with `attach_prog_fd` and `attach_btf_id`, then linked with
//! `BPF_LINK_CREATE` on the target program's fd.
//!
//! Minimum kernel version: 5.6 (freplace), 5.10 (linking with an explicit
//! target, re-attachable).

use super::{FdLink, LinkError, Mechanism};
use crate::programs::{LoadOptions, ProgramBtf};
use crate::sys::attr::{BtfInfoRaw, ProgInfo};
use crate::sys::link_attr::{self, LinkCreateAttr, fd_u32};
use crate::sys::object::{self, IdKind};
use crate::{Ebpf, Program};
use kiln_obj::ObjectSpec;
use kiln_obj::btf::Btf;
use kiln_obj::btf::types::Kind;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

const M: Mechanism = Mechanism::Freplace;

/// The BTF a loaded program was loaded with, as the kernel holds it.
pub fn program_btf(prog: BorrowedFd<'_>) -> Result<Btf, LinkError> {
    let what = format!("program fd {}", prog.as_raw_fd());
    let info: ProgInfo =
        object::info_by_fd(prog).map_err(|e| LinkError::sys(M, "program info", &what, e))?;
    if info.btf_id == 0 {
        return Err(LinkError::target(
            M,
            &what,
            "the program was loaded without BTF: no function can be replaced",
        ));
    }
    let btf_fd = object::fd_by_id(IdKind::Btf, info.btf_id)
        .map_err(|e| LinkError::sys(M, "open program BTF", &what, e))?;
    let head: BtfInfoRaw =
        object::info_by_fd(btf_fd.as_fd()).map_err(|e| LinkError::sys(M, "BTF info", &what, e))?;
    let mut bytes = vec![0u8; head.btf_size as usize];
    let mut full = BtfInfoRaw {
        btf: bytes.as_mut_ptr() as u64,
        btf_size: head.btf_size,
        ..Default::default()
    };
    // SAFETY: `btf` points at `btf_size` writable bytes that outlive the call.
    unsafe { object::info_by_fd_with(btf_fd.as_fd(), &mut full) }
        .map_err(|e| LinkError::sys(M, "read BTF", &what, e))?;
    Btf::parse(&bytes).map_err(|e| LinkError::target(M, &what, format!("its BTF: {e}")))
}

/// The BTF id of global function `func` in loaded program `target`.
pub fn target_func_btf_id(target: BorrowedFd<'_>, func: &str) -> Result<u32, LinkError> {
    program_btf(target)?
        .id_by_name(func, Kind::Func)
        .ok_or_else(|| LinkError::target(M, func, "no such function in the target program's BTF"))
}

/// Loads the `freplace/FUNC` program `name` of `spec` (maps resolved from
/// `ebpf`, loaded from the same spec) as a replacement for `func` in `target`
/// (default: the function its section names). An `fentry/FUNC` or
/// `fexit/FUNC` program loads the same way, tracing `func` of the BPF
/// program `target` (skip it in the object's load first).
pub fn load_extension(
    spec: &ObjectSpec,
    ebpf: &Ebpf,
    name: &str,
    target: BorrowedFd<'_>,
    func: Option<&str>,
) -> Result<Program, LinkError> {
    let pspec = spec
        .program(name)
        .ok_or_else(|| LinkError::target(M, name, "no such program in the object"))?;
    let func = match (func, &pspec.kind) {
        (Some(f), _) => f.to_owned(),
        (None, kiln_obj::ProgramKind::Extension { target: Some(t) }) => t.clone(),
        // fentry/fexit on a function of a BPF program.
        (
            None,
            kiln_obj::ProgramKind::Tracing {
                target: Some(t), ..
            },
        ) => t.clone(),
        _ => {
            return Err(LinkError::target(
                M,
                name,
                "not a freplace/FUNC or fentry/FUNC program: name the target function",
            ));
        }
    };
    let btf_id = target_func_btf_id(target, &func)?;
    load_deferred(
        spec,
        ebpf,
        name,
        M,
        &format!("{name} -> {func}"),
        DeferredTarget {
            attach_prog_fd: Some(target),
            attach_btf_obj_fd: None,
            attach_btf_id: btf_id,
            expected_attach_type: None,
            program_kind: None,
        },
    )
}

/// Where a program that [`crate::EbpfLoader`] leaves unloaded (freplace,
/// struct_ops) attaches: known only once its target is.
pub(crate) struct DeferredTarget<'a> {
    pub attach_prog_fd: Option<BorrowedFd<'a>>,
    /// The module BTF that `attach_btf_id` is in (a struct_ops type a
    /// module defines); `None` for vmlinux.
    pub attach_btf_obj_fd: Option<BorrowedFd<'a>>,
    pub attach_btf_id: u32,
    pub expected_attach_type: Option<u32>,
    /// Loads the program as this kind instead of its section's (an XDP
    /// program loaded as the `freplace` of a dispatcher slot).
    pub program_kind: Option<kiln_obj::ProgramKind>,
}

/// Loads program `name` of `spec` against `target`, its map references
/// resolved from `ebpf` (loaded from the same spec) and with the object's BTF.
pub(crate) fn load_deferred(
    spec: &ObjectSpec,
    ebpf: &Ebpf,
    name: &str,
    mechanism: Mechanism,
    what: &str,
    target: DeferredTarget<'_>,
) -> Result<Program, LinkError> {
    // As the loader prepared it (CO-RE, kfuncs), when it left it for later.
    let pspec = ebpf
        .deferred_program(name)
        .or_else(|| spec.program(name))
        .ok_or_else(|| LinkError::target(mechanism, name, "no such program in the object"))?;
    let mut fds = Vec::with_capacity(spec.maps.len());
    for m in &spec.maps {
        let map = ebpf.map(&m.name).ok_or_else(|| {
            LinkError::target(mechanism, name, format!("map '{}' is not loaded", m.name))
        })?;
        fds.push(map.fd().as_raw_fd());
    }
    let mut insns = pspec.resolved_insns(|i| fds.get(i).copied().unwrap_or(-1));
    let fd_array = crate::module_btf::object_fd_array(spec, &mut insns);
    let (func_info, line_info) = (pspec.func_info_bytes(), pspec.line_info_bytes());
    let opts = LoadOptions {
        license: &spec.license,
        // freplace: the verifier compares the extension's prototype
        // (func_info) with the target's, so the object's BTF must come along.
        btf: ebpf.btf_fd().map(|fd| ProgramBtf {
            fd,
            func_info: &func_info,
            func_info_rec_size: kiln_obj::FUNC_INFO_REC_SIZE,
            line_info: &line_info,
            line_info_rec_size: kiln_obj::LINE_INFO_REC_SIZE,
        }),
        attach_prog_fd: target.attach_prog_fd,
        attach_btf_obj_fd: target.attach_btf_obj_fd,
        attach_btf_id: Some(target.attach_btf_id),
        expected_attach_type: target.expected_attach_type,
        fd_array: fd_array.as_deref(),
        ..Default::default()
    };
    let kind = target.program_kind.unwrap_or_else(|| pspec.kind.clone());
    Program::load(name, kind, &insns, &opts)
        .map_err(|e| LinkError::target(mechanism, what, crate::error_chain(&e)))
}

/// Links an extension over function `btf_id` of `target` (as resolved by
/// [`target_func_btf_id`]). Dropping or detaching the link restores the
/// original function.
pub fn attach_freplace(
    ext: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    btf_id: u32,
) -> Result<FdLink, LinkError> {
    let what = format!(
        "function btf id {btf_id} of program fd {}",
        target.as_raw_fd()
    );
    let mut attr = LinkCreateAttr {
        prog_fd: fd_u32(ext),
        target: fd_u32(target),
        ..Default::default()
    };
    attr.extra.target_btf_id = btf_id;
    let fd = link_attr::link_create(attr).map_err(|e| LinkError::sys(M, "attach", &what, e))?;
    Ok(FdLink::new(fd, M, what))
}
