{
  description = "Kiln: a pure-Rust eBPF toolchain (object parser, loader, SDK, manifests, VM test distro)";

  inputs = {
    # A fixed revision (nixos-25.11, 2026-05-10), so `nix develop` gives the
    # same tools and kernels everywhere; move it on purpose, with the
    # catalog's `nix` attributes checked against it.
    nixpkgs.url = "github:NixOS/nixpkgs/8fd9daa3db09ced9700431c5b7ad0e8ba199b575";
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
          # Image, plus lib/modules/<release>/ of its modules). The list is
          # kernels/catalog.toml's (its `nix` attributes and `[[nix_only]]`).
          nixKernels = builtins.listToAttrs (map
            (k: { name = k.version; value = pkgs.${k.attr}.kernel; })
            (import ./kernels/nix-kernels.nix { }));
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
