#!/usr/bin/env bash
# Runs the Apicurio registry built by scripts/services (exec: the registry is this process),
# over HTTP and, when asked, HTTPS beside it (Quarkus's own TLS, PEM certificate and key).
#
#   scripts/registry/start.sh --jar JAR --port 8081 [--host 127.0.0.1] [--heap -Xmx256m]
#       [--https-port 8082 --cert server.pem --key server.key]
#
# Client certificates cannot be required here: in Quarkus 2.16 (Apicurio 2.4.2)
# quarkus.http.ssl.client-auth is fixed at build time (to NONE). scripts/registry/tls-front.sh
# puts a TLS front that requires one before the HTTP port instead.
set -euo pipefail

die() { echo "registry/start.sh: $*" >&2; exit 2; }

jar="" host=127.0.0.1 port="" heap="-Xmx256m" https_port="" cert="" key=""
while [ $# -gt 0 ]; do
  case "$1" in
    --jar) jar="$2" ;;
    --host) host="$2" ;;
    --port) port="$2" ;;
    --heap) heap="$2" ;;
    --https-port) https_port="$2" ;;
    --cert) cert="$2" ;;
    --key) key="$2" ;;
    *) die "unknown option $1" ;;
  esac
  shift 2
done
[ -n "$jar" ] && [ -f "$jar" ] || die "--jar: no registry jar at '${jar}' (scripts/services up registry builds it)"
[ -n "$port" ] || die "--port is required"

props=(-Dquarkus.http.host="$host" -Dquarkus.http.port="$port")
if [ -n "$https_port" ]; then
  [ -r "$cert" ] || die "--cert: cannot read '${cert}'"
  [ -r "$key" ] || die "--key: cannot read '${key}'"
  props+=(-Dquarkus.http.ssl-port="$https_port"
          -Dquarkus.http.ssl.certificate.files="$cert"
          -Dquarkus.http.ssl.certificate.key-files="$key"
          -Dquarkus.http.insecure-requests=enabled)
fi

# shellcheck disable=SC2086
exec java $heap -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
  "${props[@]}" -jar "$jar"
