"""The demo's data: scikit-learn's digits, split into a clean source and a shifted target.

``load_digits`` (1,797 8x8 scans, 16 grey levels) ships inside scikit-learn, so nothing is
downloaded. The source part trains the zoo and yields the "model card" accuracies; the
target part plays the user's own data: the same kind of digits, but rendered the way a
different scanner and different writers would give them (rotated, blurred, faded, noisy,
thicker or thinner strokes). That gap is what makes card accuracy a poor guide and why
GreenRunner has to look at the target at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

SIZE = 28  # the rendered side: the MNIST convention, so MNIST-style networks fit as well
CLASSES = tuple(str(d) for d in range(10))
Render = Literal["clean", "crude"]


@dataclass(frozen=True)
class Split:
    """Raw 8x8 digits (float, 0-16) and their labels, one part of the data set."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class DigitSplits:
    """Source train and validation parts (clean), and the target part (to be shifted)."""

    train: Split
    val: Split
    target: Split


def split_digits(
    seed: int = 0, *, target_fraction: float = 0.45, val_fraction: float = 0.2
) -> DigitSplits:
    """Stratified, seeded split: every part keeps the class balance of the whole set."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.asarray(digits.images, dtype=np.float32)
    labels = np.asarray(digits.target, dtype=np.int64)
    src_x, tgt_x, src_y, tgt_y = train_test_split(
        images, labels, test_size=target_fraction, stratify=labels, random_state=seed
    )
    tr_x, va_x, tr_y, va_y = train_test_split(
        src_x, src_y, test_size=val_fraction, stratify=src_y, random_state=seed + 1
    )
    return DigitSplits(Split(tr_x, tr_y), Split(va_x, va_y), Split(tgt_x, tgt_y))


def render(images: np.ndarray, style: Render = "clean") -> np.ndarray:
    """8x8 digits (0-16) as uint8 28x28 grey images, white ink on black.

    ``clean`` upsamples smoothly to a 20x20 box centred in 28x28, the layout of MNIST, so a
    network trained on MNIST sees familiar proportions. ``crude`` is how a careless
    pipeline would do it: nearest-neighbour blocks filling a 24x24 box, giving the zoo some
    models trained on a visibly different source.
    """
    from PIL import Image

    box, resample = (
        (20, Image.Resampling.BICUBIC) if style == "clean" else (24, Image.Resampling.NEAREST)
    )
    pad = (SIZE - box) // 2
    out = np.zeros((len(images), SIZE, SIZE), dtype=np.uint8)
    for i, img in enumerate(images):
        # Float mode, so bicubic overshoot is clipped once at the end instead of wrapping.
        big = Image.fromarray(np.asarray(img, dtype=np.float32) * (255.0 / 16.0))
        pixels = np.asarray(big.resize((box, box), resample), dtype=np.float32)
        out[i, pad : pad + box, pad : pad + box] = np.clip(np.rint(pixels), 0, 255)
    return out


def shift(images: np.ndarray, seed: int) -> np.ndarray:
    """The target's distribution shift: a seeded, per-image mix of realistic corruptions.

    Each image draws its own subset, so the target is a blend of mild and harder cases
    rather than one uniform distortion (a model robust to one kind is not automatically
    robust to all). Magnitudes stay where a person still reads every digit easily.
    """
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    out = np.empty_like(images)
    for i, img in enumerate(images):
        pil = Image.fromarray(img)
        # Stroke width: a different pen (thicker) or a lighter scanner threshold (thinner).
        stroke = rng.random()
        if stroke < 0.2:
            pil = pil.filter(ImageFilter.MaxFilter(3))
        elif stroke < 0.3:
            pil = pil.filter(ImageFilter.MinFilter(3))
        # Pose: slanted writing, off-centre and slightly resized digits, in one affine map.
        angle = float(rng.uniform(-20.0, 20.0)) if rng.random() < 0.7 else 0.0
        scale = float(rng.uniform(0.9, 1.1))
        dx, dy = (float(v) for v in rng.uniform(-2.0, 2.0, size=2))
        pil = pil.transform(
            pil.size,
            Image.Transform.AFFINE,
            _affine(angle, scale, dx, dy),
            resample=Image.Resampling.BILINEAR,
            fillcolor=0,
        )
        if rng.random() < 0.5:  # out-of-focus scan
            pil = pil.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.4, 1.1))))
        x = np.asarray(pil, dtype=np.float64)
        if rng.random() < 0.6:  # faded ink on grey paper: lower contrast, brighter background
            contrast = rng.uniform(0.55, 0.95)
            background = rng.uniform(10.0, 60.0)
            x = background + x * contrast
        if rng.random() < 0.6:  # sensor noise
            x = x + rng.normal(0.0, rng.uniform(3.0, 15.0), size=x.shape)
        out[i] = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return out


def _affine(angle: float, scale: float, dx: float, dy: float) -> tuple[float, ...]:
    """PIL's inverse affine coefficients for a rotation and scale about the centre, then a
    translation (PIL maps each output pixel back to the input, hence the inverse)."""
    c = (SIZE - 1) / 2.0
    t = np.deg2rad(angle)
    cos, sin = np.cos(t) / scale, np.sin(t) / scale
    # input = R^-1 (output - centre - d) / scale + centre
    a, b, d, e = cos, sin, -sin, cos
    ox, oy = c + dx, c + dy
    return (a, b, c - a * ox - b * oy, d, e, c - d * ox - e * oy)


def target_set(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The shifted target (uint8 N x 28 x 28, labels) for a seed: what the demo writes."""
    splits = split_digits(seed)
    return shift(render(splits.target.images), seed + 7), splits.target.labels
