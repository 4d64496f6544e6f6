//! `tc = { ... }` where the kernel has no tcx: a cls_bpf filter on the
//! interface's clsact qdisc over netlink. On kernels with tcx the probe is
//! told tcx is missing (for this process only), so the host runs the same
//! path as 5.10 and 6.1. The story: apply, see the filter in the kernel,
//! drop a packet for real and read the count, re-apply with no change,
//! upgrade the program in place (same filter, new program), destroy from
//! what netlink lists, and see the filter gone.

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_loader::Map;
use kiln_loader::OpenFlags;
use kiln_loader::links::tc::{ClsBpfFilter, list_cls_bpf};
use kiln_loader::maps::UpdateFlags;
use kiln_manifest::Deployment;
use kiln_manifest::apply::ApplyOptions;
use kiln_manifest::plan::{Action, ReplaceHow};
use kiln_obj::Direction;
use kiln_testkit::{Need, TestResult};

use common::{ifindex, private_netns, remove_deployment};

fn manifest(name: &str, root: &Path, object: &Path, drop_ports_max: u32) -> String {
    format!(
        r#"[deployment]
name = "{name}"
pin_root = "{root}"
allow_outside = true

[objects.portfilter]
path = "{object}"

[programs.filter_ports]
object = "portfilter"
attach = {{ tc = {{ interface = "lo", direction = "ingress" }} }}

[maps.drop_ports]
object = "portfilter"
max_entries = {drop_ports_max}
on_upgrade = "migrate"
entries = [{{ key = 7001, value = 0 }}]

[maps.stats]
object = "portfilter"
"#,
        root = root.display(),
        object = object.display(),
    )
}

fn filters() -> Result<Vec<ClsBpfFilter>, String> {
    list_cls_bpf(ifindex("lo")?, Direction::Ingress).map_err(|e| e.to_string())
}

fn dropped(root: &Path) -> Result<u64, String> {
    let stats =
        Map::from_pin(&root.join("maps/stats"), OpenFlags::ReadOnly).map_err(|e| e.to_string())?;
    Ok(stats
        .lookup_bytes(&1u32.to_ne_bytes(), UpdateFlags::ANY)
        .map_err(|e| e.to_string())?
        .map_or(0, |v| {
            u64::from_ne_bytes(v[..8].try_into().unwrap_or_default())
        }))
}

/// Whether a UDP datagram to 127.0.0.1:`port` arrives.
fn arrives(port: u16) -> Result<bool, String> {
    let rx = UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).map_err(|e| e.to_string())?;
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    tx.send_to(b"x", (Ipv4Addr::LOCALHOST, port))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 8];
    Ok(rx.recv(&mut buf).is_ok())
}

fn clsact_cycle() -> TestResult {
    kiln_loader::probe::assume_missing("tcx");
    private_netns()?;
    let name = format!("kiln-clsact-{}", std::process::id());
    let root = PathBuf::from("/sys/fs/bpf").join(&name);
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir)?;
    let object = kiln_testkit::bpf_object("portfilter.bpf.o")?;
    let load = |max: u32| -> Result<Deployment, String> {
        let path = dir.join("manifest.toml");
        std::fs::write(&path, manifest(&name, &root, &object, max)).map_err(|e| e.to_string())?;
        Deployment::load(&path, &Default::default()).map_err(|d| d.to_string())
    };
    let result = (|| -> TestResult {
        let d = load(1024)?;
        d.apply(&ApplyOptions::default())?;
        // The kernel holds a cls_bpf filter named after the deployment's
        // link path, running the pinned program; no link is pinned.
        let f = filters()?;
        let [filter] = &f[..] else {
            return Err(format!("expected one filter on lo ingress, found {f:?}").into());
        };
        let pinned = kiln_manifest::live::program_at(&root.join("progs/filter_ports"))
            .ok_or("filter_ports not pinned")?;
        assert_eq!(filter.prog_id, pinned.id);
        assert!(filter.name.ends_with("/links/filter_ports"), "{filter:?}");
        assert!(!root.join("links/filter_ports").exists());

        // Dropped for real: 7001 is listed, 7002 is not.
        assert!(arrives(7002)?, "port 7002 was dropped");
        assert!(!arrives(7001)?, "port 7001 got through");
        assert_eq!(dropped(&root)?, 1);

        let status = d.status()?;
        assert!(status.all_ok(), "{status}");
        assert!(status.to_string().contains("tc lo ingress"), "{status}");
        let again = load(1024)?.plan()?;
        assert!(again.is_noop(), "re-apply would change things:\n{again}");

        // Upgrade: a bigger drop_ports (migrated) reloads the program; the
        // same filter switches to it in place.
        let bigger = load(2048)?;
        let plan = bigger.plan()?;
        assert!(
            plan.actions.iter().any(|a| matches!(
                a,
                Action::Replace {
                    how: ReplaceHow::LinkUpdate,
                    ..
                }
            )),
            "{plan}"
        );
        bigger.apply(&ApplyOptions::default())?;
        let f = filters()?;
        let [upgraded] = &f[..] else {
            return Err(format!("expected one filter after the upgrade, found {f:?}").into());
        };
        assert_eq!(
            (upgraded.priority, upgraded.handle),
            (filter.priority, filter.handle)
        );
        assert_ne!(upgraded.prog_id, filter.prog_id, "program not replaced");
        assert!(!arrives(7001)?, "port 7001 got through after the upgrade");
        assert!(bigger.plan()?.is_noop());

        // Destroy finds the filter through netlink and removes it.
        bigger.destroy()?;
        assert!(filters()?.is_empty(), "filter left behind");
        assert!(!root.exists(), "pin root left behind");
        assert!(arrives(7001)?, "port 7001 still dropped after destroy");
        Ok(())
    })();
    remove_deployment(&name, &root, &dir);
    result
}

fn main() {
    kiln_testkit::run(vec![kiln_testkit::test(
        "clsact_cycle",
        &[Need::Root, Need::Bpf, Need::NetNs],
        clsact_cycle,
    )]);
}
