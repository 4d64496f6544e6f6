//! Reading a manifest: TOML → [`ManifestFile`] with spans, then the checks
//! that need nothing but the file itself (references between tables, names).

use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::diag::{Diagnostic, Diagnostics, Source};
use crate::schema::{Attach, ManifestFile, MapDecl, ObjectDecl, ProgramDecl};

/// A parsed manifest and the text it came from.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub source: Source,
    pub file: ManifestFile,
    /// Directory that relative paths in the manifest are resolved against.
    pub dir: PathBuf,
    /// `kiln --allow-outside`: objects may come from outside `dir` even
    /// without `allow_outside = true` in the file.
    pub allow_outside: bool,
}

/// Where the default pin roots live.
pub const DEFAULT_PIN_BASE: &str = "/sys/fs/bpf/kiln";

impl Manifest {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, Diagnostics> {
        Self::load_with(path, false)
    }

    /// Like [`Manifest::load`]; `allow_outside` as the command line's `--allow-outside`.
    pub fn load_with(path: &Path, allow_outside: bool) -> Result<Self, Diagnostics> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics(vec![
                Diagnostic::at_file(path, format!("cannot read the manifest: {e}"))
                    .help("check the path; manifests are TOML files such as manifests/examples/quickstart/manifest.toml"),
            ])
        })?;
        Self::parse_with(path, &text, allow_outside)
    }

    /// Parses `text` as if read from `path` (used for spans and relative paths).
    pub fn parse(path: &Path, text: &str) -> Result<Self, Diagnostics> {
        Self::parse_with(path, text, false)
    }

    fn parse_with(path: &Path, text: &str, allow_outside: bool) -> Result<Self, Diagnostics> {
        let source = Source::new(path, text);
        let file: ManifestFile = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim().replace('\n', "; ");
            let help = toml_help(&message);
            let mut d = source.error(span, message);
            d.help = help;
            Diagnostics(vec![d])
        })?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let manifest = Self {
            source,
            file,
            dir,
            allow_outside,
        };
        let problems = manifest.check_structure();
        if problems.is_empty() {
            Ok(manifest)
        } else {
            Err(Diagnostics(problems))
        }
    }

    /// Whether objects may come from outside the manifest's directory
    /// (`allow_outside = true` in the file, or `--allow-outside`).
    pub fn allows_outside(&self) -> bool {
        self.allow_outside || self.file.deployment.get_ref().allow_outside
    }

    pub fn name(&self) -> &str {
        self.file.deployment.get_ref().name.get_ref()
    }

    pub fn path(&self) -> &Path {
        &self.source.path
    }

    /// The group that may read the maps (`[deployment] readers`), as a gid.
    pub fn readers(&self) -> Option<u32> {
        let group = self.file.deployment.get_ref().readers.as_ref()?;
        crate::ownership::group_id(group.get_ref())
    }

    /// The directory everything of this deployment is pinned under.
    pub fn pin_root(&self) -> PathBuf {
        match &self.file.deployment.get_ref().pin_root {
            Some(p) => PathBuf::from(p.get_ref()),
            None => Path::new(DEFAULT_PIN_BASE).join(self.name()),
        }
    }

    pub fn objects(&self) -> impl Iterator<Item = (&Spanned<String>, &Spanned<ObjectDecl>)> {
        self.file.objects.iter()
    }
    pub fn programs(&self) -> impl Iterator<Item = (&Spanned<String>, &Spanned<ProgramDecl>)> {
        self.file.programs.iter()
    }
    pub fn maps(&self) -> impl Iterator<Item = (&Spanned<String>, &Spanned<MapDecl>)> {
        self.file.maps.iter()
    }

    /// A diagnostic at `span` of this manifest.
    pub fn error(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> Diagnostic {
        self.source.error(span, message)
    }

    /// Checks that need only the file: names, references, exclusive keys.
    fn check_structure(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let dep = self.file.deployment.get_ref();
        let name = dep.name.get_ref();
        if !valid_name(name) {
            out.push(
                self.error(
                    dep.name.span(),
                    format!("deployment name '{name}' is not usable as a directory name"),
                )
                .help("use letters, digits, '-' and '_' (bpffs refuses dots in pin names)"),
            );
        }
        if let Some(root) = &dep.pin_root {
            let p = Path::new(root.get_ref());
            if !p.is_absolute() {
                out.push(
                    self.error(
                        root.span(),
                        format!("pin_root '{}' is not an absolute path", root.get_ref()),
                    )
                    .help("pin roots live on a bpffs mount, e.g. \"/sys/fs/bpf/kiln/<name>\""),
                );
            } else if has_parent_component(p) {
                out.push(
                    self.error(
                        root.span(),
                        format!("pin_root '{}' contains '..'", root.get_ref()),
                    )
                    .help("write the pin root without '..', e.g. \"/sys/fs/bpf/kiln/<name>\", so it is plain where the deployment pins"),
                );
            } else if let Some((problem, help)) = pin_root_problem(root.get_ref()) {
                out.push(
                    self.error(root.span(), format!("pin_root: {problem}"))
                        .help(help),
                );
            }
        }
        if let Some(group) = &dep.readers
            && crate::ownership::group_id(group.get_ref()).is_none()
        {
            out.push(
                self.error(
                    group.span(),
                    format!("readers: no group '{}' on this host", group.get_ref()),
                )
                .help("name a group of the system's group database (`getent group`), or give its number"),
            );
        }
        for (kind, name) in self
            .programs()
            .map(|(n, _)| ("program", n))
            .chain(self.maps().map(|(n, _)| ("map", n)))
        {
            if !valid_name(name.get_ref()) {
                out.push(
                    self.error(
                        name.span(),
                        format!("{kind} name '{}' cannot be a pin name", name.get_ref()),
                    )
                    .help("use letters, digits, '-' and '_' (it names a file under the pin root; no '/' or '.')"),
                );
            }
        }
        for (name, obj) in self.objects() {
            let o = obj.get_ref();
            for p in [&o.source, &o.path].into_iter().flatten() {
                if !self.allows_outside() && escapes(Path::new(p.get_ref())) {
                    out.push(
                        self.error(
                            p.span(),
                            format!(
                                "object '{}': '{}' is outside the manifest's directory",
                                name.get_ref(),
                                p.get_ref()
                            ),
                        )
                        .help("keep objects beside the manifest, pass `--object NAME=PATH` or `--allow-outside`, or set `allow_outside = true` under [deployment]"),
                    );
                }
            }
            match (&o.source, &o.path) {
                (None, None) => out.push(
                    self.error(name.span(), format!("object '{}' has neither `source` nor `path`", name.get_ref()))
                        .help("add `source = \"<crate dir or .bpf.c>\"` (built by `cargo xtask apply`) or `path = \"<file>.bpf.o\"`"),
                ),
                (Some(_), Some(p)) => out.push(
                    self.error(p.span(), format!("object '{}' has both `source` and `path`", name.get_ref()))
                        .help("keep one: `path` for a prebuilt object, `source` to have it built"),
                ),
                _ => {}
            }
        }
        let object_names: Vec<&str> = self
            .file
            .objects
            .keys()
            .map(|k| k.get_ref().as_str())
            .collect();
        let check_object_ref =
            |what: &str, item: &str, obj: &Spanned<String>, out: &mut Vec<Diagnostic>| {
                if !object_names.contains(&obj.get_ref().as_str()) {
                    let have = if object_names.is_empty() {
                        "no [objects.*] table is declared".to_string()
                    } else {
                        format!("declared objects: {}", object_names.join(", "))
                    };
                    out.push(
                        self.error(
                            obj.span(),
                            format!(
                                "{what} '{item}' refers to object '{}', which is not declared",
                                obj.get_ref()
                            ),
                        )
                        .help(format!(
                            "{have}; add an [objects.{}] table or fix the name",
                            obj.get_ref()
                        )),
                    );
                }
            };
        for (name, prog) in self.programs() {
            check_object_ref("program", name.get_ref(), &prog.get_ref().object, &mut out);
            if let Attach::Xdp { interface, .. }
            | Attach::Tcx { interface, .. }
            | Attach::Tc { interface, .. } = prog.get_ref().attach.get_ref()
                && interface.is_empty()
            {
                out.push(
                    self.error(
                        prog.get_ref().attach.span(),
                        format!("program '{}': empty interface name", name.get_ref()),
                    )
                    .help("name a network interface, e.g. interface = \"eth0\""),
                );
            }
        }
        for (name, map) in self.maps() {
            check_object_ref("map", name.get_ref(), &map.get_ref().object, &mut out);
            if let Some(max) = &map.get_ref().max_entries
                && *max.get_ref() > MAX_ENTRIES_LIMIT
            {
                out.push(
                    self.error(
                        max.span(),
                        format!(
                            "map '{}': max_entries = {} is more than the kernel accepts ({MAX_ENTRIES_LIMIT})",
                            name.get_ref(),
                            max.get_ref()
                        ),
                    )
                    .help(format!("give at most {MAX_ENTRIES_LIMIT}, or remove the key to keep the object's value")),
                );
            }
            if let Some(max) = &map.get_ref().max_entries
                && *max.get_ref() == 0
            {
                out.push(
                    self.error(
                        max.span(),
                        format!("map '{}': max_entries = 0", name.get_ref()),
                    )
                    .help("give at least 1, or remove the key to keep the object's value"),
                );
            }
        }
        out
    }
}

/// The largest `max_entries` the kernel takes for any map type: hash maps
/// round it up to a power of two of buckets in 32 bits, arrays index with a
/// 32-bit mask (`E2BIG` above 2^31).
pub const MAX_ENTRIES_LIMIT: u32 = 1 << 31;

/// The longest file name a bpffs directory (any Linux file system) holds.
const NAME_MAX: usize = 255;

/// What the kernel would refuse in an absolute pin root (problem, help): a
/// NUL byte (no path can hold one), a component longer than 255 bytes, or
/// a '.' in a component below the bpffs mount at `/sys/fs/bpf` (bpffs
/// refuses dots in names).
fn pin_root_problem(root: &str) -> Option<(String, String)> {
    if root.contains('\0') {
        return Some((
            "contains a NUL character, which no path can hold".into(),
            "remove the \\u0000 from the pin root".into(),
        ));
    }
    let path = Path::new(root);
    if let Some(long) = path
        .components()
        .map(|c| c.as_os_str().len())
        .find(|n| *n > NAME_MAX)
    {
        return Some((
            format!("a component is {long} bytes long; file names hold at most {NAME_MAX}"),
            "shorten that directory name".into(),
        ));
    }
    if let Ok(below) = path.strip_prefix(kiln_loader::pin::DEFAULT_BPFFS)
        && let Some(dotted) = below
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .find(|c| c.contains('.'))
    {
        return Some((
            format!("directory '{dotted}' has a '.', which bpffs refuses in names"),
            "use letters, digits, '-' and '_' in the directories under /sys/fs/bpf".into(),
        ));
    }
    None
}

/// Whether `p` has a `..` component.
fn has_parent_component(p: &Path) -> bool {
    p.components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
}

/// Whether a manifest-relative path can leave the manifest's directory
/// (absolute, or through `..`). Symlinks are checked when the file is opened.
pub fn escapes(p: &Path) -> bool {
    p.is_absolute() || has_parent_component(p)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

/// A hint for the common serde/TOML errors, which say what is wrong but not
/// how to fix it.
fn toml_help(message: &str) -> Option<String> {
    if message.starts_with("unknown field") || message.starts_with("unexpected keys") {
        Some("remove this key or fix its spelling; the keys allowed here are listed above".into())
    } else if message.starts_with("missing field") {
        let field = message.split('`').nth(1).unwrap_or("it");
        Some(format!("add `{field} = ...` to this table"))
    } else if message.starts_with("unknown variant") {
        Some("use one of the values listed above".into())
    } else if message.starts_with("invalid type") {
        Some("change the value to the type expected here".into())
    } else if message.starts_with("invalid value") {
        Some(match message.rsplit_once("expected ") {
            Some((_, want)) if want.starts_with('u') || want.starts_with('i') => format!(
                "give a whole number that fits {want}{}",
                if want.starts_with('u') {
                    " (not negative)"
                } else {
                    ""
                }
            ),
            _ => "change the value to one of the kind expected here".into(),
        })
    } else if message.contains("duplicate key") {
        Some("each key may appear once per table; remove one".into())
    } else {
        Some("this is not valid TOML here: strings need quotes, tables are written [name], inline tables { key = value }".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(Path::new("m.toml"), text).map_err(|d| d.to_string())
    }

    const GOOD: &str = r#"
[deployment]
name = "quickstart"
requires = ["xdp"]

[objects.counter]
source = "counter"

[programs.count_exec]
object = "counter"
attach = { tracepoint = { category = "sched", name = "sched_process_exec" } }

[programs.count_packets]
object = "counter"
attach = { xdp = { interface = "lo", mode = "generic" } }

[programs.auto]
object = "counter"
attach = "auto"

[maps.COUNTERS]
object = "counter"
on_upgrade = "migrate"
max_entries = 16
entries = [ { key = 0, value = 0 } ]
"#;

    #[test]
    fn parses_the_quickstart_shape() {
        let m = parse(GOOD).unwrap();
        assert_eq!(m.name(), "quickstart");
        assert_eq!(m.pin_root(), Path::new("/sys/fs/bpf/kiln/quickstart"));
        let progs: Vec<_> = m.programs().map(|(k, _)| k.get_ref().clone()).collect();
        assert_eq!(progs, ["auto", "count_exec", "count_packets"]);
        let (_, p) = m
            .programs()
            .find(|(k, _)| k.get_ref() == "count_packets")
            .unwrap();
        assert_eq!(
            p.get_ref().attach.get_ref(),
            &Attach::Xdp {
                interface: "lo".into(),
                mode: kiln_loader::links::attach_point::XdpMode::Generic
            }
        );
    }

    /// The JSON schema (what editors check) and `kiln` accept exactly the
    /// same deployment, program and map names, and the same max_entries.
    #[test]
    fn json_schema_names_match_kiln() {
        const PATTERN: &str = "^[A-Za-z0-9_-]{1,200}$";
        let text = include_str!("../schema/kiln-manifest.schema.json");
        let schema: serde_json::Value = serde_json::from_str(text).unwrap();
        let props = &schema["properties"];
        assert_eq!(
            props["deployment"]["properties"]["name"]["pattern"],
            PATTERN
        );
        assert_eq!(props["programs"]["propertyNames"]["pattern"], PATTERN);
        assert_eq!(props["maps"]["propertyNames"]["pattern"], PATTERN);
        assert_eq!(
            props["maps"]["additionalProperties"]["properties"]["max_entries"]["maximum"],
            u64::from(MAX_ENTRIES_LIMIT)
        );
        // PATTERN read by hand: 1 to 200 of [A-Za-z0-9_-].
        let schema_accepts = |n: &str| {
            (1..=200).contains(&n.len())
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        for name in [
            "quickstart",
            "a.b",
            "-x",
            "x_y-z",
            "",
            "a/b",
            "é",
            "a b",
            &"n".repeat(200),
            &"n".repeat(201),
            "a\0b",
        ] {
            assert_eq!(valid_name(name), schema_accepts(name), "{name:?}");
        }
    }

    #[test]
    fn pin_roots_the_kernel_refuses() {
        for (root, why) in [
            ("/sys/fs/bpf/a\0b", "NUL"),
            (&format!("/sys/fs/bpf/{}", "x".repeat(300)), "300 bytes"),
            ("/sys/fs/bpf/my.app", "'my.app' has a '.'"),
        ] {
            let text = GOOD.replace(
                "name = \"quickstart\"",
                &format!(
                    "name = \"quickstart\"\npin_root = {}",
                    toml::Value::String(root.into())
                ),
            );
            let err = parse(&text).unwrap_err();
            assert!(err.contains(why) && err.contains("help:"), "{err}");
        }
        let err = parse(&GOOD.replace("max_entries = 16", "max_entries = 4294967295")).unwrap_err();
        assert!(err.contains("more than the kernel accepts"), "{err}");
        let err = parse(&GOOD.replace("max_entries = 16", "max_entries = -1")).unwrap_err();
        assert!(
            !err.contains("strings need quotes") && err.contains("not negative"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_is_cited_with_line_and_col() {
        let text = GOOD.replace("max_entries = 16", "max_entrys = 16");
        let err = parse(&text).unwrap_err();
        assert!(
            err.starts_with("error: m.toml:24:1: unknown field `max_entrys`"),
            "{err}"
        );
        assert!(err.contains("help:"), "{err}");
    }
}
