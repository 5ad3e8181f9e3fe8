"""The reward of the paper's Equation 1, with room for further metrics.

``reward = w_acc * accuracy - w_size * lognorm(size) - w_complexity * lognorm(MACs)``

where ``lognorm(x) = (log x - log min) / (log max - log min)`` over the candidate set.
Only accuracy is unknown before evaluation; every other term is known up front, so the
reward of candidate k is ``w_acc * accuracy_k + offset_k`` with a known ``offset_k``. The
strategies use that split: the unknown part is the only thing worth spending compute on.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from greenrunner.candidates import Candidate
from greenrunner.errors import ConfigError


@dataclass(frozen=True)
class Metric:
    """A metric the reward can weigh: ``direction`` +1 if higher is better, -1 if lower.

    ``proxy`` is the core metric that stands in for it when the candidates do not measure it
    (MACs for latency and energy, the weights file for memory).
    """

    name: str
    direction: int
    description: str
    proxy: str | None = None


ACCURACY = "accuracy"

# Accuracy is measured on the target; the others are known from the candidate's metadata.
METRICS: Mapping[str, Metric] = MappingProxyType(
    {
        m.name: m
        for m in (
            Metric(ACCURACY, +1, "top-1 accuracy on the target data (measured)"),
            Metric("size", -1, "size of the weights (bytes), log min-max normalised"),
            Metric("complexity", -1, "MACs per sample, log min-max normalised"),
            Metric(
                "latency", -1, "inference latency per sample, log min-max normalised", "complexity"
            ),
            Metric("memory", -1, "peak memory at inference, log min-max normalised", "size"),
            Metric("energy", -1, "energy per sample, log min-max normalised", "complexity"),
            Metric("throughput", +1, "samples per second, log min-max normalised", "complexity"),
        )
    }
)


@dataclass(frozen=True)
class Weights:
    """Validated, immutable metric weights. Missing metrics weigh 0.

    The weights are used as given (the paper's drone weights 0.63/0.25/0.21 sum to 1.09),
    so the reward keeps the paper's scale.
    """

    values: Mapping[str, float]

    def __post_init__(self) -> None:
        if isinstance(self.values, str):
            raise ConfigError(
                f"Weights takes a mapping such as {{'accuracy': 0.63, 'size': 0.25}}; got the "
                f"text {self.values!r}: read text with Weights.parse({self.values!r})"
            )
        if not isinstance(self.values, Mapping):
            raise ConfigError(
                "Weights takes a mapping of metric name to weight, e.g. "
                f"{{'accuracy': 0.63, 'size': 0.25}}; got {self.values!r}"
            )
        clean: dict[str, float] = {}
        for name, value in self.values.items():
            if name not in METRICS:
                raise ConfigError(
                    f"unknown metric {name!r} in weights; known metrics: {', '.join(METRICS)}"
                )
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ConfigError(f"weight for {name!r} must be a number; got {value!r}")
            if not math.isfinite(value):
                raise ConfigError(f"weight for {name!r} must be a finite number; got {value!r}")
            if value < 0:
                raise ConfigError(
                    f"weight for {name!r} must not be negative; got {value!r}. "
                    "A weight says how much a metric matters; use 0 to ignore it."
                )
            clean[name] = float(value)
        if not any(v > 0 for v in clean.values()):
            raise ConfigError(
                "at least one weight must be positive; got all zero. "
                "For example: accuracy=0.63,size=0.25,complexity=0.21"
            )
        object.__setattr__(self, "values", MappingProxyType(clean))

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.values.items())))

    def __reduce__(self) -> tuple[type[Weights], tuple[dict[str, float]]]:
        return (Weights, (dict(self.values),))

    @classmethod
    def parse(cls, text: str) -> Weights:
        """Parse ``accuracy=0.63,size=0.25,complexity=0.21``."""
        return cls(parse_pairs(text))

    @classmethod
    def coerce(cls, value: Weights | Mapping[str, float] | str) -> Weights:
        """What the Python API accepts as weights: Weights; a mapping, as ``Weights(value)``;
        or text, as :meth:`parse` reads it (``"accuracy=0.63,size=0.25"``). Anything else
        is a ConfigError saying these three forms."""
        if isinstance(value, Weights):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, Mapping):
            return cls(dict(value))
        raise ConfigError(
            "weights must be Weights, a mapping such as {'accuracy': 0.63, 'size': 0.25} or "
            f"text such as 'accuracy=0.63,size=0.25'; got {value!r}"
        )

    @property
    def accuracy(self) -> float:
        return self.values.get(ACCURACY, 0.0)

    def __getitem__(self, name: str) -> float:
        return self.values.get(name, 0.0)

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def as_dict(self) -> dict[str, float]:
        """Accuracy, size and complexity always; further metrics when weighted."""
        out = {name: self[name] for name in (ACCURACY, "size", "complexity")}
        out.update({k: v for k, v in self.values.items() if k not in out})
        return out

    def __str__(self) -> str:
        return ",".join(f"{k}={v:g}" for k, v in self.as_dict().items())


def parse_pairs(text: str) -> dict[str, float]:
    """``accuracy=0.63,size=0.25`` -> {"accuracy": 0.63, "size": 0.25}; names unchecked."""
    values: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, raw = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(
                f"cannot read weight {part!r}; write metric=value pairs separated by commas, "
                "e.g. accuracy=0.63,size=0.25,complexity=0.21"
            )
        if name in values:
            raise ConfigError(f"weight for {name!r} is given twice in {text!r}")
        try:
            values[name] = float(raw)
        except ValueError:
            raise ConfigError(
                f"weight for {name!r} must be a number; got {raw.strip()!r}"
            ) from None
    if not values:
        raise ConfigError("no weights given; write e.g. accuracy=0.63,size=0.25,complexity=0.21")
    return values


def lognorm(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Log min-max normalisation to [0, 1] over the candidate set.

    Defined edge cases: a single value, or all values equal, normalise to 0 (no candidate
    is penalised relative to another); a zero value is treated as the smallest positive
    value in the set (log 0 is undefined, and zero cost is the best cost), so it maps to 0;
    all zeros map to 0.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return x
    if np.any(~np.isfinite(x)) or np.any(x < 0):
        raise ConfigError(f"metric values must be finite and non-negative; got {x.tolist()}")
    positive = x[x > 0]
    if positive.size == 0:
        return np.zeros_like(x)
    x = np.where(x > 0, x, positive.min())
    lo, hi = math.log(x.min()), math.log(x.max())
    if hi - lo <= 0:
        return np.zeros_like(x)
    return np.asarray((np.log(x) - lo) / (hi - lo))


class RewardModel:
    """Equation 1 over a fixed candidate set: ``reward_k = w_acc * accuracy_k + offset_k``."""

    def __init__(self, weights: Weights, candidates: Sequence[Candidate]) -> None:
        self.weights = weights
        self.names = [c.name for c in candidates]
        offset = np.zeros(len(candidates))
        for name, w in weights.values.items():
            if name == ACCURACY or w == 0:
                continue
            raw = [c.metric(name) for c in candidates]
            missing = [c.name for c, v in zip(candidates, raw, strict=True) if v is None]
            if missing:
                shown = ", ".join(missing[:5]) + (
                    f" and {len(missing) - 5} more" if len(missing) > 5 else ""
                )
                raise ConfigError(
                    f"weight {name}={w:g} needs every candidate's {name}, but it is unknown for "
                    f"{shown}. Give the value, or set the {name} weight to 0."
                )
            offset += (
                METRICS[name].direction * w * lognorm([float(v) for v in raw if v is not None])
            )
        self.w_acc = weights.accuracy
        self.offset: np.ndarray = offset
        self.offset.setflags(write=False)

    def reward(
        self, accuracy: np.ndarray | float, index: np.ndarray | int | None = None
    ) -> np.ndarray:
        """Reward for the given accuracies (of all candidates, or of those at ``index``)."""
        offset = self.offset if index is None else self.offset[index]
        return np.asarray(self.w_acc * np.asarray(accuracy, dtype=float) + offset)
