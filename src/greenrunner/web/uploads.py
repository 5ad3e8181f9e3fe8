"""Uploaded repositories and datasets: unpack safely, then prove them by opening them.

A repository zip holds ``.onnx`` files with a ``classes.txt`` (optionally sidecar JSON per
model), or a ``manifest.toml`` with the files it names; every model is loaded once before
the upload is accepted, so a corrupt file is refused now with its name, not mid-run
(``modelcheck`` says what an uploaded manifest may not do). The manifest is read and the
models are loaded in a child process with memory and time limits, never in the server's.

A dataset zip holds an ImageFolder (``<class>/<images>``, optionally inside one top
folder), or one CSV of ``path,label`` with the images it names (paths relative to the CSV,
inside the zip; a ``classes.txt`` beside it fixes the class order), or one ``.npz`` with
``images`` and ``labels``, or IDX files. Every image is opened and checked.

Each upload is unpacked into a fresh folder under the data folder and renamed into place
only once accepted; a rejected upload leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, TypeVar

from greenrunner.errors import DataError, GreenRunnerError
from greenrunner.web.archive import UploadTooLarge, receive, remove, safe_extract
from greenrunner.web.db import DatasetRow, RepositoryRow
from greenrunner.web.modelcheck import CheckLimits, check_repository
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


# An absolute path (two parts or more) that is not inside a word, a URL or a relative path.
_ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?:[^\s/'\"(),;:]+/)+([^\s/'\"(),;:]*)")


def _relative(text: str, staging: Path) -> str:
    """A message naming files inside the upload, not the server's folders: paths inside
    the upload become relative to it, and a path in one of the server's own folders (home,
    data, caches, Python's, temporary, working) is cut to its last part. Other absolute
    paths are left as they are: those come from the upload's own text."""
    for folder in (str(staging.resolve()), str(staging)):
        text = text.replace(folder + "/", "").replace(folder, "the zip")
    prefixes = _server_folders(staging)

    def cut(match: re.Match[str]) -> str:
        path = match.group(0)
        return f".../{match.group(1)}" if path.startswith(prefixes) else path

    return _ABSOLUTE.sub(cut, text)


def _server_folders(staging: Path) -> tuple[str, ...]:
    import sys
    import tempfile

    from greenrunner.evaluation.cache import cache_home

    env = os.environ
    folders = {
        Path.home(),
        staging.parent.parent,  # the data folder
        cache_home(),
        Path(env.get("TORCH_HOME") or Path(env.get("XDG_CACHE_HOME") or "~/.cache") / "torch"),
        Path(sys.prefix),
        Path(sys.base_prefix),
        Path(tempfile.gettempdir()),
        Path.cwd(),
    }
    out = set()
    for folder in folders:
        for variant in (folder.expanduser(), folder.expanduser().resolve()):
            if len(variant.parts) > 1:  # never "/" itself
                out.add(str(variant).rstrip("/") + "/")
    return tuple(sorted(out, key=len, reverse=True))


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
        root = _content_root(
            folder, stop=lambda p: (p / "manifest.toml").is_file() or any(p.glob("*.onnx"))
        )
        manifest = root / "manifest.toml"
        if not manifest.is_file() and not any(root.glob("*.onnx")):
            raise DataError(
                "the zip holds neither a manifest.toml nor .onnx files; upload a zip of .onnx "
                "models with a classes.txt (one class per line), or a manifest.toml with its files"
            )
        limits = CheckLimits(settings.check_memory_bytes, settings.check_seconds)
        repo = check_repository(root, settings.builders, limits)
        return RepositoryRow(
            id=new_id,
            name=repo.name if manifest.is_file() else _display_name(filename),
            kind="uploaded",
            path=str(root),
            description=repo.description
            if manifest.is_file()
            else (f"{repo.n_models} ONNX model(s) uploaded as {_display_name(filename)}.zip"),
            n_models=repo.n_models,
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
            # A CSV names images only inside the upload and has at most max_files rows:
            # open_dataset checks both, each distinct image once.
            dataset = open_dataset(target, max_samples=settings.max_files, within=root)
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
    return files[0] if files else root
