//! For the BPF target only: compiles `shim/*.c` to LLVM bitcode with clang
//! and hands it to the final link (bpf-linker links bitcode), so programs get
//! the operations stable Rust cannot emit (atomic adds, CO-RE accessors).
//! Host builds (the workspace's `cargo check`/tests) skip it.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=shim");
    println!("cargo:rerun-if-env-changed=KILN_CLANG");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("bpf") {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let clang = std::env::var("KILN_CLANG").unwrap_or_else(|_| "clang-22".into());
    let ar = std::env::var("KILN_LLVM_AR").unwrap_or_else(|_| "llvm-ar-22".into());
    let endian = if std::env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() == Ok("big") {
        "bpfeb"
    } else {
        "bpfel"
    };
    let mut objects = Vec::new();
    let mut sources: Vec<PathBuf> = std::fs::read_dir(manifest.join("shim"))
        .expect("shim/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    sources.sort();
    for src in &sources {
        let stem = src
            .file_stem()
            .expect("a file")
            .to_string_lossy()
            .into_owned();
        let bc = out.join(format!("{stem}.bc"));
        let status = Command::new(&clang)
            .args(["-O2", "-g", "-emit-llvm", "-c", "-mcpu=v3"])
            .arg(format!("--target={endian}"))
            .arg("-I/usr/include/x86_64-linux-gnu")
            .arg(format!("-I{}", manifest.join("../include").display()))
            // Reproducible: no checkout path in the debug info.
            .arg(format!("-ffile-prefix-map={}=/kiln-ebpf", manifest.display()))
            .arg("-fdebug-compilation-dir=/kiln-ebpf")
            .arg(src)
            .arg("-o")
            .arg(&bc)
            .status()
            .unwrap_or_else(|e| panic!("kiln-ebpf: cannot run {clang} (install clang-22 or set KILN_CLANG; `cargo xtask setup` does): {e}"));
        assert!(
            status.success(),
            "kiln-ebpf: {clang} failed on {}",
            src.display()
        );
        objects.push(bc);
    }
    let lib = out.join("libkiln_shim.a");
    let _ = std::fs::remove_file(&lib);
    let status = Command::new(&ar)
        .arg("crsD")
        .arg(&lib)
        .args(&objects)
        .status()
        .unwrap_or_else(|e| panic!("kiln-ebpf: cannot run {ar} (llvm-22): {e}"));
    assert!(status.success(), "kiln-ebpf: {ar} failed");
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=kiln_shim");
}
