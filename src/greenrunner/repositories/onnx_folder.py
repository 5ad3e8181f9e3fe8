"""A plain folder of ``.onnx`` files is a repository, with no configuration.

Each ``*.onnx`` is a model named by its file stem; its input contract is read from the
model (N x C x H x W, pixels scaled to [0, 1]); class names come from ``classes.txt``
beside them (one per line, in output order). An optional sidecar ``<stem>.json`` per
model overrides any of: size, channels, mean, std, resize, layout, interpolation (the
input contract), classes (a list), card_accuracy, license. Unknown sidecar keys are
errors: a misspelt "mean" must not silently leave a model unnormalised.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from greenrunner.adapters.base import ModelSpec, require
from greenrunner.errors import ConfigError, DataError
from greenrunner.evaluation.base import EvaluationError
from greenrunner.preprocessing import Preprocessing
from greenrunner.repositories.manifest import PREP_KEYS, parse_preprocessing, read_classes
from greenrunner.textfiles import read_text

SIDECAR_KEYS = PREP_KEYS | {"classes", "card_accuracy", "license"}
CLASSES_FILE = "classes.txt"


def _sidecar(path: Path) -> dict[str, Any]:
    if not (path.exists() or path.is_symlink()):
        return {}
    text = read_text(path, "the sidecar")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: a sidecar is a JSON object of settings")
    unknown = set(doc) - SIDECAR_KEYS
    if unknown:
        raise DataError(
            f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(SIDECAR_KEYS))}"
        )
    return doc


def _declared(model: Path) -> dict[str, Any]:
    """Size, channels and layout as the model declares them (for a sidecar that sets only
    mean/std/channels: parse_preprocessing needs a size, and the model knows it)."""
    require("onnx", "onnx")
    import onnx

    from greenrunner.adapters.onnx import declared_preprocessing

    try:
        # The graph's declared input is all that is needed; the weights can stay on disk.
        graph = onnx.load(str(model), load_external_data=False).graph
    except Exception as exc:  # a corrupt protobuf raises protobuf's own DecodeError
        raise DataError(f"{model}: not a readable ONNX model: {exc}") from None
    init = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init]
    if not inputs:
        raise DataError(f"{model}: the model declares no input")
    dims = [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
        for d in inputs[0].type.tensor_type.shape.dim
    ]
    try:
        prep = declared_preprocessing(model.stem, dims)
    except EvaluationError as exc:
        raise DataError(f"{model.with_suffix('.json')}: {exc}") from None
    return {"size": list(prep.size), "channels": prep.channels, "layout": prep.layout}


def _preprocessing(side: dict[str, Any], model: Path, where: str) -> Preprocessing | None:
    prep = {k: side[k] for k in PREP_KEYS if k in side}
    if not prep:
        return None  # the adapter reads the whole contract from the model
    if "size" not in prep:
        prep = {**_declared(model), **prep}  # the sidecar's own values win
    return parse_preprocessing(prep, where)


def _classes(
    side: dict[str, Any], default: tuple[str, ...] | None, where: str
) -> tuple[str, ...] | None:
    if "classes" not in side:
        return default
    names = side["classes"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise DataError(f"{where}: classes must be a list of non-empty names")
    if len(set(names)) != len(names):
        raise DataError(f"{where}: class names repeat; each must name a different class")
    return tuple(names)


def load_onnx_folder(path: Path) -> list[ModelSpec]:
    """One spec per ``*.onnx`` in the folder, sorted by name (DataError on any problem)."""
    if not path.is_dir():
        raise DataError(f"{path}: not a folder of .onnx models")
    models = sorted((p for p in path.glob("*.onnx") if p.is_file()), key=lambda p: p.name)
    if not models:
        raise DataError(
            f"{path}: no .onnx files; put the models and a {CLASSES_FILE} here, "
            "or point at a manifest"
        )
    listed = path / CLASSES_FILE
    default_classes = read_classes(listed) if listed.is_file() else None
    specs = []
    for model in models:
        sidecar = model.with_suffix(".json")
        where = f"{sidecar} (model {model.stem!r})"
        side = _sidecar(sidecar)
        classes = _classes(side, default_classes, where)
        if classes is None:
            raise DataError(
                f"{path}: no {CLASSES_FILE} (one class name per line, in the models' output "
                f"order) and no classes in {sidecar.name}"
            )
        card = side.get("card_accuracy")
        if card is not None and (
            isinstance(card, bool)
            or not isinstance(card, int | float)
            or not math.isfinite(card)
            or not 0 <= card <= 1
        ):
            raise DataError(f"{where}: card_accuracy must be a number in [0, 1]; got {card!r}")
        license_ = side.get("license")
        if license_ is not None and not isinstance(license_, str):
            raise DataError(f"{where}: license must be a string; got {license_!r}")
        try:
            specs.append(
                ModelSpec(
                    name=model.stem,
                    format="onnx",
                    path=model,
                    preprocessing=_preprocessing(side, model, where),
                    classes=classes,
                    card_accuracy=None if card is None else float(card),
                    license=license_,
                )
            )
        except ConfigError as exc:
            raise DataError(f"{where}: {exc}") from None
    return specs
