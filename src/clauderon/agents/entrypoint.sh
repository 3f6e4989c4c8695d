# clauderon session entrypoint (POSIX sh; the image only needs a shell).
# Starts the agent in its working directory, or resumes the same conversation when the
# container restarts. Every input arrives in the environment, so the prompt reaches the
# agent byte for byte: it is never pasted into shell code.
#   CLAUDERON_AGENT            claude | codex
#   CLAUDERON_SESSION_ID       the session's UUID (also Claude Code's session id)
#   CLAUDERON_PROMPT           the user's prompt
#   CLAUDERON_MODEL            optional model name
#   CLAUDERON_PRINT            1: one non-interactive run
#   CLAUDERON_SKIP_PERMISSIONS 1: no permission prompts (the container is the sandbox;
#                              Claude Code reads its mode from managed settings)
#   CLAUDERON_PROXY_PORT       where the forwarder listens on the container's loopback
say() { printf 'clauderon: %s\n' "$*" >&2; }

# The container has no network but loopback: the forwarder (mounted read-only) joins
# 127.0.0.1:$CLAUDERON_PROXY_PORT to the session's proxy socket. It returns once it
# listens and restarts its worker by itself if that ever dies.
if [ -n "${CLAUDERON_PROXY_PORT:-}" ] && [ -x /opt/clauderon/forward ]; then
  /opt/clauderon/forward "$CLAUDERON_PROXY_PORT" /run/clauderon/p.sock \
    || say "the proxy forwarder did not start: the agent cannot reach its model"
fi

# An agent provided by clauderon is the fallback; one in the image wins.
PATH="$PATH:/opt/clauderon/agent/bin"
export PATH
if command -v sccache >/dev/null 2>&1; then
  RUSTC_WRAPPER=sccache
  export RUSTC_WRAPPER
fi

if ! command -v "$CLAUDERON_AGENT" >/dev/null 2>&1; then
  say "the image has no '$CLAUDERON_AGENT' command and none was provided; recreate the session with \`clauderon refresh\`"
  exit 127
fi

set --
if [ -n "${CLAUDERON_MODEL:-}" ]; then set -- "$@" --model "$CLAUDERON_MODEL"; fi

case "$CLAUDERON_AGENT" in
claude)
  # The permission mode comes from the managed settings in /etc/claude-code.
  if [ "${CLAUDERON_PRINT:-0}" = 1 ]; then
    exec claude "$@" --print --session-id "$CLAUDERON_SESSION_ID" -- "$CLAUDERON_PROMPT"
  fi
  for transcript in "$HOME"/.claude/projects/*/"$CLAUDERON_SESSION_ID".jsonl; do
    if [ -f "$transcript" ]; then
      say "resuming conversation $CLAUDERON_SESSION_ID"
      exec claude "$@" --resume "$CLAUDERON_SESSION_ID"
    fi
  done
  exec claude "$@" --session-id "$CLAUDERON_SESSION_ID" -- "$CLAUDERON_PROMPT"
  ;;
codex)
  CODEX_HOME="$HOME/.codex"
  export CODEX_HOME
  mkdir -p "$CODEX_HOME" || exit 1
  # clauderon's settings (provider, trust, quiet) are copied in on every start.
  cp /etc/clauderon/codex/config.toml "$CODEX_HOME/config.toml" || exit 1
  if [ "${CLAUDERON_SKIP_PERMISSIONS:-0}" = 1 ]; then
    set -- "$@" --dangerously-bypass-approvals-and-sandbox
  fi
  if [ "${CLAUDERON_PRINT:-0}" = 1 ]; then
    exec codex exec "$@" --skip-git-repo-check -- "$CLAUDERON_PROMPT" </dev/null
  fi
  if [ -n "$(ls -A "$CODEX_HOME/sessions" 2>/dev/null)" ]; then
    say "resuming the last conversation"
    exec codex resume --last "$@"
  fi
  exec codex "$@" -- "$CLAUDERON_PROMPT"
  ;;
*)
  say "unknown agent '$CLAUDERON_AGENT'"
  exit 2
  ;;
esac
