#!/usr/bin/env bash
# vendor-check.sh: every crate is allowed, vendored intact, and enough to build with no network.
#
#   ./vendor-check.sh              vendor into vendor/ if it is missing or stale (network), then check
#   ./vendor-check.sh --offline    use vendor/ as it is; fail if it does not match Cargo.lock
#   ./vendor-check.sh --no-build   skip step 4 (the self-test uses it)
#   ./vendor-check.sh --self-test  show that steps 1-3 fail on a bad allow-list, lock or vendor/
#
# Steps, each failing loudly with the offending crates listed:
#   1. allow-list: every crate name in Cargo.lock is in deps.allow with a reason, and every
#      deps.allow line names a crate Cargo.lock still has.
#   2. vendor: `cargo vendor --locked --versioned-dirs vendor` unless vendor/ already matches
#      Cargo.lock (so a second run is offline). vendor/ is git-ignored; nothing in the repo points
#      cargo at it, normal builds keep using crates.io.
#   3. integrity: each registry crate of Cargo.lock is vendor/<name>-<version>, its package
#      checksum is Cargo.lock's, every file hashes to its .cargo-checksum.json entry and no file is
#      unlisted; no extra crates. (cargo itself verifies files only of crates it compiles, and
#      only on a clean build.)
#   4. offline build: `cargo build --frozen` (= --locked --offline) of the library and the three
#      binaries with crates-io replaced by vendor/ through --config flags, an empty CARGO_HOME
#      (no registry cache to fall back on) and a fresh target dir, inside a network namespace
#      (`unshare -n`) when the kernel allows it.
#
# Needs bash, cargo, awk, jq, sha256sum, and unshare (util-linux) for the network namespace.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$PWD
VENDOR=$ROOT/vendor
ALLOW=$ROOT/deps.allow

OFFLINE=0 BUILD=1 SELFTEST=0
for arg in "$@"; do
  case $arg in
    --offline) OFFLINE=1 ;;
    --no-build) BUILD=0 ;;
    --self-test) SELFTEST=1 ;;
    -h | --help) sed -n '2,8p' "$ROOT/vendor-check.sh"; exit 0 ;;
    *) echo "vendor-check: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

step() { printf '\n==> vendor-check: %s\n' "$*" >&2; }
die() { printf 'vendor-check: FAILED: %s\n' "$*" >&2; exit 1; }
for tool in cargo awk jq sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found"
done

if ((SELFTEST)); then
  # Each case runs this script on a scratch copy (Cargo.lock, deps.allow, vendor/ hard-linked)
  # with one thing broken, and must fail with the expected message.
  [[ -d $VENDOR ]] || die "--self-test needs vendor/ (run ./vendor-check.sh once first)"
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  fresh() {
    rm -rf "$scratch/r"
    mkdir "$scratch/r"
    cp "$ROOT/vendor-check.sh" Cargo.toml Cargo.lock deps.allow "$scratch/r/"
    # Hard links are instant; a plain copy when TMPDIR is on another file system.
    cp -al "$VENDOR" "$scratch/r/vendor" 2>/dev/null || { rm -rf "$scratch/r/vendor"; cp -a "$VENDOR" "$scratch/r/vendor"; }
  }
  expect_fail() { # NAME PATTERN
    local out
    if out=$("$scratch/r/vendor-check.sh" --offline --no-build 2>&1); then
      printf '%s\n' "$out" >&2
      die "self-test '$1': passed but should have failed"
    fi
    grep -q -- "$2" <<<"$out" || { printf '%s\n' "$out" >&2; die "self-test '$1': no '$2' in the output"; }
    printf 'self-test %-28s fails as it should: %s\n' "'$1'" "$(grep -m1 -- "$2" <<<"$out")" >&2
  }
  fresh
  "$scratch/r/vendor-check.sh" --offline --no-build >/dev/null 2>&1 || die "self-test: the unbroken copy fails"
  fresh; sed -i '/^ring /d' "$scratch/r/deps.allow"
  expect_fail "allow-list line removed" "not in deps.allow: ring"
  fresh; printf 'left-pad  no longer used\n' >>"$scratch/r/deps.allow"
  expect_fail "stale allow-list line" "not in Cargo.lock: left-pad"
  fresh; printf '\n[[package]]\nname = "left-pad"\nversion = "1.0.0"\nsource = "registry+https://github.com/rust-lang/crates.io-index"\nchecksum = "%064d"\n' 0 >>"$scratch/r/Cargo.lock"
  expect_fail "unlisted crate in Cargo.lock" "not in deps.allow: left-pad"
  fresh; sed -i 's/^\(lexopt \+\).*/\1/' "$scratch/r/deps.allow"
  expect_fail "allow-list line with no reason" "no reason: lexopt"
  fresh; f=$(find "$scratch/r/vendor/lexopt-"*/src -name lib.rs | head -n1)
  rm "$f"; echo '// tampered' >"$f" # a new inode: the real vendor/ stays intact
  expect_fail "vendored file edited" "lexopt-.*: files differ from .cargo-checksum.json"
  fresh; rm -r "$scratch/r/vendor/ipnet-"*
  expect_fail "vendored crate missing" "missing: ipnet-"
  echo "vendor-check: self-test OK" >&2
  exit 0
fi

# Cargo.lock's [[package]] entries as "name version source checksum" ("-" for none).
lock_packages() {
  awk '
    function flush() { if (name != "") print name, version, (source == "" ? "-" : source), (sum == "" ? "-" : sum) }
    /^\[\[package\]\]/ { flush(); name = version = source = sum = ""; next }
    /^name = /     { name = $3 }
    /^version = /  { version = $3 }
    /^source = /   { source = $3 }
    /^checksum = / { sum = $3 }
    END { flush() }' Cargo.lock | tr -d '"'
}
LOCK=$(lock_packages)
[[ -n $LOCK ]] || die "no packages in Cargo.lock"
nonregistry=$(awk '$3 != "-" && $3 !~ /^registry\+/ {print $1 "@" $2 " (" $3 ")"}' <<<"$LOCK")
[[ -z $nonregistry ]] || die "crates from sources other than crates.io cannot be vendor-checked: $nonregistry"

step "1/4 allow-list (deps.allow)"
[[ -f $ALLOW ]] || die "deps.allow is missing"
# Workspace members (no source) are ours, not dependencies.
lock_names=$(awk '$3 != "-" {print $1}' <<<"$LOCK" | sort -u)
allow_lines=$(sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$ALLOW" | awk 'NF')
allow_names=$(awk '{print $1}' <<<"$allow_lines" | sort)
problems=()
dups=$(uniq -d <<<"$allow_names")
[[ -z $dups ]] || problems+=("listed twice in deps.allow: $(tr '\n' ' ' <<<"$dups")")
noreason=$(awk 'NF < 2 {print $1}' <<<"$allow_lines")
[[ -z $noreason ]] || problems+=("deps.allow lines with no reason: $(tr '\n' ' ' <<<"$noreason")")
unknown=$(comm -23 <(echo "$lock_names") <(sort -u <<<"$allow_names"))
for n in $unknown; do problems+=("in Cargo.lock but not in deps.allow: $n (review it; add '$n  <why>' to deps.allow)"); done
stale=$(comm -13 <(echo "$lock_names") <(sort -u <<<"$allow_names"))
for n in $stale; do problems+=("in deps.allow but not in Cargo.lock: $n (delete the line)"); done
if ((${#problems[@]})); then
  printf '  %s\n' "${problems[@]}" >&2
  die "deps.allow does not match Cargo.lock (${#problems[@]} problem(s) above)"
fi
echo "$(wc -l <<<"$lock_names") crates in Cargo.lock, all in deps.allow with a reason" >&2

# The registry crates as vendor directory names and checksums: "name-version checksum".
WANT=$(awk '$3 ~ /^registry\+/ {print $1 "-" $2, $4}' <<<"$LOCK" | sort)

# Prints one line per problem with vendor/ (nothing when it matches Cargo.lock). FULL=1 also
# hashes every file; otherwise only the package checksums are compared (the up-to-date test).
vendor_problems() {
  local full=$1 dir sum meta listed present
  [[ -d $VENDOR ]] || { echo "vendor/ does not exist"; return; }
  while read -r dir sum; do
    meta=$VENDOR/$dir/.cargo-checksum.json
    if [[ ! -f $meta ]]; then echo "missing: $dir"; continue; fi
    [[ $(jq -r .package "$meta") == "$sum" ]] || echo "$dir: package checksum differs from Cargo.lock"
    ((full)) || continue
    listed=$(jq -r '.files | keys[]' "$meta" | sort)
    present=$(cd "$VENDOR/$dir" && find . -type f ! -name .cargo-checksum.json -printf '%P\n' | sort)
    [[ $listed == "$present" ]] ||
      echo "$dir: files added or removed since vendoring: $(comm -3 <(echo "$listed") <(echo "$present") | tr -d '\t' | tr '\n' ' ')"
    (cd "$VENDOR/$dir" && jq -r '.files | to_entries[] | "\(.value)  \(.key)"' .cargo-checksum.json |
      sha256sum --check --quiet --strict >/dev/null 2>&1) || echo "$dir: files differ from .cargo-checksum.json"
  done <<<"$WANT"
  comm -13 <(awk '{print $1}' <<<"$WANT") <(find "$VENDOR" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort) |
    sed 's/^/not in Cargo.lock: vendor\//'
}

step "2/4 vendor/"
stale_vendor=$(vendor_problems 0)
if [[ -z $stale_vendor ]]; then
  echo "vendor/ matches Cargo.lock: not re-vendoring (no network needed)" >&2
elif ((OFFLINE)); then
  printf '  %s\n' "$stale_vendor" >&2
  die "--offline: vendor/ does not match Cargo.lock (run ./vendor-check.sh once with network)"
else
  echo "vendor/ missing or stale ($(wc -l <<<"$stale_vendor") differences): cargo vendor" >&2
  start=$SECONDS
  cargo vendor --locked --versioned-dirs --quiet "$VENDOR" >/dev/null
  echo "vendored $(wc -l <<<"$WANT") crates in $((SECONDS - start)) s, $(du -sh "$VENDOR" | cut -f1)" >&2
fi

step "3/4 vendor/ integrity (checksums against Cargo.lock and .cargo-checksum.json)"
bad=$(vendor_problems 1)
if [[ -n $bad ]]; then
  printf '  %s\n' "$bad" >&2
  die "vendor/ does not match Cargo.lock ($(wc -l <<<"$bad") problem(s) above; delete vendor/ and rerun to re-vendor)"
fi
echo "$(wc -l <<<"$WANT") vendored crates match Cargo.lock, every file checked" >&2

if ((BUILD == 0)); then
  echo "vendor-check: OK (build skipped: --no-build)" >&2
  exit 0
fi

step "4/4 offline build from vendor/ (empty CARGO_HOME, fresh target dir)"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/cargo-home" "$scratch/target"
NET=()
if unshare -n true 2>/dev/null; then
  NET=(unshare -n)
  echo "inside a network namespace (unshare -n): no network at all" >&2
else
  echo "no network namespace here (unshare -n not permitted): relying on --frozen and the empty CARGO_HOME" >&2
fi
start=$SECONDS
# rustup's cargo proxy finds its toolchain through RUSTUP_HOME, which does not move with CARGO_HOME.
"${NET[@]}" env CARGO_HOME="$scratch/cargo-home" CARGO_TARGET_DIR="$scratch/target" \
  RUSTUP_HOME="${RUSTUP_HOME:-${HOME:-/root}/.rustup}" \
  cargo build --frozen --lib --bins \
  --config 'source.crates-io.replace-with="vendored-sources"' \
  --config "source.vendored-sources.directory=\"$VENDOR\"" \
  --config 'profile.dev.debug=0' ||
  die "the offline build from vendor/ failed (see cargo's message above)"
echo "offline build OK in $((SECONDS - start)) s" >&2
echo "vendor-check: OK" >&2
