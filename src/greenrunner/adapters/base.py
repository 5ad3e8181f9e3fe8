"""The adapter seam: load one model format, predict a batch, measure the model.

A repository describes each model as a :class:`ModelSpec` (what to load and how to feed
it); :func:`load_adapter` turns a spec into an :class:`Adapter` through a registry of
loaders by format, so a new format is one module plus one registry line. Back-ends import
their heavy dependencies inside the loader: a missing extra is named when it is needed.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import importlib
import importlib.metadata
import json
import os
import sys
import sysconfig
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from types import MappingProxyType, ModuleType
from typing import Any, Protocol

import numpy as np

from greenrunner.errors import ConfigError, GreenRunnerError
from greenrunner.preprocessing import Preprocessing

FORMATS = ("onnx", "torch_state_dict", "torchscript", "torch_export", "torchvision")

# Bump when GreenRunner's own code changes what a model is fed or what its scores become
# for the same files and settings: decoding (datasets/_images.py), preprocessing.prepare,
# an adapter's predict, the MAC counters. Every cached prediction and measurement made
# before then stops matching. History: 1 = until issue 11; 2 = images decoded upright
# (EXIF orientation), 16-bit images scaled rather than clipped, very large images reduced
# before the resize.
CODE_VERSION = 2
# Bump when the key's layout changes (what is hashed and how). History: 2 = issue 11's
# spec fields, files and versions; 3 = every leaf tagged with its type, the builder's code,
# a torchvision checkpoint's content, external data wherever the ONNX graph refers to it.
KEY_VERSION = 3

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
        if not isinstance(self.trust, bool):  # "false" is truthy: it would unpickle
            raise ConfigError(
                f"model {self.name!r}: trust must be True or False; got {self.trust!r}"
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
    file and of the files it reads beside it (ONNX external data, a torchvision
    checkpoint), the builder's code (:func:`builder_code`), the versions of the libraries
    that run and feed it, and :data:`CODE_VERSION`. Derived from the dataclass's fields,
    not a list of them, so a new field cannot be left out by oversight. Keys of an older
    KEY_VERSION never equal one of these, so old entries simply miss.
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
        "companions": {label: _content(p) for label, p in companion_files(spec).items()},
        "builder_code": builder_code(spec),
        "libraries": library_versions(spec.format),
    }
    text = json.dumps(identity, sort_keys=True, allow_nan=False)
    return f"k{KEY_VERSION}-{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def canonical(value: Any) -> Any:
    """JSON-ready, deterministic, and tagged with the type at every level, so two values
    that differ (NaN and "nan", a date and its text, a tuple and a list, 1 and 1.0 and
    True, {1: x} and {"1": x}) never give the same form. Floats by their exact hex form
    (-0.0, inf and NaN included), ints in hex (no digit limit), mappings as [key, value]
    pairs in their own order (a builder may iterate them), sets sorted, dataclasses by
    their class and fields; any other object by its class and repr."""
    kind = type(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [[f.name, canonical(getattr(value, f.name))] for f in dataclasses.fields(value)]
        return ["dataclass", _type_name(kind), fields]
    if isinstance(value, Mapping):
        return ["mapping", [[canonical(k), canonical(v)] for k, v in value.items()]]
    if kind is list or kind is tuple:
        return [kind.__name__, [canonical(v) for v in value]]
    if kind is set or kind is frozenset:
        return [kind.__name__, sorted((canonical(v) for v in value), key=_dump)]
    if value is None:
        return ["none"]
    if kind is bool:
        return ["bool", value]
    if kind is int:
        return ["int", hex(value)]
    if kind is float:
        return ["float", value.hex()]
    if kind is str:
        return ["str", value]
    if kind is bytes:
        return ["bytes", value.hex()]
    if isinstance(value, PurePath):
        return [_type_name(kind), str(value)]
    if kind in (datetime.datetime, datetime.date, datetime.time):
        return [kind.__name__, value.isoformat()]
    return ["object", _type_name(kind), repr(value)]


def _type_name(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _content(path: Path | None) -> str | None:
    # A missing file fails when loaded, with its own message; here it is just a name.
    if path is None:
        return None
    try:
        return file_digest(path) if path.is_file() else f"missing:{path}"
    except OSError as exc:  # a name too long, no permission: loading it fails as well
        return f"unreadable:{path}:{exc.errno}"


def companion_files(spec: ModelSpec) -> dict[str, Path]:
    """Files besides ``spec.path`` that decide the model's weights, by a label that does
    not depend on where the model lives: ONNX external data (by location inside the
    model's folder) and a torchvision model's checkpoint in the torch cache."""
    find = _COMPANIONS.get(spec.format)
    return find(spec) if find is not None else {}


def _onnx_companions(spec: ModelSpec) -> dict[str, Path]:
    if spec.path is None or not spec.path.is_file():
        return {}
    from greenrunner.adapters.onnx import external_data_files

    folder = spec.path.parent.resolve()
    return {f.relative_to(folder).as_posix(): f for f in external_data_files(spec.path)}


def _torchvision_companions(spec: ModelSpec) -> dict[str, Path]:
    """The checkpoint the weights id resolves to, as the loader finds it: torch checks a
    file's hash only when it downloads it, and reads whatever is in its cache afterwards.
    A checkpoint not there yet is downloaded (hash checked) by the loader, so "missing"
    stands for the genuine file."""
    try:
        from greenrunner.adapters.torchvision import checkpoint_path, get_weights

        weights = get_weights(spec.builder, spec.weights, spec.name)  # type: ignore[arg-type]
        return {"checkpoint": checkpoint_path(weights)}
    except GreenRunnerError:  # no torchvision, an unknown builder or weights: load says so
        return {}


_COMPANIONS: dict[str, Callable[[ModelSpec], dict[str, Path]]] = {
    "onnx": _onnx_companions,
    "torchvision": _torchvision_companions,
}


# --- the builder's code ------------------------------------------------------------------------
def builder_code(spec: ModelSpec) -> dict[str, Any] | None:
    """What identifies the code a torch_state_dict builder runs: the source of the module
    the reference names and of the module that defines the object, the installed versions
    of the distribution(s) of its top-level package, and, for a package of the user's own
    (not installed in site-packages), every .py file of that package (a builder calls into
    its siblings). None for formats without a builder module.

    The builder is resolved exactly as the loader resolves it
    (:func:`greenrunner.adapters.torch.import_builder`, every builder rule applied before
    and after its module is imported), so nothing is imported here that loading would
    not import. An upload's builders are held to the server's allow-list when the upload
    is checked, before any key is made. Each module is read once per loaded module
    object: a process keeps the code it imported, and so keeps its key, even if the file
    is edited while it runs.
    """
    if spec.format != "torch_state_dict" or spec.builder is None:
        return None
    from greenrunner.adapters.torch import import_builder

    try:
        obj = import_builder(spec.builder, spec.name)
    except GreenRunnerError:  # the loader fails the same way, with the message
        return {"unresolved": True}
    named = spec.builder.partition(":")[0]
    defining = getattr(obj, "__module__", named)
    return {
        "modules": {m: _module_digest(m) for m in sorted({named, defining})},
        "package": _package_identity(named.split(".")[0]),
    }


_MODULE_DIGESTS: dict[str, tuple[ModuleType | None, str]] = {}
_PACKAGE_IDENTITIES: dict[str, tuple[ModuleType | None, dict[str, Any]]] = {}


def _module_digest(name: str) -> str:
    module = sys.modules.get(name)
    known = _MODULE_DIGESTS.get(name)
    if known is not None and known[0] is module:
        return known[1]
    file = _module_file(module)
    digest = str(_content(file)) if file is not None else "no source file"
    _MODULE_DIGESTS[name] = (module, digest)
    return digest


def _module_file(module: ModuleType | None) -> Path | None:
    file = getattr(module, "__file__", None)
    if not isinstance(file, str):
        return None
    path = Path(file)
    return path if path.is_file() else None


def _package_identity(top: str) -> dict[str, Any]:
    module = sys.modules.get(top)
    known = _PACKAGE_IDENTITIES.get(top)
    if known is not None and known[0] is module:
        return known[1]
    identity: dict[str, Any] = {"distributions": _distributions(top)}
    # GreenRunner's own demo zoo is covered by CODE_VERSION and greenrunner's version.
    if module is not None and top != "greenrunner" and not _installed(module):
        identity["sources"] = _source_digests(module)
    _PACKAGE_IDENTITIES[top] = (module, identity)
    return identity


@functools.cache
def _top_level_distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distributions(top: str) -> list[str]:
    """``name==version`` of each installed distribution that provides the package."""
    out = set()
    for dist in _top_level_distributions().get(top, []):
        try:
            out.add(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            out.add(f"{dist}==absent")
    return sorted(out)


def _installed(module: ModuleType) -> bool:
    """Whether the module lives in installation folders (site-packages, the standard
    library), where its distribution's version identifies it; otherwise it is the user's
    own code, identified by its files."""
    file = _module_file(module)
    roots = [file] if file is not None else [Path(p) for p in getattr(module, "__path__", ())]
    return all(_installed_path(root) for root in roots)  # built in (no files): installed


def _installed_path(path: Path) -> bool:
    paths = sysconfig.get_paths()
    install = [
        Path(paths[k]).resolve()
        for k in ("purelib", "platlib", "stdlib", "platstdlib")
        if k in paths
    ]
    resolved = path.resolve()
    return bool(_INSTALL_FOLDERS & set(resolved.parts)) or any(
        resolved.is_relative_to(folder) for folder in install
    )


_INSTALL_FOLDERS = frozenset({"site-packages", "dist-packages"})
# Never the user's package code, however deep in it: environments, caches, other tools.
_SKIPPED_FOLDERS = _INSTALL_FOLDERS | {"__pycache__", "node_modules"}


def _source_digests(module: ModuleType) -> dict[str, str]:
    """Every .py file of a user's own package (its folder, recursively; for a namespace
    package, its folders outside site-packages), or for a single module the .py files
    beside it in its folder, by path relative to that folder."""
    file = _module_file(module)
    if hasattr(module, "__path__"):
        roots = sorted({Path(p) for p in module.__path__ if not _installed_path(Path(p))})
        recursive = True
    elif file is not None:
        roots, recursive = [file.parent], False
    else:
        return {}
    out: dict[str, str] = {}
    for index, root in enumerate(roots):
        prefix = f"{index}:" if len(roots) > 1 else ""
        for source in _python_files(root, recursive):
            out[prefix + source.relative_to(root).as_posix()] = str(_content(source))
    return out


def _python_files(root: Path, recursive: bool) -> list[Path]:
    if not recursive:
        return sorted(p for p in root.glob("*.py") if p.is_file())
    found = []
    for folder, dirs, files in os.walk(root):  # links to folders are not followed
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_FOLDERS)
        found += [Path(folder) / f for f in files if f.endswith(".py")]
    return sorted(p for p in found if p.is_file())


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


# A file modified this recently is hashed every time: a file system's timestamps are
# coarse (a clock tick or worse), so an edit of the same size just after the file was read
# can leave (size, mtime) unchanged (git's "racy clean" problem).
_SETTLED_NS = 2_000_000_000


def file_digest(path: Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) so it is read once per run
    (unless it was modified in the last two seconds)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _DIGESTS:
        return _DIGESTS[key]
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if st.st_mtime_ns < time.time_ns() - _SETTLED_NS:
        _DIGESTS[key] = h.hexdigest()
    return h.hexdigest()


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
