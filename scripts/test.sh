#!/usr/bin/env bash
# The whole test suite, as CI runs it: Docker engine, local images, lint, unit and
# integration tests (real engine, real agent CLIs against a local fake model API).
#
# Run as root (CI, a fresh machine), it installs what is missing (docker.io,
# python3-venv, gcc/libc6-dev for the session forwarder), builds the images, then runs
# lint and the suite AS A NORMAL USER (`clauderon-test`, in the docker group) with a
# virtual environment made from Debian's own /usr/bin/python3 — the lowest Python
# clauderon supports — on a copy of the checkout that user can read. Only the tests
# marked `root` run as root, in a second, small pytest call.
# Run as a normal user, it runs everything as that user.
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$(pwd)
log() { printf '[test] %s\n' "$*" >&2; }

# pytest exits 5 when the selection has no test: not a failure here.
run_pytest() { local rc=0; "$@" || rc=$?; [ "$rc" = 5 ] && rc=0; return "$rc"; }

system_python() {
  if [ -n "${CLAUDERON_TEST_PYTHON:-}" ]; then echo "$CLAUDERON_TEST_PYTHON"
  elif [ -x /usr/bin/python3 ]; then echo /usr/bin/python3
  else command -v python3; fi
}

as_user() {
  scripts/setup-docker.sh
  local venv=${CLAUDERON_TEST_VENV:-$checkout/.venv} python
  python=$(system_python)
  # A venv made from another interpreter (e.g. a pyenv one first on the PATH) is remade.
  if [ ! -x "$venv/bin/python" ] || ! grep -qx "home = $(dirname "$python")" "$venv/pyvenv.cfg" 2>/dev/null; then
    rm -rf "$venv"
    "$python" -m venv "$venv" || { log "$python cannot make a venv: sudo apt-get install python3-venv"; exit 1; }
  fi
  # The web UI's xterm.js, from the npm registry (pinned, integrity checked; gitignored).
  "$python" src/clauderon/web/assets.py --if-missing
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test]" >"$venv/install.log" 2>&1 \
    || { tail -20 "$venv/install.log" >&2; exit 1; }
  for image in clauderon-base:bookworm clauderon-agents:bookworm; do
    docker image inspect "$image" >/dev/null 2>&1 \
      || { log "image $image is missing: run scripts/build-images.sh as root (or sudo)"; exit 1; }
  done
  log "as $(id -un) (uid $(id -u)), $("$venv/bin/python" --version) from $python"
  lint_dirs="src tests"; [ -d bench ] && lint_dirs="$lint_dirs bench"
  "$venv/bin/ruff" check $lint_dirs
  "$venv/bin/ruff" format --check $lint_dirs
  "$venv/bin/mypy"  # strict on src/ ([tool.mypy] in pyproject.toml)
  run_pytest "$venv/bin/python" -m pytest "$@"
}

if [ "$(id -u)" != 0 ]; then
  as_user "$@"
  exit
fi

# --- as root: prepare the machine, then hand over to a normal user --------------------
user=${CLAUDERON_TEST_USER:-clauderon-test}
scripts/setup-docker.sh
missing=()
/usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
echo 'int main(void){return 0;}' | cc -static -x c -o /dev/null - >/dev/null 2>&1 || missing+=(libc6-dev)
command -v git >/dev/null 2>&1 || missing+=(git)
command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)  # tests/tui runs the dashboard in tmux
command -v busybox >/dev/null 2>&1 || missing+=(busybox)  # the entrypoint under Alpine's shell (tests/unit)
command -v npm >/dev/null 2>&1 || missing+=(npm)  # xterm.js for the web UI
command -v chromium >/dev/null 2>&1 || missing+=(chromium)  # tests/web drive Debian's chromium
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
scripts/build-images.sh

# With root's npm settings (registry, proxy), before the checkout is copied for the user.
/usr/bin/python3 src/clauderon/web/assets.py --if-missing

getent group docker >/dev/null || groupadd --system docker
if ! id "$user" >/dev/null 2>&1; then
  log "creating the user $user (docker group)"
  useradd --create-home --shell /bin/bash --groups docker "$user"
fi
usermod -aG docker "$user"
home=$(getent passwd "$user" | cut -d: -f6)
# The checkout may sit under a directory only root can enter (CI clones under /root):
# the user gets its own copy, refreshed on every run, and keeps its venv beside it.
copy=$home/clauderon
rm -rf "$copy"
install -d -o "$user" -g "$user" -m 755 "$copy"
tar -C "$checkout" --exclude=./.venv --exclude=.pytest_cache --exclude=__pycache__ \
  --exclude=.ruff_cache -cf - . | runuser -u "$user" -- tar -C "$copy" -xf -
# pip's package sources for this machine, when root has them in its own config.
pip_conf=""
for f in "${PIP_CONFIG_FILE:-}" "$HOME/.config/pip/pip.conf" "$HOME/.pip/pip.conf"; do
  if [ -n "$f" ] && [ -f "$f" ]; then
    pip_conf=$home/.config/pip/pip.conf
    install -d -o "$user" -g "$user" "$home/.config" "$home/.config/pip"
    install -o "$user" -g "$user" -m 644 "$f" "$pip_conf"
    break
  fi
done
clean_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
keep=()
for name in $(compgen -e); do
  case "$name" in
    PIP_*|npm_config_*|NPM_CONFIG_*|http_proxy|https_proxy|no_proxy|HTTP_PROXY|HTTPS_PROXY|NO_PROXY|DOCKER_HOST|DEBIAN_MIRROR)
      keep+=("$name=${!name}") ;;
  esac
done
log "running lint and the suite as $user"
rc=0
runuser -u "$user" -- env -i HOME="$home" USER="$user" LOGNAME="$user" PATH="$clean_path" \
  LANG=C.UTF-8 TERM="${TERM:-dumb}" CLAUDERON_TEST_VENV="$home/.venv-clauderon" "${keep[@]}" \
  bash -c 'cd "$1" && shift && exec scripts/test.sh "$@"' test "$copy" -m "not root" "$@" || rc=$?

log "running the tests that need root"
root_rc=0
(cd "$copy" && PYTHONDONTWRITEBYTECODE=1 run_pytest "$home/.venv-clauderon/bin/python" -m pytest \
  -p no:cacheprovider -m root "$@") || root_rc=$?
[ "$rc" = 0 ] && rc=$root_rc
exit "$rc"
