#!/usr/bin/env bash
# The end-to-end tests: bring up the cluster of hack/cluster.sh with nothing deployed, run
# tests/e2e_cluster.rs inside its network namespace (the tests install nv-ipam themselves, as a
# user does), print "N passed, N failed", take the cluster down and check that the host is as
# it was. Called by hack/test.sh; see docs/cluster.md.
#
#   hack/e2e.sh [--image FILE] [-- TEST-FILTER...]
#     --image FILE   the nv-ipam image archive (default: hack/build-image.sh dist)
#     TEST-FILTER    passed to the test binary (e.g. t04 to run one test)
#   NV_IPAM_CLUSTER_REPLACE=1   take down a cluster left from an earlier run first (CI sets it)
#   NV_IPAM_E2E_KEEP=1          leave the cluster up afterwards (for debugging; down by hand)
#
# Exit status: 0 when every test passed and the host was restored.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
log() { printf 'e2e: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

UP_ARGS=()
FILTER=()
while (($#)); do
  case $1 in
    --image) UP_ARGS+=(--image "${2:?--image needs a file}"); shift 2 ;;
    --image=*) UP_ARGS+=("$1"); shift ;;
    --) shift; FILTER=("$@"); break ;;
    *) die "unknown argument '$1' (usage: hack/e2e.sh [--image FILE] [-- TEST-FILTER...])" ;;
  esac
done

D=/var/lib/nv-ipam-cluster
NS=nv-ipam-e2e
if [[ -e $D || -e /run/netns/$NS ]]; then
  if [[ -n ${NV_IPAM_CLUSTER_REPLACE:-} ]]; then
    log "a cluster from an earlier run is up; taking it down first (NV_IPAM_CLUSTER_REPLACE)"
    hack/cluster.sh down
  else
    die "a cluster is up ($D): take it down with hack/cluster.sh down, or set NV_IPAM_CLUSTER_REPLACE=1"
  fi
fi

# What the host looks like before, in the places the cluster touches (compared after down).
host_snapshot() {
  local p s
  echo "## netns"
  ip netns list | awk '{ print $1 }' | sort
  # links the cluster could leak into the host namespace (other test suites' links are not ours)
  echo "## links"
  ip -o link show | awk -F': ' '{ print $2 }' | sed 's/@.*//' | { grep -E '^(br0|nic[0-9]|veth|cni|mac)' || true; } | sort
  echo "## mounts"
  awk '{ print $5 }' /proc/self/mountinfo |
    { grep -E "^($D|/var/lib/kubelet|/run/containerd|/run/netns/cni-|/var/lib/cni)" || true; } | sort
  echo "## paths"
  for p in "$D" /var/lib/kubelet /var/lib/cni /run/containerd /var/log/pods /var/log/containers \
    /usr/libexec/kubernetes /opt/containerd /run/nri /opt/cni /etc/cni; do
    if [[ -e $p ]]; then echo "$p"; fi
  done
  echo "## cgroups"
  find /sys/fs/cgroup -maxdepth 2 -name "$NS" 2>/dev/null | sort
  echo "## sysctls"
  for s in vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops \
    kernel.keys.root_maxkeys kernel.keys.root_maxbytes; do
    echo "$s=$(sysctl -n "$s")"
  done
  echo "## iptables"
  { iptables-save 2>/dev/null || true; } | { grep -v '^#' || true; } | sed 's/\[[0-9]*:[0-9]*\]//'
  { ip6tables-save 2>/dev/null || true; } | { grep -v '^#' || true; } | sed 's/\[[0-9]*:[0-9]*\]//'
  # every daemon of the cluster and every shim names the state dir on its command line (the
  # pattern comes from a file so that grep's own command line does not match it)
  echo "## processes"
  { grep -l -s -F -f <(echo "$D") /proc/[0-9]*/cmdline || true; } | sed 's|/cmdline$||' | sort
}

# The test binary is built before the cluster starts, so that compiling does not compete with it.
log "building the test binary"
cargo test --locked --test e2e_cluster --no-run

before=$(mktemp)
after=$(mktemp)
out=$(mktemp)
trap 'rm -f "$before" "$after" "$out"' EXIT
host_snapshot >"$before"

t0=$SECONDS
rc=0
if ! hack/cluster.sh up --deploy none "${UP_ARGS[@]}"; then
  log "the cluster did not come up"
  rc=1
fi
up_s=$((SECONDS - t0))

passed=0
failed=0
if ((rc == 0)); then
  t1=$SECONDS
  set +e
  hack/cluster.sh exec cargo test --locked --test e2e_cluster -- --ignored --test-threads=1 "${FILTER[@]}" 2>&1 |
    tee "$out"
  test_rc=${PIPESTATUS[0]}
  set -e
  tests_s=$((SECONDS - t1))
  summary=$(grep -E '^test result:' "$out" | tail -n1 || true)
  passed=$(sed -n 's/.* \([0-9]*\) passed.*/\1/p' <<<"$summary")
  failed=$(sed -n 's/.* \([0-9]*\) failed.*/\1/p' <<<"$summary")
  passed=${passed:-0}
  failed=${failed:-0}
  if ((test_rc != 0 && failed == 0)); then
    failed=1 # the binary failed before or after the tests (build, panic outside a test)
  fi
  ((test_rc == 0)) || rc=1
  if ((rc != 0)); then
    log "status and logs of the cluster:"
    hack/cluster.sh status >&2 || true
    for f in kubelet containerd multus nv-ipam-cni; do
      [[ -s $D/log/$f.log ]] && { log "---- last 30 lines of $D/log/$f.log"; tail -n 30 "$D/log/$f.log" >&2; }
    done
    hack/cluster.sh kubectl -n nv-ipam logs -l app.kubernetes.io/name=nv-ipam --tail=30 --prefix >&2 || true
  else
    hack/cluster.sh status >&2 || true
  fi
fi

if [[ -n ${NV_IPAM_E2E_KEEP:-} ]]; then
  log "NV_IPAM_E2E_KEEP: the cluster stays up (hack/cluster.sh down when done)"
else
  t2=$SECONDS
  hack/cluster.sh down || rc=1
  down_s=$((SECONDS - t2))
  host_snapshot >"$after"
  if ! diff -u "$before" "$after" >&2; then
    log "the host is not as before the cluster (diff above: - before up, + after down)"
    rc=1
  else
    log "host restored (netns, links, mounts, paths, cgroups, sysctls, iptables, processes)"
  fi
  log "up ${up_s} s, tests ${tests_s:-0} s, down ${down_s} s"
fi
printf '%d passed, %d failed\n' "$passed" "$failed"
exit "$rc"
