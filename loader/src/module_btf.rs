//! Kernel modules' BTF, as libbpf's `load_module_btfs` finds it: every BTF
//! object the kernel holds that is kernel BTF and not vmlinux, opened by id
//! (its fd is what BPF_PROG_LOAD's `fd_array`, a ksym's `ld_imm64` and
//! `attach_btf_obj_fd` name) and parsed as split BTF on vmlinux.
//!
//! Loaded once per process, and only when an object asks for something
//! vmlinux lacks: a kfunc or ksym, an fentry/fexit/fmod_ret/tp_btf target.
//! A kfunc in module `i` of [`module_btfs`] is called with `off = i + 1`,
//! the module's index in [`fd_array`] (index 0 stands for vmlinux).
//!
//! Minimum kernel version: 5.11 (module BTF); kfunc calls into modules 5.16.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use kiln_obj::btf::Btf;
use kiln_obj::btf::types::Kind;
use kiln_obj::{ExternKind, ExternSpec, KsymTarget, ProgramKind};

use crate::sys::attr::BtfInfoRaw;
use crate::sys::object::{IdKind, fd_by_id, info_by_fd_with, next_id};

/// One loaded kernel module's BTF.
#[derive(Debug)]
pub struct ModuleBtf {
    /// The module's name (`veth`, `nf_conntrack`).
    pub name: String,
    /// The kernel's BTF object of the module, open for this process.
    pub fd: OwnedFd,
    /// Its types, split on vmlinux's (ids continue after vmlinux's).
    pub btf: Btf,
}

/// The first kernel version whose verifier takes kfunc calls into modules
/// (through `fd_array`): 5.16.
pub const MODULE_KFUNC_MIN_KERNEL: u32 = (5 << 16) | (16 << 8);

/// Every loaded module's BTF, in BTF id order (the order libbpf searches
/// them), loaded on first use. Empty when the kernel has no module BTF
/// (before 5.11, or modules built without it), when vmlinux BTF is missing,
/// or when BTF ids cannot be walked (no CAP_SYS_ADMIN). A module whose BTF
/// does not open or parse is left out, as libbpf leaves it out.
pub fn module_btfs() -> &'static [ModuleBtf] {
    static MODULES: OnceLock<Vec<ModuleBtf>> = OnceLock::new();
    MODULES.get_or_init(load_module_btfs)
}

fn load_module_btfs() -> Vec<ModuleBtf> {
    let Ok(vmlinux) = crate::externs::kernel_btf_shared(None) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut id = 0;
    // BTF ids are finite and strictly increasing: the walk ends.
    while let Ok(Some(next)) = next_id(IdKind::Btf, id) {
        id = next;
        // A BTF object freed between the two calls is simply skipped.
        let Ok(fd) = fd_by_id(IdKind::Btf, id) else {
            continue;
        };
        let Some(name) = kernel_btf_name(fd.as_fd()) else {
            continue;
        };
        if name == "vmlinux" {
            continue;
        }
        // The sysfs file is the same split BTF the kernel holds for the
        // module, without copying it out through BPF_OBJ_GET_INFO_BY_FD.
        let Ok(bytes) = std::fs::read(format!("/sys/kernel/btf/{name}")) else {
            continue;
        };
        if let Ok(btf) = Btf::from_bytes_split(bytes, vmlinux.clone()) {
            out.push(ModuleBtf { name, fd, btf });
        }
    }
    out
}

/// The name of a kernel BTF object (`vmlinux` or a module's), `None` for
/// a BTF a program loaded.
fn kernel_btf_name(fd: BorrowedFd<'_>) -> Option<String> {
    // Module names are at most 56 bytes (MODULE_NAME_LEN).
    let mut name = [0u8; 64];
    let mut info = BtfInfoRaw {
        name: name.as_mut_ptr() as u64,
        name_len: name.len() as u32,
        ..Default::default()
    };
    // SAFETY: `name` is writable for `name_len` bytes and outlives the call;
    // no other pointer field is set.
    unsafe { info_by_fd_with(fd, &mut info) }.ok()?;
    if info.kernel_btf == 0 {
        return None;
    }
    let len = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    String::from_utf8(name[..len].to_vec()).ok()
}

/// BPF_PROG_LOAD's `fd_array` for kfunc calls into modules: index 0 for
/// vmlinux (never read), then each module of [`module_btfs`] in order.
pub fn fd_array() -> &'static [RawFd] {
    static FDS: OnceLock<Vec<RawFd>> = OnceLock::new();
    FDS.get_or_init(|| {
        std::iter::once(0)
            .chain(module_btfs().iter().map(|m| m.fd.as_raw_fd()))
            .collect()
    })
}

/// The first module of `modules` whose BTF has a `kind` named `name`, with
/// its index there and the type's id. Only the module's own types count:
/// vmlinux's were searched before.
pub fn find_in_modules<'m>(
    modules: &'m [ModuleBtf],
    name: &str,
    kind: Kind,
) -> Option<(usize, &'m ModuleBtf, u32)> {
    modules.iter().enumerate().find_map(|(i, m)| {
        m.btf
            .id_by_name(name, kind)
            .filter(|id| *id >= m.btf.base().map_or(0, |b| b.len()))
            .map(|id| (i, m, id))
    })
}

/// A `.ksyms` extern found in a module, or why it cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleKsym {
    /// Resolved: patch the program with it.
    Found(KsymTarget),
    /// In module `module`, but the running kernel cannot call a module's
    /// kfunc (before 5.16).
    KernelTooOld {
        /// The module whose BTF has the kfunc.
        module: String,
    },
}

/// libbpf's `find_ksym_btf_id` past vmlinux: a kfunc or typed variable that
/// vmlinux's BTF lacks, looked up in `modules` ([`module_btfs`]) in order. A
/// kfunc resolves to its module's index in [`fd_array`] (its index in
/// `modules` plus one), a variable to the module BTF's fd.
/// `kernel_version` is the running kernel's `LINUX_VERSION_CODE`.
pub fn resolve_module_ksym(
    modules: &[ModuleBtf],
    e: &ExternSpec,
    kernel_version: u32,
) -> Option<ModuleKsym> {
    let (kind, is_func) = match &e.kind {
        ExternKind::KsymFunc { .. } => (Kind::Func, true),
        ExternKind::KsymVar { .. } => (Kind::Var, false),
        ExternKind::Kconfig { .. } => return None,
    };
    let (index, module, btf_id) = find_in_modules(modules, &e.name, kind)?;
    if is_func && kernel_version != 0 && kernel_version < MODULE_KFUNC_MIN_KERNEL {
        return Some(ModuleKsym::KernelTooOld {
            module: module.name.clone(),
        });
    }
    let Ok(fd_array_index) = i16::try_from(index + 1) else {
        return None; // more modules than an insn's `off` can index
    };
    Some(ModuleKsym::Found(KsymTarget::Btf {
        btf_id,
        btf_obj_fd: if is_func { 0 } else { module.fd.as_raw_fd() },
        fd_array_index: if is_func { fd_array_index } else { 0 },
    }))
}

/// A kfunc that only a module defines, on a kernel that cannot call it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "kfunc '{kfunc}' is defined in module '{module}'; calling a module's kfunc needs kernel 5.16 or later"
)]
pub struct ModuleKfuncUnsupported {
    /// The kfunc's name.
    pub kfunc: String,
    /// The module whose BTF defines it.
    pub module: String,
}

/// Where each of an object's `.ksyms` externs lives (by extern index;
/// `None` for other externs and for ksyms found nowhere): vmlinux's BTF
/// (`vmlinux`, or kallsyms for typeless variables) first, then, with
/// `search_modules`, every loaded module's BTF.
pub fn resolve_ksyms(
    externs: &[ExternSpec],
    vmlinux: Option<&Btf>,
    search_modules: bool,
) -> Result<Vec<Option<KsymTarget>>, ModuleKfuncUnsupported> {
    let version = crate::util::kernel_version_code();
    externs
        .iter()
        .map(|e| {
            if let Some(t) = crate::externs::resolve_ksym(e, vmlinux) {
                return Ok(Some(t));
            }
            if !search_modules {
                return Ok(None);
            }
            match resolve_module_ksym(module_btfs(), e, version) {
                Some(ModuleKsym::Found(t)) => Ok(Some(t)),
                // A weak kfunc the kernel cannot call is absent, as on
                // kernels without it: the call is poisoned.
                Some(ModuleKsym::KernelTooOld { .. }) if e.weak => Ok(None),
                Some(ModuleKsym::KernelTooOld { module }) => Err(ModuleKfuncUnsupported {
                    kfunc: e.name.clone(),
                    module,
                }),
                None => Ok(None),
            }
        })
        .collect()
}

/// The `fd_array` a program of `spec` loads with, and `insns` renumbered
/// for it, as libbpf numbers them: per object, slot 0 for vmlinux and then
/// one slot per module in the order the object's externs first use it
/// (libbpf's `fd_array_idx`, handed out while it resolves ksyms). Preparing
/// wrote each call's `off` as the module's place in [`fd_array`] (the
/// process's list of every module); the kernel shows `off` in the
/// translated code, so the object's own numbering is what makes that code
/// the same as libbpf's. `None` when `insns` call no module kfunc.
pub fn object_fd_array(
    spec: &kiln_obj::ObjectSpec,
    insns: &mut [kiln_obj::Insn],
) -> Option<Vec<RawFd>> {
    if !calls_module_kfunc(insns) {
        return None;
    }
    // Each extern's module (its place in the process list), in extern order.
    let mut first_use: Vec<i16> = Vec::new();
    for index in 0..spec.externs.len() {
        let used = spec.programs.iter().find_map(|p| {
            p.extern_relocations
                .iter()
                .filter(|r| r.extern_index == index)
                .filter_map(|r| p.insns.get(r.insn_index))
                .find(|i| is_module_kfunc_call(i))
                .map(|i| i.off)
        });
        if let Some(off) = used.filter(|off| !first_use.contains(off)) {
            first_use.push(off);
        }
    }
    let all = fd_array();
    for insn in insns.iter_mut().filter(|i| is_module_kfunc_call(i)) {
        // A call no extern names (not from this spec) keeps its number and
        // gets its module's slot appended.
        let slot = match first_use.iter().position(|o| *o == insn.off) {
            Some(at) => at,
            None => {
                first_use.push(insn.off);
                first_use.len() - 1
            }
        };
        insn.off = i16::try_from(slot + 1).unwrap_or(i16::MAX);
    }
    Some(
        std::iter::once(0)
            .chain(
                first_use
                    .iter()
                    .map(|off| all.get(*off as usize).copied().unwrap_or(-1)),
            )
            .collect(),
    )
}

fn is_module_kfunc_call(i: &kiln_obj::Insn) -> bool {
    i.code == kiln_obj::insn::CALL && i.src_reg() == PSEUDO_KFUNC_CALL && i.off > 0
}

/// Whether `insns` call a kfunc in a module (`off` names an `fd_array`
/// slot), so BPF_PROG_LOAD needs [`fd_array`].
pub fn calls_module_kfunc(insns: &[kiln_obj::Insn]) -> bool {
    insns.iter().any(is_module_kfunc_call)
}

const PSEUDO_KFUNC_CALL: u8 = 2;

/// A tracing program's load-time target in one of `modules`
/// ([`module_btfs`]): the module BTF's fd (`attach_btf_obj_fd`) and the
/// target's id in it. `name` and `kind` are what
/// [`crate::links::tracing::btf_target_name`] gives; for fentry, fexit and
/// fmod_ret, `module:function` (libbpf's spelling) searches that module only.
pub fn module_attach_target<'m>(
    modules: &'m [ModuleBtf],
    prog: &ProgramKind,
    name: &str,
    kind: Kind,
) -> Option<(BorrowedFd<'m>, u32)> {
    let explicit_module = match prog {
        ProgramKind::Tracing { attach_type, .. }
            if *attach_type != kiln_obj::AttachType::TRACE_RAW_TP
                && *attach_type != kiln_obj::AttachType::TRACE_ITER =>
        {
            name.split_once(':')
        }
        _ => None,
    };
    let (m, id) = match explicit_module {
        Some((module, func)) => {
            let m = modules.iter().find(|m| m.name == module)?;
            (m, m.btf.id_by_name(func, kind)?)
        }
        None => find_in_modules(modules, name, kind).map(|(_, m, id)| (m, id))?,
    };
    Some((m.fd.as_fd(), id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_kfunc_calls_are_recognised_by_their_offset() {
        let call = |src: u8, off: i16| {
            let mut i = kiln_obj::Insn {
                code: kiln_obj::insn::CALL,
                regs: 0,
                off,
                imm: 7,
            };
            i.set_src_reg(src);
            i
        };
        assert!(calls_module_kfunc(&[call(PSEUDO_KFUNC_CALL, 1)]));
        assert!(
            !calls_module_kfunc(&[call(PSEUDO_KFUNC_CALL, 0)]),
            "vmlinux kfunc"
        );
        assert!(!calls_module_kfunc(&[call(0, 3)]), "helper call");
    }

    use kiln_obj::btf::Type;
    use kiln_obj::btf::write::encode;
    use std::sync::Arc;

    /// Appends `name` to a string section whose offsets start at `base`.
    fn add(strings: &mut Vec<u8>, base: u32, name: &str) -> u32 {
        let off = base + strings.len() as u32;
        strings.extend_from_slice(name.as_bytes());
        strings.push(0);
        off
    }

    /// vmlinux: `int` (1), a proto (2) and FUNC `vm_fn` (3).
    fn vmlinux() -> (Arc<Btf>, u32) {
        let mut s = vec![0];
        let int = add(&mut s, 0, "int");
        let vm_fn = add(&mut s, 0, "vm_fn");
        let types = [
            Type::Void,
            Type::Int {
                name_off: int,
                size: 4,
                encoding: 1,
                bit_offset: 0,
                bits: 32,
            },
            Type::FuncProto {
                name_off: 0,
                ret: 1,
                params: vec![],
            },
            Type::Func {
                name_off: vm_fn,
                proto: 2,
                linkage: 1,
            },
        ];
        let btf = Btf::from_bytes(encode(&types, &s)).unwrap();
        (Arc::new(btf), s.len() as u32)
    }

    /// A module whose own types (ids 4 on) are FUNCs `funcs` on vmlinux's
    /// proto and one VAR `<name>_var`.
    fn module(name: &str, funcs: &[&str]) -> ModuleBtf {
        let (base, str_base) = vmlinux();
        let mut s = Vec::new();
        let mut types = vec![Type::Void]; // not written: ids continue after the base
        for f in funcs {
            types.push(Type::Func {
                name_off: add(&mut s, str_base, f),
                proto: 2,
                linkage: 1,
            });
        }
        types.push(Type::Var {
            name_off: add(&mut s, str_base, &format!("{name}_var")),
            type_id: 1,
            linkage: 1,
        });
        ModuleBtf {
            name: name.into(),
            fd: std::fs::File::open("/dev/null").unwrap().into(),
            btf: Btf::from_bytes_split(encode(&types, &s), base).unwrap(),
        }
    }

    fn ksym(name: &str, func: bool) -> ExternSpec {
        ExternSpec {
            name: name.into(),
            weak: false,
            kind: if func {
                ExternKind::KsymFunc { btf_type_id: 0 }
            } else {
                ExternKind::KsymVar {
                    btf_type_id: 0,
                    typeless: false,
                }
            },
        }
    }

    const V6_1: u32 = (6 << 16) | (1 << 8);

    #[test]
    fn module_kfuncs_take_their_fd_array_index_and_variables_the_fd() {
        let mods = [
            module("a", &["shared", "only_a"]),
            module("b", &["shared", "only_b"]),
        ];
        let found = |name, func| match resolve_module_ksym(&mods, &ksym(name, func), V6_1) {
            Some(ModuleKsym::Found(t)) => Some(t),
            _ => None,
        };
        let kfunc = |btf_id, fd_array_index| KsymTarget::Btf {
            btf_id,
            btf_obj_fd: 0,
            fd_array_index,
        };
        assert_eq!(found("only_a", true), Some(kfunc(5, 1)));
        assert_eq!(found("only_b", true), Some(kfunc(5, 2)));
        assert_eq!(
            found("shared", true),
            Some(kfunc(4, 1)),
            "the first module wins"
        );
        assert_eq!(
            found("b_var", false),
            Some(KsymTarget::Btf {
                btf_id: 6,
                btf_obj_fd: mods[1].fd.as_raw_fd(),
                fd_array_index: 0,
            })
        );
        assert_eq!(
            found("vm_fn", true),
            None,
            "vmlinux's own types are not a module's"
        );
        assert_eq!(found("nowhere", true), None);
        assert_eq!(found("only_a", false), None, "a FUNC is not a VAR");
    }

    #[test]
    fn module_kfuncs_are_refused_before_5_16_and_variables_are_not() {
        let mods = [module("nf_conntrack", &["bpf_ct_release"])];
        let v5_15 = (5 << 16) | (15 << 8);
        assert_eq!(
            resolve_module_ksym(&mods, &ksym("bpf_ct_release", true), v5_15),
            Some(ModuleKsym::KernelTooOld {
                module: "nf_conntrack".into()
            })
        );
        assert!(matches!(
            resolve_module_ksym(&mods, &ksym("nf_conntrack_var", false), v5_15),
            Some(ModuleKsym::Found(_))
        ));
        let e = ModuleKfuncUnsupported {
            kfunc: "bpf_ct_release".into(),
            module: "nf_conntrack".into(),
        };
        assert_eq!(
            e.to_string(),
            "kfunc 'bpf_ct_release' is defined in module 'nf_conntrack'; calling a module's kfunc needs kernel 5.16 or later"
        );
    }

    #[test]
    fn attach_targets_in_modules_by_name_or_module_prefix() {
        let mods = [
            module("a", &["shared"]),
            module("veth", &["shared", "veth_open"]),
        ];
        let fentry = |t: &str| ProgramKind::Tracing {
            attach_type: kiln_obj::AttachType::TRACE_FENTRY,
            target: Some(t.into()),
        };
        let at = |target: &str| {
            module_attach_target(&mods, &fentry(target), target, Kind::Func)
                .map(|(fd, id)| (fd.as_raw_fd(), id))
        };
        let fd = |i: usize| mods[i].fd.as_raw_fd();
        assert_eq!(at("veth_open"), Some((fd(1), 5)));
        assert_eq!(at("shared"), Some((fd(0), 4)), "first module in order");
        assert_eq!(
            at("veth:shared"),
            Some((fd(1), 4)),
            "module:function names the module"
        );
        assert_eq!(at("a:veth_open"), None, "not in that module");
        assert_eq!(at("nope:shared"), None, "no such module");
        let tp = ProgramKind::Tracing {
            attach_type: kiln_obj::AttachType::TRACE_RAW_TP,
            target: Some("veth:shared".into()),
        };
        assert!(
            module_attach_target(&mods, &tp, "btf_trace_veth:shared", Kind::Typedef).is_none(),
            "tp_btf names are not split"
        );
    }

    #[test]
    fn fd_array_reserves_index_zero_for_vmlinux() {
        let fds = fd_array();
        assert_eq!(fds.len(), module_btfs().len() + 1);
        assert_eq!(fds[0], 0);
    }
}
