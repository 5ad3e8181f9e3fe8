"""How decoded images become a model's input batch: resize, crop, channels, scale, normalise.

One immutable :class:`Preprocessing` per model; the evaluator decodes each sample once and
prepares it once per distinct setting (models that share a setting share the tensors).
Every field is part of the prediction cache's key; a change here that changes the tensors
for the same setting must bump ``greenrunner.adapters.base.CODE_VERSION``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from greenrunner.errors import ConfigError

Layout = Literal["NCHW", "NHWC"]


@dataclass(frozen=True)
class InputLimits:
    """The largest input a model may take: ``max_side`` pixels per side and ``max_pixels``
    (height x width) in all, for the input size and, with a resize, for the image first
    resized to (at least ``resize`` x ``resize``). Every batch is sized from a byte budget
    as well (``evaluation.inference.BATCH_BYTES``), so these bound one sample, not a run."""

    max_side: int
    max_pixels: int

    def check(self, prep: Preprocessing, where: str = "") -> None:
        """ConfigError naming the value and the limit when ``prep`` is over the limits;
        ``where`` (a model's name, a file) leads the message."""
        lead = f"{where}: " if where else ""
        h, w = prep.size
        if max(h, w) > self.max_side or h * w > self.max_pixels:
            raise ConfigError(
                f"{lead}input size {h} x {w} ({h * w:,} pixels) is over the limit of "
                f"{self.max_side:,} pixels per side and {self.max_pixels:,} pixels in all"
            )
        if prep.resize is not None:
            fit_w, fit_h = prep.fit
            if prep.resize > self.max_side or fit_w * fit_h > self.max_pixels:
                raise ConfigError(
                    f"{lead}resize {prep.resize} (images first resized to at least "
                    f"{fit_h} x {fit_w}, {fit_w * fit_h:,} pixels) is over the limit of "
                    f"{self.max_side:,} pixels per side and {self.max_pixels:,} pixels in all"
                )


# Every Preprocessing keeps to these (the command line included): generous for real
# classifiers, whose inputs are rarely above 1024 x 1024, and wide enough for spectrogram-like
# inputs; one float32 RGB sample at the pixel limit is 201 MB.
INPUT_LIMITS = InputLimits(max_side=8192, max_pixels=4096 * 4096)
# What an uploaded model may declare (web.modelcheck): 50 MB per float32 RGB sample.
UPLOAD_INPUT_LIMITS = InputLimits(max_side=4096, max_pixels=2048 * 2048)


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
        size = _integers(self.size)
        if size is None or len(size) != 2 or min(size) < 1:
            raise ConfigError(f"input size must be two positive integers (H, W); got {self.size}")
        object.__setattr__(self, "size", size)
        if _integers((self.channels,)) not in ((1,), (3,)):
            raise ConfigError(f"channels must be 1 (grey) or 3 (RGB); got {self.channels!r}")
        object.__setattr__(self, "channels", int(self.channels))
        for name in ("mean", "std"):
            raw = getattr(self, name)
            values = _floats((raw,) if isinstance(raw, int | float) else raw)
            if values is None or len(values) not in (1, self.channels):
                raise ConfigError(
                    f"{name} must have 1 or {self.channels} finite numbers; got {raw!r}"
                )
            object.__setattr__(self, name, values)
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"std values must be positive; got {self.std}")
        if self.resize is not None and _integers((self.resize,)) is None:
            raise ConfigError(
                f"resize must be an integer (pixels) or left out; got {self.resize!r}"
            )
        if self.resize is not None:
            # Plain ints: numpy integers would break the JSON fingerprint.
            object.__setattr__(self, "resize", int(self.resize))
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
        INPUT_LIMITS.check(self)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """One prepared sample's shape: (C, H, W) or (H, W, C) by ``layout``."""
        h, w = self.size
        return (self.channels, h, w) if self.layout == "NCHW" else (h, w, self.channels)

    @property
    def sample_bytes(self) -> int:
        """Bytes of one prepared sample (float32)."""
        c, h, w = self.channels, *self.size
        return c * h * w * 4

    @property
    def fit(self) -> tuple[int, int]:
        """The (width, height) a source image is resized to cover: the input size, or with
        ``resize`` a shorter side of ``resize`` (never less than the crop). A decoder may
        shrink a very large image first, as long as it still covers this."""
        h, w = self.size
        return (w, h) if self.resize is None else (max(self.resize, w), max(self.resize, h))

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
    c = spec.channels
    nchw = spec.layout == "NCHW"
    # Written straight into the final layout, one image at a time: transposing a whole
    # batch afterwards is a strided copy that cost a third of the preparation time.
    out = np.empty((len(images), *spec.sample_shape), np.float32)
    for i, array in enumerate(images):
        img = Image.fromarray(_to_uint8(array))
        img = img.convert("L" if c == 1 else "RGB")
        if spec.resize is not None:
            rw, rh = _resized(img.size, spec.resize, (w, h))
            # Rounded, not floored, as torchvision's CenterCrop does: an odd margin puts
            # the crop where the published evaluation put it.
            left, top = round((rw - w) / 2.0), round((rh - h) / 2.0)
            if rw * rh <= INPUT_LIMITS.max_pixels:
                img = img.resize((rw, rh), resample).crop((left, top, left + w, top + h))
            else:
                # A very elongated image (1 x 20000 with a shorter side of 256 would be
                # 256 x 5,120,000, 3.9 GB): only the part the crop keeps is resized, at the
                # same scale, so memory stays that of the crop. Values may differ by
                # rounding from resizing the whole image first.
                sx, sy = img.size[0] / rw, img.size[1] / rh
                box = (left * sx, top * sy, (left + w) * sx, (top + h) * sy)
                img = img.resize((w, h), resample, box=box)
        else:
            img = img.resize((w, h), resample)
        pixels = np.asarray(img, dtype=np.uint8).reshape(h, w, c)
        out[i] = pixels.transpose(2, 0, 1) if nchw else pixels
    shape = (1, c, 1, 1) if nchw else (1, 1, 1, c)
    mean = np.broadcast_to(np.asarray(spec.mean, np.float32), (c,)).reshape(shape)
    std = np.broadcast_to(np.asarray(spec.std, np.float32), (c,)).reshape(shape)
    # (x / 255 - mean) / std, in place
    out *= np.float32(1 / 255)
    out -= mean
    out /= std
    return out


def _resized(size: tuple[int, int], short: int, least: tuple[int, int]) -> tuple[int, int]:
    """(width, height) with the shorter side ``short`` and the longer one truncated, as
    torchvision's Resize(int) computes it, but never below the crop."""
    w, h = size
    new = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    return max(least[0], new[0]), max(least[1], new[1])


def _integers(values: object) -> tuple[int, ...] | None:
    """The values as ints, or None unless every one is an integer (True and 2.5 are not)."""
    if not isinstance(values, Iterable) or isinstance(values, str):
        return None
    items = tuple(values)
    ints = [int(v) for v in items if isinstance(v, int | np.integer) and not isinstance(v, bool)]
    return tuple(ints) if len(ints) == len(items) else None


def _floats(values: object) -> tuple[float, ...] | None:
    """The values as floats, or None unless every one is a finite number."""
    if not isinstance(values, Iterable) or isinstance(values, str):
        return None
    items = tuple(values)
    out = [
        float(v)
        for v in items
        if isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
    ]
    return tuple(out) if len(out) == len(items) and all(np.isfinite(out)) else None


def _to_uint8(array: np.ndarray) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ConfigError(f"an image must be H x W or H x W x 3/4; got shape {a.shape}")
    if a.dtype != np.uint8:
        raise ConfigError(f"decoded images must be uint8; got {a.dtype}")
    return a
