import pytest
from hypothesis import given
from hypothesis import strategies as st

from clauderon.errors import InvalidInput
from clauderon.limits import format_bytes, parse_cpu_limit, parse_memory_limit


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("2", 2.0), ("0.5", 0.5), (".5", 0.5), ("500m", 0.5), ("1500m", 1.5), (" 1 ", 1.0)],
)
def test_cpu_limits(text, cpus):
    assert parse_cpu_limit(text) == cpus


@pytest.mark.parametrize(
    "text", ["", "abc", "-1", "0", "0.001", "2x", "1e3", "inf", "nan", "1,5", "0m", "2 cpus"]
)
def test_bad_cpu_limits(text):
    with pytest.raises(InvalidInput) as info:
        parse_cpu_limit(text)
    assert "\n" not in info.value.message


def test_cpu_limit_above_the_machine():
    with pytest.raises(InvalidInput, match="this machine has 2 CPUs"):
        parse_cpu_limit("4", available=2)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512m", 512 * 1024**2),
        ("8g", 8 * 1024**3),
        ("8G", 8 * 1024**3),
        ("1.5g", int(1.5 * 1024**3)),
        ("8GiB", 8 * 1024**3),
        ("8gb", 8 * 1024**3),
        ("10240k", 10 * 1024**2),
    ],
)
def test_memory_limits(text, size):
    assert parse_memory_limit(text) == size


@pytest.mark.parametrize("text", ["", "512", "-1g", "g", "1x", "100k", "5m", "1.g", "eight g"])
def test_bad_memory_limits(text):
    with pytest.raises(InvalidInput):
        parse_memory_limit(text)


@given(st.integers(min_value=6, max_value=10**6), st.sampled_from(["m", "M", "mb", "MiB"]))
def test_memory_megabytes(n, unit):
    assert parse_memory_limit(f"{n}{unit}") == n * 1024**2


@given(st.integers(min_value=6 * 1024**2, max_value=1024**4))
def test_format_bytes_reads_back_close(size):
    assert abs(parse_memory_limit(format_bytes(size)) - size) <= size * 0.05
