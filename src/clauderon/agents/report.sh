#!/bin/sh
# clauderon: report an agent event to the daemon: report AGENT EVENT [JSON]
# The event's JSON comes as the third argument (Codex) or on stdin (Claude Code hooks).
# It travels through the session's proxy, which knows the session from the connection;
# the session's own token proves the report is the agent's. Never blocks the agent long.
url="http://clauderon.internal/v1/agent-events/$1/$2"
if [ -n "${3:-}" ]; then body="$3"; else body=$(cat); fi
if command -v curl >/dev/null 2>&1; then
  printf '%s' "$body" | curl -s -m 5 -o /dev/null -X POST \
    -H "Authorization: Bearer ${CLAUDERON_SESSION_TOKEN:-}" \
    -H "Content-Type: application/json" --data-binary @- "$url"
elif command -v wget >/dev/null 2>&1; then
  printf '%s' "$body" > "/tmp/clauderon-report.$$"
  wget -q -T 5 -O /dev/null --header="Authorization: Bearer ${CLAUDERON_SESSION_TOKEN:-}" \
    --header="Content-Type: application/json" --post-file="/tmp/clauderon-report.$$" "$url"
  rm -f "/tmp/clauderon-report.$$"
fi
exit 0
