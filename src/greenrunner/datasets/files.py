"""Datasets of image files: an ImageFolder tree or a CSV of (path, label)."""

from __future__ import annotations

import csv
import stat
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
from greenrunner.errors import ConfigError, DataError

# The most samples a data set may have unless told otherwise (``max_samples``): past any
# target set a selection needs, and each sample of a file data set is a file to check.
DEFAULT_MAX_SAMPLES = 1_000_000
# A CSV of a million rows of long paths is some 200 MB.
MAX_CSV_BYTES = 256 * 2**20
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux
MAX_LABEL_CHARS = 1000


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


def image_folder(
    root: Path,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    *,
    max_samples: int = DEFAULT_MAX_SAMPLES,
) -> FileDataset:
    """``root/<class>/<images>``: classes are the sub-folders, sorted by name; at most
    ``max_samples`` images."""
    limit = check_max_pixels(max_image_pixels)
    most = check_max_samples(max_samples)
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
        if len(paths) > most:
            raise _too_many(root, "images", most)
    for p in paths:
        check_image(p, limit)
    return FileDataset(root.name, tuple(paths), tuple(classes), np.asarray(labels), limit)


def check_max_samples(value: object) -> int:
    """The samples-per-dataset limit as a positive int (ConfigError naming the bad value)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(
            f"max_samples must be a positive whole number; got {value!r} "
            f"(the default is {DEFAULT_MAX_SAMPLES:,})"
        )
    return int(value)


def _too_many(where: Path, what: str, limit: int) -> DataError:
    return DataError(
        f"{where}: holds more than {limit:,} {what}, the most a data set may have here; "
        f"split it into smaller data sets (max_samples= raises the limit in Python)"
    )


def csv_dataset(
    path: Path,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    *,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    within: Path | None = None,
) -> FileDataset:
    """A CSV with columns ``path`` and ``label``; paths relative to the CSV's folder.

    Class names: a ``classes.txt`` beside the CSV (index order) if there is one, else the
    sorted distinct labels.

    Bounded before any image is opened: the file's size (:data:`MAX_CSV_BYTES`), each
    field's length, and the rows (``max_samples``). Each distinct image is looked up and
    checked once, however many rows name it. ``within`` (an upload's folder): every path
    must be a plain relative path that stays inside it once resolved, and the resolved
    path is the one opened."""
    from greenrunner.repositories.manifest import manifest_path, read_classes

    limit = check_max_pixels(max_image_pixels)
    most = check_max_samples(max_samples)
    try:
        info = path.stat()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):  # a FIFO would block the reader for ever
        raise DataError(f"{path}: not a regular file")
    size = info.st_size
    if size > MAX_CSV_BYTES:
        raise DataError(
            f"{path}: {size / 1e6:,.1f} MB, more than the {MAX_CSV_BYTES / 1e6:,.0f} MB a CSV "
            "data set may have; split it into smaller data sets"
        )
    found: dict[str, Path] = {}  # the path text of a row -> the file it names
    paths: list[Path] = []
    raw: list[str] = []
    line = 1
    reader = None
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = [cell.strip() for cell in next(reader, [])]
            if "path" not in header or "label" not in header:
                raise DataError(
                    f"{path}: needs a header row with columns path,label and one row each"
                )
            at_path, at_label = header.index("path"), header.index("label")
            for row in reader:
                line = reader.line_num
                if not row:
                    continue  # a blank line
                if len(paths) >= most:
                    raise _too_many(path, "rows", most)
                p = row[at_path].strip() if at_path < len(row) else ""
                label = row[at_label].strip() if at_label < len(row) else ""
                if not p or not label:
                    raise DataError(f"{path}: line {line} needs both a path and a label")
                if len(p) > MAX_PATH_CHARS or len(label) > MAX_LABEL_CHARS:
                    raise DataError(
                        f"{path}: line {line}: a path may have at most {MAX_PATH_CHARS:,} "
                        f"characters and a label {MAX_LABEL_CHARS:,}"
                    )
                file = found.get(p)
                if file is None:
                    if within is not None:
                        file = manifest_path(
                            path.parent, p, f"{path.name} line {line}: path", within=within
                        )
                    else:
                        file = Path(p) if Path(p).is_absolute() else path.parent / p
                    if not file.is_file():
                        raise DataError(f"{path}: line {line}: image not found: {file}")
                    found[p] = file
                paths.append(file)
                raw.append(label)
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        where = reader.line_num if reader is not None else line
        raise DataError(f"{path}: line {where}: not valid CSV ({exc})") from None
    if not paths:
        raise DataError(f"{path}: needs a header row with columns path,label and one row each")
    listed = path.parent / "classes.txt"
    classes = read_classes(listed) if listed.is_file() else tuple(sorted(set(raw)))
    index = {c: k for k, c in enumerate(classes)}
    unknown = sorted(set(raw) - set(index))
    if unknown:
        raise DataError(
            f"{path}: label(s) {', '.join(map(repr, unknown[:5]))} are not in {listed}; "
            "add them there or fix the CSV"
        )
    for file in dict.fromkeys(found.values()):  # each distinct image once
        check_image(file, limit)
    labels = np.asarray([index[r] for r in raw])
    return FileDataset(path.stem, tuple(paths), classes, labels, limit)
