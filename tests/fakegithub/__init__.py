from .server import FakeGitHub

__all__ = ["FakeGitHub"]
