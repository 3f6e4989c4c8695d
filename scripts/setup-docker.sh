#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs Debian's docker.io when there is no engine,
# starts dockerd in the background when none runs, and waits until `docker info` works.
set -euo pipefail

log() { printf '[setup-docker] %s\n' "$*" >&2; }

if docker info >/dev/null 2>&1; then
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { log "no Docker engine: install one (e.g. sudo apt-get install docker.io)"; exit 1; }
  log "installing docker.io"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io iptables >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { log "the Docker engine is not running: sudo systemctl start docker"; exit 1; }
  if command -v systemctl >/dev/null 2>&1 && systemctl start docker >/dev/null 2>&1; then
    log "started docker with systemd"
  else
    log "starting dockerd in the background (log: /var/log/dockerd.log)"
    nohup dockerd >/var/log/dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
fi
docker info >/dev/null 2>&1 || { log "dockerd did not come up; see /var/log/dockerd.log"; tail -20 /var/log/dockerd.log >&2 || true; exit 1; }
log "engine $(docker version --format '{{.Server.Version}}' 2>/dev/null) is up"
