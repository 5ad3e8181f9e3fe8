"""Which model classes count as a correct answer for each target class.

By default target and model classes match by name (exactly, else ignoring case, spaces,
underscores and hyphens). A mapping file covers one-to-many cases such as ObjectNet ->
ImageNet, where "Alarm clock" is right if the model says "analog clock" or "digital
clock". With ``restrict`` a model's scores are limited to the mapped classes before the
argmax, the usual protocol when the target covers only part of the model's classes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from greenrunner.errors import DataError
from greenrunner.textfiles import os_reason, path_problem, read_text


def normalise(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name).strip().lower()


@dataclass(frozen=True)
class LabelMap:
    """``allowed[t]``: the model class indices counted correct for target class t."""

    model_classes: tuple[str, ...]
    allowed: tuple[frozenset[int], ...]
    restrict: bool = False
    _hit: np.ndarray = field(init=False, repr=False, compare=False)
    _mask: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        hit = np.zeros((len(self.allowed), len(self.model_classes)), dtype=bool)
        for t, classes in enumerate(self.allowed):
            hit[t, sorted(classes)] = True
        hit.setflags(write=False)
        object.__setattr__(self, "_hit", hit)
        object.__setattr__(self, "_mask", hit.any(axis=0))

    def predict(self, logits: np.ndarray) -> np.ndarray:
        """The predicted model class per row (among the mapped classes if restricted)."""
        scores = np.where(self._mask, logits, -np.inf) if self.restrict else logits
        return np.asarray(np.argmax(scores, axis=1))

    def is_correct(self, predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return np.asarray(self._hit[labels, predictions])

    def digest(self) -> str:
        """Identifies the whole rule (classes, what counts as right, restriction): stored
        correctness, unlike cached predictions, depends on all of it."""
        h = hashlib.sha256(json.dumps(self.model_classes).encode())
        h.update(json.dumps([sorted(a) for a in self.allowed]).encode())
        h.update(b"restrict" if self.restrict else b"full")
        return h.hexdigest()[:16]

    def view(self) -> str:
        """Names the prediction rule for the cache: restricting can change the argmax, to
        a degree set by which classes remain. Without it the map only decides which
        predictions count as right, which is recomputed on every run."""
        if not self.restrict:
            return "full"
        digest = hashlib.sha256(np.packbits(self._mask).tobytes()).hexdigest()[:16]
        return f"restricted:{len(self._mask)}:{digest}"


def _match(entry: str, index: Mapping[str, int]) -> int | None:
    """A mapping entry to a model class: the whole name, else one of its comma-separated
    synonyms (WordNet-style names such as "backpack, back pack, knapsack")."""
    for candidate in (entry, *entry.split(",")):
        k = index.get(normalise(candidate))
        if k is not None:
            return k
    return None


def build_label_map(
    target_classes: Sequence[str],
    model_classes: Sequence[str],
    mapping: Mapping[str, Sequence[str]] | None = None,
    restrict: bool = False,
) -> LabelMap:
    exact = {name: k for k, name in enumerate(model_classes)}
    loose: dict[str, int] = {}
    for k, name in enumerate(model_classes):
        loose.setdefault(normalise(name), k)
    lookup = {normalise(t): list(v) for t, v in (mapping or {}).items()}
    allowed: list[frozenset[int]] = []
    unmapped: list[str] = []
    for target in target_classes:
        entries = lookup.get(normalise(target))
        found: set[int] = set()
        if entries is not None:
            matched = {e: _match(e, loose) for e in entries}
            found = {k for k in matched.values() if k is not None}
            missing = [e for e, k in matched.items() if k is None]
            if missing:
                raise DataError(
                    f"the label map sends {target!r} to {', '.join(map(repr, missing[:3]))}, "
                    "which the model does not have; check the names against its classes"
                )
        else:
            by_name = exact.get(target, loose.get(normalise(target)))
            found = set() if by_name is None else {by_name}
        if not found:
            unmapped.append(target)
        allowed.append(frozenset(found))
    if unmapped:
        shown = ", ".join(map(repr, unmapped[:5]))
        more = f" and {len(unmapped) - 5} more" if len(unmapped) > 5 else ""
        raise DataError(
            f"target class(es) {shown}{more} match no model class by name; give a label "
            "map (--label-map FILE: JSON {target: [model classes]} or CSV target,model)"
        )
    return LabelMap(tuple(model_classes), tuple(allowed), restrict)


def bundled_label_maps() -> dict[str, Path]:
    """Label maps shipped with GreenRunner, by name (e.g. ``objectnet-imagenet``)."""
    folder = Path(str(resources.files("greenrunner"))) / "data" / "label_maps"
    return {p.stem: p for p in sorted(folder.glob("*.json"))}


def resolve_label_map(where: str | Path) -> Path:
    """A mapping file's path, or the bundled map of that name."""
    if not isinstance(where, str | Path):
        raise DataError(
            f"label map must be a file path or a bundled map's name; got {where!r} "
            f"({type(where).__name__})"
        )
    problem = path_problem(str(where))
    if problem is not None:
        raise DataError(f"--label-map {str(where)[:80]}: cannot be a path: {problem}")
    try:
        path = Path(where).expanduser()
        if path.exists():
            return path
    except (OSError, RuntimeError) as exc:
        raise DataError(f"--label-map {where}: {os_reason(exc)}") from None
    bundled = bundled_label_maps()
    if str(where) in bundled:
        return bundled[str(where)]
    raise DataError(
        f"--label-map {where}: no such file, and no bundled map of that name "
        f"(bundled: {', '.join(bundled) or 'none'})"
    )


def load_mapping_file(path: Path) -> dict[str, list[str]]:
    """A mapping from JSON ({target: name, or [names], or "a; b"}) or CSV (target,model)."""
    text = read_text(path, "the label map")
    out: dict[str, list[str]] = {}
    if path.suffix.lower() == ".csv":
        try:
            rows = list(csv.DictReader(text.splitlines()))
        except csv.Error as exc:
            raise DataError(f"{path}: not a readable CSV file ({exc})") from None
        if not rows or not {"target", "model"} <= set(rows[0]):
            raise DataError(f"{path}: a CSV label map needs a header with columns target,model")
        for i, row in enumerate(rows, start=2):
            target, model = (row.get("target") or "").strip(), (row.get("model") or "").strip()
            if not target or not model:
                raise DataError(f"{path}: line {i} needs both a target and a model class")
            out.setdefault(target, []).append(model)
        return out
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: a JSON label map is an object {{target: model classes}}")
    for target, value in doc.items():
        if isinstance(value, str):
            names = [v.strip() for v in value.split(";")]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            names = [v.strip() for v in value]
        else:
            raise DataError(
                f"{path}: {target!r} must map to a class name or a list of names; got {value!r}"
            )
        if not names or not all(names):
            raise DataError(f"{path}: {target!r} maps to an empty class name")
        out[target] = names
    return out
