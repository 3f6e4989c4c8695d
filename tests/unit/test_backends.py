"""The backend registry and the container-state words."""

from __future__ import annotations

import pytest

from clauderon.backends import Backends, ContainerState, ContainerStatus
from clauderon.backends.docker import DockerBackend, container_state
from clauderon.errors import InvalidInput

from .fake_backend import FakeBackend


def test_the_registry_makes_each_backend_once_and_names_the_known_ones() -> None:
    backends = Backends.for_home("abc123")
    assert backends.kinds() == ["docker"] and backends.default == "docker"
    assert backends.made() == []  # nothing is made (no engine is asked) until used
    docker = backends.get("docker")
    assert isinstance(docker, DockerBackend) and docker.instance == "abc123"
    assert backends.get("docker") is docker and backends.made() == [docker]
    with pytest.raises(InvalidInput, match="unknown backend 'k8s': the available backends"):
        backends.get("k8s")


def test_backends_made_already_are_registered_by_their_kind() -> None:
    fake = FakeBackend("i")
    backends = Backends.of(fake)
    assert backends.default == "fake" and backends.get("fake") is fake
    with pytest.raises(ValueError, match="default backend"):
        Backends({}, default="docker")


@pytest.mark.parametrize(
    ("word", "state"),
    [
        ("running", ContainerState.RUNNING),
        ("exited", ContainerState.EXITED),
        ("dead", ContainerState.DEAD),
        ("created", ContainerState.CREATED),
        ("removing", ContainerState.REMOVING),
        ("missing", ContainerState.UNKNOWN),  # not a word Docker uses for a container
        ("something-new", ContainerState.UNKNOWN),
    ],
)
def test_dockers_words_become_states(word: str, state: ContainerState) -> None:
    assert container_state(word) is state


def test_a_status_holds_a_state_never_a_string() -> None:
    status = ContainerStatus("c", "exited", 137)  # type: ignore[arg-type]
    assert status.state is ContainerState.EXITED and status.state.ended
    assert not status.running and ContainerStatus("c", ContainerState.RUNNING).running
    with pytest.raises(ValueError):
        ContainerStatus("c", "bogus")  # type: ignore[arg-type]
