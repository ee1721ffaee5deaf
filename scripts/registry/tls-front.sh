#!/usr/bin/env bash
# A TLS front that requires a client certificate, before the registry's plain HTTP port (exec:
# socat is this process). Quarkus 2.16 fixes client-auth at build time, so mutual TLS for the
# registry is done here.
#
#   scripts/registry/tls-front.sh --listen 127.0.0.1:8083 --to 127.0.0.1:8081 \
#       --cert server.pem --key server.key --client-ca ca.pem
#
# A client whose certificate is missing or not signed by --client-ca fails the handshake.
set -euo pipefail

die() { echo "registry/tls-front.sh: $*" >&2; exit 2; }

listen="" to="" cert="" key="" client_ca=""
while [ $# -gt 0 ]; do
  case "$1" in
    --listen) listen="$2" ;;
    --to) to="$2" ;;
    --cert) cert="$2" ;;
    --key) key="$2" ;;
    --client-ca) client_ca="$2" ;;
    *) die "unknown option $1" ;;
  esac
  shift 2
done
[[ "$listen" == *:* ]] || die "--listen HOST:PORT is required"
[[ "$to" == *:* ]] || die "--to HOST:PORT is required"
for f in "$cert" "$key" "$client_ca"; do [ -r "$f" ] || die "cannot read '${f}'"; done
command -v socat >/dev/null 2>&1 || die "socat is not installed (apt-get install socat)"

exec socat \
  "OPENSSL-LISTEN:${listen##*:},bind=${listen%:*},reuseaddr,fork,cert=$cert,key=$key,cafile=$client_ca,verify=1" \
  "TCP:$to"
