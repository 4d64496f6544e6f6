//! Finding and parsing the eBPF objects a manifest names.
//!
//! Order: `path = ...` if set; else an override `NAME=PATH` given on the
//! command line (what `cargo xtask apply` passes after building `source`);
//! else the conventional `<repo>/target/bpf/<stem>.bpf.o`, looked for in
//! `$KILN_BPF_DIR` and in every ancestor of the manifest's directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_obj::ObjectSpec;

use crate::diag::Diagnostic;
use crate::manifest::Manifest;

/// Objects of a manifest, by their `[objects.NAME]` name.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    pub specs: BTreeMap<String, ObjectSpec>,
    pub paths: BTreeMap<String, PathBuf>,
}

/// The stem of the object built from `source` (`counter` for a crate dir
/// `counter`, `sockfilter` for `sockfilter.bpf.c`).
pub fn source_stem(source: &str) -> String {
    let file = Path::new(source)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| source.to_string());
    file.strip_suffix(".bpf.c")
        .or_else(|| file.strip_suffix(".c"))
        .unwrap_or(&file)
        .to_string()
}

/// Where object `name` is read from, or a diagnostic saying how to provide it.
pub fn resolve_path(
    manifest: &Manifest,
    name: &str,
    overrides: &BTreeMap<String, PathBuf>,
) -> Result<PathBuf, Diagnostic> {
    let Some((key, decl)) = manifest.objects().find(|(k, _)| k.get_ref() == name) else {
        return Err(Diagnostic::at_file(
            manifest.path(),
            format!("object '{name}' is not declared"),
        ));
    };
    if let Some(path) = overrides.get(name) {
        return Ok(path.clone());
    }
    let decl = decl.get_ref();
    if let Some(p) = &decl.path {
        let path = manifest.dir.join(p.get_ref());
        if path.is_dir() {
            return Err(manifest
                .error(p.span(), format!("object '{name}': {} is a directory, not an object file", path.display()))
                .help("point `path` at the .bpf.o file itself, or use `source = ...` for a crate directory"));
        }
        if !path.is_file() {
            return Err(manifest
                .error(p.span(), format!("object '{name}': {} does not exist", path.display()))
                .help("build it first, or point `path` at an existing .o file (relative to the manifest)"));
        }
        // A symlink beside the manifest must not lead outside it either.
        let allow = manifest.allows_outside();
        if !allow
            && let (Ok(real), Ok(dir)) = (path.canonicalize(), manifest.dir.canonicalize())
            && !real.starts_with(&dir)
        {
            return Err(manifest
                .error(p.span(), format!("object '{name}': {} resolves to {}, outside the manifest's directory", path.display(), real.display()))
                .help("keep objects beside the manifest, pass `--object NAME=PATH` or `--allow-outside`, or set `allow_outside = true` under [deployment]"));
        }
        return Ok(path);
    }
    let source = decl
        .source
        .as_ref()
        .map(|s| s.get_ref().as_str())
        .unwrap_or(name);
    let file = format!("{}.bpf.o", source_stem(source));
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("KILN_BPF_DIR") {
        candidates.push(PathBuf::from(dir).join(&file));
    }
    let dir = std::path::absolute(&manifest.dir).unwrap_or_else(|_| manifest.dir.clone());
    for anc in dir.ancestors() {
        candidates.push(anc.join("target/bpf").join(&file));
    }
    if let Some(found) = candidates.iter().find(|c| c.is_file()) {
        return Ok(found.clone());
    }
    let span = decl.source.as_ref().map_or(key.span(), |s| s.span());
    Err(manifest
        .error(span, format!("object '{name}' is not built: no {file} found (looked in $KILN_BPF_DIR and <ancestor>/target/bpf)"))
        .help(format!(
            "run `cargo xtask apply {}` (builds the source), or pass `--object {name}=PATH` to kiln",
            manifest.path().display()
        )))
}

/// Resolves and parses every object the manifest declares.
pub fn load_all(
    manifest: &Manifest,
    overrides: &BTreeMap<String, PathBuf>,
) -> Result<Objects, Vec<Diagnostic>> {
    let mut out = Objects::default();
    let mut errors = Vec::new();
    for (key, _) in manifest.objects() {
        let name = key.get_ref();
        let path = match resolve_path(manifest, name, overrides) {
            Ok(p) => p,
            Err(d) => {
                errors.push(d);
                continue;
            }
        };
        match std::fs::read(&path) {
            Err(e) => errors.push(
                manifest
                    .error(key.span(), format!("object '{name}': cannot read {}: {e}", path.display()))
                    .help("check the file exists and is readable"),
            ),
            Ok(bytes) => match parse_object(&bytes) {
                Ok(spec) => {
                    out.specs.insert(name.clone(), spec);
                    out.paths.insert(name.clone(), path);
                }
                Err(e) => errors.push(
                    manifest
                        .error(key.span(), format!("object '{name}': {} is not a loadable eBPF object: {}", path.display(), kiln_loader::error_chain(&e)))
                        .help("rebuild it with `cargo xtask build-ebpf`; objects must be little-endian eBPF ELF files"),
                ),
            },
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The object as the loader will submit it to this kernel (the loader's own
/// preparation: CO-RE relocated against the kernel's BTF, kconfig and ksym
/// externs resolved). The program tags the planner predicts are computed
/// from this, so they match what the kernel computes, and apply loads this
/// very spec. `None` when a step fails: the load then reports the failure
/// with its context.
pub fn prepared(spec: &ObjectSpec) -> Option<ObjectSpec> {
    kiln_loader::EbpfLoader::new().prepare(spec).ok()
}

/// The one place that asks kiln-obj to parse an ELF.
pub fn parse_object(bytes: &[u8]) -> Result<ObjectSpec, kiln_obj::ParseError> {
    ObjectSpec::parse(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems() {
        assert_eq!(source_stem("counter"), "counter");
        assert_eq!(source_stem("progs/sockfilter.bpf.c"), "sockfilter");
        assert_eq!(source_stem("./x/"), "x");
    }
}
