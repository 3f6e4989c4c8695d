"""clauderon: coding agents in isolated, parallel sessions (git worktree + container)."""

__version__ = "0.1.0"
