#!/usr/bin/env bash
# nv-ipam demo: a standalone ipam-node, three "pods" (network namespaces) on two Linux
# bridges wired by Debian's real `bridge` CNI plugin, with nv-ipam as its IPAM.
#
#   network demo-a  bridge <run>a  two IPPools, dual stack:   192.168.100.0/24 + fd00:100::/64
#   network demo-b  bridge <run>b  two CIDRPools, dual stack: 192.168.200.0/24 (/26 per node)
#                                                             + fd00:200::/48 (/64 per node)
#
# Touches nothing of the host's networking beyond its own bridges, veths and namespaces: the
# bridges get a fixed MAC and no address, isGateway/ipMasq are off (no ip_forward, no
# iptables). All state (store, socket, pools file, plugin log) is in a temp dir. Everything
# is removed on exit, Ctrl-C or SIGTERM.
#
# Usage: sudo ./hack/demo.sh        (needs root, cargo, and apt for containernetworking-plugins)
set -euo pipefail

cd "$(dirname "$0")/.."
[[ $EUID -eq 0 ]] || { echo "demo.sh: run as root (it creates network namespaces and bridges)" >&2; exit 1; }

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# ---------------------------------------------------------------- build and dependencies
say "building release binaries"
cargo build --release --locked
if [[ ! -x /usr/lib/cni/bridge ]] || ! command -v jq >/dev/null || ! command -v ping >/dev/null ||
    ! command -v ip >/dev/null; then
    say "installing Debian's CNI plugins, jq, iproute2 and ping"
    # a fresh machine or container has empty package lists: install would find nothing
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        containernetworking-plugins jq iproute2 iputils-ping
fi

# ---------------------------------------------------------------- names, temp dir, cleanup
RUN=$(printf '%04x' $((RANDOM % 65536)))
TMP=$(mktemp -d "/tmp/nv-ipam-demo-$RUN.XXXXXX")
BR_A="nvd${RUN}a"
BR_B="nvd${RUN}b"
PODS=(pod1 pod2 pod3)
SOCK="$TMP/daemon.sock"
DAEMON_PID=""
declare -A ADDED=()     # "pod net ifname" -> result file, for attachments not yet deleted

ns() { echo "nvdemo-$RUN-$1"; }

cleanup() {
    local rc=$?
    trap - EXIT
    trap '' INT TERM                  # finish cleaning up even if interrupted again
    set +e
    for key in "${!ADDED[@]}"; do            # best-effort DEL of anything still attached
        read -r pod net ifname <<<"$key"
        cni DEL "$pod" "$net" "$ifname" "${ADDED[$key]}" >/dev/null 2>&1
    done
    if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID"
        for _ in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$DAEMON_PID" 2>/dev/null
    fi
    for pod in "${PODS[@]}"; do ip netns del "$(ns "$pod")" 2>/dev/null; done
    ip link del "$BR_A" 2>/dev/null
    ip link del "$BR_B" 2>/dev/null
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT     # the EXIT trap cleans up, with the signal's exit status
trap 'exit 143' TERM

# ---------------------------------------------------------------- pools and daemon
cat >"$TMP/pools.yaml" <<'EOF'
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata: {name: demo-v4, namespace: kube-system}
spec: {subnet: 192.168.100.0/24, perNodeBlockSize: 100, gateway: 192.168.100.1}
---
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata: {name: demo-v6, namespace: kube-system}
spec: {subnet: "fd00:100::/64", perNodeBlockSize: 100, gateway: "fd00:100::1"}
---
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: CIDRPool
metadata: {name: demo-cidr-v4, namespace: kube-system}
spec: {cidr: 192.168.200.0/24, perNodeNetworkPrefix: 26, gatewayIndex: 1}
---
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: CIDRPool
metadata: {name: demo-cidr-v6, namespace: kube-system}
spec: {cidr: "fd00:200::/48", perNodeNetworkPrefix: 64, gatewayIndex: 1}
EOF

say "starting ipam-node (node demo-node, state in $TMP)"
./target/release/ipam-node --node-name demo-node \
    --bind-address "unix://$SOCK" --store-file "$TMP/state/store" --pools-file "$TMP/pools.yaml" \
    --cni-skip-nv-ipam-binary-copy --cni-conf-dir "$TMP/nv-ipam.d" --cni-log-file "$TMP/nv-ipam-cni.log" \
    2>"$TMP/ipam-node.log" &
DAEMON_PID=$!
for _ in $(seq 200); do                      # up to 10 s for the socket to appear
    [[ -S $SOCK ]] && break
    kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$TMP/ipam-node.log" >&2; exit 1; }
    sleep 0.05
done
[[ -S $SOCK ]] || { echo "ipam-node did not create $SOCK" >&2; cat "$TMP/ipam-node.log" >&2; exit 1; }

mkdir -p "$TMP/bin"
ln -s "$PWD/target/release/nv-ipam" "$TMP/bin/nv-ipam"
CNI_PATH_DIRS="$TMP/bin:/usr/lib/cni"      # our nv-ipam first, then Debian's plugins

# ---------------------------------------------------------------- bridges (fixed MAC, no address)
ip link add "$BR_A" address 02:00:00:de:00:0a type bridge
ip link add "$BR_B" address 02:00:00:de:00:0b type bridge
ip link set "$BR_A" up
ip link set "$BR_B" up

# The network config the runtime would hand to bridge; bridge forwards it to nv-ipam.
netconf() { # net
    local bridge pools ptype
    case $1 in
        demo-a) bridge=$BR_A pools="demo-v4,demo-v6" ptype=IPPool ;;
        demo-b) bridge=$BR_B pools="demo-cidr-v4,demo-cidr-v6" ptype=CIDRPool ;;
    esac
    jq -n --arg name "$1" --arg br "$bridge" --arg pools "$pools" --arg ptype "$ptype" \
        --arg sock "unix://$SOCK" --arg tmp "$TMP" '{
        cniVersion: "1.0.0", name: $name, type: "bridge", bridge: $br,
        isGateway: false, isDefaultGateway: false, ipMasq: false, hairpinMode: false,
        ipam: {type: "nv-ipam", poolName: $pools, poolType: $ptype, daemonSocket: $sock,
               confDir: ($tmp + "/nv-ipam.d"), logFile: ($tmp + "/nv-ipam-cni.log"), logLevel: "info"}}'
}

cni() { # CMD pod net ifname [prevResult-file]
    local cmd=$1 pod=$2 net=$3 ifname=$4 prev=${5:-} conf
    conf=$(netconf "$net")
    if [[ -n $prev && -s $prev ]]; then conf=$(jq --slurpfile p "$prev" '. + {prevResult: $p[0]}' <<<"$conf"); fi
    CNI_COMMAND=$cmd CNI_CONTAINERID="demo-$RUN-$pod" CNI_NETNS="/run/netns/$(ns "$pod")" \
        CNI_IFNAME=$ifname CNI_PATH=$CNI_PATH_DIRS \
        CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=$pod" \
        /usr/lib/cni/bridge <<<"$conf"
}

# ---------------------------------------------------------------- pods
ATTACH=("pod1 demo-a eth0" "pod2 demo-a eth0" "pod3 demo-a eth0" "pod1 demo-b net1" "pod2 demo-b net1")
say "creating ${#PODS[@]} pods and ${#ATTACH[@]} attachments (CNI ADD via bridge -> nv-ipam)"
for pod in "${PODS[@]}"; do ip netns add "$(ns "$pod")"; done
for a in "${ATTACH[@]}"; do
    read -r pod net ifname <<<"$a"
    out="$TMP/result-$pod-$ifname.json"
    if ! cni ADD "$pod" "$net" "$ifname" >"$out"; then
        echo "ADD $pod $net $ifname failed:" >&2; cat "$out" >&2; exit 1
    fi
    ADDED["$a"]=$out
done

say "what the CNI results say, and what the namespaces really have"
printf '%-5s %-7s %-7s %-42s %-28s %s\n' POD NETWORK IFNAME "ADDRESSES (CNI result)" GATEWAYS "ip -n <pod> addr (global)"
for a in "${ATTACH[@]}"; do
    read -r pod net ifname <<<"$a"
    res="$TMP/result-$pod-$ifname.json"
    addrs=$(jq -r '[.ips[].address] | join(" ")' "$res")
    gws=$(jq -r '[.ips[].gateway // "-"] | join(" ")' "$res")
    real=$(ip -n "$(ns "$pod")" -o addr show dev "$ifname" scope global | awk '{print $4}' | sort | tr '\n' ' ')
    printf '%-5s %-7s %-7s %-42s %-28s %s\n' "$pod" "$net" "$ifname" "$addrs" "$gws" "$real"
    for ip in $addrs; do
        grep -qw -- "$ip" <<<"$real" || { echo "address $ip of $pod/$ifname is not on the interface" >&2; exit 1; }
    done
done

# ---------------------------------------------------------------- traffic over the bridges
addr_of() { jq -r --arg fam "$2" '[.ips[].address | select((contains(":")) == ($fam == "6"))][0] | split("/")[0]' \
    "$TMP/result-$1.json"; }
ping_check() { # from-pod to-ip family
    local i
    for i in $(seq 10); do  # IPv6 may need a moment for duplicate address detection; bounded
        if ip netns exec "$(ns "$1")" ping "-$3" -c 1 -W 1 "$2" >/dev/null 2>&1; then
            echo "  $1 -> $2 ok (attempt $i)"; return 0
        fi
    done
    echo "  $1 -> $2 FAILED" >&2; return 1
}
say "pinging between pods (inside the namespaces only)"
ping_check pod1 "$(addr_of pod2-eth0 4)" 4
ping_check pod1 "$(addr_of pod3-eth0 6)" 6
ping_check pod2 "$(addr_of pod1-net1 4)" 4
ping_check pod2 "$(addr_of pod1-net1 6)" 6

# ---------------------------------------------------------------- teardown
say "CNI DEL for every attachment"
for a in "${ATTACH[@]}"; do
    read -r pod net ifname <<<"$a"
    cni DEL "$pod" "$net" "$ifname" "${ADDED[$a]}"
    unset "ADDED[$a]"
    echo "  DEL $pod $net $ifname ok"
done
live=$(grep -c '"op":"reserve"' "$TMP/state/store" || true)
echo "  store journal: $live reserve lines, $(grep -c '"op":"release"' "$TMP/state/store" || true) release lines"

say "stopping ipam-node with SIGTERM"
kill -TERM "$DAEMON_PID"
for _ in $(seq 200); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$DAEMON_PID" 2>/dev/null; then echo "ipam-node did not stop within 10 s" >&2; exit 1; fi
wait "$DAEMON_PID" && echo "  ipam-node exited cleanly" || echo "  ipam-node exited with $?"
DAEMON_PID=""
say "done; cleaning up namespaces, bridges and $TMP"
