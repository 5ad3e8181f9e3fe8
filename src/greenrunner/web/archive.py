"""Receiving an upload and unpacking a zip without trusting anything in it.

What a zip may unpack to, checked on its central directory before a byte is written and
again on the bytes actually written (an archive's own headers can lie):

- sizes: at most ``max_files`` entries, ``max_entry_bytes`` per file and ``max_bytes`` in
  all; neither an entry nor the archive as a whole may expand more than ``max_ratio``-fold
  (zip bombs), above floors that let small repetitive files (a classes.txt) through;
- names (:mod:`greenrunner.web.zipnames`): relative, at most ``MAX_DEPTH`` parts deep and
  ``MAX_PATH_BYTES`` long, each part at most ``NAME_MAX_BYTES`` as the file system stores
  it (UTF-8 bytes, not characters),
  made only of letters, marks, digits, punctuation, symbols and spaces, without the
  characters Windows reserves; no ``..``, backslashes or drive letters;
- no two entries that a case-insensitive or normalising file system (macOS, Windows) would
  store as one, and no name used both as a file and as a folder;
- kinds: regular files and folders only (no links or devices), unencrypted, stored or
  compressed with deflate, bzip2 or lzma; no zip inside the zip;
- files that are compressed archives themselves (``.npz``, a PyTorch ``.pt``, an IDX
  ``.gz``), which loaders open whole, may not expand past the same limits.

A refusal is a DataError (HTTP 400) or UploadTooLarge (413) that names the entry, and it
leaves the destination folder empty. Nothing is executed; nothing lands outside the folder.
"""

from __future__ import annotations

import errno
import gzip
import lzma
import os
import shutil
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from greenrunner.errors import DataError
from greenrunner.web.zipnames import Names, check_name, fs_name_max, shown

CHUNK = 1 << 20
# The ratio limit only applies to entries big enough to matter: small files of repeated
# bytes (a classes.txt, an all-black PNG) compress well without being bombs.
RATIO_FLOOR = 1 << 20
# The same for the archive as a whole: below this much in all, no ratio is a threat.
TOTAL_RATIO_FLOOR = 16 << 20
_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_METHOD_NAMES = {9: "Deflate64", 93: "Zstandard", 95: "XZ", 97: "WavPack", 98: "PPMd"}
_ENCRYPTED = 0x1 | 0x40  # traditional and strong encryption flag bits
# What zipfile and the decompressors under it raise on damaged data; reading an entry can
# also raise OSError (bz2 reports bad data so).
_DAMAGED: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    struct.error,
)
# Anything that makes a file inside the upload not a readable zip.
_UNREADABLE: tuple[type[Exception], ...] = (*_DAMAGED, OSError, NotImplementedError, ValueError)
# Write errors caused by the entry's name or shape, not by the server: a bad upload.
_NAME_ERRNOS = frozenset(
    {errno.ENAMETOOLONG, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.EILSEQ, errno.EINVAL}
)
_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
_ZIP_MAGIC = b"PK\x03\x04"
_GZIP_MAGIC = b"\x1f\x8b"


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


@dataclass(frozen=True)
class Limits:
    """What one archive may unpack to."""

    max_bytes: int
    max_files: int
    max_ratio: float
    max_entry_bytes: int

    def check_total(self, total: int, packed: int, what: str) -> None:
        """``total`` bytes unpacked (so far) from ``packed`` bytes of archive."""
        self.check_size(total, what)
        self.check_ratio(total, packed, what)

    def check_size(self, total: int, what: str) -> None:
        if total > self.max_bytes:
            raise UploadTooLarge(
                f"{what} unpacks to more than {mb(self.max_bytes)}, the limit; upload fewer "
                "or smaller files"
            )

    def check_ratio(self, total: int, packed: int, what: str) -> None:
        ratio = total / max(packed, 1)
        if total >= TOTAL_RATIO_FLOOR and ratio > self.max_ratio:
            raise DataError(
                f"{what} expands {ratio:,.0f}-fold ({mb(total)} from {mb(packed)}; the limit "
                f"is {self.max_ratio:g}-fold): that is a zip bomb, not model weights or images"
            )


def safe_extract(
    archive: Path,
    dest: Path,
    *,
    max_bytes: int,
    max_files: int,
    max_ratio: float,
    max_entry_bytes: int | None = None,
) -> None:
    """Unpack ``archive`` into the existing, empty folder ``dest``; on any refusal (or
    failure) ``dest`` is emptied again."""
    limits = Limits(max_bytes, max_files, max_ratio, max_entry_bytes or max_bytes)
    try:
        _extract(archive, dest, limits)
    except BaseException:
        _clear(dest)
        raise


def _extract(archive: Path, dest: Path, limits: Limits) -> None:
    if not zipfile.is_zipfile(archive):
        raise DataError(
            "the upload is not a zip archive, or it was cut short (its end holds no zip "
            "directory); pack the files into a .zip and upload it whole"
        )
    packed = archive.stat().st_size
    with _reading("the zip archive"):
        _check_entry_count(archive, limits.max_files, "the zip")
        zf = zipfile.ZipFile(archive)
    with zf:
        entries, declared = _plan(zf, packed, limits, fs_name_max(dest))
        _check_room(dest, declared)
        _write(zf, entries, dest, packed, limits)


@contextmanager
def _reading(what: str, damaged: tuple[type[Exception], ...] = _DAMAGED) -> Iterator[None]:
    """Errors from parsing or decompressing ``what``: a damaged upload, not a server fault."""
    try:
        yield
    except UnicodeDecodeError:
        raise DataError(
            f"{what} has entry names that are not valid UTF-8 although it says they are; "
            "make the zip again with a standard tool"
        ) from None
    except NotImplementedError as exc:
        raise DataError(f"{what} uses a zip feature that is not supported ({exc})") from None
    except damaged as exc:
        raise DataError(
            f"{what} is damaged ({exc}); make the zip again and upload it whole"
        ) from None


def _check_entry_count(archive: Path, max_files: int, what: str) -> None:
    """Count the central directory's raw headers before zipfile parses them: it builds an
    object per entry first, so a 200 MB directory of empty entries (four million of them)
    would cost gigabytes of memory and many seconds before any limit could be checked."""
    # macOS adds a "__MACOSX/._name" beside each file; those do not count against
    # max_files later, so allow room for them here.
    stop = 2 * max_files + 64
    with archive.open("rb") as fp:
        count = _count_headers(fp, stop)
    if count > stop:
        raise UploadTooLarge(f"{what} holds more than {max_files:,} entries, the limit")


def _count_headers(fp: IO[bytes], stop: int) -> int:
    """Central-directory headers in ``fp``, counted up to ``stop`` + 1, where zipfile
    would look for them (it finds the directory from its end record, as here)."""
    find_end = getattr(zipfile, "_EndRecData", None)
    if find_end is None:  # a future Python without it: zipfile's own parse decides
        return 0
    end = find_end(fp)
    if not end:
        return 0  # zipfile refuses the archive itself
    size, location = end[5], end[9]  # _ECD_SIZE, _ECD_LOCATION
    start = location - size
    if end[0] == b"PK\x06\x06":  # a zip64 end record and its locator sit before the end
        start -= 56 + 20
    fp.seek(max(start, 0))
    count = done = 0
    while done < size and count <= stop:
        head = fp.read(46)
        if len(head) < 46 or head[:4] != b"PK\x01\x02":
            break  # damaged: zipfile says so with its own message
        name, extra, comment = struct.unpack("<3H", head[28:34])
        fp.seek(name + extra + comment, os.SEEK_CUR)
        done += 46 + name + extra + comment
        count += 1
    return count


# --- entries ------------------------------------------------------------------------------
def _check_kind(info: zipfile.ZipInfo) -> None:
    quoted = shown(info.filename)
    # Unix permissions and file type sit in the high 16 bits; many archivers leave the type
    # out (0), which means a plain file.
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise DataError(f"zip entry {quoted} is a symbolic link; links are not accepted")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise DataError(f"zip entry {quoted} is not a regular file or folder")
    if info.flag_bits & _ENCRYPTED:
        raise DataError(f"zip entry {quoted} is encrypted; upload an unencrypted zip")
    if info.compress_type not in _METHODS:
        method = _METHOD_NAMES.get(info.compress_type, "unknown")
        raise DataError(
            f"zip entry {quoted} is compressed with method {info.compress_type} ({method}), "
            "which cannot be read; make the zip again with ordinary (deflate) compression"
        )
    if not info.is_dir() and info.filename.lower().endswith(".zip"):
        raise DataError(
            f"zip entry {quoted} is a zip inside the zip; zips in an upload are not unpacked: "
            "upload the inner zip itself, or zip its contents instead"
        )


def _check_entry_size(info: zipfile.ZipInfo, limits: Limits) -> None:
    quoted = shown(info.filename)
    if info.file_size > limits.max_entry_bytes:
        raise UploadTooLarge(
            f"zip entry {quoted} unpacks to {mb(info.file_size)}, more than the limit of "
            f"{mb(limits.max_entry_bytes)} per file"
        )
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size >= RATIO_FLOOR and ratio > limits.max_ratio:
        raise DataError(
            f"zip entry {quoted} expands {ratio:,.0f}-fold (limit {limits.max_ratio:g}); "
            "that is a zip bomb, not model weights or images"
        )


def _plan(
    zf: zipfile.ZipFile, packed: int, limits: Limits, name_max: int
) -> tuple[list[tuple[zipfile.ZipInfo, PurePosixPath]], int]:
    """Every entry checked before a byte is written, and the bytes they declare in all."""
    entries = []
    names = Names()
    declared = 0
    for info in zf.infolist():
        path = check_name(info.filename, name_max)
        if path is None:
            continue
        _check_kind(info)
        names.add(info.filename, path.parts, info.is_dir())
        entries.append((info, path))
        if len(entries) > limits.max_files:
            raise UploadTooLarge(f"the zip holds more than {limits.max_files:,} entries, the limit")
        if not info.is_dir():
            _check_entry_size(info, limits)
            declared += info.file_size
            limits.check_size(declared, "the zip")
    if not entries:
        raise DataError("the zip archive is empty")
    # After the loop, so that the message gives the whole archive's ratio.
    limits.check_ratio(declared, packed, "the zip")
    return entries, declared


def _check_room(dest: Path, needed: int) -> None:
    """Refuse now what would fill the disk halfway through (and break other uploads)."""
    try:
        free = shutil.disk_usage(dest).free
    except OSError:
        return
    if needed > free:
        raise UploadTooLarge(
            f"the server has too little free disk space to unpack {mb(needed)}; try a smaller "
            "upload, or ask whoever runs the server to free some space"
        )


# --- writing ------------------------------------------------------------------------------
def _write(
    zf: zipfile.ZipFile,
    entries: list[tuple[zipfile.ZipInfo, PurePosixPath]],
    dest: Path,
    packed: int,
    limits: Limits,
) -> None:
    root = dest.resolve()
    total = 0
    inner = _InnerBudget(limits.max_bytes)
    for info, rel in entries:
        target = root.joinpath(*rel.parts)
        with _writing(info.filename):
            if not target.resolve().is_relative_to(root):  # belt and braces after the names
                raise DataError(f"zip entry {shown(info.filename)} points outside the archive")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            # "x": never overwrite or follow anything already there.
            with target.open("xb") as out:
                for chunk in _chunks(zf, info):
                    written += len(chunk)
                    total += len(chunk)
                    # zipfile also checks sizes and CRCs, but only once an entry is fully read.
                    if written > min(info.file_size, limits.max_entry_bytes):
                        raise UploadTooLarge(
                            f"zip entry {shown(info.filename)} unpacks to more than it "
                            "declares; make the zip again with a standard tool"
                        )
                    limits.check_total(total, packed, "the zip")
                    out.write(chunk)
        _check_inner_archive(target, info.filename, limits, inner)


def _chunks(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    with _reading(f"zip entry {shown(info.filename)}", (*_DAMAGED, OSError)), zf.open(info) as src:
        while chunk := src.read(CHUNK):
            yield chunk


@contextmanager
def _writing(entry: str) -> Iterator[None]:
    """Write errors an entry's name or shape causes are a bad upload; a full disk is a
    limit; anything else (permissions, I/O) is the server's own problem and stays one."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL_ERRNOS:
            raise UploadTooLarge(
                "the server ran out of disk space unpacking the upload; try a smaller one, or "
                "ask whoever runs the server to free some space"
            ) from None
        if exc.errno in _NAME_ERRNOS:
            raise DataError(
                f"zip entry {shown(entry)} cannot be stored on the server "
                f"({exc.strerror}); rename it with a shorter, plainer name"
            ) from None
        raise


# --- archives inside the archive ----------------------------------------------------------
@dataclass
class _InnerBudget:
    """Bytes left to decompress while checking gzip files: each costs CPU time to measure,
    so the whole upload gets one budget, not each of its files."""

    left: int


def _check_inner_archive(path: Path, entry: str, limits: Limits, budget: _InnerBudget) -> None:
    """A file that is itself compressed (an ``.npz``, a PyTorch ``.pt``, an IDX ``.gz``)
    is expanded whole in memory by the loader that opens it; bound it as the upload is."""
    with path.open("rb") as f:
        head = f.read(4)
    what = f"zip entry {shown(entry)} (itself compressed)"
    if head == _ZIP_MAGIC:
        _check_inner_zip(path, what, limits)
    elif head.startswith(_GZIP_MAGIC):
        _check_inner_gzip(path, what, limits, budget)


def _check_inner_zip(path: Path, what: str, limits: Limits) -> None:
    _check_entry_count(path, limits.max_files, what)
    try:
        with zipfile.ZipFile(path) as inner:
            # Readers of a zip (numpy, zipfile) stop at the sizes the directory declares.
            declared = sum(i.file_size for i in inner.infolist())
    except _UNREADABLE:
        return  # not a readable zip: whatever opens it refuses it with its own message
    limits.check_total(declared, path.stat().st_size, what)


def _check_inner_gzip(path: Path, what: str, limits: Limits, budget: _InnerBudget) -> None:
    # A gzip stream's own size field is modulo 4 GB and forgeable: count while decompressing,
    # stopping at the limit.
    packed = path.stat().st_size
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                total += len(chunk)
                budget.left -= len(chunk)
                limits.check_total(total, packed, what)
                if budget.left < 0:
                    raise UploadTooLarge(
                        f"the compressed files inside the zip unpack to more than "
                        f"{mb(limits.max_bytes)} in all, the limit; upload them uncompressed "
                        "or fewer at a time"
                    )
    except (OSError, EOFError, zlib.error):
        return  # not readable gzip: whatever opens it refuses it with its own message


def _clear(folder: Path) -> None:
    """Remove everything inside ``folder`` (what a refused extraction wrote)."""
    if folder.is_dir() and not folder.is_symlink():
        for child in folder.iterdir():
            remove(child)


def remove(path: Path) -> None:
    """Remove a rejected upload's folder or file (nothing else)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
