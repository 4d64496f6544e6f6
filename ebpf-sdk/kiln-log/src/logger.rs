//! [`EbpfLogger`]: a background thread that drains a loaded program's
//! `KILN_LOGS` ring buffer and forwards each record to the `log` crate (or to
//! `tracing` with the `tracing` feature).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use kiln_loader::maps::RingBuf;
use kiln_loader::{Ebpf, EbpfLoader, Map};

use crate::{Decoder, LEVEL_GLOBAL, LOG_MAP, Level, LogError, Record};

/// How long the thread sleeps in poll(2) before it looks at the stop flag:
/// the most [`EbpfLogger`]'s drop waits for the thread.
const POLL: Duration = Duration::from_millis(50);

/// Sets the most verbose level the programs of this load record, before
/// load: records above it are never written, and the verifier removes their
/// call sites from the program altogether (the level is a frozen `.rodata`
/// global). `LevelFilter::Off` silences every call site. Objects that do not
/// log are loaded as they are.
///
/// ```no_run
/// let mut loader = kiln_loader::EbpfLoader::new();
/// kiln_log::set_level(&mut loader, log::LevelFilter::Warn);
/// let ebpf = loader.load_file("target/bpf/sdk-log.bpf.o")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn set_level(loader: &mut EbpfLoader, level: log::LevelFilter) -> &mut EbpfLoader {
    // LevelFilter's discriminants are the SDK's: Off 0, Error 1 .. Trace 5.
    loader.set_global_if_present(LEVEL_GLOBAL, &[level as usize as u8])
}

/// The `log` level of an eBPF record's level.
pub fn log_level(level: Level) -> log::Level {
    match level {
        Level::Error => log::Level::Error,
        Level::Warn => log::Level::Warn,
        Level::Info => log::Level::Info,
        Level::Debug => log::Level::Debug,
        Level::Trace => log::Level::Trace,
    }
}

/// Where the thread sends records.
#[derive(Clone, Copy)]
enum Sink {
    /// The global `log` logger, filtered by `log::max_level()` as the `log!`
    /// macros are.
    GlobalLog,
    /// A given logger, asked only through its own `enabled`.
    Log(&'static dyn log::Log),
    /// `tracing`'s current dispatcher, through tracing-log.
    #[cfg(feature = "tracing")]
    Tracing,
}

/// Forwards the log records of a loaded object to the `log` crate from a
/// background thread, like aya-log's `EbpfLogger`.
///
/// Each record becomes a [`log::Record`] whose target is the eBPF crate's
/// module path, whose file and line are the call site's, and whose text is
/// the formatted message. Dropping the logger (or [`EbpfLogger::stop`])
/// forwards the records still in the ring, then ends the thread.
///
/// The format strings are not in the kernel: they are read from the object's
/// bytes, so pass the same bytes (or file) that were loaded.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // env_logger, simplelog, ... : any `log` implementation.
/// let object = std::fs::read("target/bpf/sdk-log.bpf.o")?;
/// let mut loader = kiln_loader::EbpfLoader::new();
/// kiln_log::set_level(&mut loader, log::LevelFilter::Info);
/// let mut ebpf = loader.load_bytes(&object)?;
/// let _logger = kiln_log::EbpfLogger::init(&mut ebpf, &object)?;
/// // ... attach the programs; their info!/warn! records now reach `log`.
/// # Ok(())
/// # }
/// ```
///
/// Minimum kernel version: 5.8 (the `KILN_LOGS` map is a ring buffer).
pub struct EbpfLogger {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EbpfLogger {
    /// Takes the `KILN_LOGS` ring buffer out of `ebpf` and forwards its
    /// records to the global `log` logger (whatever `log::set_logger`
    /// installed), filtered by `log::max_level()`. `object` is the eBPF
    /// object `ebpf` was loaded from.
    pub fn init(ebpf: &mut Ebpf, object: &[u8]) -> Result<EbpfLogger, LogError> {
        Self::spawn(ebpf, object, Sink::GlobalLog)
    }

    /// Like [`EbpfLogger::init`], with records going to `logger` instead of
    /// the global one (`logger.enabled` decides what it keeps).
    pub fn init_with_logger(
        ebpf: &mut Ebpf,
        object: &[u8],
        logger: &'static dyn log::Log,
    ) -> Result<EbpfLogger, LogError> {
        Self::spawn(ebpf, object, Sink::Log(logger))
    }

    /// Like [`EbpfLogger::init`], with records going to `tracing`'s current
    /// dispatcher as events whose target, file and line are the eBPF call
    /// site's (feature `tracing`).
    #[cfg(feature = "tracing")]
    pub fn init_tracing(ebpf: &mut Ebpf, object: &[u8]) -> Result<EbpfLogger, LogError> {
        Self::spawn(ebpf, object, Sink::Tracing)
    }

    /// Like [`EbpfLogger::init`], as a task of the current tokio runtime that
    /// awaits the ring buffer instead of polling it (feature `tokio`). Abort
    /// the task to stop; records still in the ring are then dropped.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let object = std::fs::read("target/bpf/sdk-log.bpf.o")?;
    /// let mut ebpf = kiln_loader::load(&object)?;
    /// let logger = kiln_log::EbpfLogger::init_async(&mut ebpf, &object)?;
    /// // ... attach and run ...
    /// logger.abort();
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn init_async(
        ebpf: &mut Ebpf,
        object: &[u8],
    ) -> Result<tokio::task::JoinHandle<()>, LogError> {
        Self::spawn_async(ebpf, object, Sink::GlobalLog)
    }

    /// Like [`EbpfLogger::init_async`], with records going to `logger`.
    #[cfg(feature = "tokio")]
    pub fn init_async_with_logger(
        ebpf: &mut Ebpf,
        object: &[u8],
        logger: &'static dyn log::Log,
    ) -> Result<tokio::task::JoinHandle<()>, LogError> {
        Self::spawn_async(ebpf, object, Sink::Log(logger))
    }

    #[cfg(feature = "tokio")]
    fn spawn_async(
        ebpf: &mut Ebpf,
        object: &[u8],
        sink: Sink,
    ) -> Result<tokio::task::JoinHandle<()>, LogError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| LogError::NoRuntime)?;
        let (decoder, ring) = Self::open(ebpf, object)?;
        // Registering with the reactor needs the runtime's context.
        let _entered = runtime.enter();
        let mut ring = kiln_loader::maps::AsyncRingBuf::new(ring).map_err(LogError::Thread)?;
        Ok(runtime.spawn(async move {
            loop {
                if let Err(e) = ring.read(|raw| forward(sink, decoder.decode(raw))).await {
                    forward_error(sink, &format!("kiln-log stops reading {LOG_MAP}: {e}"));
                    return;
                }
            }
        }))
    }

    fn open(ebpf: &mut Ebpf, object: &[u8]) -> Result<(Decoder, RingBuf<Map>), LogError> {
        let decoder = Decoder::from_object(object)?;
        let map: Map = ebpf.take_map(LOG_MAP).ok_or(LogError::NoLogMap)?;
        let ring = RingBuf::new(map).map_err(LogError::Ring)?;
        Ok((decoder, ring))
    }

    fn spawn(ebpf: &mut Ebpf, object: &[u8], sink: Sink) -> Result<EbpfLogger, LogError> {
        let (decoder, ring) = Self::open(ebpf, object)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("kiln-log".into())
            .spawn({
                let stop = stop.clone();
                move || forward_until_stopped(ring, &decoder, sink, &stop)
            })
            .map_err(LogError::Thread)?;
        Ok(EbpfLogger {
            stop,
            thread: Some(thread),
        })
    }

    /// Forwards the records still in the ring, then ends the thread and waits
    /// for it (what dropping the logger does).
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            // A panic in a logger implementation ended the thread already.
            let _ = thread.join();
        }
    }
}

impl Drop for EbpfLogger {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn forward_until_stopped(mut ring: RingBuf<Map>, decoder: &Decoder, sink: Sink, stop: &AtomicBool) {
    loop {
        // Read the flag before draining: records written before stop() was
        // called are in the ring by then, so the last drain forwards them.
        let stopping = stop.load(Ordering::Acquire);
        ring.drain(|raw| forward(sink, decoder.decode(raw)));
        if stopping {
            return;
        }
        if let Err(e) = ring.wait(Some(POLL)) {
            forward_error(sink, &format!("kiln-log stops reading {LOG_MAP}: {e}"));
            return;
        }
    }
}

fn forward(sink: Sink, decoded: Result<Record, LogError>) {
    let record = match decoded {
        Ok(record) => record,
        Err(e) => return forward_error(sink, &format!("undecodable log record: {e}")),
    };
    let level = log_level(record.level);
    emit(
        sink,
        &log::Record::builder()
            .level(level)
            .target(&record.target)
            .module_path(Some(&record.target))
            .file(Some(&record.file))
            .line(Some(record.line))
            .args(format_args!("{}", record.message))
            .build(),
    );
}

/// A record that could not be decoded is reported, not dropped silently: a
/// wrong object file shows up as a stream of these.
fn forward_error(sink: Sink, text: &str) {
    emit(
        sink,
        &log::Record::builder()
            .level(log::Level::Warn)
            .target(module_path!())
            .args(format_args!("{text}"))
            .build(),
    );
}

fn emit(sink: Sink, record: &log::Record<'_>) {
    match sink {
        Sink::GlobalLog => {
            if record.level() <= log::max_level() && log::logger().enabled(record.metadata()) {
                log::logger().log(record);
            }
        }
        Sink::Log(logger) => {
            if logger.enabled(record.metadata()) {
                logger.log(record);
            }
        }
        #[cfg(feature = "tracing")]
        Sink::Tracing => {
            // Fails only when no dispatcher is interested: nothing to tell.
            let _ = tracing_log::format_trace(record);
        }
    }
}
