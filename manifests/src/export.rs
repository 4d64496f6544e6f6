//! `kiln export`: a manifest written from what is pinned under a pin root,
//! so a deployment made by hand (or by another tool using the same layout)
//! can be taken over. The kernel does not keep the ELF object, so the
//! manifest names it `path = "FILL-IN.bpf.o"` for the user to point at the
//! object the programs came from.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::live::{self, LINKS, ObserveError};

/// Link types (`enum bpf_link_type`) export can turn back into an attachment.
const LINK_CGROUP: u32 = 3;
const LINK_NETNS: u32 = 5;
const LINK_XDP: u32 = 6;
const LINK_NETFILTER: u32 = 10;
const LINK_TCX: u32 = 11;

pub(crate) fn ifname(ifindex: u64) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` holds IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(u32::try_from(ifindex).ok()?, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the kernel wrote a NUL-terminated name into `buf`.
    Some(
        unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// The cgroup v2 directory whose inode is `id` (bounded walk of the cgroup2 mounts).
fn cgroup_path(id: u64) -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    for root in mounts.lines().filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    }) {
        let mut stack = vec![root];
        let mut seen = 0;
        while let Some(dir) = stack.pop() {
            seen += 1;
            if seen > 10_000 {
                break;
            }
            if std::fs::metadata(&dir).is_ok_and(|m| m.ino() == id) {
                return Some(dir);
            }
            if let Ok(rd) = std::fs::read_dir(&dir) {
                stack.extend(
                    rd.filter_map(|e| e.ok())
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
        }
    }
    None
}

fn attach_of(root: &Path, program: &str) -> String {
    let Some(link) = live::link_at(&root.join(LINKS).join(program)) else {
        return "\"none\"   # not attached".into();
    };
    let t = &link.identity.target;
    match link.identity.link_type {
        LINK_XDP => match t.first().and_then(|i| ifname(*i)) {
            Some(name) => format!("{{ xdp = {{ interface = \"{name}\" }} }}"),
            None => "\"none\"   # XDP on an interface that no longer exists".into(),
        },
        LINK_TCX => {
            let dir = if t.get(1) == Some(&u64::from(kiln_obj::AttachType::TCX_EGRESS.0)) {
                "egress"
            } else {
                "ingress"
            };
            match t.first().and_then(|i| ifname(*i)) {
                Some(name) => {
                    format!("{{ tcx = {{ interface = \"{name}\", direction = \"{dir}\" }} }}")
                }
                None => "\"none\"   # tcx on an interface that no longer exists".into(),
            }
        }
        LINK_CGROUP => match t.first().and_then(|id| cgroup_path(*id)) {
            Some(p) => format!("{{ cgroup = {{ path = \"{}\" }} }}", p.display()),
            None => {
                "\"none\"   # cgroup link: its cgroup was not found under the cgroup2 mounts".into()
            }
        },
        LINK_NETNS => {
            "{ sk_lookup = { netns = \"/proc/self/ns/net\" } }   # check the namespace".into()
        }
        LINK_NETFILTER => {
            let family = if t.first() == Some(&10) {
                "ipv6"
            } else {
                "ipv4"
            };
            let hook = ["prerouting", "input", "forward", "output", "postrouting"]
                .get(t.get(1).copied().unwrap_or(0) as usize)
                .copied()
                .unwrap_or("input");
            let prio = t.get(2).map_or(0, |p| *p as u32 as i32);
            format!(
                "{{ netfilter = {{ family = \"{family}\", hook = \"{hook}\", priority = {prio} }} }}"
            )
        }
        // Perf-event, raw tracepoint and tracing links do not report their
        // target in a form a manifest can name; the section name does.
        _ => "\"auto\"   # from the program's section name".into(),
    }
}

/// Writes a manifest for the deployment pinned under `root`.
pub fn export(name: &str, root: &Path) -> Result<String, ObserveError> {
    let o = live::observe(root)?;
    let mut s = String::new();
    let _ = writeln!(s, "# Exported by `kiln export` from {}.", root.display());
    let _ = writeln!(
        s,
        "# The kernel keeps no ELF: point [objects.main] at the object these programs came from.\n"
    );
    let _ = writeln!(
        s,
        "[deployment]\nname = \"{name}\"\npin_root = \"{}\"\n",
        root.display()
    );
    let _ = writeln!(s, "[objects.main]\npath = \"FILL-IN.bpf.o\"\n");
    for (prog, p) in &o.programs {
        let _ = writeln!(
            s,
            "[programs.{prog}]   # program id {}, type {}\nobject = \"main\"\nattach = {}\n",
            p.id,
            p.prog_type,
            attach_of(root, prog)
        );
    }
    for (map, m) in &o.maps {
        let _ = writeln!(
            s,
            "[maps.{map}]   # {}\nobject = \"main\"\nmax_entries = {}\non_upgrade = \"keep\"\n",
            m.def, m.def.max_entries
        );
    }
    for stray in &o.strays {
        let _ = writeln!(
            s,
            "# not exported (not in Kiln's layout): {}",
            stray.display()
        );
    }
    Ok(s)
}
