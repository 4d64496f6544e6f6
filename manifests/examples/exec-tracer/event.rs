//! `struct exec_event` of exectrace.bpf.c, decoded from a ring buffer record.
//! Shared by `read_events.rs` and the example's test.

/// One exec, as the program recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecEvent {
    pub pid: u32,
    pub old_pid: u32,
    pub comm: String,
    pub filename: String,
}

const COMM_LEN: usize = 16;
const FILENAME_LEN: usize = 128;
/// `sizeof(struct exec_event)`: two u32, then the two char arrays.
pub const SIZE: usize = 8 + COMM_LEN + FILENAME_LEN;

impl ExecEvent {
    /// Decodes one record; `None` when it is not `SIZE` bytes long (an
    /// object of another layout wrote it).
    pub fn parse(record: &[u8]) -> Option<ExecEvent> {
        if record.len() != SIZE {
            return None;
        }
        let u32_at = |off: usize| u32::from_ne_bytes(record[off..off + 4].try_into().unwrap());
        Some(ExecEvent {
            pid: u32_at(0),
            old_pid: u32_at(4),
            comm: c_string(&record[8..8 + COMM_LEN]),
            filename: c_string(&record[8 + COMM_LEN..]),
        })
    }
}

/// The text up to the first NUL (all of it when there is none).
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

impl std::fmt::Display for ExecEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:>7} {:<16} {}", self.pid, self.comm, self.filename)
    }
}
