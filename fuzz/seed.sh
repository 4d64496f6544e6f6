#!/bin/sh
# Builds the seed corpora from the eBPF objects in target/bpf (run
# `cargo xtask build-ebpf` first). Corpora are generated, never committed.
#   fuzz/seed.sh            # writes fuzz/corpus/<target>/
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bpf=${KILN_BPF_DIR:-$here/../target/bpf}
objcopy=$(command -v llvm-objcopy-22 || command -v llvm-objcopy || command -v objcopy)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$here/corpus/parse_object" "$here/corpus/core_relocate" \
    "$here/corpus/btf_walk" "$here/corpus/btf_ext" "$here/corpus/manifest_check"
# Manifests: the examples and the bad-input corpus (one mistake each).
for m in "$here"/../manifests/examples/*/manifest.toml "$here"/../manifests/tests/bad/*.toml; do
    [ -e "$m" ] || continue
    d=$(basename "$(dirname "$m")")
    cp "$m" "$here/corpus/manifest_check/$d-$(basename "$m" .toml)"
done
n=0
# The bpfeb twins too (target/bpf/bpfeb/), so every target starts from
# big-endian ELF, BTF and .BTF.ext as well as little-endian.
for o in "$bpf"/*.bpf.o "$bpf"/bpfeb/*.bpf.o; do
    [ -e "$o" ] || continue
    s=$(basename "$o" .bpf.o)
    case "$o" in "$bpf"/bpfeb/*) s="bpfeb-$s" ;; esac
    cp "$o" "$here/corpus/parse_object/$s"
    cp "$o" "$here/corpus/core_relocate/$s"
    rm -f "$tmp/btf" "$tmp/ext"
    "$objcopy" --dump-section .BTF="$tmp/btf" "$o" /dev/null 2>/dev/null || continue
    cp "$tmp/btf" "$here/corpus/btf_walk/$s"
    "$objcopy" --dump-section .BTF.ext="$tmp/ext" "$o" /dev/null 2>/dev/null || continue
    # btf_ext input: u32 LE length of .BTF, .BTF, .BTF.ext
    len=$(wc -c <"$tmp/btf")
    # shellcheck disable=SC2059 # the format is the escaped length bytes
    printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $((len & 255)) $((len >> 8 & 255)) \
        $((len >> 16 & 255)) $((len >> 24 & 255)))" >"$here/corpus/btf_ext/$s"
    cat "$tmp/btf" "$tmp/ext" >>"$here/corpus/btf_ext/$s"
    n=$((n + 1))
done
if [ "$n" -eq 0 ]; then
    echo "seed.sh: no objects with BTF in $bpf: run cargo xtask build-ebpf" >&2
    exit 1
fi
echo "seed.sh: seeded from $n objects in $bpf"
