#!/usr/bin/env bash
# Builds clauderon's images locally, with no container registry:
#   clauderon-base:bookworm    Debian bookworm (minbase) + bash, git, curl, ca-certificates.
#                              The default session image; clauderon provisions the agent.
#   clauderon-agents:bookworm  the base plus Claude Code and Codex installed in /usr/local
#                              (pinned versions; used by the tests that need an image with agents).
# Each image is built only when missing (FORCE=1 rebuilds). Runs as root (debootstrap, chroot).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.sh"

BASE_IMAGE=${BASE_IMAGE:-clauderon-base:bookworm}
AGENTS_IMAGE=${AGENTS_IMAGE:-clauderon-agents:bookworm}

# The Debian mirror this machine already uses (its apt sources), unless DEBIAN_MIRROR says.
debian_mirror() {
  local uri
  # deb822 sources: the first URIs of a stanza that is not the security archive.
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk 'BEGIN{RS=""; FS="\n"} {u=""; s=""; for(i=1;i<=NF;i++){ if($i ~ /^URIs:/){sub(/^URIs:[ \t]*/,"",$i); split($i,a,/[ \t]+/); u=a[1]} if($i ~ /^Suites:/) s=$i } if(u!="" && s !~ /security/ && u !~ /security/){print u; exit}}' "$f")
    [ -n "$uri" ] && { echo "${uri%/}"; return; }
  done
  # one-line sources: `deb [options] URI suite components`
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1=="deb" { for(i=2;i<=NF;i++) if ($i !~ /^\[/ && $i !~ /\]$/) { if ($i !~ /security/ && $(i+1) !~ /security/) { print $i; exit } else break } }' "$f")
    [ -n "$uri" ] && { echo "${uri%/}"; return; }
  done
}
MIRROR=${DEBIAN_MIRROR:-$(debian_mirror)}
WORK=${CLAUDERON_IMAGE_WORK:-/var/tmp/clauderon-image-build}
LABEL="clauderon.managed=true"

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

log() { printf '[build-images] %s\n' "$*" >&2; }

cleanup_mounts() {
  for m in "$WORK/rootfs/proc" "$WORK/rootfs/sys" "$WORK/rootfs/dev"; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m" || true
  done
}
trap cleanup_mounts EXIT

build_base() {
  [ -n "$MIRROR" ] || { log "no Debian mirror in /etc/apt/sources*: set DEBIAN_MIRROR=<url of a Debian archive>"; exit 1; }
  log "building $BASE_IMAGE with debootstrap ($MIRROR)"
  command -v debootstrap >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  cleanup_mounts
  rm -rf "$WORK/rootfs"; mkdir -p "$WORK"
  debootstrap --variant=minbase --include=bash,git,curl,ca-certificates,procps,less \
    bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
  # Slim the image: package lists, caches and docs are not needed at run time.
  rm -rf "$WORK/rootfs/var/lib/apt/lists/"* "$WORK/rootfs/var/cache/apt/"*.bin \
         "$WORK/rootfs/usr/share/doc" "$WORK/rootfs/usr/share/man" "$WORK/rootfs/usr/share/locale"
  tar -C "$WORK/rootfs" -c . | docker import \
    -c 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin' \
    -c 'ENV LANG=C.UTF-8' \
    -c "LABEL $LABEL" \
    -c 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
  log "built $BASE_IMAGE"
}

build_agents() {
  log "building $AGENTS_IMAGE (Claude Code $CLAUDE_CODE_VERSION, Codex $CODEX_VERSION)"
  local ctx="$WORK/agents"
  rm -rf "$ctx"; mkdir -p "$ctx/usr/local"
  # npm runs on the host: the registry is reached through the host's trust store.
  npm install --global --prefix "$ctx/usr/local" --no-audit --no-fund --loglevel=error \
    "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" "@openai/codex@$CODEX_VERSION" >/dev/null
  # Codex's launcher is a node script; point the command at its static binary instead,
  # so the image needs no node.
  local codex_bin
  codex_bin=$(cd "$ctx/usr/local" && find lib/node_modules/@openai -path '*linux-musl/bin/codex' -type f | head -1)
  [ -n "$codex_bin" ] || { log "codex binary not found in the npm package"; exit 1; }
  ln -sf "../$codex_bin" "$ctx/usr/local/bin/codex"
  cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $BASE_IMAGE
COPY usr/local /usr/local
LABEL $LABEL
DOCKERFILE
  DOCKER_BUILDKIT=0 docker build -q -t "$AGENTS_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
  log "built $AGENTS_IMAGE"
}

if [ "${FORCE:-0}" = 1 ] || ! have_image "$BASE_IMAGE"; then build_base; fi
if [ "${1:-}" != "--base-only" ]; then
  if [ "${FORCE:-0}" = 1 ] || ! have_image "$AGENTS_IMAGE"; then build_agents; fi
fi
