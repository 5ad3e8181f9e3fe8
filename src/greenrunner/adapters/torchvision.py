"""torchvision classifiers by builder name and weights id, with the weights' own metadata.

Preprocessing comes from the weights' evaluation transform, classes from their categories.
Weights go to the standard torch cache (``$TORCH_HOME/hub/checkpoints``) and are downloaded
there only when the user has a network; without one, a model whose weights are not cached
fails with the file to fetch and where to put it. Inside :func:`cached_only` (the web app's
upload checks and runs) nothing is downloaded: only weights already in the cache load.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from greenrunner.adapters.base import ModelSpec, require
from greenrunner.adapters.torch import TorchAdapter, _torch
from greenrunner.evaluation.base import EvaluationError
from greenrunner.preprocessing import Preprocessing

_DOWNLOADS = contextvars.ContextVar("greenrunner_torchvision_downloads", default=True)


@contextlib.contextmanager
def cached_only() -> Iterator[None]:
    """Within this block (in this thread), torchvision weights load only from the torch
    cache: a model whose weights are not there is refused, never downloaded."""
    token = _DOWNLOADS.set(False)
    try:
        yield
    finally:
        _DOWNLOADS.reset(token)


def _tv() -> Any:
    require("torchvision", "torch")
    import torchvision

    return torchvision


def classification_builders() -> frozenset[str]:
    """The names torchvision registers for its classification models (``resnet18``, ...)."""
    tv = _tv()
    return frozenset(tv.models.list_models(module=tv.models))


def get_weights(builder: str, weights: str | None, model: str) -> Any:
    """The torchvision weights enum member for ``weights`` (e.g. ``IMAGENET1K_V1`` or
    ``ResNet18_Weights.IMAGENET1K_V1``; ``DEFAULT`` or None for the builder's default).

    Both names are looked up in torchvision's own registries by exact name (the builder
    among its classification builders, the weights among that builder's enum members),
    never through attributes: a manifest's text chooses from a list, it reaches nothing else.
    """
    tv = _tv()
    if not isinstance(builder, str) or builder not in classification_builders():
        raise EvaluationError(
            f"model {model!r}: torchvision has no classification builder {builder!r}; "
            "give one of the names torchvision.models.list_models(module=torchvision.models) "
            "lists, such as resnet18"
        )
    enum = tv.models.get_model_weights(builder)
    text = weights or "DEFAULT"
    prefix, _, key = text.rpartition(".")
    names = ", ".join(w.name for w in enum)
    if prefix and prefix != enum.__name__:
        raise EvaluationError(
            f"model {model!r}: weights {text!r} are not {builder}'s ({enum.__name__}); "
            f"it has {names}"
        )
    # The enum's member table, not getattr: "__class__" or "mro" must not be a member.
    member = enum.__members__.get(key)
    if member is None:
        raise EvaluationError(f"model {model!r}: {builder} has no weights {key!r}; it has {names}")
    return member


def checkpoint_path(weights: Any) -> Path:
    """Where torch keeps (or would keep) the weights file."""
    torch = _torch()
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def preprocessing_of(weights: Any) -> Preprocessing:
    t = weights.transforms()
    crop = int(t.crop_size[0])
    resize = int(t.resize_size[0]) if t.resize_size else None
    interp = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest"}.get(
        str(t.interpolation.value).lower(), "bilinear"
    )
    return Preprocessing(
        size=(crop, crop),
        channels=3,
        mean=tuple(t.mean),
        std=tuple(t.std),
        resize=resize if resize and resize >= crop else None,
        interpolation=interp,  # type: ignore[arg-type]
    )


def load(spec: ModelSpec) -> TorchAdapter:
    if spec.builder is None:
        raise EvaluationError(f"model {spec.name!r}: a torchvision model needs a builder name")
    tv = _tv()
    _torch()  # sets the thread count once
    weights = get_weights(spec.builder, spec.weights, spec.name)
    file = checkpoint_path(weights)
    if not _DOWNLOADS.get():
        state = _cached_state(spec.name, weights, file)
    else:
        state = _fetched_state(spec.name, weights, file)
    module = tv.models.get_model(spec.builder, weights=None)
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise EvaluationError(f"model {spec.name!r}: weights do not fit: {exc}") from exc
    classes = spec.classes or tuple(weights.meta["categories"])
    prep = spec.preprocessing or preprocessing_of(weights)
    return TorchAdapter(spec.name, module, prep, classes, file if file.is_file() else None)


def _cached_state(model: str, weights: Any, file: Path) -> Any:
    """The weights from the torch cache, read as tensors, or a refusal that names the
    file to pre-fetch but not where this machine keeps it (the message may go to a web
    client)."""
    name = Path(weights.url).name
    refusal = (
        f"model {model!r}: weights {weights} ({name}) are not in this server's torch cache, "
        f"and it downloads nothing; ask the operator to pre-fetch them ({weights.url})"
    )
    if not file.is_file():
        raise EvaluationError(refusal)
    try:
        return _torch().load(file, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise EvaluationError(refusal) from None
    except Exception as exc:
        raise EvaluationError(
            f"model {model!r}: the torch cache's copy of {name} cannot be read "
            f"({type(exc).__name__}); ask the operator to fetch it again"
        ) from None


def _fetched_state(model: str, weights: Any, file: Path) -> Any:
    """The weights from the torch cache, downloaded there first if missing."""
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # URLError, OSError, hash mismatch: all mean "not available"
        raise EvaluationError(
            f"model {model!r}: weights {weights} are not in the torch cache ({file}) and "
            f"could not be downloaded ({exc}); fetch {weights.url} on a machine with a "
            f"network and copy it to {file.parent}"
        ) from exc
