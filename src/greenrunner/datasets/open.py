"""Open a target dataset from what the user points at, by its shape on disk."""

from __future__ import annotations

from pathlib import Path

from greenrunner.datasets.base import TargetDataset
from greenrunner.errors import DataError


def open_dataset(where: str | Path) -> TargetDataset:
    """An ImageFolder, a CSV of path,label, IDX files (or a folder of them), or a .npz."""
    from greenrunner.datasets.arrays import idx_dataset, npz_dataset
    from greenrunner.datasets.files import csv_dataset, image_folder

    path = Path(where).expanduser()
    if not path.exists():
        raise DataError(f"--data {where}: no such file or folder")
    name = path.name.lower()
    if path.is_file():
        if name.endswith(".csv"):
            return csv_dataset(path)
        if name.endswith(".npz"):
            return npz_dataset(path)
        if "idx3-ubyte" in name:
            return idx_dataset(path)
    elif any(path.glob("*images-idx3-ubyte*")):
        return idx_dataset(path)
    elif any(p.is_dir() for p in path.iterdir()):
        return image_folder(path)
    raise DataError(
        f"--data {where}: expected an ImageFolder (root/<class>/<images>), a .csv of "
        "path,label, IDX files or a .npz with images and labels"
    )
