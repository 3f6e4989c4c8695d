"""The coding agents a session can run, behind one small interface.

An agent knows its command, the npm package that provides it, the settings files that
keep every onboarding, trust and permission screen out of the way, and its environment.
Starting and resuming is done by one shell entrypoint shared by all agents.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from importlib import resources
from pathlib import Path

from ..errors import InvalidInput
from ..models import AgentKind, Session
from ..spec import Mount


class Agent(ABC):
    kind: AgentKind
    command: str  # the executable's name inside the container
    display_name: str
    model_host: str  # where its model API lives (the credential it needs is for this host)
    default_version: str

    @abstractmethod
    def npm_package(self, version: str, arch: str, musl: bool) -> tuple[str, list[str]]:
        """The npm spec holding the native binary, and the binaries' paths in its tarball."""

    @abstractmethod
    def write_settings(self, session: Session, session_dir: Path, home: Path) -> list[Mount]:
        """Write the per-session settings files (in `session_dir`; user templates are in
        `home`) and say where they are mounted."""

    def env(self, session: Session) -> dict[str, str]:
        return {}


# The status reporter, installed in ~/.clauderon/hooks/ and mounted read-only there.
REPORT_COMMAND = "/workspace/.clauderon/hooks/report"


def entrypoint_script() -> str:
    return resources.files(__package__).joinpath("entrypoint.sh").read_text()


def install_report_script(hooks_dir: Path) -> None:
    script = hooks_dir / "report"
    script.write_text(resources.files(__package__).joinpath("report.sh").read_text())
    script.chmod(0o755)


def get_agent(kind: str) -> Agent:
    from .claude import ClaudeCode
    from .codex import Codex

    agents: dict[str, Agent] = {AgentKind.CLAUDE: ClaudeCode(), AgentKind.CODEX: Codex()}
    try:
        return agents[AgentKind(kind)]
    except ValueError:
        raise InvalidInput(
            f"unknown agent {kind!r}: choose one of {', '.join(a.value for a in AgentKind)}"
        ) from None
