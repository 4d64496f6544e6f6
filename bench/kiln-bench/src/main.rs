//! `kiln-bench WORKLOAD ITERS [OBJECT_DIR]`: runs one benchmark workload with
//! Kiln's libraries ITERS times and prints `CPU_NS WALL_NS COUNT` on stdout:
//! the medians of the thread's CPU time (user + system: what the work costs,
//! robust on a shared machine) and of the wall clock, and what the workload
//! processed (types, programs, elements, records) so the driver can check
//! both sides did the same work.
//!
//! `bench/libbpf-bench.c` is the same program over libbpf; `cargo xtask bench`
//! runs the two alternately and compares. Setup (loading the benchmark
//! object, filling maps) is outside the timed region on both sides.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kiln_loader::maps::{HashMap, RingBuf, UpdateFlags};
use kiln_loader::programs::TestRun;
use kiln_loader::{Ebpf, EbpfLoader, Map};
use kiln_obj::ObjectSpec;
use kiln_obj::btf::{Btf, Kind};

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";
const W4_N: u32 = 100_000;
const W5_N: u32 = 1_000_000;
const W6_N: u64 = 1_000_000;
/// Records one run of `produce` writes (RECORDS in w456.bpf.c).
const W6_PER_RUN: u64 = 16_384;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [workload, iters, rest @ ..] = args.as_slice() else {
        bail!("usage: kiln-bench WORKLOAD ITERS [OBJECT_DIR]");
    };
    let iters: usize = iters.parse().context("ITERS")?;
    let dir = rest
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/bpf"));
    let mut times: Vec<Span> = Vec::with_capacity(iters);
    let mut count = 0u64;
    match workload.as_str() {
        // The loader's kernel BTF: mapped where the kernel allows it, parsed
        // once per process (so one iteration per process is the honest figure).
        "w1" => {
            for _ in 0..iters {
                let t = Stamp::now();
                let btf = kiln_loader::externs::kernel_btf(None).map_err(anyhow::Error::msg)?;
                let id = btf.find_by_name(Kind::Struct, "task_struct");
                times.push(t.elapsed());
                id.context("task_struct not in vmlinux BTF")?;
                count = u64::from(btf.len());
            }
        }
        // The same from a plain read(2) of the file into a Vec.
        "w1read" => {
            for _ in 0..iters {
                let t = Stamp::now();
                let btf = Btf::from_bytes(std::fs::read(VMLINUX).context(VMLINUX)?)?;
                let id = btf.find_by_name(Kind::Struct, "task_struct");
                times.push(t.elapsed());
                id.context("task_struct not in vmlinux BTF")?;
                count = u64::from(btf.len());
            }
        }
        "w2" => {
            let path = dir.join("w2.bpf.o");
            for _ in 0..iters {
                let t = Stamp::now();
                let data = std::fs::read(&path).with_context(|| path.display().to_string())?;
                let spec = ObjectSpec::parse(&data)?;
                times.push(t.elapsed());
                count = spec.programs.len() as u64;
            }
        }
        "w3" => {
            let path = dir.join("w2.bpf.o");
            for _ in 0..iters {
                let t = Stamp::now();
                let data = std::fs::read(&path).with_context(|| path.display().to_string())?;
                let spec = ObjectSpec::parse(&data)?;
                let ebpf = EbpfLoader::new().load(&spec)?;
                times.push(t.elapsed());
                count = ebpf.programs().count() as u64;
                drop(ebpf);
            }
        }
        "w4" => {
            let ebpf = load(&dir.join("w456.bpf.o"))?;
            let map = HashMap::<_, u32, u64>::new(map(&ebpf, "w4_map")?)?;
            for _ in 0..iters {
                let t = Stamp::now();
                for k in 0..W4_N {
                    map.insert(&k, &(u64::from(k) * 3), UpdateFlags::ANY)?;
                }
                let mut sum = 0u64;
                for k in 0..W4_N {
                    sum += map.get(&k)?.context("w4: key missing")?;
                }
                times.push(t.elapsed());
                let n = u64::from(W4_N);
                if sum != 3 * n * (n - 1) / 2 {
                    bail!("w4: lookups returned wrong values");
                }
                count = n;
            }
        }
        "w5batch" | "w5key" => {
            let ebpf = load(&dir.join("w456.bpf.o"))?;
            let map = HashMap::<_, u32, u64>::new(map(&ebpf, "w5_map")?)?;
            let entries: Vec<(u32, u64)> = (0..W5_N).map(|k| (k, u64::from(k))).collect();
            map.insert_batch(&entries, UpdateFlags::ANY)?;
            drop(entries);
            // Reused across iterations, like the libbpf side's arrays: a
            // program polling a map keeps its buffers.
            let (mut keys, mut values) = (Vec::new(), Vec::new());
            for _ in 0..iters {
                let t = Stamp::now();
                let n = if workload == "w5batch" {
                    map.map()
                        .lookup_all_bytes_into(false, &mut keys, &mut values)?;
                    keys.len() / 4
                } else {
                    let mut n = 0;
                    for e in map.iter() {
                        e?;
                        n += 1;
                    }
                    n
                };
                times.push(t.elapsed());
                count = n as u64;
            }
        }
        "w6" => {
            let mut ebpf = load(&dir.join("w456.bpf.o"))?;
            let ring_map = ebpf.take_map("ring").context("map ring")?;
            let mut ring = RingBuf::new(ring_map)?;
            let prog = ebpf.program("produce").context("program produce")?;
            let packet = [0u8; 64];
            for _ in 0..iters {
                let mut drained = Span::default();
                let mut got = 0u64;
                let mut sum = 0u64;
                while got < W6_N {
                    prog.test_run(TestRun {
                        data_in: Some(&packet),
                        ..Default::default()
                    })?;
                    let t = Stamp::now();
                    got += ring.drain(|r| sum = sum.wrapping_add(r[0] as u64)) as u64;
                    drained.add(t.elapsed());
                }
                if got != W6_N.div_ceil(W6_PER_RUN) * W6_PER_RUN {
                    bail!("w6: drained {got} records, expected whole runs of {W6_PER_RUN}");
                }
                std::hint::black_box(sum);
                times.push(drained);
                count = got;
            }
        }
        other => bail!("unknown workload {other}"),
    }
    if times.is_empty() {
        bail!("ITERS must be > 0");
    }
    let median = |mut v: Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let cpu = median(times.iter().map(|s| s.cpu).collect());
    let wall = median(times.iter().map(|s| s.wall).collect());
    println!("{cpu} {wall} {count}");
    Ok(())
}

/// CPU time of this thread and wall time, in nanoseconds.
#[derive(Clone, Copy, Default)]
struct Span {
    cpu: u64,
    wall: u64,
}

impl Span {
    fn add(&mut self, o: Span) {
        self.cpu += o.cpu;
        self.wall += o.wall;
    }
}

struct Stamp(Span);

fn clock(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own; both clocks exist on Linux.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Stamp {
    fn now() -> Self {
        Stamp(Span {
            cpu: clock(libc::CLOCK_THREAD_CPUTIME_ID),
            wall: clock(libc::CLOCK_MONOTONIC),
        })
    }

    fn elapsed(&self) -> Span {
        let now = Stamp::now().0;
        Span {
            cpu: now.cpu - self.0.cpu,
            wall: now.wall - self.0.wall,
        }
    }
}

fn load(path: &Path) -> Result<Ebpf> {
    let data = std::fs::read(path).with_context(|| path.display().to_string())?;
    let spec = ObjectSpec::parse(&data)?;
    Ok(EbpfLoader::new().load(&spec)?)
}

fn map<'a>(ebpf: &'a Ebpf, name: &str) -> Result<&'a Map> {
    ebpf.map(name).with_context(|| format!("map {name}"))
}
