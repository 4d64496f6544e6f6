//! Kernel modules for the guest: find them in an extracted kernel package,
//! order them by their `.modinfo` `depends=`, decompress `.ko.xz`.
//!
//! Debian's packages ship no `modules.dep` (depmod runs at install time), so
//! the dependencies come from each module's own `.modinfo` section.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Modules the integration tests may need, loaded at boot when the kernel
/// has them as modules (built-in ones are simply absent from the package).
pub const TEST_MODULES: &[&str] = &[
    "veth",
    "dummy",
    "tun",
    "sch_ingress",
    "cls_bpf",
    "act_bpf",
    "ifb",
    // Its BTF has the conntrack kfuncs (5.18+): module kfunc tests call them.
    "nf_conntrack",
];

/// `veth` and `veth.ko`/`veth.ko.xz` name the same module; `-` and `_` are one.
pub fn module_name(file_name: &str) -> String {
    let base = file_name
        .strip_suffix(".xz")
        .or_else(|| file_name.strip_suffix(".zst"))
        .or_else(|| file_name.strip_suffix(".gz"))
        .unwrap_or(file_name);
    base.strip_suffix(".ko").unwrap_or(base).replace('-', "_")
}

/// Every module file under `dir`, by module name.
pub fn index(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                if n.contains(".ko") {
                    out.insert(module_name(n), p);
                }
            }
        }
    }
    Ok(out)
}

/// The module's bytes, decompressed.
pub fn read_module(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "xz") {
        let mut out = Vec::new();
        lzma_rs::xz_decompress(&mut &raw[..], &mut out)
            .map_err(|e| anyhow::anyhow!("decompressing {}: {e:?}", path.display()))?;
        return Ok(out);
    }
    if path.extension().is_some_and(|e| e == "zst" || e == "gz") {
        bail!(
            "{}: only .ko and .ko.xz modules are supported",
            path.display()
        );
    }
    Ok(raw)
}

/// `depends=` of a module's `.modinfo` (NUL-separated `key=value` strings).
pub fn depends(elf: &[u8], what: &Path) -> Result<Vec<String>> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(elf)
        .with_context(|| format!("{}: not an ELF module", what.display()))?;
    let Some(section) = file.section_by_name(".modinfo") else {
        bail!("{}: no .modinfo section", what.display());
    };
    let data = section
        .data()
        .with_context(|| format!("{}: unreadable .modinfo", what.display()))?;
    Ok(parse_modinfo_depends(data))
}

pub fn parse_modinfo_depends(modinfo: &[u8]) -> Vec<String> {
    modinfo
        .split(|b| *b == 0)
        .filter_map(|kv| kv.strip_prefix(b"depends="))
        .flat_map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('-', "_"))
        .collect()
}

/// A module resolved for loading: its name and decompressed bytes.
pub struct Module {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// `wanted` and their dependencies, dependencies first. Wanted modules that
/// the package lacks (built in, or not built) are returned in the second list.
pub fn resolve(dir: &Path, wanted: &[&str]) -> Result<(Vec<Module>, Vec<String>)> {
    let idx = index(dir)?;
    let mut order = Vec::new();
    let mut missing = Vec::new();
    let mut done = BTreeSet::new();
    for w in wanted {
        let name = w.replace('-', "_");
        if !idx.contains_key(&name) {
            missing.push(name);
            continue;
        }
        visit(
            &name,
            &mut |n| {
                let path = idx.get(n).with_context(|| {
                    format!("module {n} is needed but not in {}", dir.display())
                })?;
                let bytes = read_module(path)?;
                let deps = depends(&bytes, path)?;
                Ok((deps, bytes))
            },
            &mut done,
            &mut Vec::new(),
            &mut order,
        )?;
    }
    Ok((order, missing))
}

/// Reads a module: (its dependencies, its bytes).
type Loader<'a> = dyn FnMut(&str) -> Result<(Vec<String>, Vec<u8>)> + 'a;

/// Depth-first, dependencies before dependents; a cycle is an error.
fn visit(
    name: &str,
    load: &mut Loader<'_>,
    done: &mut BTreeSet<String>,
    stack: &mut Vec<String>,
    order: &mut Vec<Module>,
) -> Result<()> {
    if done.contains(name) {
        return Ok(());
    }
    if stack.iter().any(|s| s == name) {
        bail!("module dependency cycle: {} -> {name}", stack.join(" -> "));
    }
    stack.push(name.to_owned());
    let (deps, bytes) = load(name)?;
    for d in &deps {
        visit(d, load, done, stack, order)?;
    }
    stack.pop();
    done.insert(name.to_owned());
    order.push(Module {
        name: name.to_owned(),
        bytes,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(module_name("sch_ingress.ko"), "sch_ingress");
        assert_eq!(module_name("nf-conntrack.ko.xz"), "nf_conntrack");
    }

    #[test]
    fn modinfo_depends() {
        let m = b"license=GPL\0depends=ip_tunnel,udp-tunnel\0intree=Y\0";
        assert_eq!(parse_modinfo_depends(m), ["ip_tunnel", "udp_tunnel"]);
        assert!(parse_modinfo_depends(b"depends=\0name=veth\0").is_empty());
    }

    #[test]
    fn dependencies_first_shared_once_cycles_refused() {
        let graph: BTreeMap<&str, Vec<&str>> = [
            ("a", vec!["b", "c"]),
            ("b", vec!["c"]),
            ("c", vec![]),
            ("d", vec!["c"]),
            ("x", vec!["y"]),
            ("y", vec!["x"]),
        ]
        .into();
        let mut load = |n: &str| -> Result<(Vec<String>, Vec<u8>)> {
            Ok((graph[n].iter().map(|s| s.to_string()).collect(), vec![]))
        };
        let (mut done, mut order) = (BTreeSet::new(), Vec::new());
        for w in ["a", "d"] {
            visit(w, &mut load, &mut done, &mut Vec::new(), &mut order).unwrap();
        }
        let names: Vec<&str> = order.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["c", "b", "a", "d"]);
        let err = visit(
            "x",
            &mut load,
            &mut BTreeSet::new(),
            &mut Vec::new(),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("cycle"), "{err}");
    }

    /// Against a real Debian package, when one is cached (`cargo xtask kernels fetch`).
    #[test]
    fn cached_debian_kernel_if_any() {
        let Ok(lock) = crate::kernels::Lock::load() else {
            return;
        };
        let Ok(cat) = crate::kernels::Catalog::load() else {
            return;
        };
        for k in &lock.kernels {
            let arch = k.arch.parse().unwrap();
            let Ok(files) = crate::kernels::ensure_cached(&cat, &k.version, arch) else {
                continue;
            };
            let Some(dir) = files.modules else { continue };
            let (mods, _) = resolve(&dir, &["veth"]).unwrap();
            assert_eq!(mods.last().unwrap().name, "veth");
            assert!(mods.iter().all(|m| m.bytes.starts_with(b"\x7fELF")));
        }
    }
}
