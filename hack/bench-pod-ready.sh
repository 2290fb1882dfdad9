#!/usr/bin/env bash
# Benchmark (not a test): time from pod creation to Ready for a pod with 8 macvlan interfaces
# whose IPAM is nv-ipam, against the same pod whose 8 interfaces use Debian's host-local, in the
# same cluster run, and the share of that time spent in the IPAM plugin. See docs/cluster.md.
#
#   hack/cluster.sh up            # first (nv-ipam deployed; either variant)
#   hack/bench-pod-ready.sh [RUNS]   (default 10 pods per variant, alternating)
#
# Creation to Ready: the client's clock from just before the pod's POST (curl, so no kubectl
# start-up is counted) to `kubectl wait --for=condition=Ready` returning (a watch; it is started
# right after the POST, while the pod is being scheduled). IPAM time: the NADs name the IPAM
# plugin through a timing shim (hack/cluster/ipam-timer.c, installed by hack/cluster.sh as
# timed-nv-ipam and timed-host-local), which runs the real plugin and logs each call's start and
# end; the share is the sum of the pod's 8 IPAM ADD calls (Multus runs them one after another)
# over its creation-to-Ready time. One pod at a time; each is deleted (and its DELs done) before
# the next, and a first pod of each kind is a warm-up that is not counted.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Run inside the cluster's network namespace, with its environment.
if [[ -z ${NV_IPAM_CLUSTER_DIR:-} ]]; then
  exec "$ROOT/hack/cluster.sh" exec "$ROOT/hack/bench-pod-ready.sh" "$@"
fi
RUNS=${1:-10}
D=$NV_IPAM_CLUSTER_DIR
NS=bench
TIMING=$D/log/ipam-timing.log
read -ra NICS <<<"$NV_IPAM_CLUSTER_NICS"
k() { kubectl "$@"; }
log() { printf 'bench: %s\n' "$*" >&2; }

k get namespace "$NS" >/dev/null 2>&1 || k create namespace "$NS" >/dev/null
for _ in $(seq 1 300); do k -n "$NS" get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done

# 8 IPv4 IPPools and 8 pairs of NADs on the same masters: nv-ipam and host-local
{
  for i in 0 1 2 3 4 5 6 7; do
    cat <<EOF
---
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata: {name: bench$i, namespace: nv-ipam}
spec: {subnet: 192.168.$((50 + i)).0/24, perNodeBlockSize: 128, gateway: 192.168.$((50 + i)).1}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: bench-nv$i, namespace: $NS}
spec:
  config: '{"cniVersion": "1.0.0", "name": "bench-nv$i", "type": "macvlan", "master": "${NICS[$i]}", "mode": "bridge",
    "ipam": {"type": "timed-nv-ipam", "poolName": "bench$i", "confDir": "$NV_IPAM_CLUSTER_CONF_DIR"}}'
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: bench-hl$i, namespace: $NS}
spec:
  config: '{"cniVersion": "1.0.0", "name": "bench-hl$i", "type": "macvlan", "master": "${NICS[$i]}", "mode": "bridge",
    "ipam": {"type": "timed-host-local", "dataDir": "$D/cni/host-local-bench",
             "ranges": [[{"subnet": "192.168.$((70 + i)).0/24", "gateway": "192.168.$((70 + i)).1"}]]}}'
EOF
  done
} | k apply --server-side --field-manager=bench -f - >/dev/null
for i in 0 1 2 3 4 5 6 7; do
  k -n nv-ipam wait --for=jsonpath='{.status.allocations[0].nodeName}'="$NV_IPAM_CLUSTER_NODE" \
    "ippool/bench$i" --timeout=60s >/dev/null
done

SERVER=$(k config view --minify -o jsonpath='{.clusters[0].cluster.server}')
TOKEN=$(<"$D/pki/admin.token")

pod_json() { # name kind(nv|hl)
  local nets=() i
  for i in 0 1 2 3 4 5 6 7; do nets+=("bench-$2$i"); done
  jq -cn --arg name "$1" --arg nets "$(IFS=,; echo "${nets[*]}")" --arg image "$NV_IPAM_CLUSTER_BUSYBOX" '{
    apiVersion: "v1", kind: "Pod",
    metadata: {name: $name, annotations: {"k8s.v1.cni.cncf.io/networks": $nets}},
    spec: {terminationGracePeriodSeconds: 1,
           containers: [{name: "c", image: $image, imagePullPolicy: "Never", command: ["sleep", "1000000"]}]}}'
}

now() { date +%s.%N; }

# one_pod NAME KIND: prints "<ready s> <ipam s> <ipam calls>"
one_pod() {
  local name=$1 kind=$2 body t0 t1 plugin
  body=$(pod_json "$name" "$kind")
  [[ $kind == nv ]] && plugin=nv-ipam || plugin=host-local
  t0=$(now)
  curl -sf --noproxy '*' --cacert "$D/pki/ca.crt" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d "$body" "$SERVER/api/v1/namespaces/$NS/pods" >/dev/null
  k -n "$NS" wait --for=condition=Ready "pod/$name" --timeout=120s >/dev/null
  t1=$(now)
  k -n "$NS" delete pod "$name" --wait=true --timeout=120s >/dev/null
  awk -v t0="$t0" -v t1="$t1" -v p="$plugin" '$1 == "ADD" && $2 == p && $5 >= t0 && $6 <= t1 { s += $6 - $5; n++ }
    END { printf "%.4f %.4f %d\n", t1 - t0, s, n }' "$TIMING"
}

log "warm-up"
one_pod warm-nv nv >/dev/null
one_pod warm-hl hl >/dev/null
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for r in $(seq 1 "$RUNS"); do
  for kind in nv hl; do
    printf '%s %s\n' "$kind" "$(one_pod "bench-$kind-$r" "$kind")" >>"$results"
  done
  log "run $r/$RUNS done"
done

echo
echo "pod with 8 macvlan interfaces: creation -> Ready, $RUNS pods each (seconds)"
printf '%-12s %8s %8s %8s %14s %10s %8s\n' IPAM median min max 'IPAM (median)' 'IPAM share' calls
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for kind in nv hl; do
  col() { awk -v k="$kind" -v c="$1" '$1 == k { print $c }' "$results"; }
  ready=$(col 2 | median)
  ipam=$(col 3 | median)
  lo=$(col 2 | sort -n | head -n1)
  hi=$(col 2 | sort -n | tail -n1)
  calls=$(col 4 | median)
  awk -v n="$([[ $kind == nv ]] && echo nv-ipam || echo host-local)" -v m="$ready" -v lo="$lo" -v hi="$hi" \
    -v i="$ipam" -v c="$calls" 'BEGIN { printf "%-12s %8.3f %8.3f %8.3f %14.4f %9.1f%% %8d\n", n, m, lo, hi, i, 100 * i / m, c }'
done
k -n nv-ipam delete ippool bench0 bench1 bench2 bench3 bench4 bench5 bench6 bench7 --wait=false >/dev/null
k delete namespace "$NS" --wait=false >/dev/null
