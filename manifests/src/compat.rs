//! `kiln check --kernels`: will the manifest's programs load on other
//! kernels? Answered offline, from each kernel's BTF alone (extracted once
//! from the catalog's packages by `cargo xtask kernels btf`), in about a
//! second: no VM, no bpf(2).
//!
//! What a kernel's BTF tells: its `enum bpf_prog_type`, `bpf_map_type`,
//! `bpf_attach_type` and `bpf_func_id` list the program, map and attach types
//! and the helpers it knows; its functions and types are the kfuncs, the
//! fentry/fexit/LSM/iterator targets and the `tp_btf` tracepoints; and every
//! CO-RE relocation of the objects is resolved against it exactly as the
//! loader would. What only the kernel's verifier can tell (whether a helper
//! is allowed to a program type, whether the program verifies) needs a VM:
//! the report says so.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use kiln_obj::btf::{Btf, Kind, Type};
use kiln_obj::{ObjectSpec, ProgramKind};
use serde::Serialize;

use crate::desired::Resolved;

/// One kernel to check against: a label and its vmlinux BTF.
pub struct TargetKernel {
    pub label: String,
    pub btf: Btf,
}

#[derive(Debug, thiserror::Error)]
pub enum CompatError {
    #[error(
        "no BTF for kernel {version} ({arch}) at {}\n  help: `cargo xtask kernels btf --kernel {version} --arch {arch}` extracts it from the catalog's package; or give --kernel-btf {version}=FILE",
        .path.display()
    )]
    Missing {
        version: String,
        arch: String,
        path: PathBuf,
    },
    #[error("kernel BTF {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel BTF {}", .path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: kiln_obj::btf::BtfError,
    },
}

impl TargetKernel {
    pub fn load(label: impl Into<String>, path: &Path) -> Result<Self, CompatError> {
        let data = std::fs::read(path).map_err(|source| CompatError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let btf = Btf::from_bytes(data).map_err(|source| CompatError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(TargetKernel {
            label: label.into(),
            btf,
        })
    }

    /// `DIR/ARCH/VERSION.btf`, as `cargo xtask kernels btf` lays them out.
    pub fn from_cache(dir: &Path, version: &str, arch: &str) -> Result<Self, CompatError> {
        let path = dir.join(arch).join(format!("{version}.btf"));
        if !path.exists() {
            return Err(CompatError::Missing {
                version: version.into(),
                arch: arch.into(),
                path,
            });
        }
        Self::load(version, &path)
    }
}

/// `$KILN_BTF_DIR`, else `~/.cache/kiln/btf`.
pub fn default_btf_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_BTF_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/kiln/btf")
}

/// What one kernel lacks for one program or map (empty: nothing found).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Verdict {
    pub missing: Vec<String>,
}

/// One program or map, with a verdict per kernel (in the report's order).
#[derive(Clone, Debug, Serialize)]
pub struct Item {
    /// `program` or `map`.
    pub kind: &'static str,
    pub name: String,
    pub per_kernel: Vec<Verdict>,
}

/// The whole answer: per item (program or map), per kernel.
#[derive(Clone, Debug, Serialize)]
pub struct CompatReport {
    pub kernels: Vec<String>,
    pub items: Vec<Item>,
}

impl CompatReport {
    pub fn all_ok(&self) -> bool {
        self.items
            .iter()
            .all(|i| i.per_kernel.iter().all(|k| k.missing.is_empty()))
    }
}

impl fmt::Display for CompatReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .items
            .iter()
            .map(|i| i.kind.len() + i.name.len() + 1)
            .max()
            .unwrap_or(8)
            .max(8);
        write!(f, "{:<width$}", "")?;
        for k in &self.kernels {
            write!(f, "  {k:<8}")?;
        }
        writeln!(f)?;
        for Item {
            kind,
            name,
            per_kernel,
        } in &self.items
        {
            write!(f, "{:<width$}", format!("{kind} {name}"))?;
            for v in per_kernel {
                write!(
                    f,
                    "  {:<8}",
                    if v.missing.is_empty() {
                        "ok"
                    } else {
                        "MISSING"
                    }
                )?;
            }
            writeln!(f)?;
        }
        for Item {
            kind,
            name,
            per_kernel,
        } in &self.items
        {
            // Group kernels by what they lack, so one reason is said once.
            let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (k, v) in self.kernels.iter().zip(per_kernel) {
                for m in &v.missing {
                    by_reason.entry(m).or_default().push(k);
                }
            }
            for (reason, kernels) in by_reason {
                writeln!(f, "{kind} {name}: {reason}: on {}", kernels.join(", "))?;
            }
        }
        if self.all_ok() {
            writeln!(
                f,
                "every program and map finds what it needs in each kernel's BTF"
            )?;
        }
        write!(
            f,
            "checked offline from BTF: types, helpers, kfuncs, attach targets, CO-RE; whether each program verifies only a VM can tell (cargo xtask apply --vm)"
        )
    }
}

/// What a kernel's BTF offers, read once.
struct Offer<'a> {
    btf: &'a Btf,
    prog_types: BTreeSet<u64>,
    map_types: BTreeSet<u64>,
    attach_types: BTreeSet<u64>,
    /// `__BPF_FUNC_MAX_ID`: helper ids below it exist.
    helper_max: Option<u64>,
    helper_names: BTreeMap<u64, String>,
}

impl<'a> Offer<'a> {
    fn of(btf: &'a Btf) -> Self {
        let values = |name: &str| -> Vec<(String, u64)> {
            let Some(id) = btf.find_by_name(Kind::Enum, name) else {
                return Vec::new();
            };
            match btf.type_by_id(id) {
                Ok(Type::Enum { values, .. }) => values
                    .iter()
                    .map(|v| (btf.str_at(v.name_off).unwrap_or("").to_string(), v.value))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let set = |name: &str| values(name).into_iter().map(|(_, v)| v).collect();
        let helpers = values("bpf_func_id");
        Offer {
            btf,
            prog_types: set("bpf_prog_type"),
            map_types: set("bpf_map_type"),
            attach_types: set("bpf_attach_type"),
            helper_max: helpers
                .iter()
                .find(|(n, _)| n == "__BPF_FUNC_MAX_ID")
                .map(|(_, v)| *v),
            helper_names: helpers
                .into_iter()
                .filter_map(|(n, v)| n.strip_prefix("BPF_FUNC_").map(|s| (v, format!("bpf_{s}"))))
                .collect(),
        }
    }

    fn has_func(&self, name: &str) -> bool {
        self.btf.find_by_name(Kind::Func, name).is_some()
    }
}

/// Checks every program and map of the deployment against each kernel.
pub fn check(resolved: &Resolved, kernels: &[TargetKernel]) -> CompatReport {
    let offers: Vec<Offer> = kernels.iter().map(|k| Offer::of(&k.btf)).collect();
    // Helper names for messages: from any kernel that knows the id.
    let helper_name = |id: u64| -> String {
        offers
            .iter()
            .find_map(|o| o.helper_names.get(&id).cloned())
            .unwrap_or_else(|| format!("helper #{id}"))
    };
    // CO-RE once per object and kernel: poisoned relocations per program.
    let mut core: BTreeMap<(String, usize), BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (object, spec) in &resolved.objects.specs {
        for (i, k) in kernels.iter().enumerate() {
            core.insert((object.clone(), i), core_findings(spec, &k.btf));
        }
    }
    let mut items = Vec::new();
    for (name, want) in &resolved.desired.programs {
        let spec = resolved.objects.specs.get(&want.object);
        let prog = spec.and_then(|s| s.programs.iter().find(|p| p.name == want.function));
        let verdicts = offers
            .iter()
            .enumerate()
            .map(|(i, offer)| {
                let mut missing = Vec::new();
                if let (Some(spec), Some(prog)) = (spec, prog) {
                    program_findings(spec, prog, offer, &helper_name, &mut missing);
                }
                if let Some(found) = core
                    .get(&(want.object.clone(), i))
                    .and_then(|m| m.get(&want.function))
                {
                    missing.extend(found.iter().cloned());
                }
                Verdict { missing }
            })
            .collect();
        items.push(Item {
            kind: "program",
            name: name.clone(),
            per_kernel: verdicts,
        });
    }
    for (name, want) in &resolved.desired.maps {
        let verdicts = offers
            .iter()
            .map(|offer| {
                let mut missing = Vec::new();
                let t = u64::from(want.def.map_type);
                if !offer.map_types.is_empty() && !offer.map_types.contains(&t) {
                    missing.push(format!(
                        "map type {}",
                        kiln_obj::MapType(want.def.map_type).name()
                    ));
                }
                Verdict { missing }
            })
            .collect();
        items.push(Item {
            kind: "map",
            name: name.clone(),
            per_kernel: verdicts,
        });
    }
    CompatReport {
        kernels: kernels.iter().map(|k| k.label.clone()).collect(),
        items,
    }
}

fn program_findings(
    spec: &ObjectSpec,
    prog: &kiln_obj::ProgramSpec,
    offer: &Offer,
    helper_name: &dyn Fn(u64) -> String,
    missing: &mut Vec<String>,
) {
    let t = u64::from(prog.kind.program_type().0);
    if !offer.prog_types.is_empty() && !offer.prog_types.contains(&t) {
        missing.push(format!("program type #{t} ({})", prog.section));
    }
    if let Some(a) = prog.kind.expected_attach_type()
        && !offer.attach_types.is_empty()
        && !offer.attach_types.contains(&u64::from(a.0))
    {
        missing.push(format!("attach type #{} ({})", a.0, prog.section));
    }
    let mut helpers = BTreeSet::new();
    for insn in &prog.insns {
        // `call` with src_reg 0: a helper (1 is a subprogram, 2 a kfunc).
        if insn.code == 0x85 && insn.src_reg() == 0 {
            helpers.insert(u64::from(insn.imm as u32));
        }
    }
    if let Some(max) = offer.helper_max {
        for h in helpers.into_iter().filter(|h| *h >= max) {
            missing.push(format!("helper {}", helper_name(h)));
        }
    }
    for r in &prog.extern_relocations {
        let Some(e) = spec.externs.get(r.extern_index) else {
            continue;
        };
        if matches!(e.kind, kiln_obj::ExternKind::KsymFunc { .. })
            && !e.weak
            && !offer.has_func(&e.name)
        {
            missing.push(format!("kfunc {}", e.name));
        }
    }
    let target = |prefix: &str, name: &Option<String>, kind: Kind| -> Option<String> {
        let name = name.as_deref()?;
        let full = format!("{prefix}{name}");
        offer
            .btf
            .find_by_name(kind, &full)
            .is_none()
            .then(|| format!("attach target {full}"))
    };
    let absent = match &prog.kind {
        ProgramKind::Tracing {
            attach_type,
            target: t,
        } => match *attach_type {
            kiln_obj::AttachType::TRACE_RAW_TP => target("btf_trace_", t, Kind::Typedef),
            kiln_obj::AttachType::TRACE_ITER => target("bpf_iter_", t, Kind::Func),
            _ => target("", t, Kind::Func),
        },
        ProgramKind::Lsm { hook, .. } => target("bpf_lsm_", hook, Kind::Func),
        _ => None,
    };
    missing.extend(absent);
}

/// CO-RE against `target`, as the loader would apply it: the relocations
/// it poisons (or the error it stops at), by program.
fn core_findings(spec: &ObjectSpec, target: &Btf) -> BTreeMap<String, Vec<String>> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if spec.programs.iter().all(|p| p.core_relocations.is_empty()) {
        return found;
    }
    // The field each relocation reads, named from the object's own BTF.
    let local = spec.btf.as_deref().and_then(|b| Btf::parse(b).ok());
    let mut fields: BTreeMap<(String, usize), String> = BTreeMap::new();
    for p in &spec.programs {
        for r in &p.core_relocations {
            if let Some(path) = local
                .as_ref()
                .and_then(|b| field_path(b, r.type_id, &r.access))
            {
                fields.insert((p.name.clone(), r.insn_index), path);
            }
        }
    }
    let mut copy = spec.clone();
    match copy.relocate_core(target) {
        Ok(report) => {
            for (program, insn, what) in report.poisoned {
                let text = match fields.get(&(program.clone(), insn)) {
                    Some(path) => format!("CO-RE reads {path}, which this kernel lacks ({what})"),
                    None => format!("CO-RE {what}"),
                };
                found.entry(program).or_default().push(text);
            }
        }
        Err(e) => found
            .entry(e.program.clone())
            .or_default()
            .push(format!("CO-RE {}: {}", e.access, e.reason)),
    }
    for v in found.values_mut() {
        v.sort();
        v.dedup();
    }
    found
}

/// `task_struct.se.vruntime` for an access string over the local type
/// `type_id` (the first index steps over the root pointer, then member
/// indices, `[N]` into arrays). `None` for type and enum relocations.
fn field_path(btf: &Btf, type_id: u32, access: &str) -> Option<String> {
    let mut parts = access.split(':').map(|p| p.parse::<u32>().ok());
    parts.next()??;
    let (mut id, t) = btf.skip_modifiers(type_id).ok()?;
    let mut path = btf.name_of(id).ok()?.to_string();
    let mut current = t;
    for idx in parts {
        let idx = idx?;
        match current {
            Type::Struct { members, .. } | Type::Union { members, .. } => {
                let m = members.get(idx as usize)?;
                let name = btf.str_at(m.name_off).ok()?;
                if !name.is_empty() {
                    path.push('.');
                    path.push_str(name);
                }
                id = m.type_id;
            }
            Type::Array { elem, .. } => {
                path.push_str(&format!("[{idx}]"));
                id = elem;
            }
            _ => return None,
        }
        current = btf.skip_modifiers(id).ok()?.1;
    }
    (path.contains('.') || path.contains('[')).then_some(path)
}
