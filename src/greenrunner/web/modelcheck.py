"""What an uploaded model repository may contain, and proof that its models run.

An upload's manifest is held to more than one on the command line: its paths must be plain
relative paths that resolve inside the upload (no ``~``, no absolute path, no ``..``, no
link out), checked by the manifest loader itself on the paths it then opens; ``trust`` is
refused; TorchScript and torch.export files are refused (loading them can run code from the
file); and a builder must be on the server's explicit allow-list
(:class:`greenrunner.adapters.builders.AllowList`), checked on its text before its module is
imported, since importing or calling a builder is running code. Every model is then loaded
and run on one blank image.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from greenrunner.adapters.base import ModelSpec
from greenrunner.adapters.builders import AllowList, BuilderError, torchvision_builders
from greenrunner.errors import ConfigError, DataError, GreenRunnerError
from greenrunner.repositories.manifest import load_manifest, manifest_path

UPLOAD_FORMATS = ("onnx", "torch_state_dict", "torchvision")


def inside(root: Path, value: object, where: str) -> Path:
    """``value`` as a path relative to ``root`` that stays inside it once resolved (the
    resolved path is returned: open that one, not ``root / value``)."""
    return manifest_path(root, value, where, within=root)


def check_manifest(manifest: Path, root: Path, builders: Iterable[str] = ()) -> None:
    """What an uploaded manifest may not do, checked before any of its models is loaded;
    ``builders`` are the operator's additions to the allow-list (``--allow-builder``)."""
    allowed = AllowList(builders)
    try:
        doc = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"manifest.toml: not valid TOML: {exc}") from None
    models = doc.get("models")
    for i, entry in enumerate(models if isinstance(models, list) else []):
        if isinstance(entry, dict):  # anything else: load_manifest names the problem
            _check_entry(entry, entry.get("name", f"models[{i}]"), allowed)
    # The paths, by the loader itself with the upload as its bounds: the same function
    # computes the path that is checked and the path that is opened.
    load_manifest(manifest, within=root)


def _check_entry(entry: dict[str, Any], name: object, allowed: AllowList) -> None:
    where = f"manifest.toml: model {name!r}"
    if entry.get("trust"):
        raise DataError(
            f"{where} sets trust = true; uploads cannot: unpickling can run code on the "
            "server. Save a plain state_dict or export to ONNX"
        )
    fmt = entry.get("format")
    if fmt in ("torchscript", "torch_export"):
        raise DataError(
            f"{where} has format {fmt}, which uploads cannot use (loading it can run code "
            f"from the file); use one of {', '.join(UPLOAD_FORMATS)}"
        )
    if "builder" not in entry:
        return
    builder = entry["builder"]
    if fmt == "torchvision":
        _check_torchvision(builder, where)
    elif fmt == "torch_state_dict":
        _check_builder(builder, where, allowed)
        _check_download_args(builder, entry.get("builder_args"), where)
    elif fmt in UPLOAD_FORMATS:
        raise DataError(f"{where}: format {fmt} takes no builder; remove builder = {builder!r}")


def _check_builder(builder: object, where: str, allowed: AllowList) -> None:
    try:
        allowed.check(builder)  # the text only: nothing is imported here
    except BuilderError as exc:
        raise DataError(f"{where}: {exc}") from None


def _check_download_args(builder: object, args: object, where: str) -> None:
    """torchvision builders download pretrained weights when given ``weights`` (or
    ``weights_backbone``): wasted, since the upload's state_dict replaces them, and traffic
    to the outside that an upload need not cause."""
    if not (isinstance(builder, str) and builder.startswith("torchvision.models:")):
        return
    keys = sorted(k for k in (args if isinstance(args, dict) else {}) if k.startswith("weights"))
    if keys:
        raise DataError(
            f"{where}: builder_args {', '.join(keys)} would make torchvision download weights "
            "on the server; an upload brings its own state_dict, so leave them out"
        )


def _check_torchvision(builder: object, where: str) -> None:
    """A torchvision model is built by torchvision's registry, by exact name."""
    if not isinstance(builder, str) or f"torchvision.models:{builder}" not in (
        torchvision_builders()
    ):
        raise DataError(
            f"{where} names torchvision builder {builder!r}, which is not one of torchvision's "
            "classification builders (torchvision.models.list_models(module=torchvision.models))"
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
    """ONNX weights may live in external files, found relative to the model's folder; each
    one must resolve inside the upload, wherever the tensor sits (initializers, Constant
    nodes, subgraphs of If/Loop/Scan, local functions)."""
    from greenrunner.adapters.base import require

    require("onnx", "onnx")
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise DataError(f"{path.name}: not a readable ONNX model ({exc})") from None
    tensors = [*_tensors(model.graph), *(t for f in model.functions for t in _in_nodes(f.node))]
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    manifest_path(
                        path.parent, entry.value, f"{path.name}: external data", within=root
                    )


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto in a graph and its subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    yield from _in_nodes(graph.node)


def _in_nodes(nodes: Iterable[Any]) -> Iterator[Any]:
    """The tensors in nodes' attributes (Constant values, If/Loop/Scan bodies)."""
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield from (attr.sparse_tensor.values, attr.sparse_tensor.indices)
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)
