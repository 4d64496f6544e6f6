//! Which BPF helpers a test object calls, and whether this kernel lets each
//! program type use them.
//!
//! Kernels of the same release differ in the helpers they grant: one build of
//! 6.18 refuses `bpf_xdp_adjust_meta` to XDP programs ("program of this type
//! cannot use helper"), and libbpf gets the same refusal there. A test that
//! loads an object declares [`crate::Need::HelpersOf`]; the harness then
//! scans the object's code for helper calls and probes each one for the
//! program type its section names, the way libbpf's
//! `libbpf_probe_bpf_helper` does: load `call HELPER; exit` and look for the
//! verifier's "this type cannot use it" messages. Any other outcome (a
//! refusal of the arguments, a missing program type) counts as available,
//! so the test itself, or another need, reports it.
//!
//! This reads the ELF and names program types on its own, on purpose: a skip
//! decided by the code under test (kiln-obj's section table) would hide its
//! bugs.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, OnceLock};

const SHF_EXECINSTR: u64 = 0x4;
const BPF_CALL_OPCODE: u8 = 0x85;
const BPF_PROG_LOAD: libc::c_long = 5;

/// The program type (and expected attach type) a section name gives, for
/// the families whose helpers can be probed with a bare load. Tracing
/// programs (fentry, fexit, LSM, tp_btf, iterators), struct_ops, freplace
/// and syscall programs need a BTF target to load at all: their helpers are
/// not probed here.
fn program_type_of(section: &str) -> Option<(u32, u32)> {
    // (section prefix, prog type, expected attach type), most specific first.
    const TABLE: &[(&str, u32, u32)] = &[
        ("socket", 1, 0),
        ("kprobe", 2, 0),
        ("kretprobe", 2, 0),
        ("ksyscall", 2, 0),
        ("kretsyscall", 2, 0),
        ("uprobe", 2, 0),
        ("uretprobe", 2, 0),
        ("usdt", 2, 0),
        ("tcx/", 3, 0),
        ("netkit/", 3, 0),
        ("classifier", 3, 0),
        ("tc", 3, 0),
        ("action", 4, 0),
        ("tracepoint/", 5, 0),
        ("tp/", 5, 0),
        ("xdp", 6, 0),
        ("perf_event", 7, 0),
        ("cgroup_skb/", 8, 0),
        ("cgroup/skb", 8, 0),
        ("cgroup/sock_create", 9, 2),
        ("cgroup/sock_release", 9, 34),
        ("cgroup/post_bind4", 9, 12),
        ("cgroup/post_bind6", 9, 13),
        ("cgroup/sock", 9, 2),
        ("sockops", 13, 3),
        ("sk_skb/stream_parser", 14, 4),
        ("sk_skb", 14, 5),
        ("cgroup/dev", 15, 6),
        ("sk_msg", 16, 7),
        ("raw_tracepoint/", 17, 0),
        ("raw_tp/", 17, 0),
        ("cgroup/bind4", 18, 8),
        ("cgroup/bind6", 18, 9),
        ("cgroup/connect4", 18, 10),
        ("cgroup/connect6", 18, 11),
        ("cgroup/sendmsg4", 18, 14),
        ("cgroup/sendmsg6", 18, 15),
        ("cgroup/recvmsg4", 18, 19),
        ("cgroup/recvmsg6", 18, 20),
        ("cgroup/getpeername4", 18, 29),
        ("cgroup/getpeername6", 18, 30),
        ("cgroup/getsockname4", 18, 31),
        ("cgroup/getsockname6", 18, 32),
        ("flow_dissector", 22, 17),
        ("cgroup/sysctl", 23, 18),
        ("cgroup/getsockopt", 25, 21),
        ("cgroup/setsockopt", 25, 22),
        ("sk_lookup", 30, 36),
    ];
    TABLE
        .iter()
        .find(|(prefix, _, _)| section.starts_with(prefix))
        .map(|&(_, t, a)| (t, a))
}

/// One helper call site: the section's program type and the helper id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HelperUse {
    pub prog_type: u32,
    pub expected_attach_type: u32,
    pub helper: u32,
}

fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The (section name, helper uses) of every executable section of a
/// little-endian ELF64 eBPF object; `None` when the file is not one.
/// Subprograms in `.text` are skipped: their program type is their callers'.
pub fn helper_uses(elf: &[u8]) -> Option<BTreeSet<(String, HelperUse)>> {
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let shoff = usize::try_from(read_u64(elf, 0x28)?).ok()?;
    let shentsize = usize::from(read_u16(elf, 0x3a)?);
    let shnum = usize::from(read_u16(elf, 0x3c)?);
    let shstrndx = usize::from(read_u16(elf, 0x3e)?);
    if shentsize < 0x40 {
        return None;
    }
    let header = |i: usize| -> Option<(u32, u64, usize, usize)> {
        let at = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((
            read_u32(elf, at)?,
            read_u64(elf, at + 8)?,
            usize::try_from(read_u64(elf, at + 0x18)?).ok()?,
            usize::try_from(read_u64(elf, at + 0x20)?).ok()?,
        ))
    };
    let (_, _, names_at, names_len) = header(shstrndx)?;
    let names = elf.get(names_at..names_at.checked_add(names_len)?)?;
    let mut uses = BTreeSet::new();
    for i in 0..shnum {
        let (name_at, flags, offset, size) = header(i)?;
        if flags & SHF_EXECINSTR == 0 {
            continue;
        }
        let name = names.get(name_at as usize..)?;
        let name = String::from_utf8_lossy(&name[..name.iter().position(|&c| c == 0)?]);
        let Some((prog_type, expected_attach_type)) = program_type_of(&name) else {
            continue;
        };
        let code = elf.get(offset..offset.checked_add(size)?)?;
        for insn in code.chunks_exact(8) {
            // src_reg 0 (the high nibble of the register byte): a helper, not a
            // subprogram (1) or kfunc (2) call.
            if insn[0] == BPF_CALL_OPCODE && insn[1] >> 4 == 0 {
                let helper = u32::from_le_bytes(insn[4..8].try_into().ok()?);
                uses.insert((
                    name.to_string(),
                    HelperUse {
                        prog_type,
                        expected_attach_type,
                        helper,
                    },
                ));
            }
        }
    }
    Some(uses)
}

/// The verifier's words when a program type may not call a helper, as
/// libbpf's helper probe reads them (old and new kernels).
const REFUSALS: &[&str] = &[
    "program of this type cannot use helper ",
    "unknown func ",
    "invalid func ",
];

/// `Some(the verifier's refusal)` when this kernel does not let the program
/// type call the helper. Cached per process.
pub fn helper_refused(u: HelperUse) -> Option<String> {
    static CACHE: OnceLock<Mutex<HashMap<HelperUse, Option<String>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&u) {
        return hit.clone();
    }
    let verdict = probe_helper(u);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(u, verdict.clone());
    verdict
}

/// Loads `insns` as a program of `prog_type` (with `expected_attach_type`
/// and `prog_flags`) and closes it: `Ok` when the kernel took it, else its
/// error and the verifier's log.
fn bare_load(
    prog_type: u32,
    expected_attach_type: u32,
    prog_flags: u32,
    insns: &[u64],
) -> Result<(), (std::io::Error, String)> {
    let license = c"GPL";
    let mut log = vec![0u8; 64 * 1024];
    // union bpf_attr for BPF_PROG_LOAD, as u32 words: prog_type, insn_cnt,
    // insns (u64), license (u64), log_level, log_size, log_buf (u64),
    // kern_version, prog_flags, prog_name[16], prog_ifindex,
    // expected_attach_type.
    let mut attr = [0u32; 36];
    let put64 = |attr: &mut [u32; 36], at: usize, v: u64| {
        attr[at] = v as u32;
        attr[at + 1] = (v >> 32) as u32;
    };
    attr[0] = prog_type;
    attr[1] = insns.len() as u32;
    put64(&mut attr, 2, insns.as_ptr() as u64);
    put64(&mut attr, 4, license.as_ptr() as u64);
    attr[6] = 1;
    attr[7] = log.len() as u32;
    put64(&mut attr, 8, log.as_mut_ptr() as u64);
    attr[10] = kernel_version_code();
    attr[11] = prog_flags;
    attr[17] = expected_attach_type;
    // SAFETY: BPF_PROG_LOAD reads `size` bytes of `attr`, a live buffer of
    // that size; the kernel reads `insns` and `license` and writes at most
    // `log_size` bytes into `log`, all of which outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr) as u32,
        )
    };
    if fd >= 0 {
        // SAFETY: fd was just returned by the kernel and is owned by nobody else.
        unsafe { libc::close(fd as i32) };
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    let log = String::from_utf8_lossy(&log[..log.iter().position(|&c| c == 0).unwrap_or(0)]);
    Err((err, log.into_owned()))
}

fn probe_helper(u: HelperUse) -> Option<String> {
    // call HELPER; r0 = 0; exit
    let insns = [
        u64::from(BPF_CALL_OPCODE) | (u64::from(u.helper) << 32),
        0xb7,
        0x95,
    ];
    let (_, log) = bare_load(u.prog_type, u.expected_attach_type, 0, &insns).err()?;
    log.lines()
        .find(|line| REFUSALS.iter().any(|r| line.contains(r)))
        .map(|line| line.trim().to_string())
}

/// Why this kernel refuses XDP programs with `BPF_F_XDP_HAS_FRAGS` (5.18+),
/// probed with a bare `r0 = XDP_PASS; exit`, or `None`.
pub fn xdp_frags_refused() -> Option<String> {
    const XDP: u32 = 6;
    const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;
    let insns = [0xb7 | (2u64 << 32), 0x95];
    let (err, _) = bare_load(XDP, 0, BPF_F_XDP_HAS_FRAGS, &insns).err()?;
    Some(format!(
        "kernel refuses XDP programs with frags (5.18+): {err}"
    ))
}

/// `LINUX_VERSION_CODE` of the running kernel: kprobe programs needed it
/// before 5.0.
fn kernel_version_code() -> u32 {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b, c) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    (a << 16) | (b << 8) | c.min(255)
}

/// Why the object `file` (in [`crate::bpf_dir`]) cannot run here because of a
/// helper, or `None`. An object that is missing or unreadable is not this
/// need's business: the test then fails and says so.
pub fn object_helpers_unmet(file: &str) -> Option<String> {
    let bytes = std::fs::read(crate::bpf_dir().join(file)).ok()?;
    let uses = helper_uses(&bytes)?;
    let mut refused = Vec::new();
    for (section, u) in &uses {
        if let Some(why) = helper_refused(*u) {
            refused.push(format!("section {section}: {why}"));
        }
    }
    (!refused.is_empty()).then(|| {
        format!(
            "kernel refuses helpers {file} calls (probed with a bare load, as libbpf does): {}",
            refused.join("; ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_name_their_program_types() {
        assert_eq!(program_type_of("xdp.frags"), Some((6, 0)));
        assert_eq!(program_type_of("tc/ingress"), Some((3, 0)));
        assert_eq!(program_type_of("cgroup/connect6"), Some((18, 11)));
        assert_eq!(program_type_of("cgroup/sock_create"), Some((9, 2)));
        assert_eq!(program_type_of("fentry/do_unlinkat"), None);
        assert_eq!(program_type_of(".text"), None);
    }

    #[test]
    fn not_an_elf_is_none() {
        assert_eq!(helper_uses(b"garbage"), None);
        assert_eq!(helper_uses(b"\x7fELF\x02\x01"), None);
    }
}
