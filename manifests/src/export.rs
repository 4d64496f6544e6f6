//! `kiln export`: a manifest written from what is pinned under a pin root,
//! so a deployment made by hand (or by another tool using the same layout)
//! can be taken over. The kernel does not keep the ELF object, so the
//! manifest names it `path = "FILL-IN.bpf.o"` for the user to point at the
//! object the programs came from.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use kiln_loader::links::LinkType;
use kiln_loader::links::attach_point::MapRef;

use kiln_loader::maps::UpdateFlags;
use kiln_loader::{Map, Program};
use kiln_obj::btf::types::Type;

use crate::live::{self, LINKS, ObserveError, PROGS};

/// The manifest attachment of the link pinned for `program`, from what the
/// kernel reports (through the library's one live-link mapping).
fn attach_of(root: &Path, program: &str) -> String {
    let link = live::link_at(&root.join(LINKS).join(program)).or_else(|| {
        live::netlink_links(root)
            .into_iter()
            .find(|(name, _)| name == program)
            .map(|(_, f)| live::netlink_live_link(&f))
    });
    let Some(link) = link else {
        return "\"none\"   # not attached".into();
    };
    // A sockmap the kernel names by id: the deployment's pin of that map.
    let point = match link.point {
        Some(kiln_loader::links::AttachPoint::SockMap {
            map: MapRef::Id(id),
            hook,
        }) => std::fs::read_dir(root.join(live::MAPS))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| live::map_at(p).is_some_and(|m| m.id == id))
            .map(|pin| kiln_loader::links::AttachPoint::SockMap {
                map: MapRef::Pin(pin),
                hook,
            }),
        other => other,
    };
    match &point {
        Some(point) => match crate::desired::attach_of_point(point)
            .and_then(|a| toml::Value::try_from(&a).ok())
        {
            Some(v) => v.to_string(),
            None => format!("\"none\"   # attached to {point}, which a manifest cannot name here"),
        },
        // Perf-event, raw tracepoint and tracing links do not report their
        // target in a form a manifest can name; the section name does.
        None if !link.link_type.is_some_and(LinkType::reports_target) => {
            "\"auto\"   # from the program's section name".into()
        }
        None => format!(
            "\"none\"   # a {:?} link whose target no longer exists",
            link.link_type.unwrap_or(LinkType::Unknown(0))
        ),
    }
}

/// Why a pin root cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "{0} is not on a bpffs, so nothing of a deployment can be pinned there\n  help: give the pin root of a deployment, e.g. /sys/fs/bpf/kiln/<name>"
    )]
    NotBpffs(PathBuf),
    #[error(transparent)]
    Observe(#[from] ObserveError),
}

/// The function a pinned program runs, when it is not the pin's name: the
/// kernel keeps the first 15 bytes of the name it was loaded under (the
/// function's), and the program's BTF the whole name.
fn function_of(pin_name: &str, prog: &Program) -> Option<String> {
    let info = prog.info().ok()?;
    let kernel = info.name;
    const KEPT: usize = 15;
    if kernel.is_empty() || kernel == pin_name {
        return None;
    }
    if kernel.len() < KEPT {
        return Some(kernel);
    }
    if pin_name.starts_with(&kernel) {
        return None;
    }
    let full = (info.btf_id != 0)
        .then(|| crate::migrate::kernel_btf(info.btf_id).ok())
        .flatten()
        .and_then(|btf| {
            let names: Vec<String> = btf
                .types()
                .filter_map(Result::ok)
                .filter_map(|(_, t)| match t {
                    Type::Func { name_off, .. } => btf.str_at(name_off).ok().map(String::from),
                    _ => None,
                })
                .filter(|n| n.starts_with(&kernel))
                .collect();
            (names.len() == 1).then(|| names[0].clone())
        });
    Some(full.unwrap_or(kernel))
}

/// The values of the program's read-only globals as `name = value` TOML
/// pairs, read from its `.rodata` maps through their BTF, and the names of
/// those that cannot be written as a value (as comments).
fn globals_of(prog: &Program) -> (Vec<String>, Vec<String>) {
    let (mut values, mut skipped) = (Vec::new(), Vec::new());
    let Ok(info) = prog.info() else {
        return (values, skipped);
    };
    for id in info.map_ids {
        let Ok(map) = Map::from_id(id) else { continue };
        let Ok(mi) = map.info() else { continue };
        if mi.map_type != kiln_obj::MapType::ARRAY
            || mi.max_entries != 1
            || !mi.name.contains("rodata")
            || mi.btf_id == 0
            || mi.btf_value_type_id == 0
        {
            continue;
        }
        let Ok(Some(bytes)) = map.lookup_bytes(&0u32.to_ne_bytes(), UpdateFlags::ANY) else {
            continue;
        };
        let Ok(btf) = crate::migrate::kernel_btf(mi.btf_id) else {
            continue;
        };
        let Ok(Type::DataSec { vars, .. }) = btf.type_by_id(mi.btf_value_type_id) else {
            continue;
        };
        for v in vars {
            let Ok(Type::Var {
                name_off, type_id, ..
            }) = btf.type_by_id(v.type_id)
            else {
                continue;
            };
            let Ok(name) = btf.str_at(name_off) else {
                continue;
            };
            let raw = bytes.get(v.offset as usize..(v.offset + v.size) as usize);
            match (btf.skip_modifiers(type_id), raw) {
                (Ok((_, Type::Int { size, encoding, .. })), Some(raw)) if size <= 8 => {
                    let mut buf = [0u8; 8];
                    let n = raw.len().min(8);
                    buf[..n].copy_from_slice(&raw[..n]);
                    let unsigned = u64::from_ne_bytes(buf);
                    let value = if encoding & 4 != 0 {
                        (unsigned != 0).to_string()
                    } else if encoding & 1 != 0 {
                        // Sign-extend from `size` bytes.
                        let shift = 64 - 8 * size.min(8);
                        (((unsigned << shift) as i64) >> shift).to_string()
                    } else {
                        unsigned.to_string()
                    };
                    values.push(format!("{name} = {value}"));
                }
                _ => skipped.push(name.to_string()),
            }
        }
    }
    (values, skipped)
}

/// Writes a manifest for the deployment `name` pinned under `root`.
pub fn export(name: &str, root: &Path) -> Result<String, ExportError> {
    if !kiln_loader::pin::is_on_bpffs(root).unwrap_or(false) {
        return Err(ExportError::NotBpffs(root.to_path_buf()));
    }
    let o = live::observe(root)?;
    let mut s = String::new();
    let _ = writeln!(s, "# Exported by `kiln export` from {}.", root.display());
    let _ = writeln!(
        s,
        "# The kernel keeps no ELF: point [objects.main] at the object these programs came from.\n"
    );
    let _ = writeln!(
        s,
        "[deployment]\nname = \"{name}\"\npin_root = \"{}\"\n",
        root.display()
    );
    let _ = writeln!(s, "[objects.main]\npath = \"FILL-IN.bpf.o\"\n");
    for (prog, p) in &o.programs {
        let _ = writeln!(
            s,
            "[programs.{prog}]   # program id {}, type {}\nobject = \"main\"",
            p.id, p.prog_type
        );
        if let Ok(loaded) = Program::from_pin(&root.join(PROGS).join(prog), None) {
            if let Some(function) = function_of(prog, &loaded) {
                let _ = writeln!(s, "function = \"{function}\"");
            }
            let (globals, skipped) = globals_of(&loaded);
            if !globals.is_empty() {
                let _ = writeln!(s, "globals = {{ {} }}", globals.join(", "));
            }
            for g in skipped {
                let _ = writeln!(
                    s,
                    "# global {g}: its live value is not an integer; set it by hand if it differs from the object's"
                );
            }
        }
        let _ = writeln!(s, "attach = {}\n", attach_of(root, prog));
    }
    for (map, m) in &o.maps {
        let _ = writeln!(
            s,
            "[maps.{map}]   # {}\nobject = \"main\"\nmax_entries = {}\non_upgrade = \"keep\"\n",
            m.def, m.def.max_entries
        );
    }
    for stray in &o.strays {
        let _ = writeln!(
            s,
            "# not exported (not in Kiln's layout): {}",
            stray.display()
        );
    }
    Ok(s)
}
