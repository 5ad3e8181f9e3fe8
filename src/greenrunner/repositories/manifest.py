"""A model repository described by a TOML manifest.

```toml
[repository]
name = "my-zoo"
classes_file = "classes.txt"      # default classes for every model (one per line)

[[models]]
name = "cnn_small"
format = "torch_state_dict"       # onnx, torch_state_dict, torchscript, torch_export, torchvision
path = "weights/cnn_small.pt"     # relative to the manifest
builder = "mypackage.models:build"
builder_args = { width = 16 }
card_accuracy = 0.97
license = "MIT"
[models.preprocessing]
size = [28, 28]
channels = 1
mean = [0.5]
std = [0.5]
```

Every key is checked: a typo is an error naming the file, the model and the key, never a
silently ignored setting. A ``builder`` is ``package.module:function`` with one plain name
after the colon (see :mod:`greenrunner.adapters.builders`); paths are relative to the
manifest, and on the command line ``~`` and absolute paths work too. An upload's manifest
is read with ``within`` set: every path must then be a plain relative path whose resolved
target lies inside the upload, checked on the very path the loader goes on to use.
"""

from __future__ import annotations

import math
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from greenrunner.adapters.base import FORMATS, ModelSpec
from greenrunner.errors import ConfigError, DataError
from greenrunner.preprocessing import Preprocessing
from greenrunner.textfiles import os_reason, path_problem, read_text

MODEL_KEYS = {
    "name",
    "format",
    "path",
    "builder",
    "builder_args",
    "weights",
    "preprocessing",
    "classes",
    "classes_file",
    "card_accuracy",
    "license",
    "trust",
    "metrics",
}
PREP_KEYS = {"size", "channels", "mean", "std", "resize", "layout", "interpolation"}
REPO_KEYS = {"name", "description", "classes_file", "classes", "preprocessing"}


def read_classes(path: Path) -> tuple[str, ...]:
    """Class names, one per line in index order (blank trailing lines ignored)."""
    lines = read_text(path, "the class list").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    names = tuple(line.strip() for line in lines)
    if not names or any(not n for n in names):
        raise DataError(f"{path}: a class list needs one non-empty name per line")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: class names repeat; each line must name a different class")
    return names


def manifest_path(base: Path, value: object, where: str, *, within: Path | None = None) -> Path:
    """The file a manifest names, relative to ``base`` (the manifest's folder).

    Without ``within`` (the user's own manifest) ``~`` expands and absolute paths are kept.
    With ``within`` (an upload) nothing expands: the text must be a plain relative path, and
    the path is resolved (links followed) before it is checked to be inside ``within``; the
    resolved path is what is returned, so what was checked is what gets opened.
    """
    if not isinstance(value, str) or not value:
        raise DataError(f"{where}: must be a path (a non-empty string); got {value!r}")
    if within is not None:
        _plain_relative(value, where)  # an upload's own rule first (it names the zip)
    problem = path_problem(value)
    if problem is not None:
        raise DataError(f"{where}: {value[:80]!r} cannot be a path: {problem}")
    if within is None:
        try:
            path = Path(value).expanduser()
        except RuntimeError:  # ~name of a user this system does not have
            raise DataError(
                f"{where}: {value!r} starts with ~ but names no user's home folder here"
            ) from None
        return path if path.is_absolute() else base / path
    try:
        resolved = (base / value).resolve()
    except (OSError, RuntimeError) as exc:
        raise DataError(f"{where}: {value!r} cannot be used: {os_reason(exc)}") from None
    if not resolved.is_relative_to(within.resolve()):
        raise DataError(
            f"{where}: {value!r} must be a relative path inside the zip; it leads outside "
            "it (through a link)"
        )
    return resolved


def _plain_relative(text: str, where: str) -> None:
    """Refuse, on the text alone, what could name a file outside an upload: ``~`` (which
    expands to a home folder), absolute paths, drive letters, backslashes, ``..``, NUL."""
    rule = (
        "must be a relative path inside the zip, with / between folders (no leading / or ~, "
        "no drive letter, backslash or ..)"
    )
    parts = PurePosixPath(text).parts
    if (
        "\\" in text
        or "\0" in text
        or PurePosixPath(text).is_absolute()
        or PureWindowsPath(text).drive
        or ".." in parts
        or any(part.startswith("~") for part in parts)
    ):
        raise DataError(f"{where}: {text!r} {rule}")


def parse_preprocessing(raw: Any, where: str) -> Preprocessing:
    if not isinstance(raw, Mapping):
        raise DataError(f"{where}: preprocessing must be a table")
    unknown = set(raw) - PREP_KEYS
    if unknown:
        raise DataError(
            f"{where}: unknown preprocessing key(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(PREP_KEYS))}"
        )
    if "size" not in raw:
        raise DataError(f"{where}: preprocessing needs size = [height, width]")
    size = raw["size"]
    if isinstance(size, int):
        size = [size, size]
    try:
        return Preprocessing(
            size=(int(size[0]), int(size[1])),
            channels=int(raw.get("channels", 3)),
            mean=tuple(raw.get("mean", (0.0,))),
            std=tuple(raw.get("std", (1.0,))),
            resize=raw.get("resize"),
            layout=raw.get("layout", "NCHW"),
            interpolation=raw.get("interpolation", "bilinear"),
        )
    except (ConfigError, TypeError, ValueError, IndexError) as exc:
        raise DataError(f"{where}: {exc}") from None


def _classes(
    entry: Mapping[str, Any], base: Path, where: str, within: Path | None = None
) -> tuple[str, ...] | None:
    if "classes" in entry and "classes_file" in entry:
        raise DataError(f"{where}: give classes or classes_file, not both")
    if "classes" in entry:
        names = entry["classes"]
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise DataError(f"{where}: classes must be a list of non-empty names")
        return tuple(names)
    if "classes_file" in entry:
        return read_classes(
            manifest_path(base, entry["classes_file"], f"{where}: classes_file", within=within)
        )
    return None


def _model(
    entry: Any,
    index: int,
    manifest: Path,
    default_classes: tuple[str, ...] | None,
    default_prep: Preprocessing | None,
    within: Path | None = None,
) -> ModelSpec:
    where = f"{manifest}: models[{index}]"
    if not isinstance(entry, Mapping):
        raise DataError(f"{where} must be a table ([[models]])")
    if isinstance(entry.get("name"), str):
        where = f"{manifest}: model {entry['name']!r}"
    unknown = set(entry) - MODEL_KEYS
    if unknown:
        raise DataError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(MODEL_KEYS))}"
        )
    for key in ("name", "format"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise DataError(f'{where}: needs {key} = "..."')
    if entry["format"] not in FORMATS:
        raise DataError(
            f"{where}: unknown format {entry['format']!r}; use one of {', '.join(FORMATS)}"
        )
    base = manifest.parent
    path = None
    if "path" in entry:
        path = manifest_path(base, entry["path"], f"{where}: path", within=within)
        _check_model_file(path, where)
    elif entry["format"] != "torchvision":
        raise DataError(f'{where}: format {entry["format"]} needs path = "..."')
    card = entry.get("card_accuracy")
    if card is not None and (
        not isinstance(card, int | float) or not math.isfinite(card) or not 0 <= card <= 1
    ):
        raise DataError(f"{where}: card_accuracy must be a number in [0, 1]; got {card!r}")
    args = entry.get("builder_args", {})
    if not isinstance(args, Mapping):
        raise DataError(f"{where}: builder_args must be a table of keyword arguments")
    metrics = entry.get("metrics", {})
    if not isinstance(metrics, Mapping) or not all(
        isinstance(v, int | float) for v in metrics.values()
    ):
        raise DataError(f"{where}: metrics must be a table of numbers, e.g. latency = 12.5")
    builder = entry.get("builder")
    if builder is not None and not isinstance(builder, str):
        raise DataError(f'{where}: builder must be a string, e.g. "mypackage.models:build"')
    if entry["format"] == "torch_state_dict" and builder is not None:
        _check_builder_text(builder, where)
    trust = entry.get("trust", False)
    if not isinstance(trust, bool):
        raise DataError(f"{where}: trust must be true or false")
    prep = (
        parse_preprocessing(entry["preprocessing"], where)
        if "preprocessing" in entry
        else default_prep
    )
    try:
        return ModelSpec(
            name=entry["name"],
            format=entry["format"],
            path=path,
            builder=builder,
            weights=entry.get("weights"),
            preprocessing=prep,
            classes=_classes(entry, base, where, within) or default_classes,
            card_accuracy=None if card is None else float(card),
            license=entry.get("license"),
            trust=trust,
            builder_args=dict(args),
            extra={str(k): float(v) for k, v in metrics.items()},
        )
    except ConfigError as exc:
        raise DataError(f"{where}: {exc}") from None


def _check_model_file(path: Path, where: str) -> None:
    """The model file exists and is a regular file (read later, by the adapter)."""
    try:
        st = path.stat()
    except (OSError, RuntimeError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise DataError(f"{where}: model file not found: {path}") from None
        raise DataError(f"{where}: cannot use the model file {path}: {os_reason(exc)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{where}: the model file {path} is not a regular file")


def _check_builder_text(builder: str, where: str) -> None:
    """The reference's form, checked when the manifest is read (nothing is imported)."""
    from greenrunner.adapters.builders import BuilderError, parse_builder

    try:
        parse_builder(builder)
    except BuilderError as exc:
        raise DataError(f"{where}: {exc}") from None


def load_manifest(path: Path, *, within: Path | None = None) -> tuple[str, str, list[ModelSpec]]:
    """(repository name, description, model specs) from a manifest file; ``within`` (an
    upload's folder) confines every path the manifest names to that folder."""
    text = read_text(path, "the manifest")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(doc) - {"repository", "models"}
    if unknown:
        raise DataError(
            f"{path}: unknown section(s) {', '.join(sorted(unknown))}; "
            "a manifest has [repository] and [[models]]"
        )
    repo = doc.get("repository", {})
    if not isinstance(repo, Mapping) or set(repo) - REPO_KEYS:
        extra = sorted(set(repo) - REPO_KEYS) if isinstance(repo, Mapping) else []
        raise DataError(
            f"{path}: [repository] has unknown key(s) {', '.join(extra)}; "
            f"known: {', '.join(sorted(REPO_KEYS))}"
        )
    models = doc.get("models")
    if not isinstance(models, list) or not models:
        raise DataError(f"{path}: no models; add at least one [[models]] table")
    where = f"{path}: [repository]"
    classes = _classes(repo, path.parent, where, within)
    prep = parse_preprocessing(repo["preprocessing"], where) if "preprocessing" in repo else None
    specs = [_model(m, i, path, classes, prep, within) for i, m in enumerate(models)]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"{path}: model names repeat: {', '.join(dupes)}; names must be unique")
    return str(repo.get("name", path.parent.name)), str(repo.get("description", "")), specs
