#!/usr/bin/env bash
# Installs clauderon for the user who runs it (a normal user with sudo, or root): its own
# virtual environment made from the system's python3, `clauderon` on the PATH, a running
# Docker engine the user may use (docker group), a C compiler for the small forwarder
# each session container uses to reach the proxy, and the default session image built
# locally (no registry needed). Everything that needs root happens here, through sudo;
# after it, nothing clauderon does needs root. Run it again to upgrade.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=${CLAUDERON_PREFIX:-$HOME/.local/share/clauderon}
log() { printf '[install] %s\n' "$*" >&2; }

# Root steps go through sudo, and only when something is missing.
if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo); fi
need_sudo() { [ "${#sudo[@]}" = 0 ] || command -v sudo >/dev/null || { log "this step needs root: run as root, or install sudo"; exit 1; }; }
python=$(command -v /usr/bin/python3 || command -v python3)

missing=()
"$python" -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
command -v git >/dev/null 2>&1 || missing+=(git)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
echo 'int main(void){return 0;}' | cc -static -x c -o /dev/null - >/dev/null 2>&1 || missing+=(libc6-dev)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  need_sudo
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

docker info >/dev/null 2>&1 || { need_sudo; "${sudo[@]}" "$here/setup-docker.sh"; }
relogin=0
if [ "$(id -u)" != 0 ] && ! id -nG | tr ' ' '\n' | grep -qx docker; then
  log "adding $(id -un) to the docker group"
  need_sudo
  "${sudo[@]}" usermod -aG docker "$(id -un)"
  relogin=1
fi

mkdir -p "$prefix"
if [ -x "$prefix/venv/bin/python" ] && ! grep -qx "home = $(dirname "$python")" "$prefix/venv/pyvenv.cfg" 2>/dev/null; then
  rm -rf "$prefix/venv"  # made by another interpreter
fi
"$python" -m venv "$prefix/venv"
# The web UI's xterm.js, from the npm registry (pinned, integrity checked), shipped in the
# package. Without it everything else works and `clauderon web` says how to fetch it.
"$python" "$here/../src/clauderon/web/assets.py" --if-missing \
  || log "the web UI's assets were not fetched; later: clauderon web --fetch-assets"
"$prefix/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$here/.." \
  >"$prefix/install.log" 2>&1 || { tail -20 "$prefix/install.log" >&2; exit 1; }
if [ -w /usr/local/bin ]; then bindir=/usr/local/bin; else bindir=$HOME/.local/bin; fi
mkdir -p "$bindir"
ln -sf "$prefix/venv/bin/clauderon" "$bindir/clauderon"
case ":$PATH:" in *":$bindir:"*) ;; *) log "add $bindir to your PATH" ;; esac
if ! docker image inspect clauderon-base:bookworm >/dev/null 2>&1; then
  need_sudo
  "${sudo[@]}" "$here/build-images.sh" --base-only  # debootstrap needs root
fi
log "clauderon $("$bindir/clauderon" --version | cut -d' ' -f2) is installed in $bindir. Check with: clauderon doctor"
if [ "$relogin" = 1 ]; then
  log "you were added to the docker group: log out and back in (or run \`newgrp docker\`) once"
fi
