#!/usr/bin/env bash
# Build ipam-controller, ipam-node, nv-ipam and kubectl-nv_ipam (the `kubectl nv-ipam` plugin)
# as static x86_64 executables:
#
#   hack/build-static.sh [OUTDIR]      (default: dist/bin)
#
# Target: x86_64-unknown-linux-musl when rustup has it installed, otherwise
# x86_64-unknown-linux-gnu with `-C target-feature=+crt-static` (static-pie
# against glibc's libc.a, from libc6-dev). The explicit --target matters: without
# it +crt-static also applies to proc-macros (serde_derive), which then cannot
# be built. The flag goes through CARGO_TARGET_<TRIPLE>_RUSTFLAGS for this one
# command only, so plain `cargo build`/`cargo test` stay dynamic and untouched.
#
# Uses Cargo.lock as is (--locked) and the [profile.release] of Cargo.toml
# (docs/release.md says why each setting). Each binary is then checked: `file`
# must say statically linked / static-pie linked, `ldd` must find no
# interpreter, and it must run with an empty environment. Any miss fails the
# script. Prints the sizes.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUTDIR=${1:-dist/bin}
BINS=(ipam-controller ipam-node nv-ipam kubectl-nv_ipam)
die() { printf 'build-static.sh: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'build-static.sh: %s\n' "$*" >&2; }

[[ $(uname -m) == x86_64 ]] || die "this script builds for x86_64 on an x86_64 host (host is $(uname -m))"
for tool in cargo file ldd; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (Debian: apt-get install file libc-bin)"
done

if command -v rustup >/dev/null 2>&1 &&
  rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
  TARGET=x86_64-unknown-linux-musl
  FLAGS_VAR=CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS
else
  TARGET=x86_64-unknown-linux-gnu
  FLAGS_VAR=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS
fi
# musl links statically by default; saying so again costs nothing and makes both paths alike.
export "$FLAGS_VAR=-C target-feature=+crt-static"
# RUSTFLAGS (and its encoded and config-key forms) would replace the per-target flags above and
# silently give a dynamic binary; the checks below would catch it, but say why up front.
for v in RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS; do
  if [[ -n ${!v:-} ]]; then
    log "ignoring $v='${!v}' (it would override $FLAGS_VAR)"
    unset "$v"
  fi
done

log "building ${BINS[*]} for $TARGET (release profile, $FLAGS_VAR='${!FLAGS_VAR}')"
bin_args=()
for b in "${BINS[@]}"; do bin_args+=(--bin "$b"); done
cargo build --locked --release --target "$TARGET" "${bin_args[@]}"

TARGET_DIR=$(cargo metadata --locked --no-deps --format-version 1 |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[[ -n $TARGET_DIR ]] || die "could not read target_directory from cargo metadata"
SRC=$TARGET_DIR/$TARGET/release

mkdir -p "$OUTDIR"
failed=0
for b in "${BINS[@]}"; do
  install -m 0755 "$SRC/$b" "$OUTDIR/$b"
  f=$OUTDIR/$b
  what=$(file -b "$f")
  linkage=$(ldd "$f" 2>&1 || true)
  if [[ $what != *"static-pie linked"* && $what != *"statically linked"* ]]; then
    log "FAIL $f is not static according to file: $what"
    failed=1
  fi
  if ! grep -qE 'statically linked|not a dynamic executable' <<<"$linkage"; then
    log "FAIL $f has dynamic dependencies according to ldd:"
    printf '%s\n' "$linkage" >&2
    failed=1
  fi
  # Runs with nothing from the environment: no PATH, no HOME, no locale. The CNI plugin has no
  # flags (the runtime drives it through CNI_COMMAND), so it is asked for VERSION instead.
  if [[ $b == nv-ipam ]]; then
    out=$(env -i CNI_COMMAND=VERSION "$f" </dev/null 2>&1) || { log "FAIL $f (CNI_COMMAND=VERSION): $out"; failed=1; }
  else
    out=$(env -i "$f" --version 2>&1) || { log "FAIL $f --version: $out"; failed=1; }
  fi
  printf '%-16s %9d bytes  %s  | %s\n' "$b" "$(stat -c %s "$f")" "${what%%, BuildID*}" "$out"
done
((failed == 0)) || die "one or more binaries are not static or do not run (see above)"
log "OK: ${#BINS[@]} static binaries for $TARGET in $OUTDIR"
