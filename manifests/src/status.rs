//! `kiln status`: each declared item, desired against observed.

use std::fmt;

use serde::Serialize;

use crate::plan::{Desired, LiveLink, LiveProgram, Observed, stale_maps, tag_hex, target_change};

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
    /// What the manifest asks for, as values: a map's definition; a
    /// program's type, possible tags and attach point.
    pub desired: serde_json::Value,
    /// What the kernel holds, as values (`null` when nothing): a map's id,
    /// definition and BTF id; a program's id, tag, map ids and run counts,
    /// and its link (id, type, and the attach point the kernel reports).
    pub observed: serde_json::Value,
}

/// The observed values of a program and its attachment.
fn observed_program(p: Option<&LiveProgram>, l: Option<&LiveLink>) -> serde_json::Value {
    if p.is_none() && l.is_none() {
        return serde_json::Value::Null;
    }
    serde_json::json!({ "program": p, "link": l })
}

/// The desired values of a program.
fn desired_program(want: &crate::plan::DesiredProgram) -> serde_json::Value {
    serde_json::json!({
        "object": want.object,
        "function": want.function,
        "prog_type": want.prog_type,
        "tags": want.tags.iter().map(tag_hex).collect::<Vec<_>>(),
        "maps": want.maps,
        "attach": want.attach,
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub deployment: String,
    pub items: Vec<ItemStatus>,
    /// Pinned under the root but not declared.
    pub extra: Vec<String>,
    /// Why `kiln apply` would refuse to converge (the plan's error, from
    /// the same observation), when it would.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apply_refuses: Option<String>,
    /// Under the root but not the deployment's: shown, left alone, no drift.
    pub foreign: Vec<String>,
}

impl Status {
    /// The item of the declared map or program `name`.
    pub fn item(&self, name: &str) -> Option<&ItemStatus> {
        self.items.iter().find(|i| i.name == name)
    }

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
        } else if let Some(why) = &self.apply_refuses {
            write!(
                f,
                "differs from the manifest, and `kiln apply` would refuse: {why}"
            )
        } else {
            write!(f, "differs from the manifest: `kiln apply` fixes it")
        }
    }
}

/// The attachment as the kernel reports it (the XDP mode the kernel chose,
/// the cgroup it holds...); the manifest's words only where the kernel does
/// not report the target (perf-event, raw tracepoint and tracing links).
fn observed_target(description: &str, live: &LiveLink) -> String {
    match &live.point {
        Some(p) => format!("{p}, as the kernel reports"),
        None => description.to_string(),
    }
}

/// Compares the desired state with what the kernel shows; `plan` is the
/// plan computed from the same observation (its error is what apply would
/// refuse).
pub fn compute(
    deployment: &str,
    desired: &Desired,
    observed: &Observed,
    plan: Result<&crate::plan::Plan, &crate::plan::PlanError>,
) -> Status {
    let mut items = Vec::new();
    for (name, want) in &desired.maps {
        let (state, detail) = match observed.maps.get(name) {
            None => match observed.unpinned_maps.get(name) {
                Some(u) => (
                    State::Drifted,
                    format!(
                        "pin removed, but still live as id {} used by program {} (apply re-pins it with its data)",
                        u.map.id, u.via_program
                    ),
                ),
                None => (State::Missing, "not pinned".to_string()),
            },
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
            desired: serde_json::json!({ "def": want.def, "object": want.object }),
            observed: serde_json::to_value(observed.maps.get(name)).unwrap_or_default(),
        });
    }
    for (name, want) in &desired.programs {
        let live = observed.programs.get(name);
        let link = observed.link(name);
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
            (Some(p), _, _) if !stale_maps(want, p, observed).is_empty() => (
                State::Drifted,
                format!(
                    "bound to map(s) no longer pinned (the pin holds another map): {}; the kernel's map ids for it: {:?}",
                    stale_maps(want, p, observed).join(", "),
                    p.map_ids
                ),
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
            (Some(_), Some(att), Some(l)) if !att.matches(l) => {
                let why = target_change(&att.point, l);
                (
                    State::Drifted,
                    format!("attached elsewhere than {} ({why})", att.description),
                )
            }
            (Some(p), Some(att), Some(l)) => (
                State::Ok,
                format!(
                    "attached to {}, prog id {}, link id {}",
                    observed_target(&att.description, l),
                    p.id,
                    l.id
                ),
            ),
        };
        items.push(ItemStatus {
            kind: "program",
            name: name.clone(),
            state,
            detail,
            run_cnt: live.map(|p| p.run_cnt).filter(|n| *n > 0),
            desired: desired_program(want),
            observed: observed_program(live, link),
        });
    }
    for name in &desired.disabled {
        let loaded = observed.programs.get(name);
        let attached = observed.link(name);
        let (state, detail) = match (loaded, attached) {
            (None, None) => (
                State::Ok,
                "disabled (enabled = false), not loaded".to_string(),
            ),
            (_, Some(l)) => (
                State::Drifted,
                format!(
                    "disabled (enabled = false) but still attached (link id {}): apply detaches and unpins it",
                    l.id
                ),
            ),
            (Some(p), None) => (
                State::Drifted,
                format!(
                    "disabled (enabled = false) but still loaded (id {}): apply unpins it",
                    p.id
                ),
            ),
        };
        items.push(ItemStatus {
            kind: "program",
            name: name.clone(),
            state,
            detail,
            run_cnt: None,
            desired: serde_json::json!({ "enabled": false }),
            observed: observed_program(observed.programs.get(name), observed.link(name)),
        });
    }
    let declared = |k: &String| desired.programs.contains_key(k) || desired.disabled.contains(k);
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
            .filter(|k| !declared(k))
            .map(|k| format!("progs/{k}")),
    );
    extra.extend(
        observed
            .all_links()
            .map(|(k, _)| k)
            .filter(|k| !declared(k))
            .map(|k| format!("links/{k}")),
    );
    extra.extend(observed.strays.iter().map(|p| p.display().to_string()));
    Status {
        deployment: deployment.to_string(),
        items,
        extra,
        apply_refuses: plan.err().map(|e| kiln_loader::error_chain(e)),
        foreign: observed
            .foreign
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
    }
}
