//! Awaiting ring buffer and perf buffer records under tokio (feature `tokio`).

use std::time::Duration;

use kiln_loader::maps::{AsyncPerfBuffers, AsyncRingBuf, PerfEventArray, PerfRecord, RingBuf};
use kiln_loader::programs::TestRun;
use kiln_loader::{Ebpf, EbpfLoader};
use kiln_obj::ObjectSpec;
use kiln_testkit::{Need, TestResult, test};

fn run(ebpf: &Ebpf, prog: &str) -> TestResult {
    ebpf.program(prog)
        .ok_or("missing program")?
        .test_run(TestRun {
            data_in: Some(&[0u8; 64]),
            ..Default::default()
        })?;
    Ok(())
}

fn async_ring_and_perf() -> TestResult {
    let spec = ObjectSpec::parse(&std::fs::read(kiln_testkit::bpf_object(
        "loader_maps.bpf.o",
    )?)?)?;
    let ebpf = EbpfLoader::new().load(&spec)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let _guard = rt.enter();
    let mut ring = AsyncRingBuf::new(RingBuf::new(ebpf.map("events").ok_or("no events")?)?)?;
    let perf = PerfEventArray::new(ebpf.map("perf").ok_or("no perf")?)?;
    let mut bufs = AsyncPerfBuffers::new(perf.open_all(2)?)?;
    // The programs run on another thread while this one is already waiting.
    std::thread::scope(|s| -> TestResult {
        let ebpf = &ebpf;
        let producer = s.spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            run(ebpf, "count")
                .and_then(|_| run(ebpf, "perf_out"))
                .map_err(|e| e.to_string())
        });
        let mut seqs = Vec::new();
        let n =
            rt.block_on(ring.read(|r| seqs.push(u32::from_ne_bytes(r[..4].try_into().unwrap()))))?;
        assert_eq!((n, seqs), (1, vec![1]), "woken by the ring's first record");
        let mut samples = 0;
        rt.block_on(bufs.read(|_, r| {
            if let PerfRecord::Sample(_) = r {
                samples += 1
            }
        }))?;
        assert_eq!(samples, 1, "woken by the perf record");
        producer.join().map_err(|_| "producer panicked")??;
        Ok(())
    })
}

fn main() {
    kiln_testkit::run(vec![test(
        "async_ring_and_perf",
        &[Need::Bpf],
        async_ring_and_perf,
    )]);
}
