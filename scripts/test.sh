#!/usr/bin/env bash
# The whole test suite, as CI runs it: Docker engine, local images, lint, unit and
# integration tests (real engine, real agent CLIs against a local fake model API).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-docker.sh
command -v tmux >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null; }  # tests/tui runs the dashboard in tmux
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]" >.venv/install.log 2>&1 || { tail -20 .venv/install.log >&2; exit 1; }
scripts/build-images.sh
lint_dirs="src tests"; [ -d bench ] && lint_dirs="$lint_dirs bench"
.venv/bin/ruff check $lint_dirs
.venv/bin/ruff format --check $lint_dirs
exec .venv/bin/python -m pytest "$@"
