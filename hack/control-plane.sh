#!/usr/bin/env bash
# A throw-away Kubernetes control plane (real etcd + kube-apiserver on
# loopback) for the integration tests. See docs/control-plane.md.
#
#   hack/control-plane.sh [--crds DIR] [--keep-dir DIR] -- CMD ARGS...
#       Build/find the binaries (hack/build-testbins.sh, or $NV_IPAM_TESTBINS),
#       start etcd + kube-apiserver with fresh certificates and static tokens,
#       wait until ready, install the CRDs of DIR (if any), run CMD with
#       KUBECONFIG and NV_IPAM_CP_DIR (and NV_IPAM_KUBECTL, the kubectl of the
#       same build, and NV_IPAM_TESTBINS, its bin dir) exported, tear everything down and exit
#       with CMD's exit code. --keep-dir keeps state and logs in DIR afterwards.
#
#   hack/control-plane.sh stop-apiserver | start-apiserver | restart-apiserver
#       Run from inside CMD (needs $NV_IPAM_CP_DIR): stop the apiserver, start
#       it again with the exact same command line (same port, certs, etcd), or
#       both. start/restart return once the apiserver is ready again.
#
# Only processes started here are stopped, by PID / process group; nothing is
# left running, also on errors, SIGINT and SIGTERM.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/pki.sh
source "$ROOT/hack/lib/pki.sh"
START_TIMEOUT=${NV_IPAM_CP_START_TIMEOUT:-90} # seconds, for the apiserver (2 busy cores)

log() { printf 'control-plane: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# -- process helpers ---------------------------------------------------------

# alive PID: running and not a zombie
alive() {
  local st
  [[ -r /proc/$1/stat ]] || return 1
  st=$(sed 's/^.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $st && $st != Z && $st != X ]]
}

# ours PID NAME: PID is alive and runs the binary NAME (guards against PID reuse)
ours() {
  alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q -- "$2"
}

# stop_proc PIDFILE NAME: SIGTERM its process group, SIGKILL after 15 s
stop_proc() {
  local pidfile=$1 name=$2 pid pgid target dl
  [[ -s $pidfile ]] || return 0
  pid=$(<"$pidfile")
  if ours "$pid" "$name"; then
    pgid=$(sed 's/^.*) //' "/proc/$pid/stat" | cut -d' ' -f3)
    # each daemon is started with setsid, so it leads its own process group
    if [[ $pgid == "$pid" ]]; then target=-$pid; else target=$pid; fi
    kill -TERM -- "$target" 2>/dev/null || true
    dl=$((SECONDS + 15))
    while alive "$pid" && ((SECONDS < dl)); do sleep 0.1; done
    if alive "$pid"; then
      log "$name (pid $pid) ignored SIGTERM for 15 s; sending SIGKILL"
      kill -KILL -- "$target" 2>/dev/null || true
      while alive "$pid"; do sleep 0.1; done
    fi
  fi
  # reap it if it is our child (no-op otherwise)
  wait "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

# start_proc NAME LOG PIDFILE CMD...: start CMD detached in its own session
start_proc() {
  local name=$1 logf=$2 pidfile=$3
  shift 3
  # no inherited lock fds (8, 9): a daemon must not hold our flock
  setsid "$@" </dev/null >>"$logf" 2>&1 8>&- 9>&- &
  echo $! >"$pidfile"
}

# wait_for DEADLINE_S PIDFILE NAME WHAT CMD...: poll CMD until it succeeds
wait_for() {
  local secs=$1 dl=$((SECONDS + $1)) pidfile=$2 name=$3 what=$4
  shift 4
  until "$@" >/dev/null 2>&1; do
    if ! alive "$(<"$pidfile")"; then
      log "$name exited while waiting for $what"
      return 1
    fi
    if ((SECONDS >= dl)); then
      log "timed out after $secs s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

show_logs() {
  local d=$1 f
  for f in etcd.log apiserver.log; do
    [[ -s $d/$f ]] || continue
    log "---- last 40 lines of $d/$f ----"
    tail -n 40 "$d/$f" >&2
  done
}

# curl with the admin token and the cluster CA (D must be set)
kcurl() {
  curl -sS --fail --max-time 10 --noproxy '*' --cacert "$D/ca.crt" \
    -H "Authorization: Bearer $(<"$D/admin.token")" "$@"
}

apiserver_ready() {
  local url
  url=$(<"$D/apiserver.url")
  wait_for "$START_TIMEOUT" "$D/apiserver.pid" kube-apiserver "authenticated $url/readyz" \
    kcurl "$url/readyz" &&
    wait_for 30 "$D/apiserver.pid" kube-apiserver "namespace default" \
      kcurl "$url/api/v1/namespaces/default"
}

start_apiserver() {
  local -a APISERVER_CMD
  # shellcheck source=/dev/null
  source "$D/apiserver.cmd" # defines APISERVER_CMD=(...)
  printf '\n==== start %s ====\n' "$(date -u +%FT%TZ)" >>"$D/apiserver.log"
  start_proc kube-apiserver "$D/apiserver.log" "$D/apiserver.pid" "${APISERVER_CMD[@]}"
  apiserver_ready
}

# -- subcommands used from inside CMD ---------------------------------------
# The running main script does the work (it receives the request through a file
# and SIGUSR1), so every daemon stays its child: it reaps them, and nothing is
# re-parented to PID 1 when the helper exits.
case ${1:-} in
  stop-apiserver | start-apiserver | restart-apiserver)
    D=${NV_IPAM_CP_DIR:?"$1 needs NV_IPAM_CP_DIR (run it under hack/control-plane.sh)"}
    [[ -s $D/control-plane.pid ]] || die "$D/control-plane.pid not found"
    main=$(<"$D/control-plane.pid")
    # one lifecycle change at a time
    exec 8>"$D/.ctl.lock"
    flock 8
    rm -f "$D/ctl.result"
    echo "${1%-apiserver}" >"$D/ctl.request"
    kill -USR1 "$main" 2>/dev/null || die "hack/control-plane.sh (pid $main) is not running"
    dl=$((SECONDS + START_TIMEOUT + 60))
    until [[ -s $D/ctl.result ]]; do
      alive "$main" || die "hack/control-plane.sh (pid $main) exited"
      ((SECONDS < dl)) || die "no answer to $1 from hack/control-plane.sh (pid $main)"
      sleep 0.05
    done
    rc=$(<"$D/ctl.result")
    rm -f "$D/ctl.result"
    case $rc in
      0) exit 0 ;;
      2) die "kube-apiserver is already running" ;;
      *) die "$1 failed (log: $D/apiserver.log)" ;;
    esac
    ;;
esac

# -- main: arguments --------------------------------------------------------
CRDS=""
KEEP=""
while (($#)); do
  case $1 in
    --crds) CRDS=${2:?--crds needs a directory}; shift 2 ;;
    --crds=*) CRDS=${1#*=}; shift ;;
    --keep-dir) KEEP=${2:?--keep-dir needs a directory}; shift 2 ;;
    --keep-dir=*) KEEP=${1#*=}; shift ;;
    --) shift; break ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (usage: $0 [--crds DIR] [--keep-dir DIR] -- CMD ARGS...)" ;;
  esac
done
(($#)) || die "no command given (usage: $0 [--crds DIR] [--keep-dir DIR] -- CMD ARGS...)"
for tool in openssl curl jq setsid flock perl base64; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is required (hack/test.sh installs it)"
done

# -- binaries ---------------------------------------------------------------
if [[ -n ${NV_IPAM_TESTBINS:-} ]]; then
  BIN=$NV_IPAM_TESTBINS
else
  BIN=$("$ROOT/hack/build-testbins.sh")
fi
[[ -x $BIN/etcd && -x $BIN/kube-apiserver ]] || die "no etcd/kube-apiserver in '$BIN'"
# The kubectl of the same build (hack/build-testbins.sh), for tests that render deploy/ with
# `kubectl kustomize` and dry-run-apply it; an NV_IPAM_KUBECTL set by the caller wins.
if [[ -z ${NV_IPAM_KUBECTL:-} && -x $BIN/kubectl ]]; then
  export NV_IPAM_KUBECTL=$BIN/kubectl
fi
# The whole bin dir, for tests that run other test binaries (upstream's CNI plugins).
export NV_IPAM_TESTBINS=$BIN

# -- state directory ---------------------------------------------------------
if [[ -n $KEEP ]]; then
  mkdir -p "$KEEP"
  D=$(cd "$KEEP" && pwd)
  if [[ -n $(ls -A "$D") ]]; then
    [[ -f $D/.nv-ipam-cp ]] || die "--keep-dir $D is not empty and was not made by this script"
    find "$D" -mindepth 1 -delete
  fi
else
  D=$(mktemp -d "${TMPDIR:-/tmp}/nv-ipam-cp.XXXXXX")
fi
touch "$D/.nv-ipam-cp"

CMD_PID=""
teardown() {
  local rc=$?
  trap - EXIT INT TERM USR1
  rm -f "$D/control-plane.pid"
  if [[ -n $CMD_PID ]] && alive "$CMD_PID"; then
    # we are stopping early (SIGTERM, error): stop CMD first, SIGKILL after 10 s
    kill -TERM "$CMD_PID" 2>/dev/null || true
    local dl=$((SECONDS + 10))
    while alive "$CMD_PID" && ((SECONDS < dl)); do sleep 0.1; done
    kill -KILL "$CMD_PID" 2>/dev/null || true
    wait "$CMD_PID" 2>/dev/null || true
  fi
  stop_proc "$D/apiserver.pid" kube-apiserver
  stop_proc "$D/etcd.pid" etcd
  if [[ -z $KEEP ]]; then
    rm -rf "$D"
  else
    log "state and logs kept in $D"
  fi
  exit "$rc"
}
trap teardown EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

free_port() {
  perl -MIO::Socket::INET -e \
    'my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0) or die "$!\n"; print $s->sockport, "\n"'
}

# -- certificates (EC P-256) -------------------------------------------------
pki() (
  cd "$D"
  pki_ca ca nv-ipam-test-ca
  pki_leaf apiserver /CN=kube-apiserver ca \
    'subjectAltName=IP:127.0.0.1,DNS:localhost' 'extendedKeyUsage=serverAuth' \
    'keyUsage=critical,digitalSignature' 'basicConstraints=critical,CA:FALSE'
  pki_ca client-ca nv-ipam-test-client-ca
  pki_leaf client-admin '/O=system:masters/CN=admin' client-ca \
    'extendedKeyUsage=clientAuth' 'keyUsage=critical,digitalSignature' 'basicConstraints=critical,CA:FALSE'
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out sa.key
  openssl pkey -in sa.key -pubout -out sa.pub
) 2>"$D/openssl.log"

write_kubeconfig() { # name user
  local name=$1 user=$2
  cat >"$D/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: nv-ipam-test
  cluster:
    server: $URL
    certificate-authority-data: $(base64 -w0 "$D/ca.crt")
users:
- name: "$user"
  user:
    token: $(<"$D/$name.token")
contexts:
- name: $name
  context:
    cluster: nv-ipam-test
    user: "$user"
current-context: $name
EOF
}

# apply_crds DIR: server-side apply every CRD document of DIR/*.y*ml (not kustomization.yaml), then wait
# until each is Established and its resource is listed by discovery
apply_crds() {
  local dir=$1 f n doc name names=()
  local -a files
  shopt -s nullglob
  files=()
  # kustomization.yaml lists the CRDs for kustomize (deploy/base); it is no CRD itself
  for f in "$dir"/*.yaml "$dir"/*.yml; do
    [[ $(basename "$f") == kustomization.y*ml ]] || files+=("$f")
  done
  shopt -u nullglob
  if ((${#files[@]} == 0)); then
    log "no CRD files in $dir; skipping CRD install"
    return 0
  fi
  mkdir -p "$D/crds"
  n=0
  for f in "${files[@]}"; do
    # split multi-document files; keep documents with content
    awk -v out="$D/crds/$(basename "$f")" 'BEGIN { i = 0 }
      /^---/ { i++; next }
      NF && !/^[[:space:]]*#/ { has[i] = 1 }
      { lines[i] = lines[i] $0 "\n" }
      END { for (k = 0; k <= i; k++) if (has[k]) printf "%s", lines[k] > (out "." k) }' "$f"
  done
  for doc in "$D"/crds/*; do
    grep -q '^kind:[[:space:]]*CustomResourceDefinition[[:space:]]*$' "$doc" ||
      die "$doc: not a CustomResourceDefinition (only CRDs are installed from --crds)"
    # metadata.name: the first `name:` indented under the top-level `metadata:`
    name=$(awk '/^metadata:/ { m = 1; next } m && /^[^[:space:]#]/ { m = 0 }
                m && /^[[:space:]]+name:/ { sub(/^[[:space:]]+name:[[:space:]]*/, ""); gsub(/["'\'' ]/, ""); print; exit }' "$doc")
    [[ -n $name ]] || die "$doc: no metadata.name"
    kcurl -o /dev/null -X PATCH -H 'Content-Type: application/apply-patch+yaml' --data-binary "@$doc" \
      "$URL/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$name?fieldManager=nv-ipam-control-plane&force=true" ||
      die "server-side apply of CRD $name failed"
    names+=("$name")
    n=$((n + 1))
  done
  for name in "${names[@]}"; do
    wait_for 60 "$D/apiserver.pid" kube-apiserver "CRD $name Established" crd_established "$name" ||
      die "CRD $name did not become Established"
    wait_for 60 "$D/apiserver.pid" kube-apiserver "CRD $name in discovery" crd_discoverable "$name" ||
      die "CRD $name did not appear in discovery"
  done
  log "installed $n CRD(s): ${names[*]}"
}

crd_established() {
  kcurl "$URL/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$1" |
    jq -e '[.status.conditions[]? | select(.status == "True") | .type] | index("Established") and index("NamesAccepted")'
}

crd_discoverable() {
  local crd group plural v
  crd=$(kcurl "$URL/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$1")
  group=$(jq -r .spec.group <<<"$crd")
  plural=$(jq -r .spec.names.plural <<<"$crd")
  for v in $(jq -r '.spec.versions[] | select(.served) | .name' <<<"$crd"); do
    kcurl "$URL/apis/$group/$v" | jq -e --arg p "$plural" '[.resources[].name] | index($p)' || return 1
  done
}

# -- start -------------------------------------------------------------------
T0=$SECONDS
pki || { cat "$D/openssl.log" >&2; die "certificate generation failed"; }
for u in admin controller node; do openssl rand -hex 24 >"$D/$u.token"; done
{
  echo "$(<"$D/admin.token"),admin,nv-ipam-test-admin,\"system:masters,system:authenticated\""
  echo "$(<"$D/controller.token"),system:serviceaccount:nv-ipam:nv-ipam-controller,nv-ipam-test-controller,\"system:serviceaccounts,system:serviceaccounts:nv-ipam,system:authenticated\""
  echo "$(<"$D/node.token"),system:serviceaccount:nv-ipam:nv-ipam-node,nv-ipam-test-node,\"system:serviceaccounts,system:serviceaccounts:nv-ipam,system:authenticated\""
} >"$D/tokens.csv"
chmod 600 "$D"/*.key "$D"/*.token "$D/tokens.csv"

export NO_PROXY=127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY} no_proxy=127.0.0.1,localhost${no_proxy:+,$no_proxy}

start_etcd() {
  EP=$(free_port)
  PP=$(free_port)
  ETCD_URL=http://127.0.0.1:$EP
  printf '\n==== start %s ====\n' "$(date -u +%FT%TZ)" >>"$D/etcd.log"
  start_proc etcd "$D/etcd.log" "$D/etcd.pid" \
    "$BIN/etcd" --name nv-ipam-test --data-dir "$D/etcd-data" \
    --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
    --initial-cluster "nv-ipam-test=http://127.0.0.1:$PP" \
    --unsafe-no-fsync --heartbeat-interval=10 --election-timeout=100 --log-level=warn
  wait_for 30 "$D/etcd.pid" etcd "etcd $ETCD_URL/health" \
    curl -sf --max-time 2 --noproxy '*' "$ETCD_URL/health"
}

# A free port can be taken by someone else before the daemon binds it: retry.
started=""
for attempt in 1 2 3; do
  if start_etcd; then started=1; break; fi
  grep -q 'address already in use' "$D/etcd.log" || break
  stop_proc "$D/etcd.pid" etcd
  rm -rf "$D/etcd-data"
  log "etcd port taken, retrying ($attempt)"
done
[[ -n $started ]] || { show_logs "$D"; die "etcd did not start"; }
echo "$ETCD_URL" >"$D/etcd.url"

started=""
for attempt in 1 2 3; do
  AP=$(free_port)
  URL=https://127.0.0.1:$AP
  echo "$URL" >"$D/apiserver.url"
  APISERVER_CMD=(
    "$BIN/kube-apiserver"
    --etcd-servers="$ETCD_URL"
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$AP"
    --tls-cert-file="$D/apiserver.crt" --tls-private-key-file="$D/apiserver.key"
    --cert-dir="$D/apiserver-certs"
    --client-ca-file="$D/client-ca.crt" --token-auth-file="$D/tokens.csv"
    --service-account-issuer="$URL" --service-account-key-file="$D/sa.pub"
    --service-account-signing-key-file="$D/sa.key"
    --service-cluster-ip-range=10.0.0.0/24
    --authorization-mode=RBAC
    --allow-privileged=true
    --disable-admission-plugins=ServiceAccount
    --endpoint-reconciler-type=none
    --profiling=false
    --v=1
  )
  {
    echo "# kube-apiserver command line, sourced by: hack/control-plane.sh start-apiserver"
    printf 'APISERVER_CMD=('
    printf ' %q' "${APISERVER_CMD[@]}"
    printf ' )\n'
  } >"$D/apiserver.cmd"
  if start_apiserver; then started=1; break; fi
  grep -q 'address already in use' "$D/apiserver.log" || break
  stop_proc "$D/apiserver.pid" kube-apiserver
  log "apiserver port taken, retrying ($attempt)"
done
[[ -n $started ]] || { show_logs "$D"; die "kube-apiserver did not become ready"; }

for u in admin controller node; do
  case $u in
    admin) user=admin ;;
    *) user=system:serviceaccount:nv-ipam:nv-ipam-$u ;;
  esac
  write_kubeconfig "$u" "$user"
done
export KUBECONFIG=$D/admin.kubeconfig NV_IPAM_CP_DIR=$D
{
  printf 'export KUBECONFIG=%q NV_IPAM_CP_DIR=%q\n' "$KUBECONFIG" "$NV_IPAM_CP_DIR"
  printf 'export NO_PROXY=%q no_proxy=%q\n' "$NO_PROXY" "$no_proxy"
} >"$D/env"
log "ready in $((SECONDS - T0)) s: $URL (etcd $ETCD_URL), state in $D"

if [[ -n $CRDS ]]; then
  if [[ -d $CRDS ]]; then
    apply_crds "$CRDS" || { show_logs "$D"; die "CRD install failed"; }
  else
    log "CRD dir $CRDS does not exist; skipping CRD install"
  fi
fi

# -- run CMD -----------------------------------------------------------------
# Requests of `hack/control-plane.sh {stop,start,restart}-apiserver` (above).
handle_ctl() {
  local req rc=0
  [[ -f $D/ctl.request ]] || return 0
  req=$(<"$D/ctl.request")
  rm -f "$D/ctl.request"
  case $req in
    stop) stop_proc "$D/apiserver.pid" kube-apiserver || rc=1 ;;
    start)
      if [[ -s $D/apiserver.pid ]] && ours "$(<"$D/apiserver.pid")" kube-apiserver; then
        rc=2
      else
        start_apiserver || rc=1
      fi
      ;;
    restart)
      stop_proc "$D/apiserver.pid" kube-apiserver || rc=1
      start_apiserver || rc=1
      ;;
    *) rc=3 ;;
  esac
  ((rc != 1)) || show_logs "$D"
  echo "$rc" >"$D/ctl.result.tmp"
  mv -f "$D/ctl.result.tmp" "$D/ctl.result"
}
trap handle_ctl USR1
echo $$ >"$D/control-plane.pid"

# CMD runs in the background (stdin kept) so that SIGINT/SIGTERM reach our
# traps at once; teardown then stops CMD (SIGTERM, SIGKILL after 10 s) and the
# daemons.
trap 'exit 130' INT
trap 'exit 143' TERM
set +e
# Async commands of a non-interactive shell start with SIGINT/SIGQUIT ignored;
# give CMD the default handling back (an explicit <&0 keeps stdin).
(
  trap - INT QUIT
  exec "$@"
) <&0 &
CMD_PID=$!
while :; do
  wait "$CMD_PID"
  rc=$?
  alive "$CMD_PID" || break
done
set -e
if ((rc != 0)); then
  log "command exited with $rc"
  if ! alive "$(<"$D/apiserver.pid" 2>/dev/null || echo 0)"; then
    log "note: kube-apiserver is not running"
    show_logs "$D"
  fi
fi
exit "$rc"
