//! The project `kiln new NAME` writes: an eBPF crate, a userspace crate that
//! builds it from `build.rs` and embeds it, and a manifest. The files are in
//! `kiln-build/template/` with `{{name}}`-style placeholders.

use std::path::{Path, PathBuf};

/// The template's files: (path in the project, text). `NAME` in a path is
/// the project's name.
const FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../template/Cargo.toml.tmpl")),
    ("README.md", include_str!("../template/README.md.tmpl")),
    (
        "manifest.toml",
        include_str!("../template/manifest.toml.tmpl"),
    ),
    (".gitignore", include_str!("../template/gitignore.tmpl")),
    (
        "NAME-ebpf/Cargo.toml",
        include_str!("../template/ebpf/Cargo.toml.tmpl"),
    ),
    (
        "NAME-ebpf/src/main.rs",
        include_str!("../template/ebpf/main.rs.tmpl"),
    ),
    (
        "NAME/Cargo.toml",
        include_str!("../template/app/Cargo.toml.tmpl"),
    ),
    (
        "NAME/build.rs",
        include_str!("../template/app/build.rs.tmpl"),
    ),
    (
        "NAME/src/main.rs",
        include_str!("../template/app/main.rs.tmpl"),
    ),
];

/// Where the new project takes Kiln's crates from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KilnSource {
    /// A Kiln checkout: path dependencies on its crates, and its Cargo.lock,
    /// so the project builds with the versions Kiln is tested with.
    Checkout(PathBuf),
    /// Kiln's git repository.
    Git(String),
}

impl KilnSource {
    /// The checkout this crate was built from when it still exists, else
    /// Kiln's git repository.
    pub fn default_for_this_build() -> Self {
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        if checkout.join("ebpf-sdk/kiln-ebpf/Cargo.toml").is_file() {
            let checkout = checkout.canonicalize().unwrap_or(checkout);
            KilnSource::Checkout(checkout)
        } else {
            KilnSource::Git(env!("CARGO_PKG_REPOSITORY").to_string())
        }
    }

    /// The TOML dependency value for the crate at `path` in the checkout.
    fn dependency(&self, path: &str) -> String {
        match self {
            KilnSource::Checkout(root) => {
                format!(
                    "{{ path = {} }}",
                    toml_string(&root.join(path).display().to_string())
                )
            }
            KilnSource::Git(url) => format!("{{ git = {} }}", toml_string(url)),
        }
    }
}

/// Errors of [`create`]; each names the path at fault.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The name cannot be a crate name.
    #[error(
        "project name {0:?}: use lowercase letters, digits, '-' and '_', starting with a letter"
    )]
    BadName(String),
    /// The project directory exists already.
    #[error("{}: already exists; choose another name or directory", .0.display())]
    Exists(PathBuf),
    /// A directory or file could not be written.
    #[error(transparent)]
    File(#[from] crate::Error),
}

/// Writes a new project `name` into `dir` (which must not exist yet);
/// returns the files written.
pub fn create(name: &str, dir: &Path, kiln: &KilnSource) -> Result<Vec<PathBuf>, TemplateError> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid || name.len() > 64 {
        return Err(TemplateError::BadName(name.to_string()));
    }
    if dir.exists() {
        return Err(TemplateError::Exists(dir.to_path_buf()));
    }
    let replacements = [
        ("{{name}}", name.to_string()),
        ("{{crate}}", name.replace('-', "_")),
        ("{{kiln_ebpf}}", kiln.dependency("ebpf-sdk/kiln-ebpf")),
        ("{{kiln_loader}}", kiln.dependency("loader")),
        ("{{kiln_build}}", kiln.dependency("kiln-build")),
    ];
    let mut written = Vec::new();
    for (path, text) in FILES {
        let mut text = text.to_string();
        for (from, to) in &replacements {
            text = text.replace(from, to);
        }
        let path = dir.join(path.replace("NAME", name));
        write(&path, text.as_bytes())?;
        written.push(path);
    }
    if let KilnSource::Checkout(root) = kiln {
        // The checkout's lock file: cargo keeps the entries the project uses.
        let lock = root.join("Cargo.lock");
        if let Ok(bytes) = std::fs::read(&lock) {
            let to = dir.join("Cargo.lock");
            write(&to, &bytes)?;
            written.push(to);
        }
    }
    Ok(written)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), TemplateError> {
    crate::create_parent(path)?;
    std::fs::write(path, bytes).map_err(|source| crate::Error::Io {
        path: path.to_path_buf(),
        what: "writing the file",
        source,
    })?;
    Ok(())
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        let dir = std::env::temp_dir().join("kiln-template-never-written");
        for bad in ["", "Hello", "1st", "a b", "../x", "a/b"] {
            let e = create(bad, &dir, &KilnSource::Git("x".into())).unwrap_err();
            assert!(matches!(e, TemplateError::BadName(_)), "{bad}: {e}");
        }
        assert!(!dir.exists());
    }

    #[test]
    fn every_placeholder_is_replaced() {
        let dir = std::env::temp_dir().join(format!("kiln-template-unit-{}", std::process::id()));
        let files = create(
            "my-app",
            &dir,
            &KilnSource::Git("https://example.invalid/kiln".into()),
        )
        .unwrap();
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(!text.contains("{{"), "{}: {text}", f.display());
        }
        let manifest = std::fs::read_to_string(dir.join("manifest.toml")).unwrap();
        assert!(manifest.contains("[objects.my_app]"), "{manifest}");
        assert!(dir.join("my-app-ebpf/src/main.rs").is_file());
        let e = create("my-app", &dir, &KilnSource::Git("x".into())).unwrap_err();
        assert!(matches!(e, TemplateError::Exists(_)), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
