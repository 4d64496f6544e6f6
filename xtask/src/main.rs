//! `cargo xtask`: Kiln's developer front door.
//!
//! Every command first runs the same environment check as `setup` (quick when
//! all is there), so a newcomer never needs a third command.

mod apply;
mod apply_matrix;
mod apt;
mod bench;
mod build_ebpf;
mod codegen;
mod conformance;
mod cross;
mod dist;
mod html;
mod image;
mod junit;
mod kernel_btf;
mod kernels;
mod modules;
mod prebuilt;
mod setup;
mod test;
mod userland;
mod verifier_trend;
mod vm;
mod vm_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Kiln's developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install or check everything Kiln needs (idempotent).
    Setup(setup::Args),
    /// Build every eBPF program of the repository into target/bpf.
    BuildEbpf(build_ebpf::Args),
    /// Regenerate checked-in code (eBPF helper bindings); --check fails when stale.
    Codegen(codegen::Args),
    /// `#[repr(C)]` Rust definitions of kernel types from BTF (--btf FILE, default the running kernel's).
    BtfBindgen(codegen::btf_bindgen::Args),
    /// Build a manifest's programs, then apply it (on the host, or with --vm in the test distro).
    Apply(apply::Args),
    /// Run the tests: unit, host, and VMs across kernels and arches.
    Test(test::Args),
    /// The test kernel catalog: list, fetch, verify.
    Kernels(kernels::Args),
    /// Kiln against libbpf on the same workloads (alternating rounds); --json, --quick.
    Bench(bench::Args),
    /// Static `kiln` binaries and an OCI image of them (target/dist); --podman runs it.
    Dist(dist::Args),
    /// Run any command in the test distro: `cargo xtask vm [--kernel V] [--arch A] -- CMD ARGS...`.
    Vm(vm_cmd::Args),
    /// (The runner's own tests.) Boot any file as a kernel, without the up-front checks.
    #[command(hide = true)]
    BootRaw(vm_cmd::RawArgs),
    /// Kiln against libbpf on objects built here from published sources (kernel selftests, sched_ext schedulers); --json.
    Conformance(conformance::Args),
    /// `cargo check` of kiln-obj, the loader and `kiln` for 32-bit arm (armv7, Debian's armhf std).
    Check32bit,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Setup(args) => setup::run(args),
        Command::BuildEbpf(args) => build_ebpf::run(args),
        Command::Codegen(args) => codegen::run(args),
        Command::BtfBindgen(args) => codegen::btf_bindgen::run(args),
        Command::Apply(args) => apply::run(args),
        Command::Test(args) => test::run(args),
        Command::Kernels(args) => kernels::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Dist(args) => dist::run(args),
        Command::Vm(args) => vm_cmd::run(args),
        Command::BootRaw(args) => vm_cmd::boot_raw(args),
        Command::Conformance(args) => conformance::run(args),
        Command::Check32bit => cross::check_32bit(),
    }
}
