"""Receiving an upload and unpacking a zip without trusting anything in it.

Refused: files over the size limit, anything that is not a zip, encrypted entries,
absolute paths, ``..``, backslashes, symbolic links and other special entries, more entries
or more bytes than the limits, and entries that compress far better than models or
photos do (zip bombs). Sizes are enforced while writing, not taken from the archive's own
(forgeable) headers. Everything lands inside the given folder; nothing is executed.
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

from greenrunner.errors import DataError

CHUNK = 1 << 20
# Entries macOS's archiver adds beside the real files: resource forks and folder settings.
_IGNORED = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$)")
# The ratio limit only applies to entries big enough to matter: small files of repeated
# bytes (a classes.txt, an all-black PNG) compress well without being bombs.
RATIO_FLOOR = 1 << 20


class UploadTooLarge(DataError):  # noqa: N818 (named for what the user did)
    """The upload (or what it unpacks to) is over a size limit; HTTP 413."""


def mb(n: int) -> str:
    """A size limit for messages: in MB, or in bytes when below one MB."""
    return f"{n / (1 << 20):,.0f} MB" if n >= 1 << 20 else f"{n:,} bytes"


def receive(fileobj: IO[bytes], target: Path, max_bytes: int) -> int:
    """Copy the upload to ``target`` in chunks, stopping as soon as it is over the limit."""
    size = 0
    with target.open("wb") as out:
        while chunk := fileobj.read(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                out.close()
                target.unlink(missing_ok=True)
                raise UploadTooLarge(
                    f"the upload is over the limit of {mb(max_bytes)}; upload fewer or smaller "
                    "files, or start the server with a higher --max-upload-mb"
                )
            out.write(chunk)
    if size == 0:
        target.unlink(missing_ok=True)
        raise DataError("the upload is empty; choose a .zip file")
    return size


def _check_name(name: str) -> PurePosixPath | None:
    """The entry's relative path, None for entries to skip; DataError for unsafe names."""
    if _IGNORED.search(name):
        return None
    shown = name[:120]
    if "\0" in name or "\\" in name:
        raise DataError(
            f"zip entry {shown!r} has a backslash or a NUL in its name; "
            "make the zip with a standard tool (forward slashes)"
        )
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise DataError(f"zip entry {shown!r} has an absolute path; entries must be relative")
    path = PurePosixPath(name)
    if ".." in path.parts:
        raise DataError(f"zip entry {shown!r} points outside the archive ('..')")
    return path if path.parts else None


def _check_kind(info: zipfile.ZipInfo) -> None:
    # Unix permissions and file type sit in the high 16 bits; many archivers leave the type
    # out (0), which means a plain file.
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise DataError(f"zip entry {info.filename!r} is a symbolic link; links are not accepted")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise DataError(f"zip entry {info.filename!r} is not a regular file or folder")
    if info.flag_bits & 0x1:
        raise DataError(f"zip entry {info.filename!r} is encrypted; upload an unencrypted zip")


def safe_extract(
    archive: Path, dest: Path, *, max_bytes: int, max_files: int, max_ratio: float
) -> None:
    """Unpack ``archive`` into the existing, empty folder ``dest``."""
    if not zipfile.is_zipfile(archive):
        raise DataError("the upload is not a zip archive; pack the files into a .zip first")
    try:
        with zipfile.ZipFile(archive) as zf:
            entries = _plan(zf, max_bytes=max_bytes, max_files=max_files, max_ratio=max_ratio)
            _write(zf, entries, dest, max_bytes)
    except zipfile.BadZipFile as exc:
        raise DataError(f"the zip archive is damaged: {exc}") from None
    except (zipfile.LargeZipFile, NotImplementedError) as exc:
        raise DataError(f"the zip archive uses a feature that is not supported: {exc}") from None


def _plan(
    zf: zipfile.ZipFile, *, max_bytes: int, max_files: int, max_ratio: float
) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Every entry checked before a byte is written: a bad archive leaves nothing behind."""
    entries = []
    declared = 0
    seen: set[str] = set()
    for info in zf.infolist():
        path = _check_name(info.filename)
        if path is None:
            continue
        _check_kind(info)
        key = path.as_posix().lower()
        if key in seen:
            raise DataError(f"zip entry {info.filename!r} appears twice")
        seen.add(key)
        entries.append((info, path))
        if len(entries) > max_files:
            raise UploadTooLarge(f"the zip holds more than {max_files:,} entries, the limit")
        declared += info.file_size
        if declared > max_bytes:
            raise UploadTooLarge(f"the zip unpacks to more than {mb(max_bytes)}, the limit")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= RATIO_FLOOR and ratio > max_ratio:
            raise DataError(
                f"zip entry {info.filename!r} expands {ratio:,.0f}-fold (limit {max_ratio:g}); "
                "that is a zip bomb, not model weights or images"
            )
    if not entries:
        raise DataError("the zip archive is empty")
    return entries


def _write(
    zf: zipfile.ZipFile,
    entries: list[tuple[zipfile.ZipInfo, PurePosixPath]],
    dest: Path,
    max_bytes: int,
) -> None:
    root = dest.resolve()
    total = 0
    for info, rel in entries:
        target = root.joinpath(*rel.parts)
        if not target.resolve().is_relative_to(root):  # belt and braces after _check_name
            raise DataError(f"zip entry {info.filename!r} points outside the archive")
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with zf.open(info) as src, target.open("wb") as out:
            while chunk := src.read(CHUNK):
                written += len(chunk)
                total += len(chunk)
                # zipfile also checks sizes and CRCs, but only once an entry is fully read.
                if written > info.file_size or total > max_bytes:
                    raise UploadTooLarge(
                        f"zip entry {info.filename!r} unpacks to more than it declares, or the "
                        f"zip to more than {mb(max_bytes)}"
                    )
                out.write(chunk)


def remove(path: Path) -> None:
    """Remove a rejected upload's folder or file (nothing else)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
