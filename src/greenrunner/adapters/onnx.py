"""ONNX back-end: any image classifier ``.onnx`` run by onnxruntime on the CPU.

The input contract comes from the manifest or sidecar when given, else from the model's
declared input (N x C x H x W, or N x H x W x C), with pixels scaled to [0, 1] and no
normalisation: a model that expects normalised pixels needs its mean/std declared.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from greenrunner.adapters.base import Measurements, ModelSpec, require
from greenrunner.adapters.onnx_macs import MACS_NOTE, count_macs
from greenrunner.adapters.onnx_tensors import external_locations
from greenrunner.errors import ConfigError
from greenrunner.evaluation.base import EvaluationError
from greenrunner.preprocessing import Layout, Preprocessing

# onnxruntime's input type names -> the numpy dtype the batch is cast to.
_FLOAT_INPUTS = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}
# ONNX TensorProto data types that hold weights: FLOAT, FLOAT16, DOUBLE, BFLOAT16.
_FLOAT_INITIALIZERS = (1, 10, 11, 16)


def declared_preprocessing(name: str, shape: Sequence[Any]) -> Preprocessing:
    """The input contract read off a declared 4-D input shape (symbolic dims are str/None).

    NHWC is recognised when the last dimension is 1 or 3 and the second is not; otherwise
    the input is taken as NCHW (the common export layout).
    """
    if len(shape) != 4:
        raise EvaluationError(
            f"model {name!r}: expected a 4-D image input (N x C x H x W); got {list(shape)}"
        )
    _, d1, d2, d3 = shape
    layout: Layout
    if d3 in (1, 3) and d1 not in (1, 3):
        channels, h, w, layout = d3, d1, d2, "NHWC"
    elif d1 in (1, 3):
        channels, h, w, layout = d1, d2, d3, "NCHW"
    else:
        raise EvaluationError(
            f"model {name!r}: cannot tell the channels (1 or 3) of input shape {list(shape)}; "
            "give channels, size and layout in a sidecar <model>.json or the manifest"
        )
    if not isinstance(h, int) or not isinstance(w, int) or h < 1 or w < 1:
        raise EvaluationError(
            f"model {name!r}: its input size is not fixed ({list(shape)}); give "
            "size = [H, W] in a sidecar <model>.json or the manifest"
        )
    try:
        return Preprocessing(size=(h, w), channels=int(channels), layout=layout)
    except ConfigError as exc:  # a declared input over the size limits
        raise EvaluationError(f"model {name!r}: its declared input {list(shape)}: {exc}") from None


class OnnxAdapter:
    """An onnxruntime session on the CPU with its input contract."""

    def __init__(self, spec: ModelSpec, path: Path) -> None:
        require("onnxruntime", "onnx")
        import onnxruntime as ort

        self.name, self.path = spec.name, path
        options = ort.SessionOptions()
        # One intra-op thread per core: inference here is batch-parallel and CPU-bound.
        options.intra_op_num_threads = os.cpu_count() or 1
        options.log_severity_level = 3  # warnings about unused initialisers are noise here
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise EvaluationError(f"model {spec.name!r}: cannot load {path}: {exc}") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].type not in _FLOAT_INPUTS or len(inputs[0].shape) != 4:
            raise EvaluationError(
                f"model {spec.name!r}: expected one 4-D float image input; got "
                + ", ".join(f"{i.name} {i.type} {list(i.shape)}" for i in inputs)
            )
        self.input_name = inputs[0].name
        self._dtype = _FLOAT_INPUTS[inputs[0].type]
        shape = list(inputs[0].shape)
        self._per_sample = shape[0] == 1  # a batch fixed to one: run sample by sample
        out_dims = self.session.get_outputs()[0].shape[1:]
        fixed = all(isinstance(d, int) for d in out_dims)
        self._n_outputs = int(np.prod(out_dims)) if fixed else 0
        self._preprocessing = spec.preprocessing or declared_preprocessing(spec.name, shape)
        self._classes = spec.classes

    @property
    def preprocessing(self) -> Preprocessing:
        return self._preprocessing

    @property
    def classes(self) -> tuple[str, ...] | None:
        return self._classes

    def _run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: x})[0])

    def predict(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=self._dtype)
        try:
            if self._per_sample:
                if not len(x):  # nothing to run; the class count is the declared one
                    return np.zeros((0, self._n_outputs), np.float32)
                out = np.concatenate([self._run(x[i : i + 1]) for i in range(len(x))])
            else:
                out = self._run(x)
            # (B, n) expected; (B, n, 1, 1) from a conv head is flattened per sample.
            return np.asarray(out, dtype=np.float32).reshape(len(x), -1)
        except Exception as exc:  # any failure inside the graph marks the model failed
            raise EvaluationError(f"model {self.name!r} failed to predict: {exc}") from exc

    def _input_shape(self) -> tuple[int, int, int, int]:
        h, w = self._preprocessing.size
        c = self._preprocessing.channels
        return (1, c, h, w) if self._preprocessing.layout == "NCHW" else (1, h, w, c)

    def measure(self) -> Measurements:
        require("onnx", "onnx")
        import onnx

        try:
            model = onnx.load(str(self.path))
            macs, unknown = count_macs(model, self._input_shape())
        except Exception as exc:
            raise EvaluationError(f"model {self.name!r}: cannot read its graph: {exc}") from exc
        params = sum(
            int(np.prod(t.dims))
            for t in model.graph.initializer
            if len(t.dims) >= 1 and t.data_type in _FLOAT_INITIALIZERS
        )
        size = self.path.stat().st_size + _external_bytes(self.path)
        note = MACS_NOTE
        if unknown:  # say so rather than report a silently low count
            note += f"; shapes unknown, so not counted: {', '.join(unknown[:5])}"
            note += f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        return Measurements(size_bytes=size, params=params, macs=macs, macs_note=note)


_EXTERNAL: dict[tuple[str, int, int], list[Path]] = {}


def external_data_files(path: Path) -> list[Path]:
    """The external-data files an .onnx file points to (weights stored beside it), for the
    cache key and the size: editing them changes the model as much as editing the .onnx
    file does. Every tensor counts, wherever it sits (initializers, Constant nodes,
    subgraphs, functions, sparse tensors: :func:`onnx_tensors.iter_tensors`). Read from the
    graph without its weights, once per (path, size, mtime); [] where the onnx package is
    missing or cannot read the file (loading it will say why). Each file once, sorted."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _EXTERNAL:
        try:
            import onnx

            model = onnx.load(str(path), load_external_data=False)
        except Exception:  # ImportError, or a file onnxruntime will refuse with a message
            return []
        # Only files inside the model's folder: a location such as ../../etc/passwd is not
        # read for a hash (onnxruntime refuses to load one that escapes the folder, even
        # through a link, so such a model never has cached predictions).
        folder = path.parent.resolve()
        inside = set()
        for name in external_locations(model):
            try:
                file = (folder / name).resolve()
            except (OSError, ValueError, RuntimeError):  # NUL, too long, a link loop
                continue  # onnxruntime cannot open it either
            if file.is_relative_to(folder):
                inside.add(file)
        _EXTERNAL[key] = sorted(inside)
    return _EXTERNAL[key]


def _external_bytes(path: Path) -> int:
    """Bytes of weights stored beside the .onnx file (external data), each file once.
    Read from the file itself: ``onnx.load`` clears the external references it loads."""
    return sum(f.stat().st_size for f in external_data_files(path) if f.is_file())


def load(spec: ModelSpec) -> OnnxAdapter:
    """The adapter for an ONNX spec (EvaluationError naming the model if it cannot load)."""
    if spec.path is None:
        raise EvaluationError(f"model {spec.name!r}: format onnx needs a path")
    if not spec.path.is_file():
        raise EvaluationError(f"model {spec.name!r}: ONNX file not found: {spec.path}")
    return OnnxAdapter(spec, spec.path)
