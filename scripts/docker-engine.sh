#!/usr/bin/env bash
# Provision and start a local Docker engine, idempotently.
# Installs Debian's docker.io and docker-compose when missing, starts dockerd bound to 127.0.0.1
# (logging to .cache/dockerd.log) and waits until `docker info` answers.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
log="$root/.cache/dockerd.log"
mkdir -p "$root/.cache"

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "docker-engine: need root to install ${need[*]}" >&2
    exit 1
  fi
  echo "docker-engine: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi

echo "docker-engine: starting dockerd (log: $log)"
# --ip binds published ports to loopback by default.
nohup dockerd --ip 127.0.0.1 >"$log" 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "docker-engine: ready"
    exit 0
  fi
  sleep 1
done
echo "docker-engine: dockerd did not answer within 60 s; last log lines:" >&2
tail -n 20 "$log" >&2
exit 1
