# The kernels `nix develop` offers, read from kernels/catalog.toml (the one
# list of kernels): every catalog entry that names its nixpkgs attribute
# (`nix = "linuxPackages_6_1"`), plus the `[[nix_only]]` entries (5.15, 6.6:
# no Debian package, so only Nix provides them). Returns
# [ { version = "6.1"; attr = "linuxPackages_6_1"; } ... ].
#
# flake.nix turns each into a kernel derivation; `cargo xtask` checks (unit
# test `flake_kernels_are_the_catalogs`) that this evaluates to exactly the
# catalog's list.
{ catalogFile ? ./catalog.toml }:
let
  catalog = builtins.fromTOML (builtins.readFile catalogFile);
  entries = (catalog.kernel or [ ]) ++ (catalog.nix_only or [ ]);
  withNix = builtins.filter (k: k ? nix) entries;
in
map (k: { version = k.version; attr = k.nix; }) withNix
