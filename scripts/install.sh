#!/usr/bin/env bash
# Installs clauderon in its own virtual environment and puts `clauderon` on the PATH,
# makes sure a Docker engine runs, and builds the default session image locally (no
# registry needed). Run it again to upgrade.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=${CLAUDERON_PREFIX:-$HOME/.local/share/clauderon}

"$here/setup-docker.sh"
python3 -m venv "$prefix/venv"
"$prefix/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$here/.." \
  >"$prefix/install.log" 2>&1 || { tail -20 "$prefix/install.log" >&2; exit 1; }
if [ -w /usr/local/bin ]; then bindir=/usr/local/bin; else bindir=$HOME/.local/bin; fi
mkdir -p "$bindir"
ln -sf "$prefix/venv/bin/clauderon" "$bindir/clauderon"
case ":$PATH:" in *":$bindir:"*) ;; *) echo "add $bindir to your PATH" >&2 ;; esac
"$here/build-images.sh" --base-only
echo "clauderon $("$bindir/clauderon" --version | cut -d' ' -f2) is installed in $bindir. Check with: clauderon doctor" >&2
