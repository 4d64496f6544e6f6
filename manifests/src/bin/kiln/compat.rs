//! `kiln check --kernels`: the offline answer for other kernels.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use kiln_manifest::Deployment;
use kiln_manifest::compat::{self, TargetKernel};

use crate::{Target, exit, invalid};

#[derive(Args)]
pub struct KernelArgs {
    /// Check against these kernels' BTF instead of this host (e.g. 5.10,6.1,6.12,7.2),
    /// from --btf-dir; nothing is loaded.
    #[arg(long, value_delimiter = ',', value_name = "VERSIONS")]
    kernels: Vec<String>,
    /// Their architecture (default: this machine's).
    #[arg(long, requires = "kernels")]
    arch: Option<String>,
    /// Where `cargo xtask kernels btf` left them (default: $KILN_BTF_DIR or ~/.cache/kiln/btf).
    #[arg(long, value_name = "DIR")]
    btf_dir: Option<PathBuf>,
    /// A kernel of your own: LABEL=FILE (a vmlinux BTF, e.g. /sys/kernel/btf/vmlinux of a fleet host).
    #[arg(long = "kernel-btf", value_name = "LABEL=FILE")]
    kernel_btf: Vec<String>,
    /// The report as JSON.
    #[arg(long = "kernels-json")]
    json: bool,
}

impl KernelArgs {
    pub fn json(&self) -> bool {
        self.json
    }

    pub fn wanted(&self) -> bool {
        !self.kernels.is_empty() || !self.kernel_btf.is_empty()
    }
}

pub fn run(target: &Target, args: &KernelArgs) -> anyhow::Result<ExitCode> {
    let d = Deployment::load_offline(&target.manifest, &target.overrides()?, target.allow_outside)
        .map_err(invalid)?;
    let dir = args.btf_dir.clone().unwrap_or_else(compat::default_btf_dir);
    let arch = args
        .arch
        .clone()
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let mut kernels = Vec::new();
    for v in &args.kernels {
        kernels.push(TargetKernel::from_cache(&dir, v, &arch)?);
    }
    for pair in &args.kernel_btf {
        let Some((label, file)) = pair.split_once('=') else {
            bail!(
                "--kernel-btf {pair}: expected LABEL=FILE, e.g. --kernel-btf prod=/tmp/vmlinux.btf"
            );
        };
        kernels.push(TargetKernel::load(label, std::path::Path::new(file))?);
    }
    let report = compat::check(&d.resolved, &kernels);
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        outln!(
            "{}: against {} kernel(s) ({arch})",
            target.manifest.display(),
            kernels.len()
        );
        outln!("{report}");
    }
    Ok(if report.all_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::FAILURE)
    })
}
