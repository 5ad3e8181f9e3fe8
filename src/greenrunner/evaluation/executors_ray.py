"""The Ray executor: a round's pulls run in parallel on a Ray cluster (or a local instance).

Two ways to run a pull, chosen by what the evaluator is:

- An evaluator that loads models (it has ``for_model``, as real inference does) gets one
  Ray actor per model: the actor builds that model's evaluator once and keeps the model
  loaded across rounds, with the model's own resource request (CPU/GPU). Actors beyond what
  the cluster can hold are retired least recently used first, so a round never waits on an
  actor that cannot be placed.
- Any other evaluator (a replay: a lookup in a matrix) is shipped once to the object store
  and each pull is a stateless Ray task; an actor per model would only add start-up time.

The outcomes come back in the round's order, so the engine's decisions do not depend on
which worker finished first.
"""

from __future__ import annotations

import logging
import socket
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import ray
from ray.exceptions import RayActorError, RaySystemError

from greenrunner.candidates import Candidate
from greenrunner.errors import ConfigError
from greenrunner.evaluation.base import CachingEvaluator, EvaluationError, Evaluator
from greenrunner.evaluation.executors import (
    RAY_CLIENT_PREFIX,
    Outcome,
    Pull,
    RayOptions,
    StatsMerging,
    split_address,
)

log = logging.getLogger(__name__)

# (correctness or None, error message or None, cache counts of this pull or None)
_Reply = tuple[np.ndarray | None, str | None, dict[str, int] | None]


@runtime_checkable
class ModelBound(Protocol):
    """An evaluator that can be narrowed to one model (so a worker loads only that one)."""

    def for_model(self, name: str) -> Evaluator: ...


def _counted(evaluator: Evaluator, candidate: Candidate, ids: np.ndarray) -> _Reply:
    """Evaluate and report the cache counts this pull added (for the driver's totals)."""
    before = evaluator.cache_stats() if isinstance(evaluator, CachingEvaluator) else None
    try:
        out = np.asarray(evaluator.evaluate(candidate, ids))
    except EvaluationError as exc:
        return None, str(exc), None
    if before is None or not isinstance(evaluator, CachingEvaluator):
        return out, None, None
    after = evaluator.cache_stats()
    return out, None, {k: after[k] - before.get(k, 0) for k in after}


class _ModelWorker:
    """Holds one model's evaluator; the model stays loaded between rounds."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator

    def evaluate(self, candidate: Candidate, ids: np.ndarray) -> _Reply:
        return _counted(self.evaluator, candidate, ids)


def _evaluate_shipped(evaluator: Evaluator, candidate: Candidate, ids: np.ndarray) -> _Reply:
    return _counted(evaluator, candidate, ids)


_ModelActor = ray.remote(_ModelWorker)
_shipped_task = ray.remote(_evaluate_shipped)


# Seconds to wait for a TCP answer from the cluster: a live head answers in milliseconds.
PROBE_TIMEOUT = 3.0
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def check_reachable(address: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Refuse an address where nothing listens, in seconds rather than minutes.

    ``ray.init`` retries an unreachable cluster for minutes before it gives up; a plain
    TCP connect to the port it would use answers at once (refused) or within ``timeout``
    (a dropped packet, a wrong host).
    """
    host, port = split_address(address)
    client = address.startswith(RAY_CLIENT_PREFIX)
    # Ray connects to a GCS on this machine through the node's IP, not the loopback one;
    # probe the address it will really use. Ray Client connects to the host as given.
    target = host
    if not client and host in _LOOPBACK:
        target = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
    try:
        with socket.create_connection((target, port), timeout=timeout):
            return
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
    shown = f"{target}:{port}" + (f", where Ray connects for {host}" if target != host else "")
    start = (
        "`ray start --head` on that machine (Ray Client listens on port 10001)"
        if client
        else f"`ray start --head --port={port}` on that machine"
    )
    raise ConfigError(
        f"cannot reach the Ray cluster at {address}: cannot connect to {shown} ({reason}). "
        f"Start the cluster with {start}, check the address and that the port is open, or "
        "pass --address auto to join this machine's running cluster, or leave --address out "
        "to start a local Ray instance"
    )


class RayExecutor:
    """Runs each round's pulls in parallel on Ray; see the module docstring."""

    def __init__(self, options: RayOptions) -> None:
        self.options = options
        self._owns_ray = False
        if not ray.is_initialized():
            self._connect(options.address)
        self._capacity = self._fit(options)
        self._actors: OrderedDict[str, Any] = OrderedDict()  # model -> actor, LRU first
        # The evaluator the actors or the shipped copy belong to; kept so its id stays unique.
        self._evaluator: Evaluator | None = None
        self._shipped: Any = None

    def _connect(self, address: str | None) -> None:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address is not None:
            if address != "auto":  # auto: Ray finds this machine's cluster, or says it has none
                check_reachable(address)
            kwargs = {"address": address, "log_to_driver": False}
        try:
            ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"cannot reach the Ray cluster at {address!r}: {exc}; start one with "
                "`ray start --head` and pass --address auto (or ray://HOST:10001), or leave "
                "--address out to start a local Ray instance"
            ) from None
        self._owns_ray = True

    @staticmethod
    def _fit(options: RayOptions) -> int:
        """Model actors alive at once: as many as the cluster's CPUs and GPUs can hold."""
        total: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        fits = []
        for key, unit in (("num_cpus", "CPU"), ("num_gpus", "GPU")):
            want = getattr(options, key)
            if want > 0:
                if total.get(unit, 0.0) < want:
                    raise ConfigError(
                        f"each model worker asks for {want:g} {unit}, but the Ray cluster "
                        f"has {total.get(unit, 0.0):g}; lower the request or add nodes"
                    )
                fits.append(int(total.get(unit, 0.0) // want))
        return options.max_workers or max(1, min(fits))

    def run(self, evaluator: Evaluator, pulls: Sequence[Pull]) -> list[Outcome]:
        if evaluator is not self._evaluator:
            self._retire_all()
            self._evaluator = evaluator
            self._shipped = None
        if isinstance(evaluator, ModelBound):
            replies = self._run_on_actors(evaluator, pulls)
        else:
            if self._shipped is None:
                try:
                    self._shipped = ray.put(evaluator)
                except TypeError as exc:  # holds a connection, a lock, a callback ...
                    raise ConfigError(
                        f"this evaluator ({type(evaluator).__name__}) cannot be sent to Ray "
                        f"workers ({exc}); run it with --executor inprocess"
                    ) from None
            refs = [
                _shipped_task.options(**self.options.resources(c.name)).remote(
                    self._shipped, c, ids
                )
                for c, ids in pulls
            ]
            replies = [self._get(ref, c.name) for ref, (c, _) in zip(refs, pulls, strict=True)]
        out: list[Outcome] = []
        for (candidate, _), (result, error, stats) in zip(pulls, replies, strict=True):
            if stats and isinstance(evaluator, StatsMerging):
                evaluator.merge_cache_stats(stats, candidate)
            out.append(EvaluationError(error) if result is None else result)
        return out

    def _run_on_actors(self, evaluator: ModelBound, pulls: Sequence[Pull]) -> list[_Reply]:
        replies: list[_Reply | None] = [None] * len(pulls)
        in_flight: dict[Any, int] = {}
        busy: Counter[str] = Counter()
        queue = list(range(len(pulls)))
        while queue or in_flight:
            waiting = []
            for i in queue:
                candidate, ids = pulls[i]
                actor = self._actor(evaluator, candidate.name, busy)
                if actor is None:  # every slot holds a model that is still working
                    waiting.append(i)
                    continue
                in_flight[actor.evaluate.remote(candidate, ids)] = i
                busy[candidate.name] += 1
            queue = waiting
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                i = in_flight.pop(ref)
                name = pulls[i][0].name
                busy[name] -= 1
                replies[i] = self._get(ref, name)
        return [r for r in replies if r is not None]

    def _actor(self, evaluator: ModelBound, name: str, busy: Mapping[str, int]) -> Any:
        """The model's actor, started (retiring an idle one if the cluster is full) if need be."""
        if name in self._actors:
            self._actors.move_to_end(name)
            return self._actors[name]
        if len(self._actors) >= self._capacity:
            idle = next((m for m in self._actors if not busy.get(m)), None)
            if idle is None:
                return None
            ray.kill(self._actors.pop(idle))
        # The one-model evaluator is built here and shipped: it holds the data set and that
        # model's spec only, and wrappers around the evaluator (energy) stay on the driver.
        shard = evaluator.for_model(name)
        actor = _ModelActor.options(**self.options.resources(name)).remote(shard)
        self._actors[name] = actor
        return actor

    def _get(self, ref: Any, name: str) -> _Reply:
        try:
            reply: _Reply = ray.get(ref)
        except (RayActorError, RaySystemError) as exc:
            # A worker that died (out of memory, a crash in native model code) fails this
            # model like any other evaluation error; the run goes on with the others.
            self._actors.pop(name, None)
            return None, f"the Ray worker for {name!r} died: {exc}", None
        return reply

    def _retire_all(self) -> None:
        for actor in self._actors.values():
            ray.kill(actor)
        self._actors.clear()

    def close(self) -> None:
        self._retire_all()
        self._evaluator = self._shipped = None
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False
