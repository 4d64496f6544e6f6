//! `kiln-manifest`: parse, validate, plan and apply deployment manifests.
//!
//! Data flows one way: [`Manifest`] (parsed, with spans) → validation against
//! the objects and the running kernel → [`plan::Plan`] (a plain list of
//! actions, computed from the manifest and the live kernel) → apply (a
//! transaction that builds the new generation beside the old one).

pub mod agent;
pub mod apply;
pub mod compat;
pub mod desired;
pub mod diag;
pub mod export;
pub mod features;
pub mod live;
pub mod lock;
pub mod manifest;
pub mod migrate;
pub mod objects;
pub mod ownership;
pub mod plan;
pub mod privilege;
pub mod schema;
pub mod status;
pub mod tag;
pub mod values;

pub use diag::{Diagnostic, Diagnostics, Source};
pub use manifest::Manifest;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A manifest with its objects parsed and every check passed: ready to plan.
pub struct Deployment {
    pub manifest: Manifest,
    pub resolved: desired::Resolved,
}

impl Deployment {
    /// Parses `path`, finds and parses its objects (`overrides`: NAME → object
    /// file), and validates everything that can be checked without changing
    /// the kernel. All problems are reported together.
    pub fn load(path: &Path, overrides: &BTreeMap<String, PathBuf>) -> Result<Self, Diagnostics> {
        Self::load_with(path, overrides, false)
    }

    /// Like [`Deployment::load`]; `allow_outside` lets objects come from
    /// outside the manifest's directory (`kiln --allow-outside`).
    pub fn load_with(
        path: &Path,
        overrides: &BTreeMap<String, PathBuf>,
        allow_outside: bool,
    ) -> Result<Self, Diagnostics> {
        let manifest = Manifest::load_with(path, allow_outside)?;
        Self::from_manifest(manifest, overrides, path)
    }

    /// [`Deployment::load`] of `text` as if read from `path` (relative
    /// object paths resolve from its directory).
    pub fn from_text(path: &Path, text: &str) -> Result<Self, Diagnostics> {
        Self::from_manifest(Manifest::parse(path, text)?, &BTreeMap::new(), path)
    }

    fn from_manifest(
        manifest: Manifest,
        overrides: &BTreeMap<String, PathBuf>,
        path: &Path,
    ) -> Result<Self, Diagnostics> {
        for name in overrides.keys() {
            if !manifest.objects().any(|(k, _)| k.get_ref() == name) {
                return Err(Diagnostics(vec![
                    Diagnostic::at_file(
                        path,
                        format!("--object {name}=...: the manifest declares no object '{name}'"),
                    )
                    .help("use a name from the manifest's [objects.*] tables"),
                ]));
            }
        }
        let objects = objects::load_all(&manifest, overrides).map_err(Diagnostics)?;
        let resolved = desired::resolve(&manifest, objects).map_err(Diagnostics)?;
        let mut missing = features::check(&manifest);
        missing.extend(features::check_perf_links(&manifest, &resolved));
        if !missing.is_empty() {
            return Err(Diagnostics(missing));
        }
        Ok(Deployment { manifest, resolved })
    }

    /// Like [`Deployment::load_with`], but nothing of the running kernel is
    /// read: no feature probes, no kernel BTF (program tags are then
    /// predicted without CO-RE). For questions about other kernels
    /// (`kiln check --kernels`).
    pub fn load_offline(
        path: &Path,
        overrides: &BTreeMap<String, PathBuf>,
        allow_outside: bool,
    ) -> Result<Self, Diagnostics> {
        let manifest = Manifest::load_with(path, allow_outside)?;
        let objects = objects::load_all(&manifest, overrides).map_err(Diagnostics)?;
        let resolved = desired::resolve_with(&manifest, objects, |_| None).map_err(Diagnostics)?;
        Ok(Deployment { manifest, resolved })
    }

    /// Parses `text` (as if read from `path`) and runs every check of
    /// [`Deployment::load`] that needs no bpf(2) and nothing of the running
    /// kernel's BTF: the TOML, the structure, the objects (`object`: the
    /// parsed object for an `[objects.NAME]` name, `None` when there is
    /// none), maps, programs, globals, entries and attach targets. Not
    /// checked: the `requires = [...]` feature probes and perf-link support.
    /// Attach targets are still looked up on this host (tracefs, network
    /// interfaces, cgroup and binary paths), never in the kernel.
    ///
    /// The fuzz target `manifest_check` drives this.
    pub fn check_offline(
        path: &Path,
        text: &str,
        object: impl Fn(&str) -> Option<kiln_obj::ObjectSpec>,
    ) -> Result<Self, Diagnostics> {
        let manifest = Manifest::parse(path, text)?;
        let mut objects = objects::Objects::default();
        let mut errors = Vec::new();
        for (key, decl) in manifest.objects() {
            let name = key.get_ref();
            match object(name) {
                Some(spec) => {
                    objects.specs.insert(name.clone(), spec);
                    // The file name it would have: global data is pinned
                    // under a name derived from it.
                    let decl = decl.get_ref();
                    let file = match (&decl.path, &decl.source) {
                        (Some(p), _) => PathBuf::from(p.get_ref()),
                        (None, source) => PathBuf::from(format!(
                            "{}.bpf.o",
                            objects::source_stem(source.as_ref().map_or(name, |s| s.get_ref()))
                        )),
                    };
                    objects.paths.insert(name.clone(), file);
                }
                None => errors.push(
                    manifest
                        .error(key.span(), format!("object '{name}' was not given"))
                        .help("pass a parsed object for every [objects.*] table"),
                ),
            }
        }
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        let resolved = desired::resolve_with(&manifest, objects, |_| None).map_err(Diagnostics)?;
        Ok(Deployment { manifest, resolved })
    }

    /// What apply would refuse because of the running kernel rather than
    /// the file, as diagnostics at the manifest's lines: an XDP hook
    /// already held by a program that is not this deployment's. Without
    /// bpf(2) access nothing can be seen, and nothing is reported.
    pub fn live_problems(&self) -> Vec<Diagnostic> {
        let root = self.manifest.pin_root();
        let Ok(observed) = live::observe_deployment(&root, &self.resolved.desired) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (program, holder) in &observed.hook_holders {
            let Some((_, decl)) = self
                .manifest
                .programs()
                .find(|(k, _)| k.get_ref() == program)
            else {
                continue;
            };
            out.push(
                self.manifest
                    .error(
                        decl.get_ref().attach.span(),
                        format!(
                            "program '{program}': {} already runs program id {} '{}', which is not this deployment's",
                            holder.hook, holder.prog_id, holder.prog_name
                        ),
                    )
                    .help("detach that program first (its owner's tool, or `bpftool net detach`), or attach this one in another mode or on another interface"),
            );
        }
        out
    }

    pub fn plan(&self) -> Result<plan::Plan, apply::ApplyError> {
        apply::plan(&self.manifest, &self.resolved)
    }

    pub fn apply(&self, opts: &apply::ApplyOptions) -> Result<apply::Outcome, apply::ApplyError> {
        apply::apply(&self.manifest, &self.resolved, opts)
    }

    pub fn status(&self) -> Result<status::Status, live::ObserveError> {
        let root = self.manifest.pin_root();
        let observed = live::observe_deployment(&root, &self.resolved.desired)?;
        let plan = plan::compute(
            self.manifest.name(),
            root,
            &self.resolved.desired,
            &observed,
        );
        Ok(status::compute(
            self.manifest.name(),
            &self.resolved.desired,
            &observed,
            plan.as_ref(),
        ))
    }

    /// Removes what the deployment owns under its pin root (its record
    /// says what), leaving anything else there alone.
    pub fn destroy(&self) -> Result<Vec<String>, apply::ApplyError> {
        apply::destroy(self.manifest.name(), &self.manifest.pin_root())
    }
}
