"""Reading the text files a user names: one reader, one set of checks, one kind of error.

Manifests, class lists, label maps, replays' ``models.csv``, ONNX sidecars and advisor
knowledge files are all read by :func:`read_text`. A path is a name the user (or a file
they were given) chose, so it is resolved and checked before anything is read: it must be
a regular file (a FIFO would block the reader forever, ``/dev/zero`` would fill the
memory), no larger than a cap, and UTF-8 text (a byte-order mark is allowed and dropped)
without NUL characters. Whatever goes wrong, from a name too long for the file system to a
loop of symbolic links or bytes that are not UTF-8, ends as one :class:`DataError` that
names the file and says what to do, never as a traceback.
"""

from __future__ import annotations

import codecs
import errno
import os
import stat
from pathlib import Path

from greenrunner.errors import DataError

# Text files here are settings and lists, a few KB to a few MB (ImageNet's class list is
# 30 KB; a replay of 10,000 models is about 1 MB). Far above that is not a text file.
MAX_TEXT_BYTES = 64 * 1024 * 1024
# One file or folder name: 255 bytes on every common file system (ext4, XFS, APFS, NTFS).
MAX_NAME_BYTES = 255

_REASONS = {
    errno.ENOENT: "no such file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ELOOP: "the path goes round a loop of symbolic links",
    errno.ENAMETOOLONG: (
        f"the path is too long for the file system (at most {MAX_NAME_BYTES} bytes per file "
        "or folder name)"
    ),
    errno.EISDIR: "it is a folder",
}


def os_reason(exc: BaseException) -> str:
    """A short, readable reason for an error the file system raised about a path."""
    if isinstance(exc, RuntimeError):  # Path.resolve() on Python < 3.13: "Symlink loop"
        return _REASONS[errno.ELOOP]
    if isinstance(exc, ValueError):  # os.stat and open: "embedded null byte"
        return "the path contains a NUL character"
    if isinstance(exc, OSError):
        if exc.errno in _REASONS:
            return _REASONS[exc.errno]
        return exc.strerror or str(exc)
    return str(exc)


def path_problem(text: str) -> str | None:
    """What makes ``text`` unusable as a path on any file system, read from the text alone
    (a NUL character, a file or folder name longer than 255 bytes); None if nothing."""
    if "\0" in text:
        return "it contains a NUL character"
    for part in text.replace("\\", "/").split("/"):
        size = len(os.fsencode(part)) if part else 0
        if size > MAX_NAME_BYTES:
            shown = part[:24] + "..."
            return (
                f"the name {shown!r} in it is {size} bytes long; file systems allow at most "
                f"{MAX_NAME_BYTES} bytes per file or folder name"
            )
    return None


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_text(path: str | Path, what: str, *, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The text of ``path``, ``what`` naming it in errors ("the manifest", "the class
    list"); DataError naming the file and the fix for anything that is not a regular
    UTF-8 text file of at most ``max_bytes`` bytes.

    The file is opened without blocking and checked on the open descriptor, so what was
    checked is what is read, even if the name is swapped for a FIFO in between.
    """
    where = str(path)
    problem = path_problem(where)
    if problem is not None:
        raise DataError(f"{where}: cannot read {what}: {problem}")
    try:
        resolved = Path(path).resolve(strict=True)
        fd = os.open(resolved, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (OSError, RuntimeError, ValueError) as exc:
        raise DataError(f"{where}: cannot read {what}: {os_reason(exc)}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DataError(
                f"{where}: cannot read {what}: it is {_kind(st.st_mode)}; give a regular file"
            )
        if st.st_size > max_bytes:
            raise DataError(
                f"{where}: {what} is {st.st_size:,} bytes, more than the {max_bytes:,} a text "
                "file of this kind may have; is it the right file?"
            )
        with os.fdopen(fd, "rb") as fh:
            fd = -1  # closed by the file object from here on
            data = fh.read(max_bytes + 1)  # the file may have grown since fstat
    except OSError as exc:
        raise DataError(f"{where}: cannot read {what}: {os_reason(exc)}") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > max_bytes:
        raise DataError(
            f"{where}: {what} is more than the {max_bytes:,} bytes a text file of this kind "
            "may have; is it the right file?"
        )
    return decode_text(data, where, what)


def decode_text(data: bytes, where: str, what: str) -> str:
    """UTF-8 bytes (an optional byte-order mark dropped) as text without NUL characters."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        utf16 = (
            " (it looks like UTF-16)"
            if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
            else ""
        )
        raise DataError(
            f"{where}: {what} is not UTF-8 text{utf16} (byte {exc.start:,}, line {line}, cannot "
            "be decoded); save it as UTF-8"
        ) from None
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise DataError(
            f"{where}: {what} holds a NUL character (line {line}), so it is not a text file; "
            "is it the right file?"
        )
    return text
