"""Candidate models and the metadata known about them before any evaluation."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from greenrunner.errors import ConfigError


def _check_number(
    owner: str, label: str, value: float | None, *, upper: float | None = None
) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{owner}: {label} must be a finite number; got {value!r}")
    if value < 0:
        raise ConfigError(f"{owner}: {label} must not be negative; got {value!r}")
    if upper is not None and value > upper:
        raise ConfigError(f"{owner}: {label} must be at most {upper}; got {value!r}")


@dataclass(frozen=True)
class Candidate:
    """One candidate model.

    ``macs`` counts multiply-accumulate operations for one sample. ``metrics`` holds further
    known metrics (for instance ``latency`` in ms), looked up by name by the reward.
    """

    name: str
    size_bytes: float | None = None
    macs: float | None = None
    params: int | None = None
    benchmark_accuracy: float | None = None
    license: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"a candidate needs a non-empty name; got {self.name!r}")
        owner = f"candidate {self.name!r}"
        _check_number(owner, "size_bytes", self.size_bytes)
        _check_number(owner, "macs", self.macs)
        _check_number(owner, "params", self.params)
        _check_number(owner, "benchmark_accuracy", self.benchmark_accuracy, upper=1.0)
        for key, value in self.metrics.items():
            _check_number(owner, f"metric {key!r}", value)
        # A read-only copy, so a frozen candidate cannot be changed through its dict.
        object.__setattr__(self, "metrics", MappingProxyType(dict(self.metrics)))

    def __hash__(self) -> int:
        return hash(
            (
                self.name,
                self.size_bytes,
                self.macs,
                self.params,
                self.benchmark_accuracy,
                self.license,
                tuple(sorted(self.metrics.items())),
            )
        )

    def __reduce__(self) -> tuple[type[Candidate], tuple[object, ...]]:
        # A mappingproxy does not pickle; rebuild from a plain dict (worker processes).
        return (
            Candidate,
            (
                self.name,
                self.size_bytes,
                self.macs,
                self.params,
                self.benchmark_accuracy,
                self.license,
                dict(self.metrics),
            ),
        )

    @property
    def size_mb(self) -> float | None:
        return None if self.size_bytes is None else self.size_bytes / 1e6

    @property
    def mmacs(self) -> float | None:
        return None if self.macs is None else self.macs / 1e6

    def metric(self, name: str) -> float | None:
        """The known value of a cost metric: ``size`` (bytes), ``complexity`` (MACs) or extra."""
        if name == "size":
            return self.size_bytes
        if name == "complexity":
            return self.macs
        return self.metrics.get(name)


def check_unique_names(candidates: Sequence[Candidate]) -> None:
    """Refuse an empty candidate set or one where two candidates share a name."""
    if not candidates:
        raise ConfigError("there are no candidate models; give at least one")
    counts = Counter(c.name for c in candidates)
    duplicates = sorted(name for name, n in counts.items() if n > 1)
    if duplicates:
        raise ConfigError(
            f"candidate names must be unique; repeated: {', '.join(duplicates)}. Rename them."
        )
