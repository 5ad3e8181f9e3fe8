"""Uploaded repositories and datasets: unpack safely, then prove them by opening them.

A repository zip holds ``.onnx`` files with a ``classes.txt`` (optionally sidecar JSON per
model), or a ``manifest.toml`` with the files it names; every model is loaded once before
the upload is accepted, so a corrupt file is refused now with its name, not mid-run
(``modelcheck`` says what an uploaded manifest may not do).

A dataset zip holds an ImageFolder (``<class>/<images>``, optionally inside one top
folder), or one CSV of ``path,label`` with the images it names (paths relative to the CSV,
inside the zip; a ``classes.txt`` beside it fixes the class order), or one ``.npz`` with
``images`` and ``labels``, or IDX files. Every image is opened and checked.

Each upload is unpacked into a fresh folder under the data folder and renamed into place
only once accepted; a rejected upload leaves nothing behind.
"""

from __future__ import annotations

import csv
import logging
import secrets
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, TypeVar

from greenrunner.errors import DataError, GreenRunnerError
from greenrunner.web.archive import UploadTooLarge, receive, remove, safe_extract
from greenrunner.web.db import DatasetRow, RepositoryRow
from greenrunner.web.modelcheck import check_manifest, inside, load_each
from greenrunner.web.settings import WebSettings

__all__ = ["UploadTooLarge", "add_dataset", "add_repository"]

log = logging.getLogger(__name__)
_DATA_FILES = (".csv", ".npz")
Row = TypeVar("Row", RepositoryRow, DatasetRow)


def _display_name(filename: str) -> str:
    """The upload's name for lists: the file's stem, without any client-side folders."""
    stem = PurePosixPath(filename.replace("\\", "/")).name.removesuffix(".zip").strip()
    return (stem or "upload")[:120]


def _receive(
    settings: WebSettings,
    prefix: str,
    filename: str,
    fileobj: IO[bytes],
    accept: Callable[[Path, str], Row],
) -> Row:
    """Unpack into a fresh folder, let ``accept(folder, id)`` check it and build its row,
    then rename the folder into place; remove everything on any refusal."""
    if not filename.lower().endswith(".zip"):
        hint = (
            " A CSV must come in a zip with the images it names."
            if filename.lower().endswith(".csv")
            else ""
        )
        raise DataError(f"{_display_name(filename)!r} is not a .zip file; upload a zip.{hint}")
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    new_id = f"{prefix}-{secrets.token_hex(5)}"
    staging = settings.uploads_dir / f".incoming-{new_id}"
    archive = settings.uploads_dir / f".incoming-{new_id}.zip"
    final = settings.uploads_dir / new_id
    staging.mkdir()
    try:
        receive(fileobj, archive, settings.max_upload_bytes)
        safe_extract(
            archive,
            staging,
            max_bytes=settings.extract_limit,
            max_files=settings.max_files,
            max_ratio=settings.max_ratio,
            max_entry_bytes=settings.entry_limit,
        )
        remove(archive)
        try:
            row = accept(staging, new_id)
        except GreenRunnerError as exc:
            raise type(exc)(_relative(str(exc), staging)) from None
        except Exception as exc:
            # Untrusted files reach parsers (TOML, ONNX, images, text) that can fail in
            # their own ways; that is a bad upload, not a server error.
            log.warning("upload %s refused by an unexpected error", new_id, exc_info=True)
            text = _relative(f"{exc.__class__.__name__}: {exc}", staging)
            raise DataError(f"the upload could not be read ({text})") from None
        staging.rename(final)
        # The row was built for the staging folder; its path moves with the folder.
        row.path = str(final / Path(row.path).relative_to(staging))
        return row
    finally:
        remove(archive)
        remove(staging)


def _relative(text: str, staging: Path) -> str:
    """A message naming files inside the upload, not the server's folders."""
    for folder in (str(staging.resolve()), str(staging)):
        text = text.replace(folder + "/", "").replace(folder, "the zip")
    return text


def _content_root(folder: Path, *, stop: Callable[[Path], bool]) -> Path:
    """Descend through a lone top folder (zips often wrap everything in one) unless
    ``stop`` says this folder already is the content."""
    while not stop(folder):
        visible = [p for p in folder.iterdir() if not p.name.startswith(".")]
        if len(visible) != 1 or not visible[0].is_dir():
            break
        folder = visible[0]
    return folder


# --- repositories -------------------------------------------------------------------------
def add_repository(settings: WebSettings, filename: str, fileobj: IO[bytes]) -> RepositoryRow:
    def accept(folder: Path, new_id: str) -> RepositoryRow:
        from greenrunner.repositories.models import open_models

        root = _content_root(
            folder, stop=lambda p: (p / "manifest.toml").is_file() or any(p.glob("*.onnx"))
        )
        manifest = root / "manifest.toml"
        if manifest.is_file():
            check_manifest(manifest, root, settings.builders)
        elif not any(root.glob("*.onnx")):
            raise DataError(
                "the zip holds neither a manifest.toml nor .onnx files; upload a zip of .onnx "
                "models with a classes.txt (one class per line), or a manifest.toml with its files"
            )
        repo = open_models(root)
        load_each(repo.specs, root)
        return RepositoryRow(
            id=new_id,
            name=repo.name if manifest.is_file() else _display_name(filename),
            kind="uploaded",
            path=str(root),
            description=repo.description
            if manifest.is_file()
            else (f"{len(repo.specs)} ONNX model(s) uploaded as {_display_name(filename)}.zip"),
            n_models=len(repo.specs),
        )

    return _receive(settings, "r", filename, fileobj, accept)


# --- datasets -----------------------------------------------------------------------------
def _is_data_root(folder: Path) -> bool:
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    return any(p.suffix.lower() in _DATA_FILES or "idx" in p.name for p in files)


def add_dataset(settings: WebSettings, filename: str, fileobj: IO[bytes]) -> DatasetRow:
    def accept(folder: Path, new_id: str) -> DatasetRow:
        from greenrunner.datasets import open_dataset

        root = _content_root(folder, stop=_looks_like_data)
        target = _data_target(root)
        try:
            dataset = open_dataset(target)
        except DataError as exc:
            if str(exc).startswith("--data "):  # the CLI's wording for an unknown layout
                raise DataError(
                    "the zip holds no dataset GreenRunner knows: upload class folders of "
                    "images (an ImageFolder), one CSV of path,label with its images, or one "
                    ".npz with images and labels"
                ) from None
            raise
        if len(dataset) == 0:
            raise DataError("the dataset has no samples")
        return DatasetRow(
            id=new_id,
            name=_display_name(filename),
            kind="uploaded",
            path=str(target),
            description=f"{_count(len(dataset), 'sample')} in "
            f"{_count(len(dataset.class_names), 'class')}",
            n_samples=len(dataset),
            classes=list(dataset.class_names),
        )

    return _receive(settings, "d", filename, fileobj, accept)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "es" if noun.endswith("s") else "s")


def _looks_like_data(folder: Path) -> bool:
    """A data file here, or class folders; False for a lone wrapper folder around them."""
    if _is_data_root(folder):
        return True
    subdirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subdirs) != 1:
        return True
    inner = subdirs[0]
    # One folder: a wrapper (it holds a data file or class folders) or the only class.
    return not (_is_data_root(inner) or any(p.is_dir() for p in inner.iterdir()))


def _data_target(root: Path) -> Path:
    """What open_dataset is given: the lone CSV or .npz, else the folder."""
    files = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in _DATA_FILES]
    if len(files) > 1:
        raise DataError(
            f"the zip holds {len(files)} data files ({', '.join(p.name for p in files[:4])}); "
            "keep exactly one CSV (or .npz)"
        )
    if not files:
        return root
    if files[0].suffix.lower() == ".csv":
        _check_csv_paths(files[0], root)
    return files[0]


def _check_csv_paths(path: Path, root: Path) -> None:
    """A CSV may only name images inside the upload (not /etc/passwd, not ../..)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path.name}: cannot read it as UTF-8 text ({exc})") from None
    for line, row in enumerate(csv.DictReader(text.splitlines()), start=2):
        value = (row.get("path") or "").strip()
        if value:
            inside(path.parent, value, f"{path.name} line {line}: path")
    if not path.parent.resolve().is_relative_to(root.resolve()):
        raise DataError(f"{path.name}: must be inside the zip")
