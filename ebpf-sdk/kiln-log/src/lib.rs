//! Forwards the log records kiln-ebpf programs write with `info!` and friends
//! to the `log` crate (or `tracing`), and decodes them.
//!
//! In the common case, [`set_level`] before load and [`EbpfLogger::init`]
//! after it are all a program needs: a background thread drains the
//! program's `KILN_LOGS` ring buffer and hands each record to `log`, with the
//! eBPF crate's module path as target.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let object = std::fs::read("target/bpf/sdk-log.bpf.o")?;
//! let mut loader = kiln_loader::EbpfLoader::new();
//! kiln_log::set_level(&mut loader, log::LevelFilter::Debug);
//! let mut ebpf = loader.load_bytes(&object)?;
//! let logger = kiln_log::EbpfLogger::init(&mut ebpf, &object)?;
//! // ... attach, run ...
//! logger.stop(); // forwards what is left in the ring
//! # Ok(())
//! # }
//! ```
//!
//! Below it, the decoder:
//! A program's `KILN_LOGS` ring buffer carries only a format id, a level and
//! the arguments as tagged little-endian values; the format strings stay in
//! the object file's `.kiln_log.*` sections. [`Decoder::from_object`] reads
//! them from the object's bytes, and [`Decoder::decode`] turns one ring buffer
//! record into a [`Record`] whose [`Record::message`] is the formatted text.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use kiln_loader::maps::RingBuf;
//! let object = std::fs::read("target/bpf/sdk-log.bpf.o")?;
//! let decoder = kiln_log::Decoder::from_object(&object)?;
//! let ebpf = kiln_loader::load(&object)?;
//! let mut ring = RingBuf::new(ebpf.map(kiln_log::LOG_MAP).ok_or("no log map")?)?;
//! ring.drain(decoder.sink(|r| match r {
//!     Ok(rec) => println!("{rec}"),
//!     Err(e) => eprintln!("bad log record: {e}"),
//! }));
//! # Ok(())
//! # }
//! ```
//!
//! Format strings follow Rust's syntax, a subset of it: `{}`, `{:x}`, `{:X}`,
//! `{:b}`, `{:o}`, `{:?}`, with `#`, zero padding and width (`{:#010x}`),
//! plus `{:mac}` and `{:ip}` for byte arrays (6 bytes; 4 or 16 bytes).
//!
//! The wire format is documented in `kiln_ebpf::log`.

#![deny(missing_docs)]

use std::collections::HashMap;
use std::fmt;

use object::{Object, ObjectSection};

mod logger;
pub use logger::{EbpfLogger, log_level, set_level};

/// The ring buffer map kiln-ebpf programs log to.
pub const LOG_MAP: &str = "KILN_LOGS";

/// The `.rodata` global holding the most verbose level programs record
/// (`Level as u8`; default `Trace`): set it before load, e.g.
/// `loader.set_global_if_present(kiln_log::LEVEL_GLOBAL, &[Level::Warn as u8])`,
/// which [`set_level`] does.
pub const LEVEL_GLOBAL: &str = "KILN_LOG_LEVEL";

/// Prefix of the sections holding the format strings.
pub const SECTION_PREFIX: &str = ".kiln_log";

// The wire format is kiln-ebpf's: one definition for both sides.
pub use kiln_ebpf::log::Level;
use kiln_ebpf::log::{ENTRY_HEADER, ENTRY_MAGIC, HEADER as RECORD_HEADER, tag};

/// What went wrong reading an object's formats, a record, or starting an
/// [`EbpfLogger`].
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The object's bytes are not an ELF file.
    #[error("not a readable ELF object: {0}")]
    Elf(String),
    /// A `.kiln_log.*` section holds a malformed format entry.
    #[error("section {section}: {reason}")]
    BadEntry {
        /// The section's name.
        section: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two call sites share a format id but not their text.
    #[error(
        "format id {id:#010x} is defined twice with different text ({first:?} and {second:?}): rename or move one log call"
    )]
    DuplicateId {
        /// The shared id.
        id: u32,
        /// The format read first.
        first: String,
        /// The other format.
        second: String,
    },
    /// A ring buffer record is malformed.
    #[error("record of {len} bytes: {reason}")]
    BadRecord {
        /// The record's size.
        len: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A record names a format the object does not define.
    #[error(
        "record has format id {0:#010x}, which this object does not define (wrong object file?)"
    )]
    UnknownId(u32),
    /// A record's argument count differs from its format's placeholders.
    #[error("record for {fmt:?} carries {got} arguments, the format has {expected}")]
    ArgCount {
        /// The format string.
        fmt: String,
        /// Its placeholders.
        expected: usize,
        /// The record's arguments.
        got: usize,
    },
    /// The loaded object has no `KILN_LOGS` map (or it was taken already).
    #[error(
        "the loaded object has no {LOG_MAP} map: its programs do not log, or were built without kiln-ebpf's `log` feature (or the map was taken already)"
    )]
    NoLogMap,
    /// The `KILN_LOGS` ring buffer could not be mapped.
    #[error("mapping the {LOG_MAP} ring buffer")]
    Ring(#[source] kiln_loader::MapError),
    /// The forwarding thread could not be started, or the ring buffer not
    /// registered with tokio.
    #[error("starting the kiln-log thread or task")]
    Thread(#[source] std::io::Error),
    /// `EbpfLogger::init_async` (feature `tokio`) was called outside a tokio runtime.
    #[error("EbpfLogger::init_async needs a tokio runtime: call it from within one")]
    NoRuntime,
}

/// One call site's format, as stored in the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Format {
    /// The id records carry (a hash of the call site).
    pub id: u32,
    /// The call site's level.
    pub level: Level,
    /// The Rust module path of the call site.
    pub target: String,
    /// The source file of the call site, relative to its crate.
    pub file: String,
    /// The source line of the call site.
    pub line: u32,
    /// The format string as written.
    pub fmt: String,
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Arg(Spec),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Spec {
    alternate: bool,
    zero: bool,
    width: usize,
    kind: String,
}

/// A decoded log record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The call site's level.
    pub level: Level,
    /// The Rust module path of the call site (the `log` target).
    pub target: String,
    /// The source file of the call site.
    pub file: String,
    /// The source line of the call site.
    pub line: u32,
    /// The formatted text.
    pub message: String,
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:<5} {} {}:{}] {}",
            self.level, self.target, self.file, self.line, self.message
        )
    }
}

/// The formats of one object, ready to decode its records.
#[derive(Clone, Debug, Default)]
pub struct Decoder {
    formats: HashMap<u32, Format>,
}

impl Decoder {
    /// Reads every `.kiln_log.*` section of an eBPF object. An object that
    /// does not log gives an empty decoder.
    pub fn from_object(elf: &[u8]) -> Result<Decoder, LogError> {
        let file = object::File::parse(elf).map_err(|e| LogError::Elf(e.to_string()))?;
        let mut decoder = Decoder::default();
        for section in file.sections() {
            let Ok(name) = section.name() else { continue };
            if name != SECTION_PREFIX && !name.starts_with(".kiln_log.") {
                continue;
            }
            let data = section.data().map_err(|e| LogError::BadEntry {
                section: name.to_owned(),
                reason: e.to_string(),
            })?;
            decoder.add_entries(name, data)?;
        }
        Ok(decoder)
    }

    /// Parses a section's entries (back to back, possibly NUL-padded).
    pub fn add_entries(&mut self, section: &str, mut data: &[u8]) -> Result<(), LogError> {
        let bad = |reason: String| LogError::BadEntry {
            section: section.to_owned(),
            reason,
        };
        loop {
            while let [0, rest @ ..] = data {
                data = rest;
            }
            if data.is_empty() {
                return Ok(());
            }
            if data.len() < ENTRY_HEADER || data[..4] != ENTRY_MAGIC {
                return Err(bad("entry does not start with KLG1".into()));
            }
            let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
            let id = u32::from_le_bytes(data[4..8].try_into().unwrap_or_default());
            let line = u32::from_le_bytes(data[8..12].try_into().unwrap_or_default());
            let level = Level::from_u8(data[12])
                .ok_or_else(|| bad(format!("entry {id:#010x}: level {} unknown", data[12])))?;
            let nargs = data[13] as usize;
            let (tl, fl, ml) = (u16_at(14), u16_at(16), u16_at(18));
            let end = ENTRY_HEADER + tl + fl + ml;
            if data.len() < end {
                return Err(bad(format!(
                    "entry {id:#010x} needs {end} bytes, {} left",
                    data.len()
                )));
            }
            let text = |from: usize, len: usize| {
                std::str::from_utf8(&data[from..from + len])
                    .map(str::to_owned)
                    .map_err(|_| bad(format!("entry {id:#010x}: text is not UTF-8")))
            };
            let target = text(ENTRY_HEADER, tl)?;
            let file = text(ENTRY_HEADER + tl, fl)?;
            let fmt = text(ENTRY_HEADER + tl + fl, ml)?;
            let pieces = parse_format(&fmt).map_err(|r| bad(format!("format {fmt:?}: {r}")))?;
            let placeholders = pieces.iter().filter(|p| matches!(p, Piece::Arg(_))).count();
            if placeholders != nargs {
                return Err(bad(format!(
                    "format {fmt:?} has {placeholders} placeholders but was compiled with {nargs} arguments"
                )));
            }
            let entry = Format {
                id,
                level,
                target,
                file,
                line,
                fmt,
                pieces,
            };
            match self.formats.get(&id) {
                Some(prev) if *prev != entry => {
                    return Err(LogError::DuplicateId {
                        id,
                        first: prev.fmt.clone(),
                        second: entry.fmt,
                    });
                }
                Some(_) => {}
                None => {
                    self.formats.insert(id, entry);
                }
            }
            data = &data[end..];
        }
    }

    /// How many call sites the object has.
    pub fn len(&self) -> usize {
        self.formats.len()
    }

    /// Whether the object has no log call site.
    pub fn is_empty(&self) -> bool {
        self.formats.is_empty()
    }

    /// The format of call site `id`.
    pub fn format(&self, id: u32) -> Option<&Format> {
        self.formats.get(&id)
    }

    /// Decodes one ring buffer record.
    pub fn decode(&self, record: &[u8]) -> Result<Record, LogError> {
        let bad = |reason: String| LogError::BadRecord {
            len: record.len(),
            reason,
        };
        if record.len() < RECORD_HEADER {
            return Err(bad("shorter than the 8-byte header".into()));
        }
        let id = u32::from_le_bytes(record[..4].try_into().unwrap_or_default());
        let format = self.formats.get(&id).ok_or(LogError::UnknownId(id))?;
        let level = Level::from_u8(record[4]).ok_or_else(|| bad(format!("level {}", record[4])))?;
        let nargs = record[5] as usize;
        let len = u16::from_le_bytes([record[6], record[7]]) as usize;
        if len > record.len() || len < RECORD_HEADER {
            return Err(bad(format!("header says {len} bytes")));
        }
        let mut args = Vec::with_capacity(nargs);
        let mut rest = &record[RECORD_HEADER..len];
        for i in 0..nargs {
            let (value, used) = Value::read(rest).map_err(|r| bad(format!("argument {i}: {r}")))?;
            args.push(value);
            rest = &rest[used..];
        }
        let expected = format
            .pieces
            .iter()
            .filter(|p| matches!(p, Piece::Arg(_)))
            .count();
        if expected != nargs {
            return Err(LogError::ArgCount {
                fmt: format.fmt.clone(),
                expected,
                got: nargs,
            });
        }
        let mut message = String::new();
        let mut values = args.iter();
        for piece in &format.pieces {
            match piece {
                Piece::Text(t) => message.push_str(t),
                Piece::Arg(spec) => {
                    if let Some(v) = values.next() {
                        v.render(spec, &mut message);
                    }
                }
            }
        }
        Ok(Record {
            level,
            target: format.target.clone(),
            file: format.file.clone(),
            line: format.line,
            message,
        })
    }

    /// A ring buffer consumer callback (`RingBuf::drain`'s argument) that
    /// decodes each raw record and hands the result to `f`.
    pub fn sink<'a>(
        &'a self,
        mut f: impl FnMut(Result<Record, LogError>) + 'a,
    ) -> impl FnMut(&[u8]) + 'a {
        move |raw| f(self.decode(raw))
    }
}

/// One decoded argument.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    U(u64),
    I(i64),
    Bool(bool),
    Bytes(Vec<u8>),
    Str(Vec<u8>),
}

impl Value {
    /// Reads one tagged value; returns it and the bytes it used.
    fn read(b: &[u8]) -> Result<(Value, usize), String> {
        let need = |n: usize| {
            if b.len() < n {
                Err(format!("needs {n} bytes, {} left", b.len()))
            } else {
                Ok(())
            }
        };
        need(1)?;
        let le = |n: usize| -> Result<u64, String> {
            need(1 + n)?;
            let mut v = [0u8; 8];
            v[..n].copy_from_slice(&b[1..1 + n]);
            Ok(u64::from_le_bytes(v))
        };
        let sign = |v: u64, bits: u32| ((v << (64 - bits)) as i64) >> (64 - bits);
        Ok(match b[0] {
            tag::U8 => (Value::U(le(1)?), 2),
            tag::U16 => (Value::U(le(2)?), 3),
            tag::U32 => (Value::U(le(4)?), 5),
            tag::U64 => (Value::U(le(8)?), 9),
            tag::I8 => (Value::I(sign(le(1)?, 8)), 2),
            tag::I16 => (Value::I(sign(le(2)?, 16)), 3),
            tag::I32 => (Value::I(sign(le(4)?, 32)), 5),
            tag::I64 => (Value::I(le(8)? as i64), 9),
            tag::BOOL => (Value::Bool(le(1)? != 0), 2),
            tag::BYTES => {
                let n = le(2)? as usize;
                need(3 + n)?;
                (Value::Bytes(b[3..3 + n].to_vec()), 3 + n)
            }
            tag::STR => {
                need(5)?;
                let len = u16::from_le_bytes([b[1], b[2]]) as usize;
                let cap = u16::from_le_bytes([b[3], b[4]]) as usize;
                need(5 + cap)?;
                if len > cap {
                    return Err(format!("string length {len} exceeds its capacity {cap}"));
                }
                (Value::Str(b[5..5 + len].to_vec()), 5 + cap)
            }
            t => return Err(format!("unknown type tag {t}")),
        })
    }

    fn render(&self, spec: &Spec, out: &mut String) {
        let text = match self {
            Value::U(v) => return int(*v as u128, false, spec, out),
            Value::I(v) => return int(v.unsigned_abs() as u128, *v < 0, spec, out),
            Value::Bool(v) => v.to_string(),
            Value::Bytes(b) => bytes(b, spec),
            Value::Str(b) => {
                let s = String::from_utf8_lossy(b).into_owned();
                if spec.kind == "?" {
                    format!("{s:?}")
                } else {
                    s
                }
            }
        };
        out.push_str(&text);
        for _ in text.chars().count()..spec.width {
            out.push(' ');
        }
    }
}

fn int(v: u128, negative: bool, spec: &Spec, out: &mut String) {
    let (digits, prefix) = match spec.kind.as_str() {
        "x" => (format!("{v:x}"), "0x"),
        "X" => (format!("{v:X}"), "0x"),
        "b" => (format!("{v:b}"), "0b"),
        "o" => (format!("{v:o}"), "0o"),
        _ => (v.to_string(), ""),
    };
    let mut head = String::new();
    if negative {
        head.push('-');
    }
    if spec.alternate {
        head.push_str(prefix);
    }
    let len = head.len() + digits.len();
    let pad = spec.width.saturating_sub(len);
    if spec.zero {
        out.push_str(&head);
        out.extend(std::iter::repeat_n('0', pad));
    } else {
        out.extend(std::iter::repeat_n(' ', pad));
        out.push_str(&head);
    }
    out.push_str(&digits);
}

fn bytes(b: &[u8], spec: &Spec) -> String {
    let hex = |upper: bool, sep: &str| {
        b.iter()
            .map(|x| {
                if upper {
                    format!("{x:02X}")
                } else {
                    format!("{x:02x}")
                }
            })
            .collect::<Vec<_>>()
            .join(sep)
    };
    match spec.kind.as_str() {
        "x" => hex(false, ""),
        "X" => hex(true, ""),
        "mac" => hex(false, ":"),
        "ip" if b.len() == 4 => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
        "ip" if b.len() == 16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            std::net::Ipv6Addr::from(a).to_string()
        }
        "?" => format!("{b:?}"),
        _ => {
            // Text up to the first NUL (a `comm`), when it is UTF-8 text.
            // What follows the NUL need not be zero: older kernels (5.10
            // in the matrix) copy a new comm over the old one without
            // clearing the tail, so an exec'd `true` reads "true\0log-exec_t".
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            match std::str::from_utf8(&b[..end]) {
                Ok(s) if b[end..].iter().all(|&c| c == 0) => s.to_owned(),
                Ok(s) if !s.is_empty() && !s.chars().any(char::is_control) => s.to_owned(),
                _ => hex(false, ""),
            }
        }
    }
}

/// Splits a format string into text and placeholders.
fn parse_format(fmt: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut inner = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => inner.push(c),
                        None => return Err("unclosed '{'".into()),
                    }
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Arg(parse_spec(&inner)?));
            }
            '}' => return Err("unmatched '}'".into()),
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

fn parse_spec(inner: &str) -> Result<Spec, String> {
    let Some(spec) = inner.strip_prefix(':') else {
        return if inner.is_empty() {
            Ok(Spec::default())
        } else {
            Err(format!(
                "positional or named arguments ({{{inner}}}) are not supported"
            ))
        };
    };
    let mut s = Spec::default();
    let mut rest = spec;
    if let Some(r) = rest.strip_prefix('#') {
        s.alternate = true;
        rest = r;
    }
    if let Some(r) = rest.strip_prefix('0') {
        s.zero = true;
        rest = r;
    }
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 {
        s.width = rest[..digits].parse().map_err(|e| format!("width: {e}"))?;
        rest = &rest[digits..];
    }
    match rest {
        "" | "x" | "X" | "b" | "o" | "?" | "mac" | "ip" => s.kind = rest.to_owned(),
        other => return Err(format!("unsupported format type {other:?} in {{{inner}}}")),
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u32, level: u8, nargs: u8, fmt: &str) -> Vec<u8> {
        let (target, file) = ("prog", "src/main.rs");
        let mut e = b"KLG1".to_vec();
        e.extend(id.to_le_bytes());
        e.extend(7u32.to_le_bytes());
        e.extend([level, nargs]);
        for l in [target.len(), file.len(), fmt.len()] {
            e.extend((l as u16).to_le_bytes());
        }
        e.extend(target.as_bytes());
        e.extend(file.as_bytes());
        e.extend(fmt.as_bytes());
        e
    }

    fn record(id: u32, level: u8, args: &[&[u8]]) -> Vec<u8> {
        let body: Vec<u8> = args.concat();
        let mut r = id.to_le_bytes().to_vec();
        r.extend([level, args.len() as u8]);
        r.extend(((8 + body.len()) as u16).to_le_bytes());
        r.extend(body);
        // The ring pads records to 8 bytes.
        r.resize(r.len().next_multiple_of(8), 0);
        r
    }

    #[test]
    fn decodes_every_kind() {
        let mut d = Decoder::default();
        let fmt = "u={} i={} hex={:#06x} b={} s={} s?={:?} comm={} mac={:mac} ip={:ip} {{x}}";
        d.add_entries(".kiln_log.1", &entry(1, 3, 9, fmt)).unwrap();
        let rec = record(
            1,
            3,
            &[
                &[tag::U32, 42, 0, 0, 0],
                &[tag::I16, 0xfe, 0xff],
                &[tag::U8, 0xab],
                &[tag::BOOL, 1],
                &[tag::STR, 2, 0, 4, 0, b'h', b'i', 0, 0],
                &[tag::STR, 1, 0, 1, 0, b'q'],
                &[tag::BYTES, 4, 0, b'c', b'a', b't', 0],
                &[tag::BYTES, 6, 0, 1, 2, 3, 0xa, 0xb, 0xc],
                &[tag::BYTES, 4, 0, 127, 0, 0, 1],
            ],
        );
        let r = d.decode(&rec).unwrap();
        assert_eq!(
            r.message,
            "u=42 i=-2 hex=0x00ab b=true s=hi s?=\"q\" comm=cat mac=01:02:03:0a:0b:0c ip=127.0.0.1 {x}"
        );
        assert_eq!(r.level, Level::Info);
        assert_eq!(
            r.to_string(),
            format!("[INFO  prog src/main.rs:7] {}", r.message)
        );
    }

    #[test]
    fn rejects_bad_input() {
        let mut d = Decoder::default();
        d.add_entries("s", &entry(1, 1, 1, "x={}")).unwrap();
        assert!(matches!(
            d.decode(&record(2, 1, &[])),
            Err(LogError::UnknownId(2))
        ));
        assert!(matches!(
            d.decode(&record(1, 1, &[&[tag::U64, 1]])),
            Err(LogError::BadRecord { .. })
        ));
        assert!(matches!(
            d.decode(&record(1, 1, &[&[99, 1]])),
            Err(LogError::BadRecord { .. })
        ));
        assert!(matches!(d.decode(&[1, 2]), Err(LogError::BadRecord { .. })));
        // Same id, other text.
        assert!(matches!(
            d.add_entries("t", &entry(1, 1, 1, "y={}")),
            Err(LogError::DuplicateId { id: 1, .. })
        ));
        // Placeholder count disagreeing with the compiled argument count.
        assert!(d.add_entries("u", &entry(3, 1, 2, "{}")).is_err());
        assert!(d.add_entries("v", b"nope").is_err());
        assert!(parse_format("{0}").is_err());
        assert!(parse_format("{:q}").is_err());
    }

    #[test]
    fn non_elf_is_an_error() {
        assert!(matches!(
            Decoder::from_object(b"not elf"),
            Err(LogError::Elf(_))
        ));
    }
}
