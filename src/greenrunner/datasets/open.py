"""Open a target dataset from what the user points at, by its shape on disk."""

from __future__ import annotations

from pathlib import Path

from greenrunner.datasets._images import DEFAULT_MAX_IMAGE_PIXELS, check_max_pixels
from greenrunner.datasets.base import TargetDataset
from greenrunner.datasets.files import DEFAULT_MAX_SAMPLES
from greenrunner.errors import DataError


def open_dataset(
    where: str | Path,
    *,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    within: Path | None = None,
) -> TargetDataset:
    """An ImageFolder, a CSV of path,label, IDX files (or a folder of them), or a .npz.

    Every image is checked before this returns (readable, at most ``max_image_pixels``
    pixels, default 64 MP); IDX and .npz headers are checked before they are read. A
    data set of image files (ImageFolder, CSV) has at most ``max_samples`` samples
    (default 1,000,000); in-memory formats are bounded by their declared size instead.
    ``within`` (an upload's folder): a CSV may only name images inside it.
    """
    from greenrunner.datasets.arrays import idx_dataset, npz_dataset
    from greenrunner.datasets.files import check_max_samples, csv_dataset, image_folder

    limit = check_max_pixels(max_image_pixels)
    most = check_max_samples(max_samples)
    path = Path(where).expanduser()
    if not path.exists():
        raise DataError(f"--data {where}: no such file or folder")
    name = path.name.lower()
    if path.is_file():
        if name.endswith(".csv"):
            return csv_dataset(path, limit, max_samples=most, within=within)
        if name.endswith(".npz"):
            return npz_dataset(path, limit)
        if "idx3-ubyte" in name:
            return idx_dataset(path, limit)
    elif any(path.glob("*images-idx3-ubyte*")):
        return idx_dataset(path, limit)
    elif any(p.is_dir() for p in path.iterdir()):
        return image_folder(path, limit, max_samples=most)
    raise DataError(
        f"--data {where}: expected an ImageFolder (root/<class>/<images>), a .csv of "
        "path,label, IDX files or a .npz with images and labels"
    )
