//! Values for an object's `extern`s: `.kconfig` from the running kernel's
//! config, `.ksyms` from kernel BTF (typed) or `/proc/kallsyms` (typeless).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use kiln_obj::btf::{Btf, Kind};
use kiln_obj::{ExternKind, ExternSpec, KsymTarget};

/// The kernel's BTF could not be read or parsed; each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum KernelBtfError {
    /// The file could not be read (no `CONFIG_DEBUG_INFO_BTF`, or a wrong path).
    #[error("cannot read the kernel's BTF {}", path.display())]
    Read {
        /// The BTF file.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// The file is not BTF this crate reads.
    #[error("cannot parse the kernel's BTF {}", path.display())]
    Parse {
        /// The BTF file.
        path: PathBuf,
        /// What is malformed.
        #[source]
        source: kiln_obj::btf::BtfError,
    },
    /// A thread panicked while it parsed the kernel's BTF.
    #[error("the kernel BTF cache is poisoned: a thread panicked while parsing it")]
    Poisoned,
}

/// CO-RE relocation against the running kernel failed.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The kernel's BTF, which CO-RE relocates against, is unavailable.
    #[error("CO-RE needs the kernel's BTF")]
    KernelBtf(#[source] KernelBtfError),
    /// A relocation found no match in the kernel's types.
    #[error("CO-RE")]
    Relocate(#[source] kiln_obj::btf::core::CoreError),
}

/// The running kernel's config as `CONFIG_X → value text` (quotes kept for
/// strings), from /proc/config.gz or /boot/config-$(uname -r). Empty when neither exists.
pub fn kernel_config() -> &'static HashMap<String, String> {
    static CONFIG: OnceLock<HashMap<String, String>> = OnceLock::new();
    CONFIG.get_or_init(|| read_kernel_config().unwrap_or_default())
}

fn read_kernel_config() -> Option<HashMap<String, String>> {
    let text = match std::fs::File::open("/proc/config.gz") {
        Ok(f) => {
            let mut s = String::new();
            flate2::read::GzDecoder::new(f)
                .read_to_string(&mut s)
                .ok()?;
            s
        }
        Err(_) => {
            let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
            std::fs::read_to_string(Path::new("/boot").join(format!("config-{}", release.trim())))
                .ok()?
        }
    };
    Some(parse_config(&text))
}

/// Parses `CONFIG_X=value` lines; `# CONFIG_X is not set` reads as `n`.
pub fn parse_config(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            if k.starts_with("CONFIG_") {
                out.insert(k.to_owned(), v.to_owned());
            }
        } else if let Some(rest) = line.strip_prefix("# ") {
            if let Some(name) = rest.strip_suffix(" is not set") {
                out.insert(name.to_owned(), "n".to_owned());
            }
        }
    }
    out
}

/// Answers a `.kconfig` extern: kernel config entries and libbpf's virtual
/// `LINUX_*` externs. Those are numbers, as libbpf sets them, so they suit
/// any integer, `char` or `bool` declaration.
pub fn kconfig_value(name: &str) -> Option<String> {
    match name {
        "LINUX_KERNEL_VERSION" => Some(crate::util::kernel_version_code().to_string()),
        "LINUX_HAS_BPF_COOKIE" => Some(u8::from(crate::probe::features().bpf_cookie).to_string()),
        "LINUX_HAS_SYSCALL_WRAPPER" => Some(u8::from(has_syscall_wrapper()).to_string()),
        _ => kernel_config().get(name).cloned(),
    }
}

/// libbpf's `FEAT_SYSCALL_WRAPPER`: whether a kprobe on the arch's wrapped
/// `bpf` syscall (`__x64_sys_bpf`...) works. libbpf tries one; the kprobe
/// PMU and the symbol are what that needs. Without kprobes the answer is no,
/// as libbpf's, since the value only names kprobe targets (and a different
/// value would verify to different instructions).
fn has_syscall_wrapper() -> bool {
    let prefix = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "x86" => "ia32",
        "aarch64" => "arm64",
        "s390x" => "s390x",
        "arm" => "arm",
        "riscv64" => "riscv",
        "powerpc64" | "powerpc" => "powerpc",
        _ => return false,
    };
    Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
        && kallsyms().contains_key(&format!("__{prefix}_sys_bpf"))
}

/// `/proc/kallsyms` as name → address (0 everywhere without CAP_SYSLOG).
pub fn kallsyms() -> &'static HashMap<String, u64> {
    static SYMS: OnceLock<HashMap<String, u64>> = OnceLock::new();
    SYMS.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let _kind = it.next()?;
                Some((it.next()?.to_owned(), addr))
            })
            .collect()
    })
}

/// The kernel's BTF (`/sys/kernel/btf/vmlinux` or an override), parsed once
/// per path per process (a vmlinux BTF is megabytes; loads reuse the parse).
pub fn kernel_btf(path: Option<&Path>) -> Result<&'static Btf, KernelBtfError> {
    kernel_btf_shared(path).map(|b| &**b)
}

/// [`kernel_btf`] as the `Arc` split BTF is built on.
pub(crate) fn kernel_btf_shared(path: Option<&Path>) -> Result<&'static Arc<Btf>, KernelBtfError> {
    type Cache = std::sync::Mutex<HashMap<std::path::PathBuf, &'static Arc<Btf>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let path = path.unwrap_or(Path::new("/sys/kernel/btf/vmlinux"));
    let cache = CACHE.get_or_init(Default::default);
    if let Some(btf) = cache
        .lock()
        .map_err(|_| KernelBtfError::Poisoned)?
        .get(path)
    {
        return Ok(btf);
    }
    let btf = match map_kernel_btf(path) {
        Some(bytes) => Btf::from_static(bytes),
        None => {
            let data = std::fs::read(path).map_err(|source| KernelBtfError::Read {
                path: path.to_owned(),
                source,
            })?;
            Btf::from_bytes(data)
        }
    }
    .map_err(|source| KernelBtfError::Parse {
        path: path.to_owned(),
        source,
    })?;
    // Leaked on purpose: one parse per distinct path lives for the process.
    let btf: &'static Arc<Btf> = Box::leak(Box::new(Arc::new(btf)));
    cache
        .lock()
        .map_err(|_| KernelBtfError::Poisoned)?
        .insert(path.to_owned(), btf);
    Ok(btf)
}

/// The BTF of every loaded kernel module (`/sys/kernel/btf/<module>`, split
/// on vmlinux), parsed once per process, in name order. Modules whose BTF
/// does not parse are left out. Empty before 5.11 (no module BTF) or when
/// vmlinux BTF is missing.
pub fn kernel_module_btfs() -> &'static [Btf] {
    static MODULES: OnceLock<Vec<Btf>> = OnceLock::new();
    MODULES.get_or_init(|| {
        let Ok(vmlinux) = kernel_btf_shared(None) else {
            return Vec::new();
        };
        let mut paths: Vec<_> = std::fs::read_dir("/sys/kernel/btf")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n != "vmlinux"))
            .collect();
        paths.sort();
        paths
            .iter()
            .filter_map(|p| Btf::from_bytes_split(std::fs::read(p).ok()?, vmlinux.clone()).ok())
            .collect()
    })
}

/// CO-RE against the running kernel: vmlinux's BTF (or the one at `path`),
/// and, for types vmlinux lacks, the loaded modules' BTF (not with `path`).
pub fn relocate_core(
    spec: &mut kiln_obj::ObjectSpec,
    path: Option<&Path>,
) -> Result<kiln_obj::btf::core::CoreReport, CoreError> {
    let kbtf = kernel_btf(path).map_err(CoreError::KernelBtf)?;
    let modules = || match path {
        None => kernel_module_btfs().iter().collect(),
        Some(_) => Vec::new(),
    };
    spec.relocate_core_with_modules(kbtf, modules)
        .map_err(CoreError::Relocate)
}

/// Maps a BTF file the kernel exports under /sys/kernel/btf read-only, for
/// the life of the process. Reading vmlinux's 5 MB through read(2) costs tens
/// of milliseconds (sysfs copies it out chunk by chunk, into fresh pages);
/// the mapping is there in microseconds. `None` where the kernel does not
/// allow mmap of these files (before 6.16) or for any other path: a regular
/// file could be truncated under a mapping (SIGBUS), a sysfs BTF file cannot
/// change while the kernel runs.
fn map_kernel_btf(path: &Path) -> Option<&'static [u8]> {
    use std::os::fd::AsRawFd;
    if !path.starts_with("/sys/kernel/btf") {
        return None;
    }
    let file = std::fs::File::open(path).ok()?;
    let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
    if len == 0 {
        return None;
    }
    // SAFETY: a fresh private read-only mapping of an open file; the kernel
    // checks length and offset. The fd may close afterwards: the mapping
    // keeps its own reference.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: `len` readable bytes at `p`, never unmapped (leaked like the
    // parse that borrows them), and immutable: sysfs BTF does not change.
    Some(unsafe { std::slice::from_raw_parts(p as *const u8, len) })
}

/// Resolves one `.ksyms` extern: kfuncs and typed variables by name in kernel
/// BTF, typeless variables by address.
pub fn resolve_ksym(e: &ExternSpec, btf: Option<&Btf>) -> Option<KsymTarget> {
    let by_btf = |kind| {
        btf.and_then(|b| b.id_by_name(&e.name, kind))
            .map(|id| KsymTarget::Btf {
                btf_id: id,
                btf_obj_fd: 0,
                fd_array_index: 0,
            })
    };
    match &e.kind {
        ExternKind::KsymFunc { .. } => by_btf(Kind::Func),
        ExternKind::KsymVar { typeless, .. } => {
            // A `void` typed extern has no BTF type to match: use kallsyms.
            // Per-CPU and static variables are often missing there (no
            // CONFIG_KALLSYMS_ALL): their BTF VAR works for the verifier too.
            if *typeless {
                kallsyms()
                    .get(&e.name)
                    .filter(|a| **a != 0)
                    .map(|a| KsymTarget::Address(*a))
                    .or_else(|| by_btf(Kind::Var))
            } else {
                by_btf(Kind::Var)
            }
        }
        ExternKind::Kconfig { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lines() {
        let c = parse_config(
            "CONFIG_BPF=y\n# CONFIG_KPROBES is not set\nCONFIG_HZ=250\nCONFIG_X=\"a b\"\n",
        );
        assert_eq!(c["CONFIG_BPF"], "y");
        assert_eq!(c["CONFIG_KPROBES"], "n");
        assert_eq!(c["CONFIG_HZ"], "250");
        assert_eq!(c["CONFIG_X"], "\"a b\"");
    }
}

#[cfg(test)]
mod kernel_tests {
    use super::*;

    /// Per-CPU variables are in vmlinux BTF even where kallsyms lacks them.
    #[test]
    fn typeless_ksym_falls_back_to_btf() {
        let Ok(btf) = kernel_btf(None) else {
            return; // no kernel BTF on this machine: nothing to resolve against
        };
        let e = ExternSpec {
            name: "bpf_prog_active".into(),
            weak: false,
            kind: ExternKind::KsymVar {
                btf_type_id: 0,
                typeless: true,
            },
        };
        assert!(resolve_ksym(&e, Some(btf)).is_some());
    }
}
