"""Scripted local fake of the Anthropic Messages / OpenAI Responses APIs for tests."""

from .server import FakeModelAPI, RecordedRequest, ScriptItem, Text, ToolCall, codex_config_toml

__all__ = ["FakeModelAPI", "RecordedRequest", "ScriptItem", "Text", "ToolCall", "codex_config_toml"]
