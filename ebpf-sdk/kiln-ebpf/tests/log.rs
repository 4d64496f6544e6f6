//! Logging end to end: sdk-log's socket filter logs at every level through
//! `KILN_LOGS`; Kiln's loader loads it, BPF_PROG_TEST_RUN runs it once, the
//! ring buffer consumer hands the raw records to kiln-log, and the decoded
//! text must be what the format strings and arguments say.

use kiln_loader::EbpfLoader;
use kiln_loader::maps::RingBuf;
use kiln_loader::programs::TestRun;
use kiln_log::{Decoder, LEVEL_GLOBAL, LOG_MAP, Level};
use kiln_obj::ObjectSpec;
use kiln_testkit::{Need, TestResult, bpf_object, test};

/// An Ethernet frame carrying the start of an IPv4 header; a socket filter
/// sees the packet from the network header on (the test run pulls Ethernet).
fn packet() -> Vec<u8> {
    let mut p = vec![0u8; 12];
    p.extend([0x08, 0x00]); // EtherType IPv4
    p.extend([0x45, 0x00, 0x00, 0x32]);
    p.resize(64, 0);
    p
}

fn logs_decode_to_text() -> TestResult {
    let path = bpf_object("sdk-log.bpf.o")?;
    let bytes = std::fs::read(&path)?;
    let decoder = Decoder::from_object(&bytes)?;
    assert_eq!(decoder.len(), 5, "sdk-log has five log call sites");

    let spec = ObjectSpec::parse(&bytes)?;
    let ebpf = EbpfLoader::new().require_btf(true).load(&spec)?;
    let mut ring = RingBuf::new(ebpf.map(LOG_MAP).ok_or("sdk-log has no KILN_LOGS map")?)?;
    let prog = ebpf.program("log_packet").ok_or("no program log_packet")?;
    let packet = packet();
    let run = prog.test_run(TestRun {
        data_in: Some(&packet),
        ..Default::default()
    })?;
    // The program returns skb->len: the packet without its Ethernet header.
    let len = run.retval;
    assert_eq!(len as usize, packet.len() - 14);

    let mut records = Vec::new();
    let mut errors = Vec::new();
    ring.drain(decoder.sink(|r| match r {
        Ok(rec) => records.push(rec),
        Err(e) => errors.push(e.to_string()),
    }));
    assert!(errors.is_empty(), "undecodable records: {errors:?}");
    let got: Vec<(Level, &str)> = records
        .iter()
        .map(|r| (r.level, r.message.as_str()))
        .collect();
    let first = format!("packet of {len} bytes, head 45000032");
    assert_eq!(
        got,
        [
            (Level::Info, first.as_str()),
            (
                Level::Warn,
                "signed -5 hex 0xdeadbeef padded 000000ab bool true"
            ),
            (Level::Error, "no arguments, {braces} kept"),
            (Level::Debug, "name kiln-log bytes abc"),
            (Level::Trace, "small 1 -2 3 -4"),
        ]
    );
    let info = &records[0];
    assert_eq!(info.target, "sdk_log");
    assert_eq!(info.file, "src/main.rs");
    assert!(
        info.to_string().starts_with("[INFO  sdk_log src/main.rs:"),
        "{info}"
    );

    // A second run logs again: records are per run, not per load.
    prog.test_run(TestRun {
        data_in: Some(&packet),
        ..Default::default()
    })?;
    let mut again = 0;
    ring.drain(|raw| {
        assert!(decoder.decode(raw).is_ok());
        again += 1;
    });
    assert_eq!(again, 5);
    Ok(())
}

/// With `KILN_LOG_LEVEL` set to Warn before load, only the ERROR and WARN
/// call sites write records.
fn level_set_before_load_filters_in_kernel() -> TestResult {
    let bytes = std::fs::read(bpf_object("sdk-log.bpf.o")?)?;
    let decoder = Decoder::from_object(&bytes)?;
    let spec = ObjectSpec::parse(&bytes)?;
    let ebpf = EbpfLoader::new()
        .set_global(LEVEL_GLOBAL, &[Level::Warn as u8])
        .load(&spec)?;
    let mut ring = RingBuf::new(ebpf.map(LOG_MAP).ok_or("sdk-log has no KILN_LOGS map")?)?;
    let prog = ebpf.program("log_packet").ok_or("no program log_packet")?;
    prog.test_run(TestRun {
        data_in: Some(&packet()),
        ..Default::default()
    })?;
    let mut levels = Vec::new();
    ring.drain(|raw| levels.push(decoder.decode(raw).map(|r| r.level)));
    let levels: Vec<Level> = levels.into_iter().collect::<Result<_, _>>()?;
    assert_eq!(levels, [Level::Warn, Level::Error]);

    // The verifier knows the frozen value and removes the filtered sites.
    let all = EbpfLoader::new().load(&spec)?;
    let full = all
        .program("log_packet")
        .ok_or("no program log_packet")?
        .info()?
        .xlated_len;
    let filtered = prog.info()?.xlated_len;
    assert!(
        filtered < full,
        "filtered program is {filtered} bytes, unfiltered {full}: dead call sites kept"
    );
    Ok(())
}

fn main() {
    kiln_testkit::run(vec![
        test("logs_decode_to_text", &[Need::Bpf], logs_decode_to_text),
        test(
            "level_set_before_load_filters_in_kernel",
            &[Need::Bpf],
            level_set_before_load_filters_in_kernel,
        ),
    ]);
}
