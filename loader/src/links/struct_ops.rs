//! struct_ops: a kernel operations table (`tcp_congestion_ops`,
//! `sched_ext_ops`, ...) whose function pointers are BPF programs.
//!
//! The object declares the table as a variable in a `.struct_ops` or
//! `.struct_ops.link` section; each function member carries an ELF relocation
//! naming the `struct_ops/...` program that implements it. Registering it
//! means: load each program as `BPF_PROG_TYPE_STRUCT_OPS` against the kernel
//! struct (`attach_btf_id`) and member index (`expected_attach_type`), create
//! a `BPF_MAP_TYPE_STRUCT_OPS` map whose value type is the kernel's
//! `struct bpf_struct_ops_<name>`, write the table into it (data members
//! copied by name from the object's layout into the kernel's, program fds in
//! the function members), and, for `.struct_ops.link`, create a `bpf_link` on
//! the map. Without a link the map update itself registers the table.
//!
//! Minimum kernel version: 5.6 (struct_ops maps, `tcp_congestion_ops`), 6.4
//! (`.struct_ops.link`: `BPF_F_LINK` maps and struct_ops links).

use super::freplace::{DeferredTarget, load_deferred};
use super::{FdLink, Link, LinkError, Mechanism};
use crate::Ebpf;
use crate::Program;
use crate::sys::attr::MapCreateAttr;
use crate::sys::link_attr::{self, LinkCreateAttr, fd_u32};
use crate::sys::map::{self as sysmap, ElemSizes};
use kiln_obj::ObjectSpec;
use kiln_obj::btf::Btf;
use kiln_obj::btf::types::{Kind, Type};
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

const M: Mechanism = Mechanism::StructOps;
/// `BPF_STRUCT_OPS` in `enum bpf_attach_type`.
const ATTACH_STRUCT_OPS: u32 = 44;
/// `BPF_F_LINK`: the map registers through a link, not at update time.
const F_LINK: u32 = 1 << 13;
/// `BPF_F_VTYPE_BTF_OBJ_FD`: `value_type_btf_obj_fd` names the module BTF
/// of a struct_ops type a module defines (6.9+).
const F_VTYPE_BTF_OBJ_FD: u32 = 1 << 15;
const MAP_TYPE_STRUCT_OPS: u32 = 26;

/// One struct_ops variable of an object, as the ELF file declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StructOpsSpec {
    /// The variable's name; also the map's name.
    pub name: String,
    /// `.struct_ops` or `.struct_ops.link` (or `.struct_ops.link.<suffix>`).
    pub section: String,
    /// Registered through a `bpf_link` (`.struct_ops.link*`).
    pub link: bool,
    /// The struct's name, e.g. `tcp_congestion_ops`.
    pub type_name: String,
    /// The variable's bytes, in the object's layout of the struct.
    pub data: Vec<u8>,
    /// Object-layout members: (name, byte offset, byte size, program set by
    /// relocation if it is a function pointer).
    pub members: Vec<StructOpsMember>,
}

/// A member of a struct_ops variable, in the object's layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StructOpsMember {
    /// The member's name.
    pub name: String,
    /// Its offset in the struct, in bytes.
    pub offset: u32,
    /// Its size in bytes.
    pub size: u32,
    /// The program whose address the member holds.
    pub program: Option<String>,
}

fn obj_err(file: &str, reason: impl Into<String>) -> LinkError {
    LinkError::target(M, file, reason)
}

/// The struct_ops variables of the ELF object `elf` (its bytes), typed by the
/// object's BTF. `file` names the object in errors.
pub fn struct_ops_specs(elf: &[u8], file: &str) -> Result<Vec<StructOpsSpec>, LinkError> {
    let obj = object::File::parse(elf).map_err(|e| obj_err(file, format!("not an ELF: {e}")))?;
    let sections: Vec<_> = obj
        .sections()
        .filter(|s| {
            s.name()
                .is_ok_and(|n| n == ".struct_ops" || n.starts_with(".struct_ops.link"))
        })
        .collect();
    if sections.is_empty() {
        return Ok(Vec::new());
    }
    let btf_bytes = obj
        .section_by_name(".BTF")
        .and_then(|s| s.data().ok())
        .ok_or_else(|| obj_err(file, "struct_ops needs the object's BTF (.BTF section)"))?;
    let btf = Btf::parse(btf_bytes).map_err(|e| obj_err(file, format!(".BTF: {e}")))?;
    let mut out = Vec::new();
    for sec in sections {
        let sname = sec.name().unwrap_or_default().to_owned();
        let data = sec
            .data()
            .map_err(|e| obj_err(file, format!("{sname}: {e}")))?;
        // Relocations: section offset -> program (function symbol) name.
        let mut relocs = Vec::new();
        for (off, r) in sec.relocations() {
            let RelocationTarget::Symbol(idx) = r.target() else {
                continue;
            };
            let sym = obj
                .symbol_by_index(idx)
                .map_err(|e| obj_err(file, format!("{sname}: relocation at {off:#x}: {e}")))?;
            let name = sym.name().unwrap_or_default();
            relocs.push((off, name.to_owned()));
        }
        for sym in obj.symbols() {
            if sym.section_index() != Some(sec.index())
                || sym.kind() != object::SymbolKind::Data
                || sym.name().is_err()
            {
                continue;
            }
            let name = sym.name().unwrap_or_default().to_owned();
            let at = format!("{sname}: {name}");
            let (start, size) = (sym.address(), sym.size());
            let bytes = data
                .get(start as usize..(start + size) as usize)
                .ok_or_else(|| obj_err(file, format!("{at}: symbol outside its section")))?;
            let var = btf
                .id_by_name(&name, Kind::Var)
                .ok_or_else(|| obj_err(file, format!("{at}: no BTF VAR")))?;
            let Ok(Type::Var { type_id, .. }) = btf.type_by_id(var) else {
                return Err(obj_err(file, format!("{at}: BTF VAR unreadable")));
            };
            let (sid, sty) = btf
                .skip_modifiers(type_id)
                .map_err(|e| obj_err(file, format!("{at}: {e}")))?;
            let Type::Struct {
                members, kind_flag, ..
            } = &sty
            else {
                return Err(obj_err(file, format!("{at}: not a struct")));
            };
            let type_name = btf.name_of(sid).unwrap_or_default().to_owned();
            let mut ms = Vec::with_capacity(members.len());
            for m in members {
                let mname = btf.str_at(m.name_off).unwrap_or_default().to_owned();
                let offset = m.bit_offset(*kind_flag) / 8;
                let msize = btf
                    .resolve_size(m.type_id)
                    .map_err(|e| obj_err(file, format!("{at}.{mname}: {e}")))?;
                let program = relocs
                    .iter()
                    .find(|(o, _)| *o == start + u64::from(offset))
                    .map(|(_, p)| p.clone());
                ms.push(StructOpsMember {
                    name: mname,
                    offset,
                    size: msize,
                    program,
                });
            }
            out.push(StructOpsSpec {
                link: sname.starts_with(".struct_ops.link"),
                section: sname.clone(),
                name,
                type_name,
                data: bytes.to_vec(),
                members: ms,
            });
        }
    }
    Ok(out)
}

/// The kernel's view of a struct_ops type: the struct, the map value type
/// wrapping it, and where the struct sits in that value.
struct KernelOps<'k> {
    btf: &'k Btf,
    /// The module BTF holding the type, `None` when vmlinux has it.
    module_fd: Option<BorrowedFd<'k>>,
    struct_id: u32,
    value_id: u32,
    value_size: u32,
    data_offset: u32,
}

fn kernel_ops<'k>(btf: &'k Btf, type_name: &str, what: &str) -> Result<KernelOps<'k>, LinkError> {
    let struct_id = btf
        .find_by_name(Kind::Struct, type_name)
        .ok_or_else(|| LinkError::target(M, what, format!("kernel has no struct {type_name}")))?;
    let vname = format!("bpf_struct_ops_{type_name}");
    let value_id = btf.find_by_name(Kind::Struct, &vname).ok_or_else(|| {
        LinkError::target(
            M,
            what,
            format!("kernel has no {vname}: {type_name} is not a struct_ops type here"),
        )
    })?;
    let Ok(Type::Struct {
        size,
        members,
        kind_flag,
        ..
    }) = btf.type_by_id(value_id)
    else {
        return Err(LinkError::target(M, what, format!("{vname} unreadable")));
    };
    let data_offset = members
        .iter()
        .find(|m| {
            btf.skip_modifiers(m.type_id)
                .is_ok_and(|(id, _)| id == struct_id)
        })
        .map(|m| m.bit_offset(kind_flag) / 8)
        .ok_or_else(|| LinkError::target(M, what, format!("{vname} holds no {type_name}")))?;
    Ok(KernelOps {
        btf,
        module_fd: None,
        struct_id,
        value_id,
        value_size: size,
        data_offset,
    })
}

/// [`kernel_ops`] in vmlinux, else in the first loaded module whose own BTF
/// defines the struct (libbpf's `find_struct_ops_kern_types`), with that
/// module's BTF fd for the map and the programs (6.9+ for module types).
fn kernel_or_module_ops<'k>(
    vmlinux: &'k Btf,
    type_name: &str,
    what: &str,
) -> Result<KernelOps<'k>, LinkError> {
    let in_vmlinux = kernel_ops(vmlinux, type_name, what);
    if in_vmlinux.is_ok() || vmlinux.find_by_name(Kind::Struct, type_name).is_some() {
        return in_vmlinux;
    }
    let modules = crate::module_btf::module_btfs();
    match crate::module_btf::find_in_modules(modules, type_name, Kind::Struct) {
        Some((_, m, _)) => Ok(KernelOps {
            module_fd: Some(m.fd.as_fd()),
            ..kernel_ops(&m.btf, type_name, what)?
        }),
        None => in_vmlinux,
    }
}

fn is_func_ptr(btf: &Btf, id: u32) -> bool {
    match btf.skip_modifiers(id) {
        Ok((_, Type::Ptr { target, .. })) => btf
            .skip_modifiers(target)
            .is_ok_and(|(_, t)| t.kind() == Kind::FuncProto),
        _ => false,
    }
}

/// A registered struct_ops table. Dropping it unregisters the table (for
/// `.struct_ops.link` by closing the link; otherwise by deleting the map's
/// element) and unloads its programs.
///
/// Minimum kernel version: 5.6; with a link 6.4.
#[derive(Debug)]
pub struct StructOpsLink {
    name: String,
    type_name: String,
    map: OwnedFd,
    value_size: usize,
    link: Option<FdLink>,
    registered: bool,
    programs: Vec<Program>,
}

impl StructOpsLink {
    /// The `BPF_MAP_TYPE_STRUCT_OPS` map holding the table.
    pub fn map_fd(&self) -> BorrowedFd<'_> {
        self.map.as_fd()
    }
    /// The programs loaded for the table's function members.
    pub fn programs(&self) -> &[Program] {
        &self.programs
    }

    /// Swaps in another `.struct_ops.link` table of the same type, atomically
    /// (the kernel never lacks an implementation in between). Kernel
    /// subsystems add their own rules: TCP wants the same `.name`.
    ///
    /// Minimum kernel version: 6.4.
    pub fn replace(
        &mut self,
        ops: &StructOpsSpec,
        spec: &ObjectSpec,
        ebpf: &Ebpf,
        kbtf: &Btf,
    ) -> Result<(), LinkError> {
        let Some(link) = self.link.as_ref().and_then(|l| l.fd()) else {
            return Err(LinkError::unsupported(
                M,
                "replace",
                "only a live .struct_ops.link table can be replaced",
            ));
        };
        if !ops.link || ops.type_name != self.type_name {
            return Err(LinkError::target(
                M,
                &ops.name,
                format!(
                    "a replacement must be a .struct_ops.link {} table",
                    self.type_name
                ),
            ));
        }
        let table = build_table(ops, spec, ebpf, kbtf)?;
        link_attr::link_update(link, table.map.as_fd(), Some(self.map.as_fd()))
            .map_err(|e| LinkError::sys(M, "replace", &table.what, e))?;
        self.name = ops.name.clone();
        self.map = table.map;
        self.value_size = table.value_size;
        self.programs = table.programs;
        Ok(())
    }

    /// [`StructOpsLink::replace`] with variable `var` of the ELF object
    /// `elf` (`spec` parsed from it, `ebpf` loaded from `spec`), against the
    /// running kernel.
    pub fn replace_with_var(
        &mut self,
        elf: &[u8],
        spec: &ObjectSpec,
        ebpf: &Ebpf,
        var: &str,
    ) -> Result<(), LinkError> {
        let ops = struct_ops_spec(elf, var)?;
        self.replace(&ops, spec, ebpf, running_kernel(var)?)
    }
}

impl Link for StructOpsLink {
    fn mechanism(&self) -> Mechanism {
        M
    }
    fn target(&self) -> String {
        format!("struct_ops {} ({})", self.name, self.type_name)
    }
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.link.as_ref().and_then(|l| l.fd())
    }
    fn pin(&mut self, path: &Path) -> Result<(), LinkError> {
        match &mut self.link {
            Some(l) => l.pin(path),
            None => Err(LinkError::unsupported(
                M,
                "pin",
                "a .struct_ops table without a link stays registered until its map element is deleted",
            )),
        }
    }
    fn update(
        &mut self,
        _new_prog: BorrowedFd<'_>,
        _old_prog: Option<BorrowedFd<'_>>,
    ) -> Result<(), LinkError> {
        Err(LinkError::unsupported(
            M,
            "update",
            "a struct_ops link is updated with a whole new map, not a program",
        ))
    }
    fn detach(&mut self) -> Result<(), LinkError> {
        if let Some(l) = &mut self.link {
            return l.detach();
        }
        if std::mem::take(&mut self.registered) {
            let sizes = ElemSizes {
                key: 4,
                value: self.value_size,
            };
            // SAFETY: `self.map` was created by `register` with key size 4
            // and value size `self.value_size`.
            unsafe { sysmap::delete(self.map.as_fd(), sizes, &0u32.to_ne_bytes()) }
                .map_err(|e| LinkError::sys(M, "unregister", self.target(), e))?;
        }
        Ok(())
    }
}

impl Drop for StructOpsLink {
    fn drop(&mut self) {
        // A failure here leaves nothing to undo: the map's release unregisters.
        let _ = self.detach();
    }
}

/// Registers the struct_ops variable `var` of the object `elf` (its bytes;
/// `spec` parsed from them and `ebpf` loaded from `spec`, for the maps its
/// programs use).
pub fn register_struct_ops(
    elf: &[u8],
    spec: &ObjectSpec,
    ebpf: &Ebpf,
    var: &str,
) -> Result<StructOpsLink, LinkError> {
    let ops = struct_ops_spec(elf, var)?;
    register_with(&ops, spec, ebpf, running_kernel(var)?)
}

/// The struct_ops variable `var` of the ELF object `elf`.
pub fn struct_ops_spec(elf: &[u8], var: &str) -> Result<StructOpsSpec, LinkError> {
    struct_ops_specs(elf, var)?
        .into_iter()
        .find(|s| s.name == var)
        .ok_or_else(|| LinkError::target(M, var, "no such struct_ops variable in the object"))
}

fn running_kernel(var: &str) -> Result<&'static Btf, LinkError> {
    crate::externs::kernel_btf(None).map_err(|e| LinkError::target(M, var, crate::error_chain(&e)))
}

/// What became of one program named by a struct_ops variable in
/// [`load_struct_ops_programs`].
#[derive(Debug)]
pub enum StructOpsProgram {
    /// Loaded against the kernel's struct and member.
    Loaded(Program),
    /// Not loadable on this kernel: it has no such struct_ops type.
    KernelLacks(String),
    /// The kernel refused it (the verifier's reason inside).
    Failed(LinkError),
}

/// Loads every program the struct_ops variables of `elf` name, each against
/// its kernel struct and member, without creating or registering any table:
/// what libbpf's `bpf_object__load` (and `bpftool prog loadall`) does. A
/// struct the kernel does not have leaves its programs
/// [`StructOpsProgram::KernelLacks`]. `spec` and `ebpf`: the object as
/// parsed and as loaded (for its maps, BTF and prepared programs).
pub fn load_struct_ops_programs(
    elf: &[u8],
    spec: &ObjectSpec,
    ebpf: &Ebpf,
    file: &str,
) -> Result<Vec<(String, StructOpsProgram)>, LinkError> {
    let mut out = Vec::new();
    let specs = struct_ops_specs(elf, file)?;
    if specs.is_empty() {
        return Ok(out);
    }
    let kbtf = running_kernel(file)?;
    // SEC("?.struct_ops"): a table libbpf does not create by default.
    for ops in specs.iter().filter(|o| !o.section.starts_with('?')) {
        let what = format!("{} ({})", ops.name, ops.type_name);
        let k = match kernel_or_module_ops(kbtf, &ops.type_name, &what) {
            Ok(k) => k,
            Err(e) => {
                for m in &ops.members {
                    if let Some(p) = &m.program {
                        out.push((
                            p.clone(),
                            StructOpsProgram::KernelLacks(crate::error_chain(&e)),
                        ));
                    }
                }
                continue;
            }
        };
        let Ok(Type::Struct { members, .. }) = k.btf.type_by_id(k.struct_id) else {
            return Err(LinkError::target(M, &what, "kernel struct unreadable"));
        };
        for m in &ops.members {
            let Some(pname) = &m.program else { continue };
            if spec.program(pname).is_some_and(|p| !p.autoload) {
                continue;
            }
            let Some(index) = members
                .iter()
                .position(|km| k.btf.str_at(km.name_off).is_ok_and(|n| n == m.name))
            else {
                out.push((
                    pname.clone(),
                    StructOpsProgram::KernelLacks(format!(
                        "{what}: the kernel's struct has no member {}",
                        m.name
                    )),
                ));
                continue;
            };
            let result = load_deferred(
                spec,
                ebpf,
                pname,
                M,
                &format!("{what}.{}", m.name),
                DeferredTarget {
                    attach_prog_fd: None,
                    attach_btf_obj_fd: k.module_fd,
                    attach_btf_id: k.struct_id,
                    expected_attach_type: Some(index as u32),
                    program_kind: None,
                },
            );
            out.push((
                pname.clone(),
                match result {
                    Ok(p) => StructOpsProgram::Loaded(p),
                    Err(e) => StructOpsProgram::Failed(e),
                },
            ));
        }
    }
    Ok(out)
}

/// [`register_struct_ops`] from an already parsed [`StructOpsSpec`] and the
/// kernel BTF to register against.
pub fn register_with(
    ops: &StructOpsSpec,
    spec: &ObjectSpec,
    ebpf: &Ebpf,
    kbtf: &Btf,
) -> Result<StructOpsLink, LinkError> {
    let table = build_table(ops, spec, ebpf, kbtf)?;
    let link = if ops.link {
        let attr = LinkCreateAttr {
            prog_fd: fd_u32(table.map.as_fd()),
            attach_type: ATTACH_STRUCT_OPS,
            ..Default::default()
        };
        let fd =
            link_attr::link_create(attr).map_err(|e| LinkError::sys(M, "link", &table.what, e))?;
        Some(FdLink::new(fd, M, table.what.clone()))
    } else {
        None
    };
    Ok(StructOpsLink {
        name: ops.name.clone(),
        type_name: ops.type_name.clone(),
        map: table.map,
        value_size: table.value_size,
        registered: !ops.link,
        link,
        programs: table.programs,
    })
}

/// A filled struct_ops map and the programs its function members hold.
struct Table {
    what: String,
    map: OwnedFd,
    value_size: usize,
    programs: Vec<Program>,
}

fn build_table(
    ops: &StructOpsSpec,
    spec: &ObjectSpec,
    ebpf: &Ebpf,
    kbtf: &Btf,
) -> Result<Table, LinkError> {
    let what = format!("{} ({})", ops.name, ops.type_name);
    let k = kernel_or_module_ops(kbtf, &ops.type_name, &what)?;
    // CO-RE: the programs read kernel structs (tcp_sock...) laid out as the
    // running kernel has them.
    let mut spec = spec.clone();
    if spec.programs.iter().any(|p| !p.core_relocations.is_empty()) {
        spec.relocate_core(kbtf)
            .map_err(|e| LinkError::target(M, &what, format!("CO-RE: {e}")))?;
    }
    let Ok(Type::Struct {
        members, kind_flag, ..
    }) = k.btf.type_by_id(k.struct_id)
    else {
        return Err(LinkError::target(M, &what, "kernel struct unreadable"));
    };
    let mut value = vec![0u8; k.value_size as usize];
    let mut programs = Vec::new();
    let mut used = vec![false; ops.members.len()];
    for (index, km) in members.iter().enumerate() {
        let kname = k.btf.str_at(km.name_off).unwrap_or_default();
        let Some(oi) = ops.members.iter().position(|m| m.name == kname) else {
            continue;
        };
        used[oi] = true;
        let om = &ops.members[oi];
        let at = (k.data_offset + km.bit_offset(kind_flag) / 8) as usize;
        let mwhat = format!("{what}.{kname}");
        if is_func_ptr(k.btf, km.type_id) {
            let Some(pname) = &om.program else {
                continue;
            };
            let prog = load_deferred(
                &spec,
                ebpf,
                pname,
                M,
                &mwhat,
                DeferredTarget {
                    attach_prog_fd: None,
                    attach_btf_obj_fd: k.module_fd,
                    attach_btf_id: k.struct_id,
                    expected_attach_type: Some(index as u32),
                    program_kind: None,
                },
            )?;
            let fd = prog.fd().as_raw_fd() as u64;
            value[at..at + 8].copy_from_slice(&fd.to_ne_bytes());
            programs.push(prog);
            continue;
        }
        let ksize = k
            .btf
            .resolve_size(km.type_id)
            .map_err(|e| LinkError::target(M, &mwhat, e.to_string()))?;
        let src = &ops.data[om.offset as usize..(om.offset + om.size) as usize];
        if km.bitfield_size(kind_flag) != 0 || ksize != om.size {
            if src.iter().any(|b| *b != 0) {
                return Err(LinkError::target(
                    M,
                    &mwhat,
                    format!(
                        "set in the object but its size differs from the kernel's ({} vs {ksize} bytes)",
                        om.size
                    ),
                ));
            }
            continue;
        }
        value[at..at + ksize as usize].copy_from_slice(src);
    }
    for (om, used) in ops.members.iter().zip(used) {
        let src = &ops.data[om.offset as usize..(om.offset + om.size) as usize];
        if !used && (om.program.is_some() || src.iter().any(|b| *b != 0)) {
            return Err(LinkError::target(
                M,
                format!("{what}.{}", om.name),
                "set in the object but the kernel's struct has no such member",
            ));
        }
    }

    // The kernel insists on the object's BTF alongside the value type id,
    // though it reads the layout from its own BTF.
    let btf_fd = ebpf.btf_fd().ok_or_else(|| {
        LinkError::target(M, &what, "the object's BTF was not loaded into the kernel")
    })?;
    let mut map_name = [0u8; 16];
    for (d, s) in map_name.iter_mut().zip(ops.name.bytes().take(15)) {
        *d = s;
    }
    let map = sysmap::map_create(MapCreateAttr {
        map_type: MAP_TYPE_STRUCT_OPS,
        key_size: 4,
        value_size: k.value_size,
        max_entries: 1,
        map_flags: if ops.link { F_LINK } else { 0 }
            | if k.module_fd.is_some() {
                F_VTYPE_BTF_OBJ_FD
            } else {
                0
            },
        map_name,
        btf_fd: fd_u32(btf_fd),
        btf_vmlinux_value_type_id: k.value_id,
        value_type_btf_obj_fd: k.module_fd.map_or(0, |fd| fd.as_raw_fd()),
        ..Default::default()
    })
    .map_err(|e| LinkError::sys(M, "create map", &what, e))?;
    let sizes = ElemSizes {
        key: 4,
        value: value.len(),
    };
    // SAFETY: the map was created just above with key size 4 and value
    // size `k.value_size`, the length of `value`.
    unsafe { sysmap::update(map.as_fd(), sizes, Some(&0u32.to_ne_bytes()), &value, 0) }
        .map_err(|e| LinkError::sys(M, "fill map", &what, e))?;
    Ok(Table {
        what,
        map,
        value_size: value.len(),
        programs,
    })
}
