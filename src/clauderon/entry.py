"""The `clauderon` command: the dashboard is dispatched before the CLI is imported.

`clauderon tui` (and `clauderon` alone on a terminal) never needs typer or click, and
importing them is most of the CLI's start-up: the dashboard's first paint does not wait
for it. Everything else goes to `cli.main`.
"""

from __future__ import annotations

import os
import sys


def _wants_dashboard(args: list[str]) -> bool:
    if "_CLAUDERON_COMPLETE" in os.environ:  # a shell asking for completions
        return False
    return args == ["tui"] or (not args and sys.stdin.isatty() and sys.stdout.isatty())


def main() -> None:
    if _wants_dashboard(sys.argv[1:]):
        from .errors import ClauderonError
        from .tui import run

        try:
            sys.exit(run())
        except ClauderonError as exc:
            sys.stderr.write(f"clauderon: error: {exc.message}\n")
            sys.exit(1)
        except KeyboardInterrupt:
            sys.stderr.write("clauderon: interrupted\n")
            sys.exit(130)
    from .cli import main as cli_main

    cli_main()
