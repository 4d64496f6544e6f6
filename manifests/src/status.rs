//! `kiln status`: each declared item, desired against observed.

use std::fmt;

use serde::Serialize;

use crate::plan::{Desired, Observed, tag_hex};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// As the manifest says.
    Ok,
    /// Not there at all (never applied, or removed).
    Missing,
    /// There, but changed behind Kiln's back or out of date.
    Drifted,
}

#[derive(Clone, Debug, Serialize)]
pub struct ItemStatus {
    pub kind: &'static str,
    pub name: String,
    pub state: State,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_cnt: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub deployment: String,
    pub items: Vec<ItemStatus>,
    /// Pinned under the root but not declared.
    pub extra: Vec<String>,
    /// Under the root but not the deployment's: shown, left alone, no drift.
    pub foreign: Vec<String>,
}

impl Status {
    pub fn all_ok(&self) -> bool {
        self.items.iter().all(|i| i.state == State::Ok) && self.extra.is_empty()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "deployment {}", self.deployment)?;
        for i in &self.items {
            let state = match i.state {
                State::Ok => "ok",
                State::Missing => "MISSING",
                State::Drifted => "DRIFTED",
            };
            write!(
                f,
                "  {:<8} {:<24} {:<8} {}",
                i.kind, i.name, state, i.detail
            )?;
            if let Some(n) = i.run_cnt {
                write!(f, " (runs: {n})")?;
            }
            writeln!(f)?;
        }
        for e in &self.extra {
            writeln!(f, "  extra    {e:<24} not declared in the manifest")?;
        }
        for e in &self.foreign {
            writeln!(f, "  foreign  {e:<24} not this deployment's; left alone")?;
        }
        if self.all_ok() {
            write!(f, "all as declared")
        } else {
            write!(f, "differs from the manifest: `kiln apply` fixes it")
        }
    }
}

/// Compares the desired state with what the kernel shows.
pub fn compute(deployment: &str, desired: &Desired, observed: &Observed) -> Status {
    let mut items = Vec::new();
    for (name, want) in &desired.maps {
        let (state, detail) = match observed.maps.get(name) {
            None => (State::Missing, "not pinned".to_string()),
            Some(live) if live.def == want.def => match observed.entry_drift.get(name) {
                // Changed behind Kiln's back: the next apply puts them back.
                Some(d) if !d.is_empty() => (
                    State::Drifted,
                    format!(
                        "pinned, id {}: {} declared entries differ, {} unlisted keys (entries_mode = {})",
                        live.id,
                        d.set.len(),
                        d.delete.len(),
                        want.entries_mode.name()
                    ),
                ),
                _ => (State::Ok, format!("pinned, id {}, {}", live.id, live.def)),
            },
            Some(live) => (
                State::Drifted,
                format!("pinned map is {}, manifest wants {}", live.def, want.def),
            ),
        };
        items.push(ItemStatus {
            kind: "map",
            name: name.clone(),
            state,
            detail,
            run_cnt: None,
        });
    }
    for (name, want) in &desired.programs {
        let live = observed.programs.get(name);
        let link = observed.links.get(name);
        let (state, detail) = match (live, &want.attach, link) {
            (None, _, _) => (State::Missing, "not loaded".to_string()),
            (Some(p), _, _) if !want.tags.contains(&p.tag) => (
                State::Drifted,
                format!(
                    "live code (tag {}) differs from the object's",
                    tag_hex(&p.tag)
                ),
            ),
            (Some(p), _, _) if p.rodata != want.rodata => (
                State::Drifted,
                "live read-only globals differ from the manifest's".to_string(),
            ),
            (Some(p), None, None) => (
                State::Ok,
                format!("loaded, id {}, not attached (attach = none)", p.id),
            ),
            (Some(_), None, Some(_)) => (
                State::Drifted,
                "attached, but the manifest says attach = none".into(),
            ),
            (Some(_), Some(att), None) => (
                State::Drifted,
                format!("not attached to {} (link removed)", att.description),
            ),
            (Some(p), Some(att), Some(l)) if l.prog_id != p.id => (
                State::Drifted,
                format!(
                    "{} runs program id {}, not the pinned id {} (replaced behind Kiln's back)",
                    att.description, l.prog_id, p.id
                ),
            ),
            (Some(_), Some(att), Some(l))
                if att.identity.as_ref().is_some_and(|id| *id != l.identity) =>
            {
                (
                    State::Drifted,
                    format!("attached elsewhere than {}", att.description),
                )
            }
            (Some(p), Some(att), Some(l)) => (
                State::Ok,
                format!(
                    "attached to {}, prog id {}, link id {}",
                    att.description, p.id, l.id
                ),
            ),
        };
        items.push(ItemStatus {
            kind: "program",
            name: name.clone(),
            state,
            detail,
            run_cnt: live.map(|p| p.run_cnt).filter(|n| *n > 0),
        });
    }
    let mut extra = Vec::new();
    extra.extend(
        observed
            .maps
            .keys()
            .filter(|k| !desired.maps.contains_key(*k))
            .map(|k| format!("maps/{k}")),
    );
    extra.extend(
        observed
            .programs
            .keys()
            .filter(|k| !desired.programs.contains_key(*k))
            .map(|k| format!("progs/{k}")),
    );
    extra.extend(
        observed
            .links
            .keys()
            .filter(|k| !desired.programs.contains_key(*k))
            .map(|k| format!("links/{k}")),
    );
    extra.extend(observed.strays.iter().map(|p| p.display().to_string()));
    Status {
        deployment: deployment.to_string(),
        items,
        extra,
        foreign: observed
            .foreign
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
    }
}
