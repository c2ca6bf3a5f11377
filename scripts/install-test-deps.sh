#!/usr/bin/env bash
# Installs the Debian packages the tests use, only when missing: the JDK and Maven (Apache
# Kafka runs from Maven Central's jars), promtool (Prometheus config checks and the real
# Prometheus scraper), chromium (the operator page's browser test), kcat (librdkafka's client: malformed
# records written by a non-Python producer). Idempotent and quick when everything is there.
set -euo pipefail
need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
{ command -v promtool && command -v prometheus; } >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
command -v kcat >/dev/null || need+=(kcat)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing ${need[*]}: install them (apt-get install ${need[*]}) or run as root" >&2
    exit 1
  fi
  echo "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
