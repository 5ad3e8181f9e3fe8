"""Datasets held in memory: numpy arrays, a ``.npz`` file, or IDX files (the MNIST family).

The files are read whole, so what their headers declare is checked before anything is read:
pixels per image against ``max_image_pixels`` (as for image files), and the total against
this machine's memory. An IDX header can claim 2^32 x 2^32 images in a few bytes, and a
small ``.npz`` can inflate to gigabytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from math import prod
from pathlib import Path

import numpy as np

from greenrunner.datasets._images import DEFAULT_MAX_IMAGE_PIXELS, check_max_pixels
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

    def load(self, ids: np.ndarray, *, fit: tuple[int, int] | None = None) -> list[np.ndarray]:
        return [self.images[int(i)] for i in ids]  # already in memory: ``fit`` saves nothing

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            h = hashlib.sha256("\n".join(self.class_names).encode())
            h.update(str(self.images.shape).encode())
            h.update(np.ascontiguousarray(self.images).tobytes())
            h.update(self.labels.tobytes())
            self._fingerprint = h.hexdigest()[:24]
        return self._fingerprint


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def _check_declared(
    path: Path, images: tuple[int, ...], total_bytes: int, max_image_pixels: int
) -> None:
    """The declared image shape (N x H x W[ x C]) and total size, before any data is read."""
    if len(images) >= 3:
        h, w = images[1:3]
        if h * w > max_image_pixels:
            raise DataError(
                f"{path}: declares images of {h} x {w} pixels ({h * w / 1e6:,.1f} MP), more "
                f"than the {max_image_pixels / 1e6:,.1f} MP allowed per image; raise the limit "
                f"with --max-image-pixels {h * w} (max_image_pixels= in Python) if it is right"
            )
    memory = physical_memory()
    if memory is not None and total_bytes > memory:
        raise DataError(
            f"{path}: declares {images} ({total_bytes / 1e9:,.1f} GB), more than this "
            f"machine's memory ({memory / 1e9:,.1f} GB); in-memory formats are read whole, so "
            "split the data or use an ImageFolder or CSV of image files (decoded per sample)"
        )


# The arrays a dataset .npz may hold; members are read by these keys only.
NPZ_ARRAYS = ("images", "labels", "class_names")
# More members than a dataset needs by far; bounds the header reads of a hostile file.
MAX_NPZ_MEMBERS = 64
# Without class_names the classes are 0..max(label): a label of 10**18 would make a list
# of 10**18 names. Past this many classes, name them.
MAX_UNNAMED_CLASSES = 100_000

Member = tuple[zipfile.ZipInfo, tuple[int, ...], np.dtype]


def _npz_members(archive: zipfile.ZipFile, path: Path) -> dict[str, Member]:
    """Each array's key, zip entry, shape and dtype, from its .npy header alone.

    numpy's ``NpzFile`` answers a key from the raw member name as well as from
    ``key.npy`` (the raw name wins), returns a member without the .npy magic as raw bytes,
    and a zip may hold two entries of one name. So every member must be exactly
    ``<key>.npy`` with a distinct key, each is checked by its content (the .npy header,
    whatever the name says), and the arrays are later read from these very entries.
    """
    fmt = np.lib.format
    infos = archive.infolist()
    if len(infos) > MAX_NPZ_MEMBERS:
        raise DataError(
            f"{path}: holds {len(infos):,} members; a dataset .npz holds the arrays "
            f"{', '.join(NPZ_ARRAYS)} (np.savez(path, images=..., labels=...))"
        )
    out: dict[str, Member] = {}
    for info in infos:
        name = info.filename
        key = name.removesuffix(".npy")
        if key == name or not key or info.is_dir():
            raise DataError(
                f"{path}: member {name[:100]!r} is not an array file <name>.npy; a dataset "
                f".npz holds only .npy arrays ({', '.join(NPZ_ARRAYS)}), as np.savez writes"
            )
        if key in out:
            raise DataError(f"{path}: holds the array {key[:100]!r} twice; keep one")
        with archive.open(info) as f:
            try:
                version = fmt.read_magic(f)
            except ValueError:
                raise DataError(
                    f"{path}: member {name[:100]!r} is not a .npy array (no .npy header)"
                ) from None
            if version not in ((1, 0), (2, 0)):
                raise DataError(
                    f"{path}: member {name[:100]!r} is .npy format {version}; save plain "
                    "numeric or text arrays (np.savez writes format 1.0)"
                )
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read(f)
        if dtype.hasobject or dtype.kind == "V":
            raise DataError(
                f"{path}: array {key[:100]!r} has dtype {dtype}; object and structured arrays "
                "are refused (loading them can run code): save plain numeric or text arrays"
            )
        out[key] = (info, tuple(int(d) for d in shape), dtype)
    return out


def npz_dataset(path: Path, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> ArrayDataset:
    """``images`` and ``labels`` arrays, optional ``class_names``; nothing else is read."""
    limit = check_max_pixels(max_image_pixels)
    fmt = np.lib.format
    try:
        with zipfile.ZipFile(path) as archive:
            members = _npz_members(archive, path)
            missing = {"images", "labels"} - set(members)
            if missing:
                raise DataError(f"{path}: missing array(s) {', '.join(sorted(missing))}")
            wanted = {k: members[k] for k in NPZ_ARRAYS if k in members}
            total = sum(prod(shape) * dtype.itemsize for _, shape, dtype in wanted.values())
            _check_declared(path, members["images"][1], total, limit)
            arrays = {}
            for key, (info, _, _) in wanted.items():
                with archive.open(info) as f:
                    arrays[key] = fmt.read_array(f, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    labels = arrays["labels"]
    if "class_names" in arrays:
        classes: Sequence[str] = [str(c) for c in arrays["class_names"]]
    elif labels.dtype.kind in "iu":
        top = int(labels.max()) if labels.size else -1
        if top >= MAX_UNNAMED_CLASSES:
            raise DataError(
                f"{path}: labels go up to {top:,}, so the classes would be 0..{top:,}; add a "
                "class_names array naming each class (labels index into it)"
            )
        classes = [str(k) for k in range(top + 1)]
    else:
        classes = sorted({str(v) for v in labels})
    try:
        return ArrayDataset(arrays["images"], labels, tuple(classes), name=path.stem)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


def _read_upto(f: io.BufferedIOBase, n: int) -> bytearray:
    """At most n + 1 bytes, in chunks: a stream that lies about its length is not read
    further than one byte past what was declared."""
    buf = bytearray()
    while len(buf) <= n:
        chunk = f.read(min(1 << 24, n + 1 - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def _read_idx(path: Path, ndim: int, max_image_pixels: int) -> np.ndarray:
    """An IDX file of unsigned bytes with ``ndim`` dimensions, its header checked first."""
    opener = gzip.open if path.suffix == ".gz" else open
    what = "images (N x H x W)" if ndim == 3 else "labels (N)"
    try:
        with opener(path, "rb") as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[:3] != b"\0\0\x08":
                raise DataError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
            if magic[3] != ndim:
                raise DataError(
                    f"{path}: holds {magic[3]}-dimensional data; expected {what} "
                    f"({ndim}-dimensional)"
                )
            dims = f.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise DataError(f"{path}: the IDX header is cut short")
            shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
            size = prod(shape)  # Python ints: no overflow whatever the header claims
            _check_declared(path, shape, size, max_image_pixels)
            data = _read_upto(f, size)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if len(data) != size:
        holds = f"{len(data):,} bytes" if len(data) < size else "more bytes than that"
        raise DataError(
            f"{path}: header says {shape} ({size:,} bytes of data) but the file holds {holds}"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def idx_dataset(path: Path, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> ArrayDataset:
    """An IDX images file (``*-images-idx3-ubyte[.gz]``) with its labels file, or a folder
    holding exactly one such pair; class names from a ``classes.txt`` beside them."""
    from greenrunner.repositories.manifest import read_classes

    limit = check_max_pixels(max_image_pixels)
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
    images, labels = _read_idx(path, 3, limit), _read_idx(labels_path, 1, limit)
    if len(images) != len(labels):
        raise DataError(f"{path}: {images.shape} images and {labels.shape} labels do not pair up")
    listed = folder / "classes.txt"
    n = int(labels.max()) + 1 if len(labels) else 0
    classes = read_classes(listed) if listed.is_file() else tuple(str(k) for k in range(n))
    name = path.name.split("-images")[0]
    try:
        return ArrayDataset(images, labels, classes, name=name)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
