"""How decoded images become a model's input batch: resize, crop, channels, scale, normalise.

One immutable :class:`Preprocessing` per model; the evaluator decodes each sample once and
prepares it once per distinct setting (models that share a setting share the tensors).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from greenrunner.errors import ConfigError

Layout = Literal["NCHW", "NHWC"]


@dataclass(frozen=True)
class Preprocessing:
    """A model's input contract.

    ``size`` is the (height, width) fed to the model. With ``resize`` set, the shorter side
    is first resized to ``resize`` and the centre ``size`` cropped (the torchvision
    evaluation transform); without it the image is resized straight to ``size``. Pixels
    are scaled to [0, 1], converted to ``channels`` (1 = grey, 3 = RGB), then normalised
    with ``mean`` and ``std`` (one value per channel, or one for all).
    """

    size: tuple[int, int]
    channels: int = 3
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    resize: int | None = None
    layout: Layout = "NCHW"
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"

    def __post_init__(self) -> None:
        size = tuple(int(v) for v in self.size)
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f"input size must be two positive integers (H, W); got {self.size}")
        object.__setattr__(self, "size", size)
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 (grey) or 3 (RGB); got {self.channels}")
        for name in ("mean", "std"):
            values = tuple(float(v) for v in getattr(self, name))
            if len(values) not in (1, self.channels) or not all(np.isfinite(values)):
                raise ConfigError(
                    f"{name} must have 1 or {self.channels} finite values; got {values}"
                )
            object.__setattr__(self, name, values)
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"std values must be positive; got {self.std}")
        if self.resize is not None and self.resize < min(size):
            raise ConfigError(
                f"resize ({self.resize}) must be at least the crop size {size}; "
                "leave it out to resize straight to the input size"
            )
        if self.layout not in ("NCHW", "NHWC"):
            raise ConfigError(f"layout must be NCHW or NHWC; got {self.layout!r}")
        if self.interpolation not in ("bilinear", "bicubic", "nearest"):
            raise ConfigError(
                f"interpolation must be bilinear, bicubic or nearest; got {self.interpolation!r}"
            )

    def fingerprint(self) -> str:
        """Stable id of the setting: equal settings share prepared tensors and caches."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def prepare(images: Sequence[np.ndarray], spec: Preprocessing) -> np.ndarray:
    """A float32 batch in ``spec.layout`` from decoded uint8 images (H x W or H x W x C)."""
    from PIL import Image  # Pillow comes with every extra that runs models

    resample = {
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "nearest": Image.Resampling.NEAREST,
    }[spec.interpolation]
    h, w = spec.size
    out = np.empty((len(images), h, w, spec.channels), dtype=np.float32)
    for i, array in enumerate(images):
        img = Image.fromarray(_to_uint8(array))
        img = img.convert("L" if spec.channels == 1 else "RGB")
        if spec.resize is not None:
            scale = spec.resize / min(img.size)
            img = img.resize(
                (max(w, round(img.size[0] * scale)), max(h, round(img.size[1] * scale))),
                resample,
            )
            left, top = (img.size[0] - w) // 2, (img.size[1] - h) // 2
            img = img.crop((left, top, left + w, top + h))
        else:
            img = img.resize((w, h), resample)
        pixels = np.asarray(img, dtype=np.float32) / 255.0
        out[i] = pixels[..., None] if pixels.ndim == 2 else pixels
    out -= np.asarray(spec.mean, dtype=np.float32)
    out /= np.asarray(spec.std, dtype=np.float32)
    return out.transpose(0, 3, 1, 2).copy() if spec.layout == "NCHW" else out


def _to_uint8(array: np.ndarray) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ConfigError(f"an image must be H x W or H x W x 3/4; got shape {a.shape}")
    if a.dtype != np.uint8:
        raise ConfigError(f"decoded images must be uint8; got {a.dtype}")
    return a
