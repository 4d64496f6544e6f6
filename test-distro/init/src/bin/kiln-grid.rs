//! `kiln-grid`: the guest's half of `cargo xtask apply --matrix`.
//!
//! What `kiln` itself does not print and the grid needs, one tab-separated
//! line per answer on stdout (tabs and newlines inside a field become spaces):
//!
//! - `kiln-grid load OBJECT`: every program of the object loaded on its own
//!   (like `kiln object load`), `program NAME loaded INSNS TOTAL_STATES
//!   PEAK_STATES VERIFY_USEC` (0 where the kernel's log lacks the number), or
//!   `program NAME refused ERRNO REASON SOURCE_LINE` with the verifier's
//!   reason and the failing line of source when the object has line info.
//! - `kiln-grid map PIN KEY`: `value N HEX` (N: the value read as a
//!   little-endian unsigned integer, summed over CPUs for a per-CPU map) or
//!   `absent`. KEY is the key's bytes in hex, or `int:N`: N little-endian
//!   in the map's key size.
//! - `kiln-grid ringbuf PIN MILLIS`: `records N`, the records the pinned
//!   ring buffer held or received within MILLIS.
//!
//! An error ends the line `error MESSAGE` and the exit status is 1.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kiln_loader::maps::{RingBuf, UpdateFlags};
use kiln_loader::programs::VerifierLogLevel;
use kiln_loader::{EbpfLoader, LoadError, Map, ObjectSpec, OpenFlags};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        ["load", object] => load(Path::new(object)),
        ["map", pin, key] => map(Path::new(pin), key),
        ["ringbuf", pin, millis] => ringbuf(Path::new(pin), millis),
        _ => Err("usage: kiln-grid load OBJECT | map PIN KEY | ringbuf PIN MILLIS".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("error\t{}", field(&e));
            ExitCode::FAILURE
        }
    }
}

/// `text` as one field: no tabs or newlines, at most 600 characters.
fn field(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c == '\t' || c == '\n' { ' ' } else { c })
        .collect();
    flat.chars().take(600).collect()
}

fn load(path: &Path) -> Result<(), String> {
    // Kernels before 5.11 charge programs to RLIMIT_MEMLOCK.
    let _ = kiln_loader::caps::raise_memlock();
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let spec = ObjectSpec::parse(&bytes).map_err(|e| format!("parsing {}: {e}", path.display()))?;
    // Once for the verdicts (a refusal logged at level 1: the reason and
    // the source line), once more for the statistics of what loaded (level
    // 4 logs only the summary, so it cannot explain a refusal).
    let (_, refused) = EbpfLoader::new()
        .load_each(&spec)
        .map_err(|e| format!("loading {}: {e}", path.display()))?;
    let (mut ebpf, _) = EbpfLoader::new()
        .verifier_log_level(VerifierLogLevel::Stats)
        .load_each(&spec)
        .map_err(|e| format!("loading {}: {e}", path.display()))?;
    for p in &spec.programs {
        if let Some((_, e)) = refused.iter().find(|(name, _)| *name == p.name) {
            let source_line = match e {
                LoadError::Verifier { source_line, .. } => source_line.clone().unwrap_or_default(),
                _ => String::new(),
            };
            let mut why = reason(e);
            if e.log().is_some_and(|l| l.contains(POISONED_CALL)) {
                why = core_poisoned(&spec, &p.name).unwrap_or(why);
            }
            println!(
                "program\t{}\trefused\t{}\t{}\t{}",
                p.name,
                e.errno().unwrap_or(0),
                field(&why),
                field(&source_line)
            );
        } else if let Some(prog) = ebpf.take_program(&p.name) {
            let s = Stats::parse(prog.verifier_log().unwrap_or_default());
            println!(
                "program\t{}\tloaded\t{}\t{}\t{}\t{}",
                p.name, s.insns, s.total_states, s.peak_states, s.usec
            );
        }
    }
    Ok(())
}

/// What the verifier says of a call the loader poisoned because a CO-RE
/// relocation found no match in this kernel (libbpf's `0xbad2310`).
const POISONED_CALL: &str = "unknown#195896080";

/// The CO-RE relocations of `program` this kernel cannot satisfy, named,
/// when the verifier only saw their poisoned call.
fn core_poisoned(spec: &ObjectSpec, program: &str) -> Option<String> {
    let btf =
        kiln_loader::obj::btf::Btf::from_bytes(std::fs::read("/sys/kernel/btf/vmlinux").ok()?)
            .ok()?;
    let report = spec.clone().relocate_core(&btf).ok()?;
    let missing: Vec<String> = report
        .poisoned
        .into_iter()
        .filter(|(p, _, _)| p == program)
        .map(|(_, insn, what)| format!("insn {insn}: {what}"))
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "a CO-RE relocation this kernel cannot satisfy (the loader poisons it, the verifier then refuses the call): {}",
            missing.join("; ")
        )
    })
}

/// The verifier's last words when it explained the refusal, else the error.
fn reason(e: &LoadError) -> String {
    let text = e.to_string();
    let log = e.log().unwrap_or_default();
    let last = log
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
                && !l.starts_with(';')
                && !l.as_bytes()[0].is_ascii_digit()
        })
        .map(str::to_owned);
    last.unwrap_or(text)
}

#[derive(Default)]
struct Stats {
    insns: u64,
    total_states: u64,
    peak_states: u64,
    usec: u64,
}

impl Stats {
    /// From `processed N insns (limit L) max_states_per_insn M total_states
    /// T peak_states P mark_read R` and `verification time U usec`.
    fn parse(log: &str) -> Stats {
        let mut s = Stats::default();
        for line in log.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |key: &str| -> u64 {
                words
                    .iter()
                    .position(|w| *w == key)
                    .and_then(|i| words.get(i + 1))
                    .and_then(|w| w.parse().ok())
                    .unwrap_or(0)
            };
            if line.starts_with("processed ") {
                s.insns = after("processed");
                s.total_states = after("total_states");
                s.peak_states = after("peak_states");
            } else if line.starts_with("verification time") {
                s.usec = after("time");
            }
        }
        s
    }
}

fn open(pin: &Path, flags: OpenFlags) -> Result<Map, String> {
    Map::from_pin(pin, flags).map_err(|e| format!("opening {}: {e}", pin.display()))
}

fn map(pin: &Path, key_text: &str) -> Result<(), String> {
    let map = open(pin, OpenFlags::ReadOnly)?;
    let key = match key_text.strip_prefix("int:") {
        Some(n) => {
            let n: u64 = n
                .parse()
                .map_err(|_| format!("key {n:?} is not an unsigned integer"))?;
            let size = map.key_size() as usize;
            if size < 8 && n >> (8 * size) != 0 {
                return Err(format!(
                    "{}: key {n} does not fit the map's {size}-byte keys",
                    pin.display()
                ));
            }
            let mut bytes = n.to_le_bytes().to_vec();
            bytes.resize(size, 0);
            bytes
        }
        None => hex(key_text).ok_or_else(|| format!("key {key_text:?} is not hex bytes"))?,
    };
    if key.len() != map.key_size() as usize {
        return Err(format!(
            "{}: the key is {} bytes, the map's keys are {}",
            pin.display(),
            key.len(),
            map.key_size()
        ));
    }
    let value = map
        .lookup_bytes(&key, UpdateFlags::ANY)
        .map_err(|e| format!("{}: lookup: {e}", pin.display()))?;
    let Some(value) = value else {
        println!("absent");
        return Ok(());
    };
    let size = map.value_size() as usize;
    // Per-CPU maps return one slot per CPU, each padded to 8 bytes.
    let slot = if value.len() > size {
        size.next_multiple_of(8)
    } else {
        size
    };
    let total: u64 = value
        .chunks(slot.max(1))
        .map(|c| {
            c[..size.min(8).min(c.len())]
                .iter()
                .rev()
                .fold(0u64, |n, b| (n << 8) | u64::from(*b))
        })
        .fold(0u64, u64::saturating_add);
    let shown: String = value.iter().map(|b| format!("{b:02x}")).collect();
    println!("value\t{total}\t{shown}");
    Ok(())
}

fn hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.is_empty() || digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

fn ringbuf(pin: &Path, millis: &str) -> Result<(), String> {
    let millis: u64 = millis
        .parse()
        .map_err(|_| format!("{millis:?} is not milliseconds"))?;
    let mut ring =
        // The consumer position is written through a shared mapping.
        RingBuf::new(open(pin, OpenFlags::ReadWrite)?).map_err(|e| format!("{}: ring buffer: {e}", pin.display()))?;
    let deadline = Instant::now() + Duration::from_millis(millis);
    let mut records = 0;
    loop {
        records += ring.drain(|_| {});
        let left = deadline.saturating_duration_since(Instant::now());
        if records > 0 || left.is_zero() {
            break;
        }
        ring.wait(Some(left))
            .map_err(|e| format!("{}: waiting: {e}", pin.display()))?;
    }
    println!("records\t{records}");
    Ok(())
}
