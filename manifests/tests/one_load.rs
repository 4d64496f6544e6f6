//! `kiln apply` loads each object once, through the loader's own object
//! load (the code of `kiln object load`): the programs of an object share
//! its global data and its BTF, and every map kind the loader creates is
//! created the same way under apply.
//!
//! The object is `tests/bpf/manifest_shared.bpf.c`; its exec programs count
//! only processes named as its global `comm_name` says (one name per test,
//! set in the manifest), which the test execs itself.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln_loader::OpenFlags;
use kiln_loader::maps::UpdateFlags;
use kiln_loader::{EbpfLoader, Map, Program};
use kiln_manifest::Deployment;
use kiln_manifest::apply::ApplyOptions;
use kiln_manifest::plan::Action;
use kiln_testkit::{Need, TestResult};

mod common;

const PROGRAMS: [&str; 5] = [
    "shared_a",
    "shared_b",
    "shared_tail",
    "redirect_a",
    "redirect_b",
];

struct Fixture {
    name: String,
    /// The exec'd file's name, so its comm: what this test's programs count.
    comm: String,
    dir: PathBuf,
    root: PathBuf,
    object: PathBuf,
}

impl Fixture {
    fn new(tag: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let name = format!("kiln-oneload-{}-{tag}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir)?;
        // The programs count execs of this file (its name is the comm after exec).
        let comm = format!("kiln1{tag}");
        std::fs::copy("/bin/true", dir.join(&comm))?;
        Ok(Fixture {
            comm,
            root: PathBuf::from("/sys/fs/bpf").join(&name),
            name,
            dir,
            object: kiln_testkit::bpf_object("manifest_shared.bpf.o")?,
        })
    }

    /// Every program of the object, the exec ones attached, `shared_b`
    /// enabled or not.
    fn deployment(&self, shared_b: bool) -> Result<Deployment, String> {
        let text = format!(
            r#"[deployment]
name = "{name}"
pin_root = "{root}"
allow_outside = true

[objects.shared]
path = "{obj}"

[programs.shared_a]
object = "shared"
attach = "auto"
globals = {{ comm_name = "{comm}" }}

[programs.shared_b]
object = "shared"
attach = "auto"
enabled = {shared_b}

[programs.shared_tail]
object = "shared"
attach = "none"

[programs.redirect_a]
object = "shared"
attach = "none"

[programs.redirect_b]
object = "shared"
attach = "none"
"#,
            name = self.name,
            comm = self.comm,
            root = self.root.display(),
            obj = self.object.display(),
        );
        let path = self.dir.join("manifest.toml");
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        Deployment::load(&path, &BTreeMap::new()).map_err(|d| d.to_string())
    }

    fn exec_counted(&self, times: usize) -> Result<(), String> {
        use std::os::unix::process::CommandExt;
        for _ in 0..times {
            // The comm is the file's name; argv[0] stays "true" for a
            // multi-call /bin/true (busybox in the VMs picks by argv[0]).
            let status = std::process::Command::new(self.dir.join(&self.comm))
                .arg0("true")
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("{}: {status}", self.comm));
            }
        }
        Ok(())
    }

    fn map(&self, name: &str) -> Result<Map, String> {
        Map::from_pin(&self.root.join("maps").join(name), OpenFlags::ReadOnly)
            .map_err(|e| format!("maps/{name}: {e}"))
    }

    fn program(&self, name: &str) -> Result<Program, String> {
        Program::from_pin(&self.root.join("progs").join(name), None)
            .map_err(|e| format!("progs/{name}: {e}"))
    }

    /// Global `var` of the object's `.bss`, read from the deployment's pin of it.
    fn bss_global(&self, var: &str) -> Result<u64, String> {
        let spec =
            kiln_obj::ObjectSpec::parse(&std::fs::read(&self.object).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        let bss = spec.map(".bss").ok_or("no .bss in the object")?;
        let v = bss
            .variables
            .iter()
            .find(|v| v.name == var)
            .ok_or_else(|| format!("no global {var}"))?;
        let pin = kiln_manifest::desired::global_data_pin_name(&self.object, ".bss");
        let value = self
            .map(&pin)?
            .lookup_bytes(&0u32.to_ne_bytes(), UpdateFlags::ANY)
            .map_err(|e| e.to_string())?
            .ok_or("empty .bss")?;
        let at = v.offset as usize;
        Ok(u64::from_ne_bytes(
            value[at..at + 8].try_into().map_err(|_| "short .bss")?,
        ))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        common::remove_deployment(&self.name, &self.root, &self.dir);
    }
}

/// The definitions of the maps each program is bound to, as the kernel
/// reports them: what must be the same under apply and under object load.
fn bound_maps(
    programs: &BTreeMap<String, Program>,
) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut out = BTreeMap::new();
    for (name, prog) in programs {
        let mut defs = Vec::new();
        for id in prog.info().map_err(|e| e.to_string())?.map_ids {
            let i = Map::from_id(id)
                .and_then(|m| m.info())
                .map_err(|e| e.to_string())?;
            defs.push(format!(
                "{} {} key {} value {} max {} flags {:#x}",
                i.name,
                i.map_type.name(),
                i.key_size,
                i.value_size,
                i.max_entries,
                i.flags.bits()
            ));
        }
        defs.sort();
        out.insert(name.clone(), defs);
    }
    Ok(out)
}

fn programs_of_an_object_share_globals_btf_and_every_map_kind() -> TestResult {
    let f = Fixture::new("sh")?;
    let d = f.deployment(true)?;
    d.apply(&ApplyOptions::default())?;

    // Both exec programs count into the one `hits`; the tail call through
    // the `.values` program array and the inner map of `.values` count too.
    f.exec_counted(3)?;
    assert_eq!(f.bss_global("hits")?, 6, "two programs, three execs");
    assert_eq!(f.bss_global("tail_hits")?, 3, "tail call through jumps[1]");
    let inner_id = f
        .map("outer")?
        .lookup_bytes(&0u32.to_ne_bytes(), UpdateFlags::ANY)?
        .ok_or("outer[0] is empty")?;
    let inner = Map::from_id(u32::from_ne_bytes(inner_id[..4].try_into()?))?;
    let inner_count = inner
        .lookup_bytes(&0u32.to_ne_bytes(), UpdateFlags::ANY)?
        .ok_or("inner0[0] missing")?;
    assert_eq!(u64::from_ne_bytes(inner_count[..8].try_into()?), 3);

    // A perf event array without max_entries has one slot per possible CPU.
    let cpus = kiln_loader::util::nr_possible_cpus()? as u32;
    assert_eq!(f.map("events")?.info()?.max_entries, cpus);

    // One BTF object for the object file, one .bss, one devmap.
    let progs: BTreeMap<String, Program> = PROGRAMS
        .iter()
        .map(|p| f.program(p).map(|prog| (p.to_string(), prog)))
        .collect::<Result<_, _>>()?;
    let btf_ids: Vec<u32> = progs
        .values()
        .map(|p| p.info().map(|i| i.btf_id))
        .collect::<Result<_, _>>()?;
    assert!(btf_ids[0] != 0, "programs loaded without BTF");
    assert!(
        btf_ids.iter().all(|id| *id == btf_ids[0]),
        "one BTF object per object file, not one per program: {btf_ids:?}"
    );
    let bss_pin = kiln_manifest::desired::global_data_pin_name(&f.object, ".bss");
    let bss_id = f.map(&bss_pin)?.info()?.id;
    let ports_id = f.map("ports")?.info()?.id;
    for (name, want) in [
        ("shared_a", bss_id),
        ("shared_b", bss_id),
        ("shared_tail", bss_id),
        ("redirect_a", ports_id),
        ("redirect_b", ports_id),
    ] {
        let ids = progs[name].info()?.map_ids;
        assert!(
            ids.contains(&want),
            "{name} is bound to {ids:?}, not {want}"
        );
    }
    let plan = d.plan()?;
    assert!(plan.is_noop(), "re-apply is not a no-op:\n{plan}");

    // The same maps as `kiln object load` gives (the loader's load_each).
    let spec = kiln_obj::ObjectSpec::parse(&std::fs::read(&f.object)?)?;
    let (mut ebpf, failures) = EbpfLoader::new().load_each(&spec)?;
    assert!(failures.is_empty(), "object load failed: {failures:?}");
    let loaded: BTreeMap<String, Program> = PROGRAMS
        .iter()
        .map(|p| (p.to_string(), ebpf.take_program(p).expect("loaded")))
        .collect();
    assert_eq!(bound_maps(&progs)?, bound_maps(&loaded)?);
    Ok(())
}

fn reloading_one_program_keeps_sharing_the_pinned_maps() -> TestResult {
    let f = Fixture::new("pa")?;
    f.deployment(true)?.apply(&ApplyOptions::default())?;
    f.deployment(false)?.apply(&ApplyOptions::default())?;
    f.exec_counted(1)?;
    assert_eq!(f.bss_global("hits")?, 1, "only shared_a counts");

    // Enabling shared_b again loads only it, against the pinned .bss.
    let out = f.deployment(true)?.apply(&ApplyOptions::default())?;
    let loads: Vec<&str> = out
        .plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::LoadProgram { program, .. } => Some(program.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(loads, ["shared_b"], "{}", out.plan);
    f.exec_counted(2)?;
    assert_eq!(f.bss_global("hits")?, 5, "both count into one .bss again");
    assert_eq!(f.bss_global("tail_hits")?, 3);
    Ok(())
}

fn a_reloaded_tail_call_target_replaces_the_old_one_in_its_slot() -> TestResult {
    let f = Fixture::new("tl")?;
    let d = f.deployment(true)?;
    d.apply(&ApplyOptions::default())?;
    let old_id = f.program("shared_tail")?.id();
    // Drift: the pin is gone, so apply loads shared_tail again, alone; the
    // pinned program array must then run the new one.
    std::fs::remove_file(f.root.join("progs/shared_tail"))?;
    let out = d.apply(&ApplyOptions::default())?;
    assert!(
        out.plan
            .actions
            .iter()
            .all(|a| !matches!(a, Action::CreateMap { .. })),
        "{}",
        out.plan
    );
    let new_id = f.program("shared_tail")?.id();
    assert_ne!(new_id, old_id);
    let slot = f
        .map("jumps")?
        .lookup_bytes(&1u32.to_ne_bytes(), UpdateFlags::ANY)?
        .ok_or("jumps[1] is empty")?;
    assert_eq!(u32::from_ne_bytes(slot[..4].try_into()?), new_id);
    f.exec_counted(2)?;
    assert_eq!(f.bss_global("tail_hits")?, 2);

    // A program array naming a program the manifest leaves out is refused.
    let text = std::fs::read_to_string(f.dir.join("manifest.toml"))?.replace(
        "[programs.shared_tail]\nobject = \"shared\"\nattach = \"none\"\n",
        "",
    );
    let path = f.dir.join("no_tail.toml");
    std::fs::write(&path, text)?;
    let err = Deployment::load(&path, &BTreeMap::new())
        .err()
        .ok_or("a manifest without the tail-call target was accepted")?
        .to_string();
    assert!(
        err.contains("whose `.values` hold program 'shared_tail'"),
        "{err}"
    );
    Ok(())
}

fn main() {
    let perf_links = common::perf_links();
    let needs = &[Need::Root, Need::Bpf, perf_links];
    kiln_testkit::run(vec![
        kiln_testkit::test(
            "programs_of_an_object_share_globals_btf_and_every_map_kind",
            needs,
            programs_of_an_object_share_globals_btf_and_every_map_kind,
        ),
        kiln_testkit::test(
            "reloading_one_program_keeps_sharing_the_pinned_maps",
            needs,
            reloading_one_program_keeps_sharing_the_pinned_maps,
        ),
        kiln_testkit::test(
            "a_reloaded_tail_call_target_replaces_the_old_one_in_its_slot",
            needs,
            a_reloaded_tail_call_target_replaces_the_old_one_in_its_slot,
        ),
    ]);
}
