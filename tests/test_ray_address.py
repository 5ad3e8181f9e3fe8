"""A Ray address where nothing listens fails in seconds with what to do, not after minutes
of ray.init retries; malformed addresses are refused when the options are built."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from greenrunner.errors import ConfigError
from greenrunner.evaluation.executors import RayOptions, ray_available, split_address
from tests.cli_helpers import greenrunner

needs_ray = pytest.mark.skipif(not ray_available(), reason="needs the greenrunner[ray] extra")


def _free_port() -> int:
    """A local port nothing listens on: bound to get a free number, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@needs_ray
@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_unreachable_address_fails_fast_and_says_what_to_do(
    replay_dir: Path, scheme: str
) -> None:
    address = f"{scheme}127.0.0.1:{_free_port()}"
    start = time.monotonic()
    # Bounded: before the probe, ray.init retried this address for minutes.
    proc = greenrunner(
        "select", "--replay", str(replay_dir), "--executor", "ray", "--address", address,
        timeout=60,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"cannot reach the Ray cluster at {address}" in proc.stderr
    assert "ray start --head" in proc.stderr and "leave --address out" in proc.stderr
    assert elapsed < 30  # the probe itself gives up within 3 s; the rest is start-up


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.0.0.5:6379", ("10.0.0.5", 6379)),
        ("ray://head:10001", ("head", 10001)),
        ("ray://head", ("head", 10001)),  # Ray Client's default port
        ("[::1]:6379", ("::1", 6379)),
    ],
)
def test_addresses_are_split_into_host_and_port(address: str, expected: tuple[str, int]) -> None:
    assert split_address(address) == expected


@pytest.mark.parametrize("address", ["head:", "head:port", "head:0", "head:70000", ":1"])
def test_malformed_addresses_are_refused_when_the_options_are_built(address: str) -> None:
    with pytest.raises(ConfigError, match=rf"Ray address .*got '{address}'"):
        RayOptions(address=address)


@needs_ray
def test_a_listening_address_passes_and_auto_is_left_to_ray(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray

    from greenrunner.evaluation import executors_ray

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("0.0.0.0", 0))  # reachable through the node's IP, as Ray connects
        server.listen()
        executors_ray.check_reachable(f"127.0.0.1:{server.getsockname()[1]}")

    # auto: Ray reads the running cluster's address itself; no probe of a guessed one.
    def no_probe(address: str, timeout: float = 0) -> None:
        raise AssertionError("auto must not be probed")

    def no_cluster(**kwargs: object) -> None:
        raise ConnectionError("Could not find any running Ray instance.")

    monkeypatch.setattr(executors_ray, "check_reachable", no_probe)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", no_cluster)
    with pytest.raises(ConfigError, match="cannot reach the Ray cluster at 'auto'"):
        executors_ray.RayExecutor(RayOptions(address="auto"))
