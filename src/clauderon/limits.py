"""Parsing of `--cpu-limit` and `--memory-limit`, with errors that show valid forms."""

from __future__ import annotations

import math
import re

from .errors import InvalidInput

# Docker refuses less than 6 MiB of memory for a container.
MIN_MEMORY = 6 * 1024 * 1024
MIN_CPU = 0.01

_CPU_RE = re.compile(r"^(?:(\d+(?:\.\d+)?|\.\d+)|(\d+)m)$")
_MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(b|k|m|g|t)(?:i?b)?$", re.IGNORECASE)
_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_cpu_limit(text: str, available: int | None = None) -> float:
    """`2`, `0.5` or `500m` (thousandths of a CPU) → number of CPUs."""
    value = text.strip()
    match = _CPU_RE.fullmatch(value)
    if not match:
        raise InvalidInput(
            f"invalid --cpu-limit {text!r}: give a number of CPUs such as 2, 0.5 or 500m"
        )
    cpus = float(match.group(1)) if match.group(1) is not None else int(match.group(2)) / 1000
    if not math.isfinite(cpus) or cpus < MIN_CPU:
        raise InvalidInput(f"invalid --cpu-limit {text!r}: it must be at least {MIN_CPU}")
    if available is not None and cpus > available:
        raise InvalidInput(f"invalid --cpu-limit {text!r}: this machine has {available} CPUs")
    return round(cpus, 3)


def parse_memory_limit(text: str) -> int:
    """`512m`, `8g`, `1.5g`, `8GiB` → bytes (binary units, as Docker uses them)."""
    match = _MEMORY_RE.fullmatch(text.strip())
    if not match:
        raise InvalidInput(
            f"invalid --memory-limit {text!r}: give a size with a unit, such as 512m or 8g"
        )
    number, unit = float(match.group(1)), match.group(2).lower()
    size = int(number * _UNITS[unit])
    if size < MIN_MEMORY:
        raise InvalidInput(f"invalid --memory-limit {text!r}: Docker needs at least 6m")
    return size


def format_bytes(size: int) -> str:
    """Bytes in the largest binary unit that keeps at least one whole unit: 512m, 1.5g."""
    for unit, factor in (("t", 1024**4), ("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if size >= factor:
            value = size / factor
            return f"{value:.1f}".rstrip("0").rstrip(".") + unit
    return f"{size}b"
