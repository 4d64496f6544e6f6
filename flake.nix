{
  description = "Kiln: a pure-Rust eBPF toolchain (object parser, loader, SDK, manifests, VM test distro)";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    # Nightly with rust-src: the eBPF SDK builds `core` for bpfel with -Z build-std
    # where Debian's prebuilt bpfel `core` (libstd-rust-web-dev-bpf) is not available.
    rust-overlay = {
      url = "github:oxalica/rust-overlay";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs = { self, nixpkgs, rust-overlay }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system:
        f (import nixpkgs { inherit system; overlays = [ rust-overlay.overlays.default ]; }));
    in
    {
      devShells = forAllSystems (pkgs:
        let
          lib = pkgs.lib;
          rust = pkgs.rust-bin.nightly.latest.default.override {
            extensions = [ "rust-src" "rustfmt" "clippy" ];
            targets = [ "x86_64-unknown-linux-musl" "aarch64-unknown-linux-musl" ];
          };
          # The test kernels `cargo xtask test` picks up inside `nix develop`:
          # $KILN_NIX_KERNELS/<version>/ is the kernel derivation (bzImage or
          # Image, plus lib/modules/<release>/ of its modules).
          nixKernels = {
            "5.10" = pkgs.linuxPackages_5_10.kernel;
            "5.15" = pkgs.linuxPackages_5_15.kernel;
            "6.1" = pkgs.linuxPackages_6_1.kernel;
            "6.6" = pkgs.linuxPackages_6_6.kernel;
            "6.12" = pkgs.linuxPackages_6_12.kernel;
          };
          kernelFarm = pkgs.linkFarm "kiln-nix-kernels"
            (lib.mapAttrsToList (version: kernel: { name = version; path = kernel; }) nixKernels);
        in
        {
          default = pkgs.mkShell {
            packages = [
              rust
              pkgs.bpf-linker
              pkgs.cargo-nextest
              pkgs.llvmPackages.clang-unwrapped
              pkgs.llvmPackages.llvm
              pkgs.libbpf
              pkgs.bpftools
              pkgs.qemu
              pkgs.cpio
              pkgs.iproute2
              pkgs.pkgsCross.aarch64-multiplatform.stdenv.cc
            ];
            KILN_NIX_KERNELS = "${kernelFarm}";
            KILN_TOOLCHAIN = "nix";
            shellHook = ''
              echo "kiln dev shell: cargo xtask build-ebpf | apply | test (kernels from $KILN_NIX_KERNELS)"
            '';
          };
        });
    };
}
