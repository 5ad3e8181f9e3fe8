"""PyTorch back-end: a state_dict with an importable builder, TorchScript, exported programs.

Safety: a model file is never unpickled beyond plain tensors (``torch.load(...,
weights_only=True)``) unless the spec says the user trusts it; a file that needs full
unpickling is refused with the way to opt in.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from greenrunner.adapters.base import Measurements, ModelSpec, require
from greenrunner.evaluation.base import EvaluationError
from greenrunner.preprocessing import Preprocessing

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_THREADS_SET = False


def _torch() -> Any:
    require("torch", "torch")
    import torch

    global _THREADS_SET
    if not _THREADS_SET:
        # One intra-op thread per core: inference here is batch-parallel and CPU-bound.
        torch.set_num_threads(os.cpu_count() or 1)
        _THREADS_SET = True
    return torch


class TorchAdapter:
    """An ``nn.Module`` in eval mode with its input contract."""

    def __init__(
        self,
        name: str,
        module: torch.nn.Module,
        preprocessing: Preprocessing,
        classes: tuple[str, ...] | None,
        file: Path | None = None,
    ) -> None:
        self.name = name
        # Exported programs refuse eval(): their mode was fixed at export time.
        with contextlib.suppress(NotImplementedError):
            module.eval()
        self.module = module
        self._preprocessing = preprocessing
        self._classes = classes
        self.file = file

    @property
    def preprocessing(self) -> Preprocessing:
        return self._preprocessing

    @property
    def classes(self) -> tuple[str, ...] | None:
        return self._classes

    def predict(self, batch: np.ndarray) -> np.ndarray:
        torch = _torch()
        try:
            with torch.inference_mode():
                out = self.module(torch.from_numpy(np.ascontiguousarray(batch)))
        except Exception as exc:  # any failure inside user model code marks the model failed
            raise EvaluationError(f"model {self.name!r} failed to predict: {exc}") from exc
        if isinstance(out, tuple | list):  # e.g. (logits, aux): the first is the logits
            out = out[0]
        if not hasattr(out, "detach"):
            raise EvaluationError(
                f"model {self.name!r} returned {type(out).__name__}, not a tensor of logits"
            )
        return np.asarray(out.detach().float().cpu().numpy())

    def measure(self) -> Measurements:
        torch = _torch()
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.utils.flop_counter import FlopCounterMode

        tensors = [*self.module.parameters(), *self.module.buffers()]
        params = int(sum(p.numel() for p in self.module.parameters()))
        in_memory = int(sum(t.numel() * t.element_size() for t in tensors))
        size = self.file.stat().st_size if self.file is not None else in_memory
        h, w = self._preprocessing.size
        c = self._preprocessing.channels
        shape = (1, c, h, w) if self._preprocessing.layout == "NCHW" else (1, h, w, c)
        counter = FlopCounterMode(display=False)
        # Counted with autograd enabled on purpose: under no_grad/inference_mode PyTorch
        # takes fused attention fast paths that the FLOP counter does not see. For the same
        # reason attention runs on the "math" kernel, which is plain matmuls (the fused CPU
        # kernel is not counted: ViT-B/16 would come out 4% low).
        try:
            with sdpa_kernel(SDPBackend.MATH), counter:
                self.module(torch.zeros(shape))
        except Exception as exc:
            raise EvaluationError(
                f"model {self.name!r} failed on a {shape} input while measuring: {exc}"
            ) from exc
        macs = counter.get_total_flops() / 2
        note = (
            "torch FLOP counter / 2, autograd on, math attention (matmuls, convolutions "
            "and attention; element-wise ops not counted)"
        )
        return Measurements(size_bytes=size, params=params, macs=float(macs), macs_note=note)


def import_builder(ref: object, model: str) -> Any:
    """``package.module:function`` -> the function or nn.Module class, held to the rules in
    :mod:`greenrunner.adapters.builders` (one plain name, no attribute walk, defined in the
    named module); errors name the model, the reference and the rule broken."""
    from greenrunner.adapters.builders import BuilderError, parse_builder, resolve_builder

    try:
        return resolve_builder(parse_builder(ref))
    except BuilderError as exc:
        raise EvaluationError(f"model {model!r}: {exc}") from exc


def _need_file(spec: ModelSpec) -> Path:
    if spec.path is None:
        raise EvaluationError(f"model {spec.name!r}: format {spec.format} needs a path")
    if not spec.path.is_file():
        raise EvaluationError(f"model {spec.name!r}: file not found: {spec.path}")
    return spec.path


def load_state_dict(path: Path, name: str, trust: bool) -> Any:
    torch = _torch()
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as exc:
        if not trust and "weights_only" in str(exc):
            raise EvaluationError(
                f"model {name!r}: {path.name} holds pickled Python objects beyond tensors, "
                "and unpickling it could run arbitrary code. If you trust the file, set "
                "trust = true for this model in the manifest (or pass --trust)."
            ) from exc
        raise EvaluationError(f"model {name!r}: cannot read {path}: {exc}") from exc


def _module(spec: ModelSpec) -> torch.nn.Module:
    torch = _torch()
    path = _need_file(spec)
    if spec.format == "torchscript":
        try:
            return torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-any-return]
        except Exception as exc:
            raise EvaluationError(f"model {spec.name!r}: not a TorchScript file: {exc}") from exc
    if spec.format == "torch_export":
        try:
            return torch.export.load(str(path)).module()  # type: ignore[no-any-return]
        except Exception as exc:
            raise EvaluationError(
                f"model {spec.name!r}: not a torch.export program file: {exc}"
            ) from exc
    if spec.builder is None:
        raise EvaluationError(
            f"model {spec.name!r}: a state_dict needs a builder (package.module:function)"
        )
    build = import_builder(spec.builder, spec.name)
    state = load_state_dict(path, spec.name, spec.trust)
    if isinstance(state, torch.nn.Module):  # a whole pickled module (only with trust)
        return state  # type: ignore[no-any-return]
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint
    _check_fit_on_meta(build, spec, path, state)
    try:
        module = build(**spec.builder_args)
        module.load_state_dict(state)
    except Exception as exc:
        raise EvaluationError(
            f"model {spec.name!r}: the weights in {path.name} do not fit {spec.builder}: {exc}"
        ) from exc
    return module  # type: ignore[no-any-return]


def _check_fit_on_meta(build: Any, spec: ModelSpec, path: Path, state: object) -> None:
    """Build the module on the meta device (shapes, no memory) and refuse it if its
    parameters and buffers are not exactly the state_dict's names and shapes: builder
    arguments that ask for a huge model (``num_classes = 500000``) are refused before
    anything is allocated, since the real build is then no larger than the file. A builder
    that cannot build on the meta device is built for real, as before."""
    torch = _torch()
    if not isinstance(state, dict):
        return  # load_state_dict says what is wrong with it
    try:
        with torch.device("meta"):
            meta = build(**spec.builder_args)
        expected = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
        numel = sum(v.numel() for v in meta.state_dict().values())
    except Exception as exc:  # not meta-friendly (or it fails anyway: the real build says why)
        log.debug("model %r: no meta build (%s); building it for real", spec.name, exc)
        return
    got = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    if len(got) != len(state):
        return  # entries that are not tensors: load_state_dict names them
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append("missing from the file: " + _named(missing, expected))
    if unexpected:
        parts.append("in the file but not in the model: " + _named(unexpected, got))
    if wrong:
        shown = ", ".join(
            f"{k} is {_shape(got[k])} in the file, {_shape(expected[k])} in the model"
            for k in wrong[:5]
        )
        parts.append(shown + (f" and {len(wrong) - 5} more" if len(wrong) > 5 else ""))
    args = repr(dict(spec.builder_args))
    args = args if len(args) <= 200 else args[:200] + "...}"
    raise EvaluationError(
        f"model {spec.name!r}: the weights in {path.name} do not fit {spec.builder} with "
        f"builder_args {args} (a model of {numel:,} parameters and "
        f"buffers; nothing was built): {'; '.join(parts)}"
    )


def _shape(shape: tuple[int, ...]) -> str:
    return " x ".join(map(str, shape)) if shape else "a scalar"


def _named(names: list[str], shapes: dict[str, tuple[int, ...]]) -> str:
    """The first five by size (the largest say most about what is wrong)."""
    names = sorted(names, key=lambda k: (-math.prod(shapes[k]), k))
    shown = ", ".join(f"{k} ({_shape(shapes[k])})" for k in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def load(spec: ModelSpec) -> TorchAdapter:
    if spec.preprocessing is None:
        raise EvaluationError(
            f"model {spec.name!r}: a {spec.format} model needs its preprocessing "
            "(input size, channels, mean/std) in the manifest"
        )
    return TorchAdapter(spec.name, _module(spec), spec.preprocessing, spec.classes, spec.path)
