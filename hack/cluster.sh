#!/usr/bin/env bash
# A single-node Kubernetes cluster inside a network namespace, for the end-to-end tests, the
# pod-Ready benchmark and trying nv-ipam by hand. See docs/cluster.md.
#
#   hack/cluster.sh up [--deploy webhook|no-webhook|none] [--image FILE]
#       Start etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd and
#       kubelet (Kubernetes v1.37.2 from hack/build-testbins.sh, Debian's containerd and runc)
#       in network namespace nv-ipam-e2e, with Multus (thin plugin) -> Debian's CNI plugins
#       for pod networking (and upstream's macvlan v1.9.0 as type macvlan-v1.9.0), load the
#       nv-ipam image (--image, default: hack/build-image.sh dist) and the local pause and
#       busybox images, install the NetworkAttachmentDefinition CRD, and deploy nv-ipam
#       (default: the webhook variant, certificates made here). Returns once everything is
#       Ready; on failure it tears down what it started.
#   hack/cluster.sh down
#       Stop everything and put the host back as `up` found it. Safe to run twice, after a
#       failed `up` or after a crash: it works from the state file and from the fixed names.
#   hack/cluster.sh kubectl ARGS...     kubectl inside the namespace, as cluster admin
#   hack/cluster.sh exec CMD ARGS...    CMD inside the namespace, KUBECONFIG etc. exported
#   hack/cluster.sh shell               an interactive shell inside the namespace
#   hack/cluster.sh deploy webhook|no-webhook|remove
#   hack/cluster.sh render webhook|no-webhook   the manifests deploy applies (JSON List)
#   hack/cluster.sh status              nodes, pods and each component's RSS
#   hack/cluster.sh stop|start|restart kubelet|containerd|...   (used by the lifecycle tests)
#   hack/cluster.sh ctr ARGS...         containerd's ctr on the cluster's socket, namespace k8s.io
#
# Needs root, cgroup v1 (this machine type), and the Debian packages hack/test.sh installs.
# One cluster per machine: the names below are fixed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/pki.sh
source "$ROOT/hack/lib/pki.sh"
SELF=$ROOT/hack/cluster.sh

# -- fixed names and addresses (all of them exist only inside the namespace) -----------------
NS=nv-ipam-e2e                 # network namespace, /run/netns/$NS
D=/var/lib/nv-ipam-cluster     # state dir
# The node's "host root": the host paths of the shipped manifests (/opt/cni/bin,
# /etc/cni/net.d, /var/lib/cni, /var/log) live under it, and containerd reads its CNI dirs there.
HOSTROOT=$D/host
CG=nv-ipam-e2e                 # cgroup (v1: every hierarchy) holding every process of the cluster
NODE=nv-ipam-e2e               # the node's name
BR=br0                         # bridge: node IP, pod gateway, apiserver address
NODE_IP=10.203.0.1
POD_SUBNET=10.203.0.0/24       # pods get .10-.250 (host-local)
SVC_CIDR=10.0.0.0/24
SVC_VIP=10.0.0.1               # the `kubernetes` Service
NICS=8                         # macvlan masters nic0..nic7 (veth pairs; peers nicN-peer)
PAUSE_IMAGE=localhost/pause:e2e
BUSYBOX_IMAGE=localhost/busybox:e2e
NV_IPAM_ROLLOUT_TAG=e2e-rollout # second tag of the nv-ipam image, for the DaemonSet rollout test
APISERVER_PORT=6443
# Six sysctls kubelet sets (host-global, not per namespace): recorded at up, restored at down.
KUBELET_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# Host paths kubelet, containerd and libcni use whatever their configuration says; removed at
# down when up did not find them.
HOST_PATHS=(/var/lib/kubelet /var/lib/cni /run/containerd /var/log/pods /var/log/containers
  /usr/libexec/kubernetes /opt/containerd /run/nri)
START_TIMEOUT=${NV_IPAM_CLUSTER_START_TIMEOUT:-120} # s, per daemon (2 busy cores)

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

NSX=(nsenter "--net=/run/netns/$NS" --)
NOPROXY="127.0.0.1,localhost,$NODE_IP,$SVC_VIP,$POD_SUBNET,$SVC_CIDR"
export NO_PROXY="$NOPROXY${NO_PROXY:+,$NO_PROXY}" no_proxy="$NOPROXY${no_proxy:+,$no_proxy}"

# -- the in-cgroup launcher ------------------------------------------------------------------
# `hack/cluster.sh __run NAME CMD...` (internal): put this process into $CG/system in every
# cgroup v1 hierarchy, then exec CMD in the namespace. Everything a daemon forks (containerd's
# shims, the containers under kubelet's $CG/kubepods) stays inside $CG, so `down` finds every
# process of the cluster there, even after a crash.
# mount points of FSTYPE (mountinfo: the type follows the "-" that ends the optional fields)
mounts_of_type() {
  awk -v t="$1" '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == t) print $5; break } }' /proc/self/mountinfo
}
cgroup_v1_mounts() { mounts_of_type cgroup; }
# the v1 hierarchy that has controller CTRL (its super options name it: rw,cpu or rw,cpu,cpuacct)
v1_mount_for() {
  awk -v c="$1" '{ for (i = 7; i <= NF; i++) if ($i == "-") {
      if ($(i + 1) == "cgroup") { n = split($(i + 3), o, ","); for (j = 1; j <= n; j++) if (o[j] == c) { print $5; exit } }
      break } }' /proc/self/mountinfo
}
if [[ ${1:-} == __run ]]; then
  shift 2
  for m in $(cgroup_v1_mounts); do
    echo $$ >"$m/$CG/system/cgroup.procs"
  done
  exec "${NSX[@]}" "$@"
fi

# -- helpers -----------------------------------------------------------------------------------
alive() {
  local st
  [[ -r /proc/$1/stat ]] || return 1
  st=$(sed 's/^.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $st && $st != Z && $st != X ]]
}

# ours PID NAME: PID is alive and runs the program NAME (guards against PID reuse)
ours() {
  alive "$1" && tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | head -n1 | grep -q -- "$2\$"
}

state_add() { printf '%s\n' "$*" >>"$D/state"; }
state_get() { [[ -f $D/state ]] && awk -v k="$1" '$1 == k { $1 = ""; sub(/^ /, ""); print }' "$D/state"; }

# wait_until SECONDS WHAT CMD...: poll CMD until it succeeds
wait_until() {
  local secs=$1 what=$2 dl=$((SECONDS + $1))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= dl)); then
      log "timed out after $secs s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

BIN=""
load_env() {
  [[ -f $D/env ]] || die "no cluster is up ($D/env missing): run hack/cluster.sh up"
  # shellcheck source=/dev/null
  source "$D/env"
}

kc() { "${NSX[@]}" "$BIN/kubectl" --kubeconfig "$D/admin.kubeconfig" "$@"; }
kc_quiet() { kc "$@" >/dev/null 2>&1; }
ctr_() { ctr --address "$D/containerd.sock" -n k8s.io "$@"; }

# start_daemon NAME PROGRAM ARGS...: run it in $CG/system inside the namespace, in its own session
start_daemon() {
  local name=$1
  shift
  {
    printf 'CMD=('
    printf ' %q' "$@"
    printf ' )\n'
  } >"$D/run/$name.cmd"
  printf '\n==== start %s ====\n' "$(date -u +%FT%TZ)" >>"$D/log/$name.log"
  # setsid: not a process-group leader here, so it does not fork and $! is the daemon's PID.
  # No inherited lock fd (7).
  setsid "$SELF" __run "$name" "$@" </dev/null >>"$D/log/$name.log" 2>&1 7>&- &
  echo $! >"$D/run/$name.pid"
}

restart_daemon() { # NAME: start it again with its recorded command line
  local -a CMD
  # shellcheck source=/dev/null
  source "$D/run/$1.cmd"
  start_daemon "$1" "${CMD[@]}"
}

# stop_daemon NAME [TIMEOUT]: SIGTERM, SIGKILL after TIMEOUT s (default 15)
stop_daemon() {
  local name=$1 t=${2:-15} pid prog dl
  [[ -s $D/run/$name.pid ]] || return 0
  pid=$(<"$D/run/$name.pid")
  prog=$(head -n1 "$D/run/$name.cmd" | sed 's/^CMD=( \([^ ]*\).*/\1/')
  if ours "$pid" "${prog##*/}"; then
    kill -TERM "$pid" 2>/dev/null || true
    dl=$((SECONDS + t))
    while alive "$pid" && ((SECONDS < dl)); do sleep 0.1; done
    if alive "$pid"; then
      log "$name (pid $pid) ignored SIGTERM for $t s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while alive "$pid"; do sleep 0.1; done
    fi
  fi
  rm -f "$D/run/$name.pid"
}

daemon_alive() { [[ -s $D/run/$1.pid ]] && alive "$(<"$D/run/$1.pid")"; }

# wait_daemon SECONDS NAME WHAT CMD...: like wait_until, but give up at once when NAME exits
wait_daemon() {
  local secs=$1 name=$2 what=$3 dl=$((SECONDS + $1))
  shift 3
  until "$@" >/dev/null 2>&1; do
    if ! daemon_alive "$name"; then
      log "$name exited while waiting for $what; last lines of $D/log/$name.log:"
      tail -n 30 "$D/log/$name.log" >&2
      return 1
    fi
    if ((SECONDS >= dl)); then
      log "timed out after $secs s waiting for $what; last lines of $D/log/$name.log:"
      tail -n 30 "$D/log/$name.log" >&2
      return 1
    fi
    sleep 0.2
  done
}

# -- preflight -------------------------------------------------------------------------------------
preflight() {
  ((EUID == 0)) || die "run as root (it creates a network namespace, cgroups and mounts)"
  local t
  for t in nsenter ip iptables containerd containerd-shim-runc-v2 runc ctr gcc python3 openssl curl jq \
    setsid flock awk base64 busybox; do
    command -v "$t" >/dev/null 2>&1 || die "'$t' not found (hack/test.sh installs the Debian packages: containerd runc busybox-static iptables gcc libc6-dev ...)"
  done
  # kubelet taints the node with disk-pressure below its eviction threshold (1% here) and no
  # pod is scheduled: say so now instead of letting every test time out on Pending pods.
  local size_kib free_kib need_kib
  read -r size_kib free_kib < <(df -Pk /var/lib | awk 'NR == 2 { print $2, $4 }')
  need_kib=$((size_kib / 50)) # twice the threshold, so that the run's own writes fit
  ((need_kib > 3 * 1024 * 1024)) || need_kib=$((3 * 1024 * 1024))
  if ((free_kib < need_kib)); then
    die "only $((free_kib / 1024)) MiB free on the file system of /var/lib, the cluster needs $((need_kib / 1024)) MiB (kubelet's disk-pressure threshold is 1% of it; state, images, logs): free some space"
  fi
  [[ -e /usr/lib/cni/bridge && -e /usr/lib/cni/macvlan && -e /usr/lib/cni/host-local ]] ||
    die "Debian's CNI plugins are missing from /usr/lib/cni (apt-get install containernetworking-plugins)"
  # cgroup v1: kubelet v1.37 runs on it with failCgroupV1=false, and the launcher and teardown
  # use the v1 hierarchies. A cgroup v2-only host is not supported by this script.
  if [[ $(stat -fc %T /sys/fs/cgroup) == cgroup2fs ]]; then
    die "this host uses cgroup v2 only (/sys/fs/cgroup is cgroup2); hack/cluster.sh supports the cgroup v1 hierarchies of the CI machine type (see docs/cluster.md, 'cgroups')"
  fi
  local c
  for c in cpu cpuacct cpuset memory devices freezer pids; do
    [[ -n $(v1_mount_for "$c") ]] ||
      die "cgroup v1 controller '$c' is not mounted; hack/cluster.sh needs cpu, cpuacct, cpuset, memory, devices, freezer and pids (see docs/cluster.md)"
  done
  # ipam.confDir rule of the nv-ipam plugin: every component of $D a real, root-owned directory
  # that group and other cannot write.
  local p=""
  local part
  IFS=/ read -ra parts <<<"${D#/}"
  for part in "${parts[@]::${#parts[@]}-1}"; do
    p+=/$part
    [[ -d $p && ! -L $p ]] || die "$p must be a real directory (not a symlink)"
    [[ $(stat -c %u "$p") == 0 ]] || die "$p must be owned by root"
    (($(stat -c 0%a "$p") & 022)) && die "$p must not be group/other-writable"
  done
  return 0
}

# -- network namespace ------------------------------------------------------------------------------
setup_netns() {
  state_add netns "$NS"
  ip netns add "$NS"
  local n=(ip -n "$NS")
  "${n[@]}" link set lo up
  "${n[@]}" link add "$BR" type bridge
  "${n[@]}" addr add "$NODE_IP/${POD_SUBNET#*/}" dev "$BR"
  "${n[@]}" link set "$BR" up
  local i
  for ((i = 0; i < NICS; i++)); do
    "${n[@]}" link add "nic$i" type veth peer name "nic$i-peer"
    "${n[@]}" link set "nic$i" up
    "${n[@]}" link set "nic$i-peer" up
  done
  # A process in the namespace that dials a Service VIP needs a route for connect() to get as
  # far as the nat OUTPUT hook; pods route through the node IP anyway.
  "${n[@]}" route add "$SVC_CIDR" dev "$BR"
  # The `kubernetes` Service without kube-proxy: its VIP to the apiserver, for pods
  # (PREROUTING) and for processes of the namespace (OUTPUT). Webhook Services need no rule:
  # kube-apiserver runs with --enable-aggregator-routing and calls a Service's ready endpoints.
  local ipt=("${NSX[@]}" iptables -w 5 -t nat)
  "${ipt[@]}" -N NV-IPAM-E2E-SERVICES
  "${ipt[@]}" -A NV-IPAM-E2E-SERVICES -d "$SVC_VIP/32" -p tcp --dport 443 \
    -j DNAT --to-destination "$NODE_IP:$APISERVER_PORT"
  "${ipt[@]}" -A PREROUTING -j NV-IPAM-E2E-SERVICES
  "${ipt[@]}" -A OUTPUT -j NV-IPAM-E2E-SERVICES
}

# -- cgroups ------------------------------------------------------------------------------------------
setup_cgroups() {
  state_add cgroup "$CG"
  local m
  for m in $(cgroup_v1_mounts); do
    mkdir -p "$m/$CG/system"
    if [[ -f $m/cpuset.cpus ]]; then
      # a new cpuset cgroup starts empty; attaching a task needs cpus and mems
      cat "$m/cpuset.cpus" >"$m/$CG/cpuset.cpus"
      cat "$m/cpuset.mems" >"$m/$CG/cpuset.mems"
      cat "$m/cpuset.cpus" >"$m/$CG/system/cpuset.cpus"
      cat "$m/cpuset.mems" >"$m/$CG/system/cpuset.mems"
    fi
  done
}

# -- certificates, tokens, kubeconfigs -----------------------------------------------------------
setup_pki() (
  mkdir -p "$D/pki"
  cd "$D/pki"
  pki_ca ca nv-ipam-e2e-ca
  pki_leaf apiserver /CN=kube-apiserver ca \
    "subjectAltName=IP:$NODE_IP,IP:$SVC_VIP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
    'extendedKeyUsage=serverAuth' 'keyUsage=critical,digitalSignature' 'basicConstraints=critical,CA:FALSE'
  # The webhook's serving certificate, as a user without cert-manager makes one: its own CA,
  # the Service's DNS names (the apiserver verifies <service>.<namespace>.svc).
  pki_ca webhook-ca nv-ipam-webhook-ca
  pki_leaf webhook /CN=nv-ipam-webhook.nv-ipam.svc webhook-ca \
    'subjectAltName=DNS:nv-ipam-webhook.nv-ipam.svc,DNS:nv-ipam-webhook.nv-ipam.svc.cluster.local' \
    'extendedKeyUsage=serverAuth' 'keyUsage=critical,digitalSignature' 'basicConstraints=critical,CA:FALSE'
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out sa.key
  openssl pkey -in sa.key -pubout -out sa.pub
  openssl rand -hex 24 >admin.token
  echo "$(<admin.token),admin,nv-ipam-e2e-admin,\"system:masters,system:authenticated\"" >tokens.csv
  chmod 600 ./*.key admin.token tokens.csv
) 2>>"$D/log/openssl.log"

write_kubeconfig() { # file
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: nv-ipam-e2e
  cluster:
    server: https://$NODE_IP:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$D/pki/ca.crt")
users:
- name: admin
  user:
    token: $(<"$D/pki/admin.token")
contexts:
- name: nv-ipam-e2e
  context:
    cluster: nv-ipam-e2e
    user: admin
current-context: nv-ipam-e2e
EOF
  chmod 600 "$1"
}

# -- control plane -------------------------------------------------------------------------------
start_control_plane() {
  start_daemon etcd "$BIN/etcd" --name "$NODE" --data-dir "$D/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "$NODE=http://127.0.0.1:2380" \
    --unsafe-no-fsync --heartbeat-interval=10 --election-timeout=100 --log-level=warn
  wait_daemon 30 etcd "etcd health" "${NSX[@]}" curl -sf --max-time 2 http://127.0.0.1:2379/health
  start_daemon kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers=http://127.0.0.1:2379 \
    --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$APISERVER_PORT" \
    --tls-cert-file="$D/pki/apiserver.crt" --tls-private-key-file="$D/pki/apiserver.key" \
    --cert-dir="$D/pki/apiserver-certs" \
    --client-ca-file="$D/pki/ca.crt" --token-auth-file="$D/pki/tokens.csv" \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$D/pki/sa.pub" --service-account-signing-key-file="$D/pki/sa.key" \
    --service-cluster-ip-range="$SVC_CIDR" \
    --authorization-mode=Node,RBAC \
    --allow-privileged=true \
    --kubelet-preferred-address-types=InternalIP \
    --enable-aggregator-routing=true \
    --profiling=false --v=1
  local url=https://$NODE_IP:$APISERVER_PORT
  wait_daemon "$START_TIMEOUT" kube-apiserver "$url/readyz" "${NSX[@]}" curl -sf --max-time 5 \
    --cacert "$D/pki/ca.crt" -H "Authorization: Bearer $(<"$D/pki/admin.token")" "$url/readyz"
  local common=(--kubeconfig="$D/admin.kubeconfig" --authentication-kubeconfig="$D/admin.kubeconfig"
    --authorization-kubeconfig="$D/admin.kubeconfig" --leader-elect=false --bind-address=127.0.0.1
    --secure-port=0 --profiling=false --v=1)
  start_daemon kube-controller-manager "$BIN/kube-controller-manager" "${common[@]}" \
    --service-account-private-key-file="$D/pki/sa.key" --root-ca-file="$D/pki/ca.crt" \
    --cluster-signing-cert-file="$D/pki/ca.crt" --cluster-signing-key-file="$D/pki/ca.key" \
    --use-service-account-credentials=false
  start_daemon kube-scheduler "$BIN/kube-scheduler" "${common[@]}"
}

# -- containerd -------------------------------------------------------------------------------------
write_containerd_config() {
  cat >"$D/containerd/config.toml" <<EOF
# containerd 1.6 (Debian bookworm) for the end-to-end cluster: every path in the state dir.
version = 2
root = "$D/containerd/root"
state = "$D/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$D/containerd.sock"

[ttrpc]
  address = "$D/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$D/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Mandatory here: without CAP_SYS_RESOURCE no process may lower oom_score_adj, which pause
  # (-998) and system-node-critical pods ask for; clamp them to containerd's own value.
  restrict_oom_score_adj = true
  # pod network namespaces under the state dir instead of /run/netns
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$D/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$HOSTROOT/opt/cni/bin"
    conf_dir = "$HOSTROOT/etc/cni/net.d"
    max_conf_num = 1
EOF
}

start_containerd() {
  start_daemon containerd "$(command -v containerd)" --config "$D/containerd/config.toml" --log-level warn
  wait_daemon 60 containerd "containerd's socket" ctr_ version
}

# -- CNI: bin dir, Multus, the pod network ---------------------------------------------------------
setup_cni() {
  install -d -m 0755 "$HOSTROOT" "$HOSTROOT/opt" "$HOSTROOT/opt/cni" "$HOSTROOT/opt/cni/bin" "$HOSTROOT/etc" \
    "$HOSTROOT/etc/cni" "$HOSTROOT/etc/cni/net.d" "$HOSTROOT/var" "$HOSTROOT/var/lib" "$HOSTROOT/var/lib/cni" \
    "$HOSTROOT/var/log"
  local bin=$HOSTROOT/opt/cni/bin p
  for p in /usr/lib/cni/*; do ln -sfn "$p" "$bin/${p##*/}"; done
  install -m 0755 "$BIN/multus" "$bin/multus"
  # Debian's plugins speak CNI up to 1.0.0; upstream's macvlan v1.9.0 (hack/testbins/cni-plugins)
  # speaks 1.1.0, for the NetworkAttachmentDefinitions of every cniVersion (tests/e2e_cluster.rs).
  install -m 0755 "$BIN/cni-plugins/macvlan" "$bin/macvlan-v1.9.0"
  # the benchmark's timing shim (hack/cluster/ipam-timer.c), under two names
  install -m 0755 "$D/images/ipam-timer" "$bin/ipam-timer"
  ln -sfn ipam-timer "$bin/timed-nv-ipam"
  ln -sfn ipam-timer "$bin/timed-host-local"
  install -d -m 0755 "$D/multus"
  write_kubeconfig "$D/multus/multus.kubeconfig"
  # The thin plugin: pods' eth0 from the inline delegate (bridge on the node-IP bridge,
  # host-local), secondary interfaces from the pod's k8s.v1.cni.cncf.io/networks annotation.
  # cniVersion 1.0.0: Debian's plugins 1.1.1 know no later one.
  cat >"$HOSTROOT/etc/cni/net.d/00-multus.conf" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "multus-cni-network",
  "type": "multus",
  "kubeconfig": "$D/multus/multus.kubeconfig",
  "confDir": "$HOSTROOT/etc/cni/multus/net.d",
  "cniDir": "$HOSTROOT/var/lib/cni/multus",
  "binDir": "$bin",
  "logFile": "$D/log/multus.log",
  "logLevel": "verbose",
  "delegates": [
    {
      "cniVersion": "1.0.0",
      "name": "pods",
      "plugins": [
        {
          "type": "bridge",
          "bridge": "$BR",
          "isGateway": false,
          "ipMasq": false,
          "ipam": {
            "type": "host-local",
            "dataDir": "$HOSTROOT/var/lib/cni/networks",
            "ranges": [[{"subnet": "$POD_SUBNET", "rangeStart": "${NODE_IP%.*}.10",
                         "rangeEnd": "${NODE_IP%.*}.250", "gateway": "$NODE_IP"}]],
            "routes": [{"dst": "0.0.0.0/0", "gw": "$NODE_IP"}]
          }
        }
      ]
    }
  ]
}
EOF
}

# -- images ----------------------------------------------------------------------------------------
build_local_images() {
  mkdir -p "$D/images"
  gcc -static -Os -s -Wall -o "$D/images/pause" "$ROOT/hack/cluster/pause.c"
  gcc -static -Os -s -Wall -DTIMING_LOG="\"$D/log/ipam-timing.log\"" -o "$D/images/ipam-timer" \
    "$ROOT/hack/cluster/ipam-timer.c"
  python3 "$ROOT/hack/cluster/images.py" pause --pause-bin "$D/images/pause" --name "$PAUSE_IMAGE" \
    --out "$D/images/pause.oci.tar" >&2
  python3 "$ROOT/hack/cluster/images.py" busybox --busybox "$(command -v busybox)" --name "$BUSYBOX_IMAGE" \
    --out "$D/images/busybox.oci.tar" >&2
}

import_images() {
  local f
  for f in "$D/images/pause.oci.tar" "$D/images/busybox.oci.tar" "$IMAGE"; do
    ctr_ images import "$f" >/dev/null
  done
  ctr_ images tag --force "$NV_IPAM_IMAGE" "${NV_IPAM_IMAGE%:*}:$NV_IPAM_ROLLOUT_TAG" >/dev/null
}

# -- kubelet ---------------------------------------------------------------------------------------
start_kubelet() {
  cat >"$D/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 is deprecated but is what this machine type has
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$CG
address: $NODE_IP
containerRuntimeEndpoint: unix://$D/containerd.sock
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
podLogsDir: $D/log/pods
volumePluginDir: $D/kubelet/volume-plugins
staticPodPath: ""
clusterDomain: cluster.local
serializeImagePulls: false
failSwapOn: false
# a shared disk: no evictions for disk pressure; imported images cannot be pulled again
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
EOF
  state_sysctls
  start_daemon kubelet "$BIN/kubelet" --config="$D/kubelet/config.yaml" --kubeconfig="$D/admin.kubeconfig" \
    --root-dir="$D/kubelet" --cert-dir="$D/kubelet/pki" --hostname-override="$NODE" --node-ip="$NODE_IP" --v=1
}

state_sysctls() {
  local s v
  [[ -n $(state_get sysctls-recorded) ]] && return 0
  for s in "${KUBELET_SYSCTLS[@]}"; do
    v=$(sysctl -n "$s")
    state_add sysctl "$s" "$v"
  done
  state_add sysctls-recorded yes
}

node_ready() {
  [[ $(kc get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

# -- the NetworkAttachmentDefinition CRD, from Multus' own manifest --------------------------------
install_nad_crd() {
  awk 'BEGIN { i = 0 } /^---/ { i++; next } { doc[i] = doc[i] $0 "\n" }
       END { for (k = 0; k <= i; k++) if (doc[k] ~ /\nkind: CustomResourceDefinition\n/ || doc[k] ~ /^kind: CustomResourceDefinition\n/) { printf "%s", doc[k]; exit } }' \
    "$BIN/multus-daemonset.yml" >"$D/nad-crd.yaml"
  grep -q 'network-attachment-definitions.k8s.cni.cncf.io' "$D/nad-crd.yaml" ||
    die "no NetworkAttachmentDefinition CRD in $BIN/multus-daemonset.yml"
  kc apply --server-side -f "$D/nad-crd.yaml" >/dev/null
  kc wait --for=condition=Established --timeout=60s crd/network-attachment-definitions.k8s.cni.cncf.io >/dev/null
}

# -- deploying nv-ipam the way a user does --------------------------------------------------------------
# The manifests as shipped, rendered with kubectl kustomize, with one change: every host path of
# the node DaemonSet (its hostPath volumes, and the two host paths it writes into the plugin's
# nv-ipam.conf: --cni-daemon-socket, --cni-log-file) moves under $HOSTROOT, the node's host
# root. So a shipped host path that points elsewhere still points elsewhere here.
HOST_PATHS_JQ='
  def under_root: if startswith("/") then $root + . else . end;
  if .kind == "DaemonSet" and .metadata.name == "nv-ipam-node" then
    .spec.template.spec.volumes |= map(if .hostPath then .hostPath.path |= under_root else . end)
    | .spec.template.spec.containers |= map(.args |= ((. // []) | map(
        if startswith("--cni-daemon-socket=unix://") then
          "--cni-daemon-socket=unix://" + (ltrimstr("--cni-daemon-socket=unix://") | under_root)
        elif startswith("--cni-log-file=") then "--cni-log-file=" + (ltrimstr("--cni-log-file=") | under_root)
        else . end)))
  else . end'

# render no-webhook|webhook: the manifests to apply, as a JSON List
render() {
  local src
  case $1 in
    no-webhook) src=$ROOT/deploy/overlays/no-webhook ;;
    webhook) src=$ROOT/hack/cluster/overlays/webhook ;;
    *) die "render: no-webhook or webhook, not '$1'" ;;
  esac
  "$BIN/kubectl" kustomize "$src" | kc create --dry-run=client -o json -f - |
    jq --arg root "$HOSTROOT" "$HOST_PATHS_JQ" | jq -s '{apiVersion: "v1", kind: "List", items: .}'
}

deploy() { # webhook | no-webhook | remove
  local what=$1
  case $what in
    no-webhook)
      render no-webhook | kc apply --server-side -f - >/dev/null
      ;;
    webhook)
      # the namespace first (the Secret goes into it), then the certificate, the manifests,
      # and the CA into the ValidatingWebhookConfiguration
      kc apply --server-side -f "$ROOT/deploy/base/namespace.yaml" >/dev/null
      kc -n nv-ipam create secret tls nv-ipam-webhook-cert --cert="$D/pki/webhook.crt" \
        --key="$D/pki/webhook.key" --dry-run=client -o yaml | kc apply --server-side -f - >/dev/null
      render webhook | kc apply --server-side -f - >/dev/null
      local ca
      ca=$(base64 -w0 "$D/pki/webhook-ca.crt")
      kc patch validatingwebhookconfiguration nv-ipam-validating-webhook --type=json -p \
        "[{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"$ca\"},
          {\"op\":\"add\",\"path\":\"/webhooks/1/clientConfig/caBundle\",\"value\":\"$ca\"}]" >/dev/null
      ;;
    remove)
      render webhook | kc delete --ignore-not-found --wait=true --timeout=120s -f - >/dev/null 2>&1 || true
      return 0
      ;;
    none) return 0 ;;
    *) die "deploy: webhook, no-webhook or remove, not '$what'" ;;
  esac
  kc -n nv-ipam rollout status daemonset/nv-ipam-node --timeout=180s >&2
  kc -n nv-ipam rollout status deployment/nv-ipam-controller --timeout=180s >&2
  if [[ $what == webhook ]]; then
    wait_until 120 "the webhook to refuse an invalid IPPool" webhook_refuses ||
      die "the validating webhook does not answer"
  fi
  log "nv-ipam deployed ($what)"
}

# The webhook answers once a dry-run create of an invalid pool is refused by it (not by the schema).
webhook_refuses() {
  local out
  out=$(kc -n nv-ipam create --dry-run=server -f - 2>&1 <<'EOF' || true
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata:
  name: webhook-probe
spec:
  subnet: 192.168.0.0/16
  perNodeBlockSize: 10
  gateway: 10.0.0.1
EOF
  )
  grep -q 'denied the request' <<<"$out"
}

# -- up -----------------------------------------------------------------------------------------------
cmd_up() {
  local deploy_what=webhook
  IMAGE=""
  while (($#)); do
    case $1 in
      --deploy) deploy_what=${2:?--deploy needs webhook, no-webhook or none}; shift 2 ;;
      --deploy=*) deploy_what=${1#*=}; shift ;;
      --image) IMAGE=${2:?--image needs a file}; shift 2 ;;
      --image=*) IMAGE=${1#*=}; shift ;;
      *) die "up: unknown argument '$1'" ;;
    esac
  done
  case $deploy_what in webhook | no-webhook | none) ;; *) die "--deploy: webhook, no-webhook or none" ;; esac
  preflight
  if [[ -e $D || -e /run/netns/$NS ]]; then
    die "a cluster is up or was not taken down ($D or /run/netns/$NS exists): run hack/cluster.sh down"
  fi
  local t0=$SECONDS
  local version
  version=$(sed -n 's/^version = "\([^"]*\)".*/\1/p' "$ROOT/Cargo.toml" | head -n1)
  NV_IPAM_IMAGE=localhost/nv-ipam:$version
  if [[ -z $IMAGE ]]; then
    log "building the nv-ipam image (hack/build-image.sh dist)"
    (cd "$ROOT" && hack/build-image.sh dist >&2)
    IMAGE=$ROOT/dist/nv-ipam-image-$version.oci.tar
  fi
  [[ -s $IMAGE ]] || die "no image archive $IMAGE"
  IMAGE=$(cd "$(dirname "$IMAGE")" && pwd)/$(basename "$IMAGE")
  if [[ -n ${NV_IPAM_TESTBINS:-} ]]; then BIN=$NV_IPAM_TESTBINS; else BIN=$("$ROOT/hack/build-testbins.sh"); fi
  local b
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl multus multus-daemonset.yml \
    cni-plugins/macvlan; do
    [[ -e $BIN/$b ]] || die "no $b in $BIN (hack/build-testbins.sh builds it)"
  done

  # From here on everything is recorded in $D/state before it is made; a failure tears down.
  trap 'rc=$?; trap - EXIT INT TERM; if ((rc != 0)); then log "up failed; tearing down (logs are lost: set NV_IPAM_CLUSTER_KEEP_FAILED=1 to keep the cluster)"; [[ -n ${NV_IPAM_CLUSTER_KEEP_FAILED:-} ]] || cmd_down; fi; exit $rc' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  install -d -m 0755 "$D"
  : >"$D/state"
  local p
  for p in "${HOST_PATHS[@]}"; do
    [[ -e $p ]] || state_add created-if-absent "$p"
  done
  install -d -m 0755 "$D/run" "$D/log" "$D/kubelet" "$D/containerd"
  {
    printf 'BIN=%q\n' "$BIN"
    printf 'NV_IPAM_IMAGE=%q\n' "$NV_IPAM_IMAGE"
  } >"$D/env"

  log "images (pause, busybox) and the IPAM timing shim"
  build_local_images
  log "network namespace $NS, cgroup /$CG"
  setup_netns
  setup_cgroups
  setup_pki
  write_kubeconfig "$D/admin.kubeconfig"
  log "control plane"
  start_control_plane
  log "containerd"
  write_containerd_config
  setup_cni
  start_containerd
  import_images
  log "kubelet"
  start_kubelet
  wait_daemon "$START_TIMEOUT" kubelet "node $NODE Ready" node_ready
  # Pods need the default ServiceAccount (ServiceAccount admission) and kube-root-ca.crt (the
  # projected token volume), both made by kube-controller-manager.
  wait_daemon 60 kube-controller-manager "ServiceAccount default/default" kc get serviceaccount default -n default
  wait_daemon 60 kube-controller-manager "ConfigMap kube-root-ca.crt" kc get configmap kube-root-ca.crt -n default
  install_nad_crd
  {
    printf 'export KUBECONFIG=%q\n' "$D/admin.kubeconfig"
    printf 'export NV_IPAM_CLUSTER_DIR=%q NV_IPAM_KUBECTL=%q NV_IPAM_CLUSTER_NODE=%q\n' "$D" "$BIN/kubectl" "$NODE"
    printf 'export NV_IPAM_CLUSTER_HOST_ROOT=%q NV_IPAM_CLUSTER_CONF_DIR=%q NV_IPAM_CLUSTER_NICS=%q\n' \
      "$HOSTROOT" "$HOSTROOT/etc/cni/net.d/nv-ipam.d" \
      "$(for ((i = 0; i < NICS; i++)); do printf 'nic%d ' "$i"; done | sed 's/ $//')"
    printf 'export NV_IPAM_CLUSTER_BUSYBOX=%q NV_IPAM_CLUSTER_IMAGE=%q NV_IPAM_CLUSTER_ROLLOUT_IMAGE=%q\n' \
      "$BUSYBOX_IMAGE" "$NV_IPAM_IMAGE" "${NV_IPAM_IMAGE%:*}:$NV_IPAM_ROLLOUT_TAG"
    printf 'export PATH=%q\n' "$BIN:$PATH"
    printf 'export NO_PROXY=%q no_proxy=%q\n' "$NO_PROXY" "$no_proxy"
  } >"$D/exec.env"
  log "cluster up in $((SECONDS - t0)) s"
  deploy "$deploy_what"
  trap - EXIT INT TERM
  cat >&2 <<EOF
cluster: ready in $((SECONDS - t0)) s. Node $NODE ($NODE_IP) in network namespace $NS.
  hack/cluster.sh kubectl get pods -A
  hack/cluster.sh shell                  # kubectl, KUBECONFIG and the tests' variables inside
  NetworkAttachmentDefinitions: "master": one of nic0..nic$((NICS - 1)),
    "ipam": {"type": "nv-ipam", "poolName": "...", "confDir": "$HOSTROOT/etc/cni/net.d/nv-ipam.d"}
  pools go into namespace nv-ipam; pods may use image $BUSYBOX_IMAGE
  hack/cluster.sh down
EOF
}

# -- down -----------------------------------------------------------------------------------------------
# Every step tolerates what is already gone.
cmd_down() {
  ((EUID == 0)) || die "run as root"
  local t0=$SECONDS
  trap '' INT TERM # finish the teardown once started
  if [[ -f $D/env ]]; then
    # shellcheck source=/dev/null
    source "$D/env"
  fi
  # 1. no new pods
  if [[ -d $D/run ]]; then
    stop_daemon kube-scheduler 5
    stop_daemon kube-controller-manager 5
  fi
  # 2. while the apiserver and kubelet run: delete the pods, so that kubelet unmounts their
  #    volumes and CNI DEL releases their addresses. Pods of DaemonSets (the nv-ipam node
  #    daemon, which answers the other pods' DEL) go last.
  if [[ -n $BIN && -d $D/run ]] && daemon_alive kube-apiserver && daemon_alive kubelet; then
    local others
    others=$(kc get pods -A -o json 2>/dev/null | jq -r '.items[] |
      select(([.metadata.ownerReferences[]? | select(.kind == "DaemonSet")] | length) == 0) |
      "\(.metadata.namespace)/\(.metadata.name)"' 2>/dev/null || true)
    if [[ -n $others ]]; then
      local nsname
      while read -r nsname; do
        kc -n "${nsname%%/*}" delete pod "${nsname#*/}" --grace-period=2 --wait=false >/dev/null 2>&1 || true
      done <<<"$others"
      wait_until 60 "the pods to go" no_pods_but_daemonsets || true
    fi
    kc delete pods -A --all --grace-period=2 --wait=false >/dev/null 2>&1 || true
    wait_until 30 "the DaemonSet pods to go" no_pods || true
  fi
  # 3. kubelet, then every process left in the cluster's cgroup (containers, shims), then the
  #    rest of the daemons
  if [[ -d $D/run ]]; then
    stop_daemon kubelet 10
  fi
  kill_cgroup_processes kubepods
  if [[ -d $D/run ]]; then
    # (wait for these two only: when up fails, the daemons are this shell's children too)
    local stop1 stop2
    stop_daemon containerd 10 &
    stop1=$!
    stop_daemon kube-apiserver 15 &
    stop2=$!
    wait "$stop1" "$stop2" || true
    stop_daemon etcd 10
  fi
  kill_cgroup_processes ""
  # 4. mounts: everything under the state dir and the host paths up created (deepest first)
  unmount_under "$D"
  local p
  while read -r p; do [[ -n $p ]] && unmount_under "$p"; done < <(state_get created-if-absent)
  # 5. cgroups, depth first, in every hierarchy (runc mirrors the tree into the v2 one)
  remove_cgroups
  # 6. the namespace takes the bridge, the veths, the Service rules and kubelet's chains along
  if [[ -e /run/netns/$NS ]]; then
    ip netns delete "$NS" || log "warning: ip netns delete $NS failed"
  fi
  # 7. host paths that kubelet, containerd and libcni made although told otherwise
  while read -r p; do
    [[ -n $p && -e $p ]] && rm -rf --one-file-system "$p"
  done < <(state_get created-if-absent)
  # 8. sysctls
  local s v
  while read -r s v; do
    [[ -n $s ]] && sysctl -q -w "$s=$v" >/dev/null || true
  done < <(state_get sysctl)
  # 9. the state dir
  if [[ -d $D ]]; then
    if grep -q " $D[ /]" /proc/self/mountinfo; then
      log "warning: mounts under $D remain; not removing it"
    else
      rm -rf --one-file-system "$D"
    fi
  fi
  trap - INT TERM
  log "down in $((SECONDS - t0)) s"
}

no_pods_but_daemonsets() {
  [[ -z $(kc get pods -A -o json | jq -r '.items[] |
    select(([.metadata.ownerReferences[]? | select(.kind == "DaemonSet")] | length) == 0) | .metadata.name') ]]
}
no_pods() { [[ -z $(kc get pods -A -o name) ]]; }

# kill_cgroup_processes SUBDIR: SIGKILL every process in $CG/SUBDIR (all of $CG when empty),
# frozen first so that nothing forks in between; wait until they are gone.
kill_cgroup_processes() {
  local sub=${1:+/$1} fz pm dl pids
  fz=$(v1_mount_for freezer)
  pm=$(v1_mount_for pids)
  [[ -n $pm && -d $pm/$CG$sub ]] || return 0
  [[ -n $fz && -d $fz/$CG$sub ]] || fz=""
  if [[ -n $fz ]]; then
    echo FROZEN >"$fz/$CG$sub/freezer.state" 2>/dev/null || true
    dl=$((SECONDS + 10))
    while [[ $(cat "$fz/$CG$sub/freezer.state" 2>/dev/null) == FREEZING ]] && ((SECONDS < dl)); do sleep 0.1; done
  fi
  dl=$((SECONDS + 30))
  while :; do
    pids=$(find "$pm/$CG$sub" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
    [[ -z $pids ]] && break
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    # a frozen task dies of SIGKILL only once thawed
    [[ -n $fz ]] && echo THAWED >"$fz/$CG$sub/freezer.state" 2>/dev/null
    if ((SECONDS >= dl)); then
      log "warning: processes left in cgroup $CG$sub: $(echo $pids)"
      break
    fi
    sleep 0.1
  done
  [[ -z $fz ]] || echo THAWED >"$fz/$CG$sub/freezer.state" 2>/dev/null || true
  return 0
}

unmount_under() { # DIR: lazily unmount every mount at or below DIR, deepest first
  local dir=$1 mp
  [[ -n $dir ]] || return 0
  # mountinfo escapes spaces as \040; our paths have none
  while read -r mp; do
    umount -l "$mp" 2>/dev/null || log "warning: umount $mp failed"
  done < <(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print length($5), $5 }' /proc/self/mountinfo |
    sort -rn | cut -d' ' -f2-)
}

remove_cgroups() {
  local m dir
  for m in $(cgroup_v1_mounts) $(mounts_of_type cgroup2); do
    [[ -d $m/$CG ]] || continue
    while read -r dir; do
      rmdir "$dir" 2>/dev/null || log "warning: cannot remove cgroup $dir"
    done < <(find "$m/$CG" -depth -type d)
  done
}

# -- status -----------------------------------------------------------------------------------------
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

cmd_status() {
  load_env
  kc get nodes -o wide || true
  kc get pods -A -o wide || true
  local name pid total=0 r m sys_pids pod_pids shim=0 pods=0 npods=0 nshim=0
  printf '\n%-26s %8s %10s\n' component pid 'RSS MiB'
  local -A known=()
  for name in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet; do
    daemon_alive "$name" || continue
    pid=$(<"$D/run/$name.pid")
    known[$pid]=1
    r=$(rss_kib "$pid")
    total=$((total + r))
    printf '%-26s %8s %10s\n' "$name" "$pid" "$(mib "$r")"
  done
  m=$(v1_mount_for pids)
  sys_pids=$(find "$m/$CG/system" -name cgroup.procs -exec cat {} + 2>/dev/null || true)
  for pid in $sys_pids; do
    [[ -n ${known[$pid]:-} ]] && continue
    shim=$((shim + $(rss_kib "$pid")))
    nshim=$((nshim + 1))
  done
  pod_pids=$(find "$m/$CG/kubepods" -name cgroup.procs -exec cat {} + 2>/dev/null || true)
  for pid in $pod_pids; do
    pods=$((pods + $(rss_kib "$pid")))
    npods=$((npods + 1))
  done
  printf '%-26s %8s %10s\n' "shims etc. ($nshim)" - "$(mib "$shim")"
  printf '%-26s %8s %10s\n' "pod processes ($npods)" - "$(mib "$pods")"
  printf '%-26s %8s %10s\n' total - "$(mib $((total + shim + pods)))"
}

# -- dispatch -----------------------------------------------------------------------------------------
cmd=${1:-}
shift || true
case $cmd in
  up | down)
    # one up/down at a time (a lock on this script's file leaves nothing behind)
    exec 7<"$SELF"
    flock -n 7 || die "another hack/cluster.sh up/down is running"
    "cmd_$cmd" "$@"
    ;;
  kubectl)
    load_env
    exec "${NSX[@]}" env "KUBECONFIG=$D/admin.kubeconfig" "$BIN/kubectl" "$@"
    ;;
  exec)
    load_env
    (($#)) || die "exec: no command"
    exec "${NSX[@]}" bash -c 'source "$1"; shift; exec "$@"' exec "$D/exec.env" "$@"
    ;;
  shell)
    load_env
    exec "${NSX[@]}" bash --rcfile <(cat ~/.bashrc 2>/dev/null; cat "$D/exec.env"; echo 'PS1="(nv-ipam-e2e) $PS1"') -i
    ;;
  deploy)
    load_env
    deploy "${1:?deploy: webhook, no-webhook or remove}"
    ;;
  render)
    load_env
    render "${1:?render: no-webhook or webhook}"
    ;;
  status) cmd_status ;;
  ctr)
    load_env
    ctr_ "$@"
    ;;
  stop | start | restart)
    load_env
    name=${1:?"$cmd: which daemon (kubelet, containerd, ...)"}
    [[ -f $D/run/$name.cmd ]] || die "no daemon '$name' (one of: $(cd "$D/run" && ls ./*.cmd | sed 's|^\./||; s/\.cmd$//' | tr '\n' ' '))"
    case $cmd in
      stop) stop_daemon "$name" ;;
      start)
        daemon_alive "$name" && die "$name is already running"
        restart_daemon "$name"
        ;;
      restart)
        stop_daemon "$name"
        restart_daemon "$name"
        ;;
    esac
    if [[ $cmd != stop ]]; then
      case $name in
        containerd) wait_daemon 60 containerd "containerd's socket" ctr_ version ;;
        kubelet) wait_daemon "$START_TIMEOUT" kubelet "node $NODE Ready" node_ready ;;
        kube-apiserver) wait_daemon "$START_TIMEOUT" kube-apiserver "the apiserver" kc get --raw /readyz ;;
      esac
    fi
    ;;
  -h | --help | help | "") sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
  *) die "unknown command '$cmd' (hack/cluster.sh --help)" ;;
esac
