"""The adapter seam: load one model format, predict a batch, measure the model.

A repository describes each model as a :class:`ModelSpec` (what to load and how to feed
it); :func:`load_adapter` turns a spec into an :class:`Adapter` through a registry of
loaders by format, so a new format is one module plus one registry line. Back-ends import
their heavy dependencies inside the loader: a missing extra is named when it is needed.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np

from greenrunner.errors import ConfigError
from greenrunner.preprocessing import Preprocessing

FORMATS = ("onnx", "torch_state_dict", "torchscript", "torch_export", "torchvision")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to load one model and feed it, before anything is loaded.

    ``path`` is the model file (onnx, torchscript, torch_export) or the state_dict file;
    ``builder`` an importable ``package.module:function`` returning the nn.Module
    (torch_state_dict) or a torchvision builder name (torchvision, e.g. ``resnet18``);
    ``weights`` a torchvision weights id (``ResNet18_Weights.IMAGENET1K_V1``).
    ``preprocessing`` and ``classes`` may be None where the adapter can read them from the
    model (ONNX input shape, torchvision weights' transforms and categories).
    ``trust`` allows loading pickle-based files (full torch.load); off by default.
    """

    name: str
    format: str
    path: Path | None = None
    builder: str | None = None
    weights: str | None = None
    preprocessing: Preprocessing | None = None
    classes: tuple[str, ...] | None = None
    card_accuracy: float | None = None
    license: str | None = None
    trust: bool = False
    builder_args: Mapping[str, Any] = field(default_factory=dict)  # keyword arguments
    extra: Mapping[str, float] = field(default_factory=dict)  # further metrics (latency, ...)

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a model needs a non-empty name")
        if self.format not in FORMATS:
            raise ConfigError(
                f"model {self.name!r}: unknown format {self.format!r}; "
                f"use one of {', '.join(FORMATS)}"
            )
        object.__setattr__(self, "builder_args", MappingProxyType(dict(self.builder_args)))
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))
        if self.card_accuracy is not None and not 0 <= self.card_accuracy <= 1:
            raise ConfigError(
                f"model {self.name!r}: card accuracy must be in [0, 1]; got {self.card_accuracy}"
            )

    def fingerprint(self) -> str:
        """Identifies the weights: a hash of the file (or the builder and weights id), so
        cached predictions and measurements follow the model, not its name."""
        args = json.dumps(dict(self.builder_args), sort_keys=True, default=str)
        h = hashlib.sha256(f"{self.format}|{self.builder}|{args}|{self.weights}".encode())
        if self.path is not None:
            # A missing file fails when loaded, with its own message; here it is just a name.
            h.update((file_digest(self.path) if self.path.is_file() else str(self.path)).encode())
        return h.hexdigest()[:24]

    def __hash__(self) -> int:
        return hash((self.name, self.format, self.path, self.builder, self.weights))


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) so it is read once per run."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


@dataclass(frozen=True)
class Measurements:
    """Measured metadata of a loaded model."""

    size_bytes: int  # the weights file (or the in-memory parameters and buffers)
    params: int
    macs: float  # multiply-accumulates per sample
    macs_note: str = ""  # how they were counted, and any caveat


class Adapter(Protocol):
    """A loaded model. Capabilities are data: its input contract and its classes."""

    @property
    def preprocessing(self) -> Preprocessing: ...

    @property
    def classes(self) -> tuple[str, ...] | None: ...

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Logits (or scores), shape (batch, n_classes), for a prepared float32 batch."""
        ...

    def measure(self) -> Measurements: ...


Loader = Callable[[ModelSpec], Adapter]

# format -> "module:function" of its loader, imported on first use.
_LOADERS = {
    "onnx": "greenrunner.adapters.onnx:load",
    "torch_state_dict": "greenrunner.adapters.torch:load",
    "torchscript": "greenrunner.adapters.torch:load",
    "torch_export": "greenrunner.adapters.torch:load",
    "torchvision": "greenrunner.adapters.torchvision:load",
}


def load_adapter(spec: ModelSpec) -> Adapter:
    """Load the model a spec describes (raises EvaluationError if it cannot be loaded)."""
    module, func = _LOADERS[spec.format].split(":")
    loader: Loader = getattr(importlib.import_module(module), func)
    return loader(spec)


def require(module: str, extra: str) -> None:
    """Import check for an optional dependency, naming the extra that provides it."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"this needs the {module!r} package: pip install 'greenrunner[{extra}]'"
        ) from None
