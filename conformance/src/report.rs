//! What one comparison found, the known differences file, and the summary
//! table. Pure data: tested without a kernel.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One loader's verdict on a whole object.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Side {
    /// Every program the loader meant to load is in the kernel.
    pub loaded: bool,
    /// Why not (the loader's own words, first relevant line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub programs_loaded: usize,
    /// Programs not loaded, with the reason (Kiln: deferred to attach time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deferred: Vec<(String, String)>,
    /// Programs the kernel refused, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<(String, String)>,
    /// Whether the object's BTF reached the kernel.
    pub btf_loaded: bool,
}

/// A program both loaders loaded.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProgramReport {
    pub name: String,
    pub xlated_equal: bool,
    /// Instructions (xlated lines) on each side: [kiln, libbpf].
    pub insns: [usize; 2],
    pub func_info: [u32; 2],
    pub line_info: [u32; 2],
}

impl ProgramReport {
    pub fn ext_info_equal(&self) -> bool {
        self.func_info[0] == self.func_info[1] && self.line_info[0] == self.line_info[1]
    }
}

/// The classes of difference; `class` in the known differences file.
pub const CLASSES: &[(&str, &str)] = &[
    (
        "kiln-fails",
        "libbpf loads the object, Kiln fails (parse, map, BTF or program load)",
    ),
    (
        "kiln-defers",
        "libbpf loads a program that Kiln leaves for attach time",
    ),
    ("xlated", "translated instructions differ"),
    (
        "btf-dropped",
        "libbpf loaded the program with BTF, Kiln without",
    ),
    ("ext-info", "func_info or line_info counts differ"),
    ("maps", "the maps the programs use differ in definition"),
    ("pins", "by-name pins differ"),
    ("harness", "the comparison itself failed"),
];

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Difference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    pub class: String,
    /// A short, name-free form of the detail that groups like failures.
    pub kind: String,
    pub detail: String,
    /// The reason from the known differences file, when listed there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known: Option<String>,
}

impl Difference {
    pub fn new(program: Option<&str>, class: &str, detail: impl Into<String>) -> Difference {
        let detail = detail.into();
        Difference {
            program: program.map(str::to_owned),
            class: class.to_owned(),
            kind: classify(&detail),
            detail,
            known: None,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ObjectReport {
    /// File name of the object (what the known differences file names).
    pub object: String,
    pub libbpf: Side,
    pub kiln: Side,
    pub programs: Vec<ProgramReport>,
    pub differences: Vec<Difference>,
    pub seconds: f64,
}

/// An object whose source did not compile here.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NotBuilt {
    pub object: String,
    pub error: String,
}

/// Groups failures by what they say, not by what they name: quoted names,
/// numbers and paths become placeholders, and only the first line is kept.
pub fn classify(detail: &str) -> String {
    let line = detail.lines().next().unwrap_or("");
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' | '`' => {
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                }
                out.push_str("'_'");
            }
            '0'..='9' => {
                while chars.peek().is_some_and(|d| d.is_ascii_alphanumeric()) {
                    chars.next();
                }
                out.push('N');
            }
            '/' if out.ends_with(' ') || out.is_empty() => {
                while chars
                    .peek()
                    .is_some_and(|d| !d.is_whitespace() && *d != ':')
                {
                    chars.next();
                }
                out.push_str("PATH");
            }
            _ => out.push(c),
        }
    }
    out.chars().take(140).collect()
}

/// One entry of the known differences file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Known {
    /// Object file name (`foo.bpf.o`), or `*` for every object.
    pub object: String,
    /// Program name; absent or `*` for every program of the object.
    #[serde(default)]
    pub program: Option<String>,
    pub class: String,
    /// Why the difference is accepted (required, never empty).
    pub reason: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KnownFile {
    #[serde(default)]
    known: Vec<Known>,
}

#[derive(Debug, thiserror::Error)]
pub enum KnownError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path}: entry {index} (object '{object}'): {message}")]
    Entry {
        path: String,
        index: usize,
        object: String,
        message: String,
    },
}

/// Reads and checks the known differences file (`[[known]]` tables).
pub fn read_known(path: &Path) -> Result<Vec<Known>, KnownError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KnownError::Read {
        path: p.clone(),
        source,
    })?;
    parse_known(&text, &p)
}

pub fn parse_known(text: &str, path: &str) -> Result<Vec<Known>, KnownError> {
    let file: KnownFile = toml::from_str(text).map_err(|source| KnownError::Parse {
        path: path.to_owned(),
        source,
    })?;
    for (index, k) in file.known.iter().enumerate() {
        let bad = |message: String| KnownError::Entry {
            path: path.to_owned(),
            index: index + 1,
            object: k.object.clone(),
            message,
        };
        if !CLASSES.iter().any(|(c, _)| *c == k.class) {
            let all: Vec<&str> = CLASSES.iter().map(|(c, _)| *c).collect();
            return Err(bad(format!(
                "unknown class '{}' (one of: {})",
                k.class,
                all.join(", ")
            )));
        }
        if k.reason.trim().is_empty() {
            return Err(bad("every known difference needs a reason".into()));
        }
    }
    Ok(file.known)
}

/// Marks each difference listed in `known` with its reason.
pub fn apply_known(reports: &mut [ObjectReport], known: &[Known]) {
    for r in reports {
        for d in &mut r.differences {
            d.known = known
                .iter()
                .find(|k| {
                    (k.object == "*" || k.object == r.object)
                        && k.class == d.class
                        && match (k.program.as_deref(), d.program.as_deref()) {
                            (None | Some("*"), _) => true,
                            (Some(want), Some(got)) => want == got,
                            (Some(_), None) => false,
                        }
                })
                .map(|k| k.reason.clone());
        }
    }
}

/// Entries of the known differences file that matched nothing in this run:
/// fixed, so the entry should go (objects not in the run are left alone).
pub fn stale_known<'a>(reports: &[ObjectReport], known: &'a [Known]) -> Vec<&'a Known> {
    known
        .iter()
        .filter(|k| k.object == "*" || reports.iter().any(|r| r.object == k.object))
        .filter(|k| {
            !reports
                .iter()
                .filter(|r| k.object == "*" || r.object == k.object)
                .any(|r| {
                    r.differences.iter().any(|d| {
                        d.known.as_deref() == Some(k.reason.as_str()) && d.class == k.class
                    })
                })
        })
        .collect()
}

/// The numbers of the table.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub sources: usize,
    pub built: usize,
    pub not_built: usize,
    pub both_loaded: usize,
    pub kiln_only: usize,
    pub libbpf_only: usize,
    pub neither: usize,
    pub kiln_without_btf: usize,
    pub programs_compared: usize,
    pub xlated_identical: usize,
    pub xlated_different: usize,
    pub ext_info_equal: usize,
    pub ext_info_different: usize,
    pub differences: usize,
    pub known: usize,
    pub unlisted: usize,
}

pub fn summarize(reports: &[ObjectReport], not_built: &[NotBuilt]) -> Summary {
    let mut s = Summary {
        built: reports.len(),
        not_built: not_built.len(),
        sources: reports.len() + not_built.len(),
        ..Summary::default()
    };
    for r in reports {
        match (r.kiln.loaded, r.libbpf.loaded) {
            (true, true) => s.both_loaded += 1,
            (true, false) => s.kiln_only += 1,
            (false, true) => s.libbpf_only += 1,
            (false, false) => s.neither += 1,
        }
        if r.libbpf.btf_loaded && r.kiln.programs_loaded > 0 && !r.kiln.btf_loaded {
            s.kiln_without_btf += 1;
        }
        for p in &r.programs {
            s.programs_compared += 1;
            if p.xlated_equal {
                s.xlated_identical += 1;
            } else {
                s.xlated_different += 1;
            }
            if p.ext_info_equal() {
                s.ext_info_equal += 1;
            } else {
                s.ext_info_different += 1;
            }
        }
        for d in &r.differences {
            s.differences += 1;
            if d.known.is_some() {
                s.known += 1;
            } else {
                s.unlisted += 1;
            }
        }
    }
    s
}

/// Difference kinds with their count and one example object, most frequent first.
pub fn kinds(reports: &[ObjectReport]) -> Vec<(String, String, usize, String)> {
    let mut by: BTreeMap<(String, String), (usize, String)> = BTreeMap::new();
    for r in reports {
        for d in &r.differences {
            let e = by
                .entry((d.class.clone(), d.kind.clone()))
                .or_insert((0, r.object.clone()));
            e.0 += 1;
        }
    }
    let mut v: Vec<_> = by
        .into_iter()
        .map(|((class, kind), (n, example))| (class, kind, n, example))
        .collect();
    v.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    v
}

/// The summary table in Markdown, then every difference, one row each.
pub fn render_table(reports: &[ObjectReport], not_built: &[NotBuilt]) -> String {
    let s = summarize(reports, not_built);
    let mut o = String::new();
    let _ = writeln!(o, "| objects | count |\n|---|---|");
    for (what, n) in [
        ("sources", s.sources),
        ("built", s.built),
        ("not built (clang refused)", s.not_built),
        ("both loaded", s.both_loaded),
        ("Kiln only", s.kiln_only),
        ("libbpf only", s.libbpf_only),
        ("neither", s.neither),
        ("Kiln loaded without BTF (libbpf with)", s.kiln_without_btf),
    ] {
        let _ = writeln!(o, "| {what} | {n} |");
    }
    let _ = writeln!(o, "\n| programs both loaded | count |\n|---|---|");
    for (what, n) in [
        ("compared", s.programs_compared),
        ("identical xlated", s.xlated_identical),
        ("different xlated", s.xlated_different),
        ("func+line info equal", s.ext_info_equal),
        ("func+line info differing", s.ext_info_different),
    ] {
        let _ = writeln!(o, "| {what} | {n} |");
    }
    let _ = writeln!(
        o,
        "\ndifferences: {} ({} known, {} unlisted)",
        s.differences, s.known, s.unlisted
    );
    let k = kinds(reports);
    if !k.is_empty() {
        let _ = writeln!(o, "\n| class | kind | count | example |\n|---|---|---|---|");
        for (class, kind, n, example) in &k {
            let _ = writeln!(
                o,
                "| {class} | {} | {n} | {example} |",
                kind.replace('|', "\\|")
            );
        }
    }
    let mut rows = Vec::new();
    for r in reports {
        for d in &r.differences {
            let first = d.detail.lines().next().unwrap_or("");
            rows.push(format!(
                "{} {} [{}] {}{}",
                r.object,
                d.program.as_deref().unwrap_or("-"),
                d.class,
                first,
                match &d.known {
                    Some(reason) => format!(" (known: {reason})"),
                    None => String::new(),
                }
            ));
        }
    }
    if !rows.is_empty() {
        let _ = writeln!(o, "\nper object:");
        for r in rows {
            let _ = writeln!(o, "  {r}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(object: &str, kiln: bool, libbpf: bool, diffs: Vec<Difference>) -> ObjectReport {
        ObjectReport {
            object: object.into(),
            kiln: Side {
                loaded: kiln,
                programs_loaded: 1,
                btf_loaded: true,
                ..Side::default()
            },
            libbpf: Side {
                loaded: libbpf,
                btf_loaded: true,
                ..Side::default()
            },
            programs: vec![ProgramReport {
                name: "p".into(),
                xlated_equal: diffs.is_empty(),
                insns: [3, 3],
                func_info: [1, 1],
                line_info: [4, 4],
            }],
            differences: diffs,
            seconds: 0.0,
        }
    }

    #[test]
    fn classify_drops_names_numbers_and_paths() {
        assert_eq!(
            classify("map '.rodata.str1.1': pin /sys/fs/bpf/x/.rodata failed: errno 1\nmore"),
            "map '_': pin PATH failed: errno N"
        );
        assert_eq!(
            classify("program \"a\": call 0xbad2310"),
            classify("program \"b\": call 0xbad2310")
        );
    }

    #[test]
    fn known_entries_mark_only_their_differences_and_need_reasons() {
        let text = r#"
[[known]]
object = "a.bpf.o"
class = "xlated"
program = "p"
reason = "USDT spec map layout"
"#;
        let known = parse_known(text, "k.toml").unwrap();
        let mut reports = vec![
            report(
                "a.bpf.o",
                true,
                true,
                vec![Difference::new(Some("p"), "xlated", "x")],
            ),
            report(
                "b.bpf.o",
                true,
                true,
                vec![Difference::new(Some("p"), "xlated", "x")],
            ),
            report(
                "a.bpf.o",
                true,
                true,
                vec![Difference::new(Some("q"), "xlated", "x")],
            ),
        ];
        apply_known(&mut reports, &known);
        assert_eq!(
            reports[0].differences[0].known.as_deref(),
            Some("USDT spec map layout")
        );
        assert_eq!(reports[1].differences[0].known, None);
        assert_eq!(reports[2].differences[0].known, None);
        assert!(stale_known(&reports, &known).is_empty());
        reports[0].differences.clear();
        apply_known(&mut reports, &known);
        assert_eq!(stale_known(&reports, &known), vec![&known[0]]);

        let no_reason = "[[known]]\nobject = \"a\"\nclass = \"xlated\"\nreason = \" \"\n";
        let e = parse_known(no_reason, "k.toml").unwrap_err().to_string();
        assert!(e.contains("needs a reason"), "{e}");
        let bad_class = "[[known]]\nobject = \"a\"\nclass = \"nope\"\nreason = \"r\"\n";
        let e = parse_known(bad_class, "k.toml").unwrap_err().to_string();
        assert!(
            e.contains("k.toml: entry 1 (object 'a'): unknown class 'nope'"),
            "{e}"
        );
    }

    #[test]
    fn summary_counts_objects_programs_and_unlisted_differences() {
        let mut reports = vec![
            report("a", true, true, vec![]),
            report(
                "b",
                false,
                true,
                vec![Difference::new(None, "kiln-fails", "e 1")],
            ),
            report("c", true, false, vec![]),
            report("d", false, false, vec![]),
        ];
        reports[3].programs.clear();
        let nb = [NotBuilt {
            object: "e".into(),
            error: "error".into(),
        }];
        let s = summarize(&reports, &nb);
        assert_eq!(
            (s.sources, s.built, s.not_built),
            (5, 4, 1),
            "sources = built + not built"
        );
        assert_eq!(
            (s.both_loaded, s.libbpf_only, s.kiln_only, s.neither),
            (1, 1, 1, 1)
        );
        assert_eq!((s.programs_compared, s.xlated_identical), (3, 2));
        assert_eq!((s.differences, s.unlisted), (1, 1));
        let t = render_table(&reports, &nb);
        assert!(t.contains("| libbpf only | 1 |"), "{t}");
        assert!(t.contains("| kiln-fails | e N | 1 | b |"), "{t}");
        assert!(t.contains("  b - [kiln-fails] e 1"), "{t}");
    }
}
