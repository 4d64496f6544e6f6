//! Verifier statistics as a regression signal: the instructions the
//! verifier processed per program and kernel are kept from the last run in
//! `target/vm-verifier-last.json`, and a program whose count grew by more
//! than 10% on any kernel is printed after the VM results.
//!
//! The numbers of a kernel not run this time stay in the file, so a run of
//! one VM compares against that VM's own last numbers and forgets no other.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

/// `vm label` → `binary::test::program` → instructions processed.
pub type Numbers = BTreeMap<String, BTreeMap<String, u64>>;

/// Growth beyond this fraction is reported.
const THRESHOLD: f64 = 0.10;

/// The numbers of one VM's `KILN-VERIFIER` records (the largest, when a
/// test loaded the same program more than once).
pub fn of_records(records: &[serde_json::Value]) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for r in records {
        let (Some(binary), Some(test), Some(program), Some(insns)) = (
            r["binary"].as_str(),
            r["test"].as_str(),
            r["program"].as_str(),
            r["insns"].as_u64(),
        ) else {
            continue;
        };
        let n = out
            .entry(format!("{binary}::{test}::{program}"))
            .or_default();
        *n = (*n).max(insns);
    }
    out
}

/// One program that costs the verifier more than last time.
#[derive(Debug, PartialEq)]
pub struct Growth {
    pub vm: String,
    pub program: String,
    pub before: u64,
    pub now: u64,
}

/// Programs whose count grew by more than 10% against `last`, on any VM.
pub fn growth(last: &Numbers, now: &Numbers) -> Vec<Growth> {
    let mut out = Vec::new();
    for (vm, programs) in now {
        let Some(before) = last.get(vm) else { continue };
        for (program, &n) in programs {
            let Some(&b) = before.get(program) else {
                continue;
            };
            if b > 0 && (n as f64) > (b as f64) * (1.0 + THRESHOLD) {
                out.push(Growth {
                    vm: vm.clone(),
                    program: program.clone(),
                    before: b,
                    now: n,
                });
            }
        }
    }
    out
}

/// Compares `now` with the file's numbers, prints what grew, and stores the
/// merge (this run's VMs replaced, the others kept).
pub fn compare_and_store(path: &Path, now: &Numbers) -> Result<Vec<Growth>> {
    let mut last: Numbers = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            eprintln!(
                "note: {} is unreadable ({e}); starting the verifier numbers afresh",
                path.display()
            );
            Numbers::new()
        }),
        Err(_) => Numbers::new(),
    };
    let grown = growth(&last, now);
    if !grown.is_empty() {
        println!(
            "\nverifier work grew by more than 10% since the last run (instructions processed):"
        );
        for g in &grown {
            println!(
                "  {:<14} {}: {} -> {} (+{:.0}%)",
                g.vm,
                g.program,
                g.before,
                g.now,
                (g.now as f64 / g.before as f64 - 1.0) * 100.0
            );
        }
    }
    for (vm, programs) in now {
        if !programs.is_empty() {
            last.insert(vm.clone(), programs.clone());
        }
    }
    std::fs::write(path, serde_json::to_string_pretty(&last)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(grown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(vm: &str, items: &[(&str, u64)]) -> Numbers {
        let mut n = Numbers::new();
        n.insert(
            vm.into(),
            items.iter().map(|(p, i)| ((*p).to_owned(), *i)).collect(),
        );
        n
    }

    #[test]
    fn only_growth_beyond_ten_percent_on_a_vm_seen_before() {
        let last = numbers("6.1-x86_64", &[("b::t::a", 100), ("b::t::b", 100)]);
        let now = numbers(
            "6.1-x86_64",
            &[("b::t::a", 110), ("b::t::b", 111), ("b::t::new", 5000)],
        );
        assert_eq!(
            growth(&last, &now),
            [Growth {
                vm: "6.1-x86_64".into(),
                program: "b::t::b".into(),
                before: 100,
                now: 111
            }]
        );
        // Another kernel has no previous numbers: nothing to compare.
        assert!(growth(&last, &numbers("5.10-aarch64", &[("b::t::b", 999)])).is_empty());
    }

    #[test]
    fn records_keep_the_largest_load_and_the_file_keeps_other_vms() {
        let records: Vec<serde_json::Value> = vec![
            serde_json::json!({"binary":"b","test":"t","program":"p","insns":7}),
            serde_json::json!({"binary":"b","test":"t","program":"p","insns":9}),
            serde_json::json!({"binary":"b","test":"t","program":"q"}),
        ];
        let one = of_records(&records);
        assert_eq!(one.into_iter().collect::<Vec<_>>(), [("b::t::p".into(), 9)]);

        let path = std::env::temp_dir().join(format!("kiln-verifier-{}.json", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let first = compare_and_store(&path, &numbers("5.10-x86_64", &[("b::t::p", 10)])).unwrap();
        assert!(first.is_empty());
        compare_and_store(&path, &numbers("6.1-x86_64", &[("b::t::p", 10)])).unwrap();
        let grown = compare_and_store(&path, &numbers("5.10-x86_64", &[("b::t::p", 20)])).unwrap();
        let stored: Numbers = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(grown.len(), 1);
        assert_eq!(stored["6.1-x86_64"]["b::t::p"], 10);
        assert_eq!(stored["5.10-x86_64"]["b::t::p"], 20);
    }
}
