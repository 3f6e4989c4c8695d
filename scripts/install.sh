#!/usr/bin/env bash
# Installs clauderon for this user's Python, makes sure a Docker engine runs, and builds
# the default session image locally (no registry needed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/setup-docker.sh"
python3 -m pip install --quiet "$here/.."
"$here/build-images.sh" --base-only
echo "clauderon $(clauderon --version | cut -d' ' -f2) is installed. Try: clauderon doctor" >&2
