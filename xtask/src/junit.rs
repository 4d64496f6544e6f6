//! JUnit XML, the report format CI systems read: one `<testsuite>` per VM
//! (kernel and arch), one `<testcase>` per test, `<skipped>`/`<failure>`
//! carrying the reason and the test's output. A VM that could not run or is
//! not clean (panic, timeout, taint) adds an `<error>` test case, so it can
//! never read as green.

use std::fmt::Write;
use std::time::Duration;

/// How one test case ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Pass,
    Skip(String),
    Fail {
        message: String,
        output: String,
    },
    /// The VM itself, not a test: could not boot, panicked, timed out.
    Error {
        message: String,
        output: String,
    },
}

#[derive(Debug, Clone)]
pub struct Case {
    /// The test binary (JUnit's class name).
    pub classname: String,
    pub name: String,
    pub time: Duration,
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
pub struct Suite {
    /// `<kernel>-<arch>`.
    pub name: String,
    pub properties: Vec<(String, String)>,
    pub time: Duration,
    pub cases: Vec<Case>,
}

#[derive(Default, Clone, Copy, Debug, PartialEq)]
struct Tally {
    tests: usize,
    failures: usize,
    errors: usize,
    skipped: usize,
}

fn tally(cases: &[Case]) -> Tally {
    let mut t = Tally::default();
    for c in cases {
        t.tests += 1;
        match c.outcome {
            Outcome::Pass => {}
            Outcome::Skip(_) => t.skipped += 1,
            Outcome::Fail { .. } => t.failures += 1,
            Outcome::Error { .. } => t.errors += 1,
        }
    }
    t
}

/// Escapes text for an XML attribute or element. Characters XML 1.0 cannot
/// carry at all (most C0 controls, e.g. ANSI escapes in test output) become
/// U+FFFD, so a stray byte cannot make the whole report unreadable.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// The whole report as a JUnit XML document.
pub fn render(name: &str, suites: &[Suite]) -> String {
    let mut all = Tally::default();
    let mut total_time = Duration::ZERO;
    for s in suites {
        let t = tally(&s.cases);
        all.tests += t.tests;
        all.failures += t.failures;
        all.errors += t.errors;
        all.skipped += t.skipped;
        total_time += s.time;
    }
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">",
        escape(name),
        all.tests,
        all.failures,
        all.errors,
        all.skipped,
        secs(total_time)
    );
    for s in suites {
        let t = tally(&s.cases);
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">",
            escape(&s.name),
            t.tests,
            t.failures,
            t.errors,
            t.skipped,
            secs(s.time)
        );
        if !s.properties.is_empty() {
            x.push_str("    <properties>\n");
            for (k, v) in &s.properties {
                let _ = writeln!(
                    x,
                    "      <property name=\"{}\" value=\"{}\"/>",
                    escape(k),
                    escape(v)
                );
            }
            x.push_str("    </properties>\n");
        }
        for c in &s.cases {
            let _ = write!(
                x,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{}\"",
                escape(&c.classname),
                escape(&c.name),
                secs(c.time)
            );
            match &c.outcome {
                Outcome::Pass => x.push_str("/>\n"),
                Outcome::Skip(reason) => {
                    let _ = writeln!(
                        x,
                        ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                        escape(reason)
                    );
                }
                Outcome::Fail { message, output } | Outcome::Error { message, output } => {
                    let tag = if matches!(c.outcome, Outcome::Fail { .. }) {
                        "failure"
                    } else {
                        "error"
                    };
                    let _ = writeln!(
                        x,
                        ">\n      <{tag} message=\"{}\">{}</{tag}>\n    </testcase>",
                        escape(message),
                        escape(output)
                    );
                }
            }
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(name: &str, outcome: Outcome) -> Case {
        Case {
            classname: "kiln-loader-maps".into(),
            name: name.into(),
            time: Duration::from_millis(1500),
            outcome,
        }
    }

    #[test]
    fn suites_cases_and_counts() {
        let suites = vec![
            Suite {
                name: "5.10-x86_64".into(),
                properties: vec![("kernel".into(), "5.10".into())],
                time: Duration::from_secs(100),
                cases: vec![
                    case("hash_maps", Outcome::Pass),
                    case(
                        "bloom_filter",
                        Outcome::Skip("kernel has no bloom (5.16+)".into()),
                    ),
                    case(
                        "ring_buffer",
                        Outcome::Fail {
                            message: "assertion failed".into(),
                            output: "left: 1\nright: 2".into(),
                        },
                    ),
                ],
            },
            Suite {
                name: "7.2-aarch64".into(),
                properties: vec![],
                time: Duration::from_millis(2500),
                cases: vec![case(
                    "(vm)",
                    Outcome::Error {
                        message: "kernel panic".into(),
                        output: "Kernel panic - not syncing".into(),
                    },
                )],
            },
        ];
        let x = render("kiln-vm", &suites);
        let expect = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="kiln-vm" tests="4" failures="1" errors="1" skipped="1" time="102.500">
  <testsuite name="5.10-x86_64" tests="3" failures="1" errors="0" skipped="1" time="100.000">
    <properties>
      <property name="kernel" value="5.10"/>
    </properties>
    <testcase classname="kiln-loader-maps" name="hash_maps" time="1.500"/>
    <testcase classname="kiln-loader-maps" name="bloom_filter" time="1.500">
      <skipped message="kernel has no bloom (5.16+)"/>
    </testcase>
    <testcase classname="kiln-loader-maps" name="ring_buffer" time="1.500">
      <failure message="assertion failed">left: 1
right: 2</failure>
    </testcase>
  </testsuite>
  <testsuite name="7.2-aarch64" tests="1" failures="0" errors="1" skipped="0" time="2.500">
    <testcase classname="kiln-loader-maps" name="(vm)" time="1.500">
      <error message="kernel panic">Kernel panic - not syncing</error>
    </testcase>
  </testsuite>
</testsuites>
"#;
        assert_eq!(x, expect);
    }

    #[test]
    fn text_is_escaped_and_controls_replaced() {
        assert_eq!(
            escape("a<b>&\"c\" 'd'"),
            "a&lt;b&gt;&amp;&quot;c&quot; &apos;d&apos;"
        );
        assert_eq!(
            escape("\x1b[31mred\x1b[0m\tok\n"),
            "\u{fffd}[31mred\u{fffd}[0m\tok\n"
        );
        let x = render(
            "r",
            &[Suite {
                name: "s".into(),
                properties: vec![],
                time: Duration::ZERO,
                cases: vec![case(
                    "t",
                    Outcome::Fail {
                        message: "x < y".into(),
                        output: "</failure><oops>".into(),
                    },
                )],
            }],
        );
        assert!(x.contains("<failure message=\"x &lt; y\">&lt;/failure&gt;&lt;oops&gt;</failure>"));
        assert_eq!(x.matches("<failure").count(), 1);
    }
}
