"""What an uploaded model repository may contain, and proof that its models run.

An upload's manifest is held to more than one on the command line: its paths must stay
inside the upload, ``trust`` is refused, TorchScript and torch.export files are refused
(loading them can run code from the file), and a builder must come from the server's
allowed list (a builder is any importable function, so choosing one is running code).
Every model is then loaded and run on one blank image.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import numpy as np

from greenrunner.adapters.base import ModelSpec
from greenrunner.errors import ConfigError, DataError, GreenRunnerError

UPLOAD_FORMATS = ("onnx", "torch_state_dict", "torchvision")


def inside(root: Path, value: object, where: str) -> None:
    text = str(value)
    path = PurePosixPath(text.replace("\\", "/"))
    if (
        path.is_absolute()
        or ".." in path.parts
        or not (root / text).resolve().is_relative_to(root.resolve())
    ):
        raise DataError(f"{where}: {text!r} must be a relative path inside the zip")


def check_manifest(manifest: Path, root: Path, builders: tuple[str, ...]) -> None:
    """What an uploaded manifest may not do, checked before it is read for real."""
    try:
        doc = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"manifest.toml: not valid TOML: {exc}") from None
    repo = doc.get("repository")
    if isinstance(repo, dict) and "classes_file" in repo:
        inside(root, repo["classes_file"], "manifest.toml: [repository] classes_file")
    models = doc.get("models")
    for i, entry in enumerate(models if isinstance(models, list) else []):
        if not isinstance(entry, dict):
            continue  # load_manifest names the problem
        name = entry.get("name", f"models[{i}]")
        for key in ("path", "classes_file"):
            if key in entry:
                inside(root, entry[key], f"manifest.toml: model {name!r}: {key}")
        if entry.get("trust"):
            raise DataError(
                f"manifest.toml: model {name!r} sets trust = true; uploads cannot: unpickling "
                "can run code on the server. Save a plain state_dict or export to ONNX"
            )
        fmt = entry.get("format")
        if (
            isinstance(fmt, str)
            and fmt not in UPLOAD_FORMATS
            and fmt in ("torchscript", "torch_export")
        ):
            raise DataError(
                f"manifest.toml: model {name!r} has format {fmt}, which uploads cannot use "
                f"(loading it can run code from the file); use one of {', '.join(UPLOAD_FORMATS)}"
            )
        builder = entry.get("builder")
        if (
            fmt == "torch_state_dict"
            and isinstance(builder, str)
            and not any(builder.startswith(prefix) for prefix in builders)
        ):
            raise DataError(
                f"manifest.toml: model {name!r} names builder {builder!r}, which this server "
                f"does not allow (allowed: {', '.join(builders)}); export the model to ONNX, "
                "or ask the operator to allow it with greenrunner serve --allow-builder"
            )


def load_each(specs: Iterable[ModelSpec], root: Path) -> None:
    """Load every model and run it on one blank image: a corrupt file, or a class list that
    does not match the model's outputs, is refused now, with the model's name."""
    from greenrunner.adapters.base import load_adapter
    from greenrunner.preprocessing import prepare

    for spec in specs:
        if spec.format == "onnx" and spec.path is not None:
            _check_onnx_external(spec.path, root)
        try:
            adapter = load_adapter(spec)
        except ConfigError:
            raise  # a missing back-end: its message names the extra to install
        except GreenRunnerError as exc:
            raise DataError(f"model {spec.name!r} cannot be loaded: {exc}") from None
        prep = adapter.preprocessing
        try:
            blank = prepare([np.zeros((*prep.size, 3), dtype=np.uint8)], prep)
            scores = np.asarray(adapter.predict(blank))
        except Exception as exc:  # each back-end fails in its own way
            raise DataError(f"model {spec.name!r} fails on a blank image: {exc}") from None
        classes = spec.classes or adapter.classes
        if classes is not None and scores.shape != (1, len(classes)):
            raise DataError(
                f"model {spec.name!r} gives {scores.shape[-1]} scores per image, but "
                f"{len(classes)} classes are listed; list one class per output, in order"
            )


def _check_onnx_external(path: Path, root: Path) -> None:
    """ONNX weights may live in external files; those must be inside the upload too."""
    from greenrunner.adapters.base import require

    require("onnx", "onnx")
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # protobuf's DecodeError and friends
        raise DataError(f"{path.name}: not a readable ONNX model ({exc})") from None
    for tensor in graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    inside(root, entry.value, f"{path.name}: external data")
