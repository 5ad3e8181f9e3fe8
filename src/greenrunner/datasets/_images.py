"""Shared image decoding and validation for file-based datasets."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from greenrunner.errors import DataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def check_image(path: Path) -> None:
    """Open the file and verify its structure (headers, chunks, checksums) without a full
    decode: a corrupt or non-image file is caught before any compute, and checking
    thousands of files stays fast. Truncated pixel data can still only show on decode."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.verify()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc}); remove or replace it") from None


def decode(path: Path) -> np.ndarray:
    """uint8 H x W (grey) or H x W x 3 (RGB); other modes converted to one of those."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            img = opened.convert("L") if opened.mode in ("1", "I", "I;16", "F", "LA") else opened
            if img.mode not in ("L", "RGB"):
                img = img.convert("RGB")
            return np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode the image ({exc})") from None


def fingerprint_files(paths: Sequence[Path], labels: np.ndarray, classes: Sequence[str]) -> str:
    """A content hash of the files, their labels and the class names."""
    h = hashlib.sha256("\n".join(classes).encode())
    h.update(np.asarray(labels, dtype=np.int64).tobytes())
    for p in paths:
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:24]
