"""Executors: where the evaluations of one round run.

The engine hands an executor one round of pulls, ``[(candidate, sample ids), ...]``, and
gets one outcome per pull back, in the same order: a boolean array, or the
:class:`EvaluationError` that made the pull fail. Because the engine records the outcomes
in the round's order whatever order they finished in, and a pull's sample ids depend only
on that model's own prefix, an executor cannot change a run's decisions: the same seed picks
the same models with the same pull counts in-process and on a cluster.

:class:`InProcessExecutor` (the default) is a plain loop, exactly the engine's behaviour
before executors existed. The Ray executor (extra ``greenrunner[ray]``) lives in
:mod:`greenrunner.evaluation.executors_ray` and is only imported when asked for.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from greenrunner.candidates import Candidate
from greenrunner.errors import ConfigError
from greenrunner.evaluation.base import EvaluationError, Evaluator, check_correctness

Pull = tuple[Candidate, np.ndarray]
Outcome = np.ndarray | EvaluationError

EXECUTORS = ("inprocess", "ray")


@runtime_checkable
class Executor(Protocol):
    """Runs a round of pulls; ``close`` releases whatever it holds (workers, a cluster)."""

    def run(self, evaluator: Evaluator, pulls: Sequence[Pull]) -> list[Outcome]: ...

    def close(self) -> None: ...


@runtime_checkable
class StatsMerging(Protocol):
    """An evaluator that can take in cache counts of evaluations run in another process.

    Remote workers hold their own copy of the evaluator, so its counters on the driver
    would stay at zero; the executor hands each pull's counts back through this.
    """

    def merge_cache_stats(self, stats: Mapping[str, int], candidate: Candidate) -> None: ...


def checked_outcome(outcome: object, count: int, model: str) -> Outcome:
    """An executor's outcome for a pull of ``count`` samples, validated: the boolean array,
    or the EvaluationError that fails the model (it raised, or returned something that is
    not correctness; see :func:`greenrunner.evaluation.base.check_correctness`)."""
    if isinstance(outcome, EvaluationError):
        return outcome
    try:
        return check_correctness(outcome, count, model)
    except EvaluationError as exc:
        return exc


def evaluate_pull(evaluator: Evaluator, candidate: Candidate, ids: np.ndarray) -> Outcome:
    """One pull, with the failure a model may cause returned instead of raised."""
    try:
        return np.asarray(evaluator.evaluate(candidate, ids))
    except EvaluationError as exc:
        return exc


class InProcessExecutor:
    """Evaluates the round's pulls one after another in this process (the default)."""

    def run(self, evaluator: Evaluator, pulls: Sequence[Pull]) -> list[Outcome]:
        return [evaluate_pull(evaluator, candidate, ids) for candidate, ids in pulls]

    def close(self) -> None:
        return None


@dataclass(frozen=True)
class RayOptions:
    """How to reach Ray and what each model's worker asks for.

    ``address``: None starts a local Ray instance (or joins the one this process already
    started); ``"auto"`` joins the cluster this machine belongs to (``ray start``);
    ``"ray://HOST:PORT"`` connects through Ray Client. ``num_cpus``/``num_gpus`` are each
    model worker's resource request, ``per_model`` overrides them by model name (a large
    model asks for a GPU, a small one does not). ``max_workers`` caps the model workers alive
    at once; by default as many as the cluster's resources can hold, so a round never waits
    on a worker that cannot be placed.
    """

    address: str | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    per_model: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    max_workers: int | None = None

    def __post_init__(self) -> None:
        for key, value in (("num_cpus", self.num_cpus), ("num_gpus", self.num_gpus)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"{key} per model must be a number >= 0; got {value!r}")
        if self.num_cpus == 0 and self.num_gpus == 0:
            raise ConfigError(
                "a model worker must request some resource (num_cpus or num_gpus > 0); "
                "got both 0, which would let Ray start unlimited workers at once"
            )
        if self.max_workers is not None and (
            isinstance(self.max_workers, bool)
            or not isinstance(self.max_workers, int)
            or self.max_workers < 1
        ):
            raise ConfigError(f"max_workers must be a positive integer; got {self.max_workers!r}")
        if self.address is not None and self.address != "auto":
            split_address(self.address)  # refuses a malformed one
        for name, request in self.per_model.items():
            unknown = set(request) - {"num_cpus", "num_gpus"}
            if unknown:
                raise ConfigError(
                    f"resources for model {name!r} may set num_cpus and num_gpus; "
                    f"got {', '.join(sorted(unknown))}"
                )

    def resources(self, model: str) -> dict[str, float]:
        request = {"num_cpus": float(self.num_cpus), "num_gpus": float(self.num_gpus)}
        request.update({k: float(v) for k, v in self.per_model.get(model, {}).items()})
        return request


RAY_CLIENT_PREFIX = "ray://"
RAY_CLIENT_PORT = 10001  # Ray Client's default port on the head node


def split_address(address: str) -> tuple[str, int]:
    """(host, port) of a Ray address ``HOST:PORT``, ``[IPv6]:PORT`` or ``ray://HOST[:PORT]``;
    a ConfigError naming the address if it is none of these."""
    rule = (
        "the Ray address must be auto, ray://HOST:PORT or HOST:PORT (ray:// for Ray Client, "
        f"default port {RAY_CLIENT_PORT}; HOST:PORT for the cluster's head, e.g. 10.0.0.5:6379)"
    )
    if not isinstance(address, str):
        raise ConfigError(f"{rule}; got {address!r}")
    client = address.startswith(RAY_CLIENT_PREFIX)
    rest = address[len(RAY_CLIENT_PREFIX) :] if client else address
    if rest.startswith("["):  # [IPv6]:PORT
        host, _, tail = rest[1:].partition("]")
        has_port, port_text = tail.startswith(":"), tail[1:]
        if tail and not has_port:
            raise ConfigError(f"{rule}; got {address!r}")
    else:
        host, has_sep, port_text = rest.rpartition(":")
        has_port = bool(has_sep)
        if not has_sep:
            host = rest
    if not has_port and client:
        port_text = str(RAY_CLIENT_PORT)
    if not host.strip() or (not has_port and not client) or "/" in host or " " in host:
        raise ConfigError(f"{rule}; got {address!r}")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{rule}; the port must be a number in 1-65535; got {address!r}")
    return host, int(port_text)


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


def create_executor(name: str = "inprocess", options: RayOptions | None = None) -> Executor:
    """The executor called ``name``; ``ray`` needs the ``greenrunner[ray]`` extra."""
    if name == "inprocess":
        if options is not None and options.address is not None:
            raise ConfigError(
                f"--address {options.address} is for the Ray executor; add --executor ray"
            )
        return InProcessExecutor()
    if name == "ray":
        if not ray_available():
            raise ConfigError(
                "the Ray executor needs the 'ray' package: pip install 'greenrunner[ray]'"
            )
        from greenrunner.evaluation.executors_ray import RayExecutor

        return RayExecutor(options or RayOptions())
    raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}; got {name!r}")
