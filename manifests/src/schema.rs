//! The manifest's TOML schema, as serde types that keep the span of every
//! value (so each error can cite FILE:LINE:COL).
//!
//! Unknown keys are errors everywhere (`deny_unknown_fields`): a typo must
//! never be silently ignored by a tool that changes a kernel.

use std::collections::BTreeMap;

use kiln_loader::links::attach_point::{XdpMode, names};
use kiln_obj::Direction;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The whole file.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    pub deployment: Spanned<DeploymentDecl>,
    #[serde(default)]
    pub objects: BTreeMap<Spanned<String>, Spanned<ObjectDecl>>,
    #[serde(default)]
    pub programs: BTreeMap<Spanned<String>, Spanned<ProgramDecl>>,
    #[serde(default)]
    pub maps: BTreeMap<Spanned<String>, Spanned<MapDecl>>,
    /// `[test]`: what `cargo xtask apply --matrix` runs and checks in each
    /// VM after the apply. `kiln` itself never reads it.
    pub test: Option<Spanned<TestDecl>>,
}

/// `[test]`: commands run in the test VM after `apply`, then expectations
/// on the deployment's maps, each reported per kernel by the grid.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TestDecl {
    /// Shell command lines (`/bin/sh -c`), run one after another.
    #[serde(default)]
    pub run: Vec<String>,
    /// Seconds each command may run (default 30).
    pub timeout_secs: Option<u64>,
    /// Checked after the commands, in order.
    #[serde(default)]
    pub expect: Vec<Expectation>,
}

/// One `[[test.expect]]`: a value in a map, or records in a ring buffer.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(untagged, deny_unknown_fields)]
pub enum Expectation {
    /// `{ map = "counts", key = 0, at_least = 1 }`: the value at `key` (an
    /// integer, little-endian in the map's key size, or a hex string of the
    /// key's bytes), read as a little-endian unsigned integer (summed over
    /// CPUs for a per-CPU map), is at least / exactly the number.
    Map {
        map: String,
        key: toml::Value,
        at_least: Option<u64>,
        equals: Option<u64>,
    },
    /// `{ ring_buffer = "events", within_ms = 2000 }`: the ring buffer map
    /// holds a record, or one arrives within that time.
    RingBuffer {
        ring_buffer: String,
        #[serde(default = "default_within_ms")]
        within_ms: u64,
    },
}

fn default_within_ms() -> u64 {
    2000
}

/// `[deployment]`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct DeploymentDecl {
    pub name: Spanned<String>,
    /// Default: `/sys/fs/bpf/kiln/<name>`.
    pub pin_root: Option<Spanned<String>>,
    /// Kernel features the deployment needs, checked with the loader's probes.
    #[serde(default)]
    pub requires: Vec<Spanned<String>>,
    /// Let `path` and `source` name files outside the manifest's directory
    /// (refused by default, so a manifest cannot load what its author did
    /// not ship beside it).
    #[serde(default)]
    pub allow_outside: bool,
    /// A group (name or number) that may read the deployment's maps: their
    /// pins become 0640 and the directories leading to them 0750, owned by
    /// that group. Unset: everything is readable by root only.
    pub readers: Option<Spanned<String>>,
}

/// `[objects.NAME]`: where an eBPF ELF object comes from.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ObjectDecl {
    /// A Rust crate directory or a `.bpf.c` file, relative to the manifest,
    /// built by `cargo xtask apply`.
    pub source: Option<Spanned<String>>,
    /// A prebuilt ELF object, relative to the manifest.
    pub path: Option<Spanned<String>>,
}

/// `[programs.NAME]`: a program of an object and where it attaches.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ProgramDecl {
    pub object: Spanned<String>,
    /// The function name in the object when it differs from the table name.
    pub function: Option<Spanned<String>>,
    pub attach: Spanned<Attach>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Values of the object's global variables, typed through BTF.
    #[serde(default)]
    pub globals: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

fn yes() -> bool {
    true
}

/// Where a program attaches. `"auto"` reads it from the ELF section name;
/// `"none"` loads and pins the program without attaching it (socket filters
/// need a socket, which a manifest cannot name).
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Attach {
    Auto,
    None,
    Tracepoint {
        category: String,
        name: String,
    },
    RawTracepoint {
        name: String,
    },
    TpBtf {
        name: String,
    },
    Kprobe {
        function: String,
        #[serde(default)]
        offset: u64,
    },
    Kretprobe {
        function: String,
    },
    Uprobe {
        path: String,
        #[serde(default)]
        symbol: Option<String>,
        #[serde(default)]
        offset: u64,
        #[serde(default)]
        pid: Option<i32>,
    },
    Uretprobe {
        path: String,
        #[serde(default)]
        symbol: Option<String>,
        #[serde(default)]
        offset: u64,
        #[serde(default)]
        pid: Option<i32>,
    },
    /// One `kprobe.multi` link (a `SEC("kprobe.multi")` program) on many
    /// kernel functions: names or globs (`tcp_*`); `cookies`, one per
    /// function after glob expansion, or none.
    KprobeMulti {
        functions: Vec<String>,
        #[serde(default)]
        retprobe: bool,
        #[serde(default)]
        cookies: Vec<u64>,
    },
    /// One `uprobe.multi` link (a `SEC("uprobe.multi")` program) on many
    /// symbols (names or globs) of one file (a path, or a library name
    /// such as `libc.so.6`).
    UprobeMulti {
        path: String,
        symbols: Vec<String>,
        #[serde(default)]
        retprobe: bool,
        #[serde(default)]
        pid: Option<i32>,
        #[serde(default)]
        cookies: Vec<u64>,
    },
    Fentry {
        function: String,
    },
    Fexit {
        function: String,
    },
    /// `fmod_ret/FN` (5.7+): FN must be on the kernel's error-injection
    /// list; a non-zero return from the program replaces FN's.
    FmodRet {
        function: String,
    },
    Lsm {
        hook: String,
    },
    /// A BPF iterator (`iter/TARGET` section); its link is pinned, and
    /// reading the pin (`cat <pin_root>/links/<PROGRAM>`) runs it.
    Iter {
        target: String,
    },
    Xdp {
        interface: String,
        #[serde(default, with = "xdp_mode")]
        mode: XdpMode,
    },
    Tcx {
        interface: String,
        #[serde(with = "direction")]
        direction: Direction,
    },
    /// TC: a tcx link where the kernel has tcx (6.6), else a cls_bpf filter
    /// on the interface's clsact qdisc (netlink).
    Tc {
        interface: String,
        #[serde(with = "direction")]
        direction: Direction,
        /// The filter's priority (0: the kernel picks one); clsact only.
        #[serde(default)]
        priority: u16,
        /// The filter's handle (0: the kernel picks one); clsact only.
        #[serde(default)]
        handle: u32,
    },
    /// One side of a netkit pair (6.7+), attached through the primary
    /// device `interface`.
    Netkit {
        /// The pair's primary device.
        interface: String,
        /// `primary` or `peer`. Default: the one the section names
        /// (`netkit/primary`, `netkit/peer`).
        #[serde(default)]
        side: Option<String>,
    },
    Cgroup {
        path: String,
        /// The kernel's attach type name without the `BPF_` prefix, lower
        /// case (`cgroup_inet_ingress`, `cgroup_inet4_connect`, ...). Default:
        /// the one the section name implies.
        #[serde(default)]
        attach_type: Option<String>,
    },
    SkLookup {
        /// A network namespace file, e.g. `/proc/self/ns/net` or `/run/netns/NAME`.
        netns: String,
    },
    /// sk_msg / sk_skb programs on a sockmap or sockhash of the manifest
    /// (the hook from the section; a `bpf_link`, 6.10+).
    Sockmap {
        /// A map declared in `[maps.NAME]`.
        map: String,
    },
    /// The flow dissector of a network namespace (one per namespace).
    FlowDissector {
        /// A network namespace file, e.g. `/proc/self/ns/net` or `/run/netns/NAME`.
        netns: String,
    },
    Netfilter {
        /// `ipv4` or `ipv6`.
        family: String,
        /// `prerouting`, `input`, `forward`, `output`, `postrouting`.
        hook: String,
        #[serde(default)]
        priority: i32,
    },
}

impl Attach {
    /// The key used in the manifest for this kind (`xdp`, `tracepoint`...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Attach::Auto => "auto",
            Attach::None => "none",
            Attach::Tracepoint { .. } => "tracepoint",
            Attach::RawTracepoint { .. } => "raw_tracepoint",
            Attach::TpBtf { .. } => "tp_btf",
            Attach::Kprobe { .. } => "kprobe",
            Attach::Kretprobe { .. } => "kretprobe",
            Attach::Uprobe { .. } => "uprobe",
            Attach::Uretprobe { .. } => "uretprobe",
            Attach::KprobeMulti { .. } => "kprobe_multi",
            Attach::UprobeMulti { .. } => "uprobe_multi",
            Attach::Fentry { .. } => "fentry",
            Attach::Fexit { .. } => "fexit",
            Attach::FmodRet { .. } => "fmod_ret",
            Attach::Lsm { .. } => "lsm",
            Attach::Iter { .. } => "iter",
            Attach::Xdp { .. } => "xdp",
            Attach::Tcx { .. } => "tcx",
            Attach::Tc { .. } => "tc",
            Attach::Netkit { .. } => "netkit",
            Attach::Cgroup { .. } => "cgroup",
            Attach::SkLookup { .. } => "sk_lookup",
            Attach::FlowDissector { .. } => "flow_dissector",
            Attach::Sockmap { .. } => "sockmap",
            Attach::Netfilter { .. } => "netfilter",
        }
    }
}

/// XDP modes and TC directions are read and written with the library's
/// words ([`names`]), so the manifest has no copy of them.
mod xdp_mode {
    use super::{XdpMode, names};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(m: &XdpMode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(names::xdp_mode(*m))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<XdpMode, D::Error> {
        let name = String::deserialize(d)?;
        names::xdp_mode_from(&name).ok_or_else(|| {
            D::Error::unknown_variant(&name, &["auto", "generic", "native", "offload"])
        })
    }
}

mod direction {
    use super::{Direction, names};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(d: &Direction, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(names::direction(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Direction, D::Error> {
        let name = String::deserialize(d)?;
        names::direction_from(&name)
            .ok_or_else(|| D::Error::unknown_variant(&name, &["ingress", "egress"]))
    }
}

/// `[maps.NAME]`: a map of an object, how it is pinned and upgraded.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct MapDecl {
    pub object: Spanned<String>,
    /// Pin under `<pin_root>/maps/<NAME>` so the data outlives programs and upgrades.
    /// Must stay `true`: `false` is rejected by validation (see
    /// `desired.rs`), because an unpinned map of a deployment that outlives
    /// the process could be neither observed nor kept across upgrades.
    #[serde(default = "yes")]
    pub pin: bool,
    pub on_upgrade: Option<Spanned<OnUpgrade>>,
    /// With `on_upgrade = "migrate"` to a smaller `max_entries`: whether live
    /// entries that do not fit may be dropped (refused by default).
    pub on_shrink: Option<Spanned<OnShrink>>,
    pub max_entries: Option<Spanned<u32>>,
    /// Entries written when the map is created; with `entries_mode`
    /// "enforce" or "exact", kept so on every apply.
    #[serde(default)]
    pub entries: Vec<Spanned<EntryDecl>>,
    pub entries_mode: Option<Spanned<EntriesMode>>,
}

/// Whose word counts for a map's entries once it exists.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum EntriesMode {
    /// `entries` seed a new map; afterwards the programs and userspace own
    /// its contents (counters, state).
    #[default]
    Create,
    /// Every apply sets each listed key to its listed value; other keys
    /// (added at run time) stay.
    Enforce,
    /// The map holds exactly the listed entries: every apply also deletes
    /// the keys the manifest does not list (a blocklist, a service table).
    Exact,
    /// The map holds exactly the listed keys; a missing one is inserted with
    /// its listed value, but the values of present keys belong to the
    /// programs (a blocklist whose values count the packets each rule drops).
    Keys,
}

impl EntriesMode {
    /// As the manifest spells it.
    pub fn name(self) -> &'static str {
        match self {
            EntriesMode::Create => "create",
            EntriesMode::Enforce => "enforce",
            EntriesMode::Exact => "exact",
            EntriesMode::Keys => "keys",
        }
    }

    /// Whether keys the manifest does not list are deleted.
    pub fn prunes(self) -> bool {
        matches!(self, EntriesMode::Exact | EntriesMode::Keys)
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct EntryDecl {
    pub key: Spanned<toml::Value>,
    pub value: Spanned<toml::Value>,
}

/// What to do with a pinned map whose definition changed.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnUpgrade {
    /// Keep the live map when compatible; refuse the apply otherwise.
    #[default]
    Keep,
    /// Drop the old map and its data, create the new one.
    Recreate,
    /// Create the new map and copy the entries whose key and value still fit.
    Migrate,
    /// Refuse any change to this map's definition.
    Refuse,
}

/// What a migration to a smaller map does with live entries that do not fit.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnShrink {
    /// Refuse the apply, naming how many entries would be lost.
    #[default]
    Refuse,
    /// Migrate anyway; the plan says how many entries are dropped.
    Drop,
}

#[cfg(test)]
mod tests {
    /// The JSON Schema for editors must name the same attach kinds as serde.
    #[test]
    fn json_schema_lists_every_attach_kind() {
        let text = include_str!("../schema/kiln-manifest.schema.json");
        let schema: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
        let one_of = schema["properties"]["programs"]["additionalProperties"]["properties"]["attach"]["oneOf"]
            .as_array()
            .expect("attach.oneOf");
        let mut names: Vec<String> = Vec::new();
        for alt in one_of {
            if let Some(e) = alt["enum"].as_array() {
                names.extend(e.iter().filter_map(|v| v.as_str().map(String::from)));
            }
            if let Some(p) = alt["properties"].as_object() {
                names.extend(p.keys().cloned());
            }
        }
        names.sort();
        let mut want = vec![
            "auto",
            "none",
            "tracepoint",
            "raw_tracepoint",
            "tp_btf",
            "kprobe",
            "kretprobe",
            "uprobe",
            "uretprobe",
            "kprobe_multi",
            "uprobe_multi",
            "fentry",
            "fexit",
            "fmod_ret",
            "lsm",
            "iter",
            "xdp",
            "tcx",
            "tc",
            "netkit",
            "cgroup",
            "sk_lookup",
            "flow_dissector",
            "sockmap",
            "netfilter",
        ];
        want.sort();
        assert_eq!(names, want);
        // The two string forms parse as serde spells them.
        for n in ["auto", "none"] {
            let v: std::collections::BTreeMap<String, super::Attach> =
                toml::from_str(&format!("a = \"{n}\"")).expect("parses");
            assert_eq!(v["a"].kind_name(), n);
        }
    }
}
