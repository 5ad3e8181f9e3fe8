"""The adapter seam: load one model format, predict a batch, measure the model.

A repository describes each model as a :class:`ModelSpec` (what to load and how to feed
it); :func:`load_adapter` turns a spec into an :class:`Adapter` through a registry of
loaders by format, so a new format is one module plus one registry line. Back-ends import
their heavy dependencies inside the loader: a missing extra is named when it is needed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.metadata
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

# Bump when GreenRunner's own code changes what a model is fed or what its scores become
# for the same files and settings: decoding (datasets/_images.py), preprocessing.prepare,
# an adapter's predict, the MAC counters. Every cached prediction and measurement made
# before then stops matching. History: 1 = until issue 11; 2 = images decoded upright
# (EXIF orientation), 16-bit images scaled rather than clipped, very large images reduced
# before the resize.
CODE_VERSION = 2
# Bump when the key's layout changes (what is hashed and how).
KEY_VERSION = 2

# Libraries whose version can change a model's scores, by format (the back-end that runs
# it; torchvision for builders and weights' transforms) and for all (Pillow decodes and
# resizes, numpy normalises). Distribution names, read from the installed metadata.
_LIBRARIES = {
    "onnx": ("onnxruntime",),
    "torch_state_dict": ("torch", "torchvision"),
    "torchscript": ("torch",),
    "torch_export": ("torch",),
    "torchvision": ("torch", "torchvision"),
}
_COMMON_LIBRARIES = ("pillow", "numpy")

# ModelSpec fields that cannot change what a model predicts, so they stay out of its cache
# key: the name (the cache follows the model, not what it is called), the model card's
# claims and further metrics, and trust (it decides whether a file may be loaded, not what
# it computes). Every other field is in the key, including any added later.
NOT_IN_CACHE_KEY = frozenset({"name", "card_accuracy", "license", "trust", "extra"})

# format -> "module:function" giving further files the model reads (ONNX external data).
_COMPANIONS = {"onnx": "greenrunner.adapters.onnx:external_data_files"}


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

    def cache_key(self) -> str:
        """Identifies everything that decides this model's scores on a given input, for
        the prediction and measurement cache: see :func:`cache_key`."""
        return cache_key(self)

    def __hash__(self) -> int:
        return hash((self.name, self.format, self.path, self.builder, self.weights))


def cache_key(spec: ModelSpec) -> str:
    """A hash of every spec field but :data:`NOT_IN_CACHE_KEY` (the whole preprocessing,
    the class list, builder and arguments, weights id, format), the content of the model
    file and of the files it reads beside it, the versions of the libraries that run and
    feed it, and :data:`CODE_VERSION`. Derived from the dataclass's fields, not a list of
    them, so a new field cannot be left out by oversight. Keys made before KEY_VERSION 2
    (the weights alone) never equal one of these, so old entries simply miss.
    """
    fields = {
        f.name: canonical(getattr(spec, f.name))
        for f in dataclasses.fields(spec)
        if f.name not in NOT_IN_CACHE_KEY
    }
    # The file by content, not location: a moved or renamed copy is the same model.
    fields["path"] = _content(spec.path)
    identity = {
        "key_version": KEY_VERSION,
        "code_version": CODE_VERSION,
        "spec": fields,
        "companions": {p.name: _content(p) for p in companion_files(spec)},
        "libraries": library_versions(spec.format),
    }
    text = json.dumps(identity, sort_keys=True, allow_nan=False)
    return f"k{KEY_VERSION}-{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def canonical(value: Any) -> Any:
    """JSON-ready and deterministic: dataclasses by their fields, mappings sorted, tuples
    and lists as lists, paths as text; other leaves tagged with their type (a TOML date in
    builder_args), so distinct values never collide as the same string."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, frozenset | set):
        return sorted((canonical(v) for v in value), key=repr)
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if np.isfinite(value) else repr(value)
    return f"{type(value).__name__}:{value!r}"


def _content(path: Path | None) -> str | None:
    # A missing file fails when loaded, with its own message; here it is just a name.
    if path is None:
        return None
    return file_digest(path) if path.is_file() else f"missing:{path}"


def companion_files(spec: ModelSpec) -> list[Path]:
    """Files beside the model file that it reads (ONNX external data), for the cache key."""
    ref = _COMPANIONS.get(spec.format)
    if ref is None or spec.path is None or not spec.path.is_file():
        return []
    module, func = ref.split(":")
    find: Callable[[Path], list[Path]] = getattr(importlib.import_module(module), func)
    return find(spec.path)


@functools.cache
def library_versions(fmt: str) -> dict[str, str]:
    """Installed versions of the libraries that can change this format's predictions."""
    out = {}
    for dist in (*_LIBRARIES.get(fmt, ()), *_COMMON_LIBRARIES):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


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
