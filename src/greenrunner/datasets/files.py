"""Datasets of image files: an ImageFolder tree or a CSV of (path, label)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from greenrunner.datasets._images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    IMAGE_SUFFIXES,
    check_image,
    check_max_pixels,
    decode,
    fingerprint_files,
)
from greenrunner.errors import DataError


@dataclass
class FileDataset:
    """Images in files with a label each; decoded on demand, each file checked against
    ``max_image_pixels`` again when decoded (it may have changed since it was opened)."""

    name: str
    paths: tuple[Path, ...]
    class_names: tuple[str, ...]
    labels: np.ndarray
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    _fingerprint: str | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, ids: np.ndarray, *, fit: tuple[int, int] | None = None) -> list[np.ndarray]:
        return [decode(self.paths[int(i)], self.max_image_pixels, fit) for i in ids]

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = fingerprint_files(self.paths, self.labels, self.class_names)
        return self._fingerprint


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def image_folder(root: Path, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> FileDataset:
    """``root/<class>/<images>``: classes are the sub-folders, sorted by name."""
    limit = check_max_pixels(max_image_pixels)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and _visible(p))
    if not classes:
        raise DataError(f"{root}: no class folders; an ImageFolder is root/<class>/<images>")
    paths: list[Path] = []
    labels: list[int] = []
    for k, name in enumerate(classes):
        files = sorted(
            p
            for p in (root / name).rglob("*")
            if p.is_file() and _visible(p) and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise DataError(
                f"{root / name}: class {name!r} has no images "
                f"({', '.join(sorted(IMAGE_SUFFIXES))}); add some or remove the folder"
            )
        paths += files
        labels += [k] * len(files)
    for p in paths:
        check_image(p, limit)
    return FileDataset(root.name, tuple(paths), tuple(classes), np.asarray(labels), limit)


def csv_dataset(path: Path, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> FileDataset:
    """A CSV with columns ``path`` and ``label``; paths relative to the CSV's folder.

    Class names: a ``classes.txt`` beside the CSV (index order) if there is one, else the
    sorted distinct labels."""
    from greenrunner.repositories.manifest import read_classes

    limit = check_max_pixels(max_image_pixels)
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise DataError(f"{path}: needs a header row with columns path,label and one row each")
    paths, raw = [], []
    for i, row in enumerate(rows, start=2):
        p, label = (row["path"] or "").strip(), (row["label"] or "").strip()
        if not p or not label:
            raise DataError(f"{path}: line {i} needs both a path and a label")
        file = Path(p) if Path(p).is_absolute() else path.parent / p
        if not file.is_file():
            raise DataError(f"{path}: line {i}: image not found: {file}")
        paths.append(file)
        raw.append(label)
    listed = path.parent / "classes.txt"
    classes = read_classes(listed) if listed.is_file() else tuple(sorted(set(raw)))
    index = {c: k for k, c in enumerate(classes)}
    unknown = sorted(set(raw) - set(index))
    if unknown:
        raise DataError(
            f"{path}: label(s) {', '.join(map(repr, unknown[:5]))} are not in {listed}; "
            "add them there or fix the CSV"
        )
    for p in paths:
        check_image(p, limit)
    labels = np.asarray([index[r] for r in raw])
    return FileDataset(path.stem, tuple(paths), classes, labels, limit)
