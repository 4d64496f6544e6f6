//! Reading libtest's (and libtest-mimic's) console output.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Result { test: String, status: Status },
}

/// Feeds on output lines. A test's own output may land between libtest's
/// `test NAME ... ` and its verdict, so a verdict alone on a later line is
/// attributed to the last test that started.
#[derive(Default)]
pub struct Parser {
    pending: Option<String>,
    skips: HashMap<String, String>,
}

fn verdict(rest: &str) -> Option<Status> {
    let rest = rest.trim();
    match rest {
        "ok" => Some(Status::Pass),
        "FAILED" => Some(Status::Fail),
        _ if rest == "ignored" || rest.starts_with("ignored,") => Some(Status::Skip),
        _ => None,
    }
}

impl Parser {
    pub fn feed(&mut self, line: &str) -> Option<Line> {
        if let Some(rest) = line.strip_prefix("kiln-testkit: SKIP ") {
            if let Some((name, reason)) = rest.split_once(": ") {
                self.skips.insert(name.to_owned(), reason.to_owned());
            }
            return None;
        }
        if let Some(rest) = line.strip_prefix("test ") {
            if let Some((name, after)) = rest.split_once(" ... ") {
                // libtest-mimic pads names to align the verdicts.
                let name = name.trim_end();
                return match verdict(after) {
                    Some(status) => {
                        self.pending = None;
                        Some(Line::Result {
                            test: name.to_owned(),
                            status,
                        })
                    }
                    None => {
                        self.pending = Some(name.to_owned());
                        None
                    }
                };
            }
        }
        if self.pending.is_some() {
            // The verdict may follow the test's own output on the same line.
            for (word, status) in [(" ok", Status::Pass), (" FAILED", Status::Fail)] {
                if line == word.trim() || line.ends_with(word) {
                    let test = self.pending.take()?;
                    return Some(Line::Result { test, status });
                }
            }
        }
        None
    }

    /// The test that started and has no verdict yet (the binary died in it?).
    pub fn pending(&self) -> Option<&str> {
        self.pending.as_deref()
    }

    /// The reason kiln-testkit printed for skipping `test`.
    pub fn skip_reason(&self, test: &str) -> Option<&str> {
        self.skips.get(test).map(String::as_str)
    }
}

/// The `---- NAME ... ----` block libtest prints for a failed test (up to the
/// next block or the `failures:` list); the whole output when there is none.
pub fn failure_section(lines: &[String], test: &str) -> String {
    let start = lines.iter().position(|l| {
        l.strip_prefix("---- ")
            .and_then(|r| r.strip_suffix(" ----"))
            .is_some_and(|r| r == test || r.strip_prefix(test).is_some_and(|x| x.starts_with(' ')))
    });
    match start {
        Some(i) => {
            let end = lines[i + 1..]
                .iter()
                .position(|l| l.starts_with("---- ") || l == "failures:")
                .map_or(lines.len(), |p| i + 1 + p);
            lines[i..end].join("\n")
        }
        None => lines.join("\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(lines: &[&str]) -> (Vec<Line>, Parser) {
        let mut p = Parser::default();
        let out = lines.iter().filter_map(|l| p.feed(l)).collect();
        (out, p)
    }

    #[test]
    fn verdicts_and_skip_reasons() {
        let (out, p) = feed_all(&[
            "kiln-testkit: SKIP kprobe_attach: kernel has no kprobes",
            "running 3 tests",
            "test map_roundtrip ... ok",
            "test kprobe_attach ... ignored",
            "test bad      ... FAILED",
            "test with_reason ... ignored, slow",
        ]);
        assert_eq!(
            out,
            vec![
                Line::Result {
                    test: "map_roundtrip".into(),
                    status: Status::Pass
                },
                Line::Result {
                    test: "kprobe_attach".into(),
                    status: Status::Skip
                },
                Line::Result {
                    test: "bad".into(),
                    status: Status::Fail
                },
                Line::Result {
                    test: "with_reason".into(),
                    status: Status::Skip
                },
            ]
        );
        assert_eq!(
            p.skip_reason("kprobe_attach"),
            Some("kernel has no kprobes")
        );
    }

    #[test]
    fn verdict_after_test_output() {
        let (out, _) = feed_all(&["test noisy ... loading prog", "more output", "ok"]);
        assert_eq!(
            out,
            vec![Line::Result {
                test: "noisy".into(),
                status: Status::Pass
            }]
        );
        let (out, _) = feed_all(&["test noisy ... ", "done FAILED"]);
        assert_eq!(
            out,
            vec![Line::Result {
                test: "noisy".into(),
                status: Status::Fail
            }]
        );
    }

    #[test]
    fn failure_block() {
        let lines: Vec<String> = [
            "test a ... FAILED",
            "failures:",
            "",
            "---- a stdout ----",
            "boom",
            "",
            "---- b stdout ----",
            "x",
            "failures:",
            "    a",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(failure_section(&lines, "a"), "---- a stdout ----\nboom\n");
        assert_eq!(failure_section(&lines, "b"), "---- b stdout ----\nx");
        assert!(failure_section(&lines, "zzz").contains("boom"));
    }
}
