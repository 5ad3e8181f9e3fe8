"""Datasets held in memory: numpy arrays, a ``.npz`` file, or IDX files (the MNIST family)."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from greenrunner.errors import DataError


@dataclass
class ArrayDataset:
    """N images (N x H x W grey or N x H x W x 3 RGB, uint8) with labels."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    name: str = "arrays"
    _fingerprint: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        images, labels = np.asarray(self.images), np.asarray(self.labels)
        where = f"dataset {self.name!r}"
        if images.dtype != np.uint8:
            raise DataError(f"{where}: images must be uint8 (0-255); got {images.dtype}")
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3)):
            raise DataError(
                f"{where}: images must be N x H x W or N x H x W x 3; got shape {images.shape}"
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(
                f"{where}: {len(images)} images but labels of shape {labels.shape}; "
                "give one label per image"
            )
        classes = tuple(str(c) for c in self.class_names)
        if labels.dtype.kind in "iu":
            if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
                raise DataError(
                    f"{where}: labels must be class indices 0..{len(classes) - 1}; "
                    f"found {labels.min()}..{labels.max()}"
                )
        else:  # labels given as class names
            index = {c: k for k, c in enumerate(classes)}
            unknown = sorted({str(v) for v in labels} - set(index))
            if unknown:
                raise DataError(f"{where}: unknown label(s) {', '.join(unknown[:5])}")
            labels = np.asarray([index[str(v)] for v in labels])
        if images.ndim == 4 and images.shape[3] == 1:
            images = images[..., 0]
        self.images, self.labels, self.class_names = images, labels.astype(np.int64), classes

    def __len__(self) -> int:
        return len(self.images)

    def load(self, ids: np.ndarray) -> list[np.ndarray]:
        return [self.images[int(i)] for i in ids]

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            h = hashlib.sha256("\n".join(self.class_names).encode())
            h.update(str(self.images.shape).encode())
            h.update(np.ascontiguousarray(self.images).tobytes())
            h.update(self.labels.tobytes())
            self._fingerprint = h.hexdigest()[:24]
        return self._fingerprint


def npz_dataset(path: Path) -> ArrayDataset:
    """``images`` and ``labels`` arrays, optional ``class_names``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    missing = {"images", "labels"} - set(arrays)
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(sorted(missing))}")
    labels = arrays["labels"]
    if "class_names" in arrays:
        classes: Sequence[str] = [str(c) for c in arrays["class_names"]]
    elif labels.dtype.kind in "iu":
        classes = [str(k) for k in range(int(labels.max()) + 1 if len(labels) else 0)]
    else:
        classes = sorted({str(v) for v in labels})
    try:
        return ArrayDataset(arrays["images"], labels, tuple(classes), name=path.stem)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path}: header says {shape} but the file holds {data.size} bytes")
    return data.reshape(shape)


def idx_dataset(path: Path) -> ArrayDataset:
    """An IDX images file (``*-images-idx3-ubyte[.gz]``) with its labels file, or a folder
    holding exactly one such pair; class names from a ``classes.txt`` beside them."""
    from greenrunner.repositories.manifest import read_classes

    folder = path if path.is_dir() else path.parent
    if path.is_dir():
        found = sorted(folder.glob("*images-idx3-ubyte*"))
        if len(found) != 1:
            raise DataError(
                f"{folder}: expected one *-images-idx3-ubyte[.gz] file, found {len(found)}"
            )
        path = found[0]
    labels_path = folder / path.name.replace("images-idx3", "labels-idx1")
    if labels_path == path or not labels_path.is_file():
        raise DataError(f"{path}: its labels file {labels_path.name} is not beside it")
    images, labels = _read_idx(path), _read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{path}: {images.shape} images and {labels.shape} labels do not pair up")
    listed = folder / "classes.txt"
    n = int(labels.max()) + 1 if len(labels) else 0
    classes = read_classes(listed) if listed.is_file() else tuple(str(k) for k in range(n))
    name = path.name.split("-images")[0]
    try:
        return ArrayDataset(images, labels, classes, name=name)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
