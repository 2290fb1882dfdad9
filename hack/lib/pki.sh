# shellcheck shell=bash
# The throwaway PKI of the test control plane (hack/control-plane.sh) and of the end-to-end
# cluster (hack/cluster.sh): P-256 keys, 7-day certificates, made with the openssl CLI in the
# current directory. Sourced, not run.
#
#   pki_ca NAME CN                      NAME.key, NAME.crt: a CA
#   pki_leaf NAME SUBJECT CA EXT-LINE... NAME.key, NAME.crt signed by CA.crt/CA.key, with the
#                                       given x509v3 extension lines

_pki_ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)

pki_ca() {
  openssl req -x509 "${_pki_ec[@]}" -days 7 -keyout "$1.key" -out "$1.crt" -subj "/CN=$2" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}

pki_leaf() {
  local n=$1 subj=$2 ca=$3
  shift 3
  openssl req -new "${_pki_ec[@]}" -keyout "$n.key" -out "$n.csr" -subj "$subj"
  printf '%s\n' "$@" >"$n.ext"
  openssl x509 -req -in "$n.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -days 7 \
    -extfile "$n.ext" -out "$n.crt"
  rm -f "$n.csr" "$n.ext"
}
