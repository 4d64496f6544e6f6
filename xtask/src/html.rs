//! The VM report as one self-contained HTML page (no scripts, no external
//! files): a summary per VM, every failure first (its output and the
//! command that re-runs it), then a grid of every test against every VM
//! (each cell pass, skip or fail, the reason on hover and in the cell, a
//! failed cell linked to its failure). Built from the same suites as the JUnit report, so the
//! two never disagree.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::junit::{Outcome, Suite, escape};

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em}\
table{border-collapse:collapse;margin-bottom:1.5em}\
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}\
th{background:#f3f3f3}td.pass{background:#dff3df}td.skip{background:#fff4cc}\
td.fail{background:#f8d0d0;font-weight:bold}td.none{color:#999}\
small{color:#555}pre{background:#f6f6f6;padding:.6em;overflow-x:auto;white-space:pre-wrap}";

/// Renders the page. `title` heads it.
pub fn render(title: &str, suites: &[Suite]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body>\n<h1>{t}</h1>\n",
        t = escape(title)
    );
    summary(&mut h, suites);
    failures(&mut h, suites);
    grid(&mut h, suites);
    h.push_str("</body></html>\n");
    h
}

fn summary(h: &mut String, suites: &[Suite]) {
    h.push_str("<table><tr><th>VM</th><th>passed</th><th>failed</th><th>skipped</th><th>time</th><th>verdict</th></tr>\n");
    for s in suites {
        let (mut pass, mut fail, mut skip) = (0, 0, 0);
        for c in &s.cases {
            match c.outcome {
                Outcome::Pass => pass += 1,
                Outcome::Skip(_) => skip += 1,
                Outcome::Fail { .. } | Outcome::Error { .. } => fail += 1,
            }
        }
        let (class, verdict) = if fail == 0 {
            ("pass", "ok")
        } else {
            ("fail", "FAIL")
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{pass}</td><td>{fail}</td><td>{skip}</td><td>{:.1} s</td><td class=\"{class}\">{verdict}</td></tr>",
            escape(&s.name),
            s.time.as_secs_f64()
        );
    }
    h.push_str("</table>\n");
}

/// Tests as rows, VMs as columns. Tests that passed everywhere are folded
/// into one line so the grid shows what differs between kernels.
fn grid(h: &mut String, suites: &[Suite]) {
    // Each cell: the outcome and its (suite, case) anchor.
    type Cell<'a> = Option<(&'a Outcome, String)>;
    let mut rows: BTreeMap<(String, String), Vec<Cell>> = BTreeMap::new();
    for (i, s) in suites.iter().enumerate() {
        for (j, c) in s.cases.iter().enumerate() {
            rows.entry((c.classname.clone(), c.name.clone()))
                .or_insert_with(|| vec![None; suites.len()])[i] = Some((&c.outcome, anchor(i, j)));
        }
    }
    let passed = |cells: &Vec<Cell>| cells.iter().all(|c| matches!(c, Some((Outcome::Pass, _))));
    let everywhere = rows.values().filter(|cells| passed(cells)).count();
    let _ = writeln!(
        h,
        "<h2>Tests that did not pass on every VM</h2>\n<p>{everywhere} tests passed on every VM and are not listed.</p>"
    );
    h.push_str("<table><tr><th>test</th>");
    for s in suites {
        let _ = write!(h, "<th>{}</th>", escape(&s.name));
    }
    h.push_str("</tr>\n");
    for ((class, name), cells) in &rows {
        if passed(cells) {
            continue;
        }
        let _ = write!(h, "<tr><td>{}::{}</td>", escape(class), escape(name));
        for cell in cells {
            let _ = match cell {
                Some((Outcome::Pass, _)) => write!(h, "<td class=\"pass\">pass</td>"),
                Some((Outcome::Skip(why), _)) => write!(
                    h,
                    "<td class=\"skip\" title=\"{w}\">skip<br><small>{w}</small></td>",
                    w = escape(why)
                ),
                Some((Outcome::Fail { message, .. } | Outcome::Error { message, .. }, id)) => {
                    write!(
                        h,
                        "<td class=\"fail\" title=\"{m}\"><a href=\"#{id}\">FAIL</a><br><small>{m}</small></td>",
                        m = escape(message)
                    )
                }
                None => write!(h, "<td class=\"none\">not run</td>"),
            };
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}

/// The id of case `j` of suite `i`, the grid's link to its failure.
fn anchor(i: usize, j: usize) -> String {
    format!("fail-{i}-{j}")
}

fn failures(h: &mut String, suites: &[Suite]) {
    let mut any = false;
    for (i, s) in suites.iter().enumerate() {
        let rerun = s
            .properties
            .iter()
            .find(|(k, _)| k == "rerun")
            .map(|(_, v)| v.as_str());
        // A report of another command than `cargo xtask test` names its own.
        let rerun_command = s
            .properties
            .iter()
            .find(|(k, _)| k == "rerun_command")
            .map(|(_, v)| v.as_str());
        for (j, c) in s.cases.iter().enumerate() {
            if let Outcome::Fail { message, output } | Outcome::Error { message, output } =
                &c.outcome
            {
                if !any {
                    h.push_str("<h2>Failures</h2>\n");
                    any = true;
                }
                let _ = writeln!(
                    h,
                    "<h3 id=\"{}\">{} {}::{}</h3>\n<p>{}</p>\n<pre>{}</pre>",
                    anchor(i, j),
                    escape(&s.name),
                    escape(&c.classname),
                    escape(&c.name),
                    escape(message),
                    escape(output)
                );
                if let Some(command) = rerun_command {
                    let _ = writeln!(h, "<p>re-run: <code>{}</code></p>", escape(command));
                } else if let Some(args) = rerun {
                    // `(vm)`, `(timeout)`: the VM or the whole binary, no test filter.
                    let command = if c.classname == "vm" {
                        format!("cargo xtask test {args}")
                    } else if c.name.starts_with('(') {
                        format!("cargo xtask test {args} --binary {}", c.classname)
                    } else {
                        format!(
                            "cargo xtask test {args} --binary {} -- {} --exact",
                            c.classname, c.name
                        )
                    };
                    let _ = writeln!(h, "<p>re-run: <code>{}</code></p>", escape(&command));
                }
            }
        }
    }
    if !any {
        h.push_str("<h2>Failures</h2>\n<p>None.</p>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::junit::Case;
    use std::time::Duration;

    fn case(name: &str, outcome: Outcome) -> Case {
        Case {
            classname: "kiln-loader-maps".into(),
            name: name.into(),
            time: Duration::from_millis(5),
            outcome,
        }
    }

    #[test]
    fn grid_shows_what_differs_and_every_failure() {
        let suites = vec![
            Suite {
                name: "5.10-x86_64".into(),
                properties: vec![],
                time: Duration::from_secs(40),
                cases: vec![
                    case("hash", Outcome::Pass),
                    case("bloom", Outcome::Skip("no bloom filter <5.16>".into())),
                    case(
                        "ring",
                        Outcome::Fail {
                            message: "assertion failed".into(),
                            output: "left: 1 & right: 2".into(),
                        },
                    ),
                ],
            },
            Suite {
                name: "6.1-x86_64".into(),
                properties: vec![],
                time: Duration::from_secs(70),
                cases: vec![
                    case("hash", Outcome::Pass),
                    case("bloom", Outcome::Pass),
                    case("ring", Outcome::Pass),
                ],
            },
        ];
        let mut suites = suites;
        suites[0].properties = vec![("rerun".into(), "--kernel 5.10 --arch x86_64".into())];
        let page = render("kiln <vm>", &suites);
        // Failures first, linked from the grid, with the command that re-runs each.
        assert!(page.find("<h2>Failures</h2>") < page.find("<h2>Tests that did not pass"));
        assert!(page.contains("<a href=\"#fail-0-2\">FAIL</a>"));
        assert!(page.contains("<h3 id=\"fail-0-2\">5.10-x86_64 kiln-loader-maps::ring</h3>"));
        assert!(page.contains(
            "re-run: <code>cargo xtask test --kernel 5.10 --arch x86_64 --binary kiln-loader-maps -- ring --exact</code>"
        ));
        assert!(page.starts_with("<!DOCTYPE html>") && page.ends_with("</html>\n"));
        assert!(page.contains("<title>kiln &lt;vm&gt;</title>"));
        // hash passed everywhere: folded, not a row.
        assert!(page.contains("1 tests passed on every VM"));
        assert!(!page.contains("<td>kiln-loader-maps::hash</td>"));
        assert!(page.contains("<td>kiln-loader-maps::bloom</td>"));
        assert!(page.contains("no bloom filter &lt;5.16&gt;"));
        assert!(page.contains("<td class=\"fail\" title=\"assertion failed\"><a "));
        assert!(page.contains("<pre>left: 1 &amp; right: 2</pre>"));
        // Summary: the 5.10 VM failed, 6.1 did not.
        assert!(page.contains("<td>5.10-x86_64</td><td>1</td><td>1</td><td>1</td>"));
        assert!(page.contains("<td class=\"fail\">FAIL</td>"));
        assert!(page.contains("<td>6.1-x86_64</td><td>3</td><td>0</td><td>0</td>"));
    }
}
