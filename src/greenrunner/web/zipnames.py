"""The names a zip's entries may have, and the clashes two names may not make.

A name is relative, at most ``MAX_DEPTH`` parts deep and ``MAX_PATH_BYTES`` long, each part
at most ``NAME_MAX_BYTES`` as the file system stores it (bytes, not characters), made only
of letters, marks, digits, punctuation, symbols and the plain space (an allow-list), without
the characters Windows reserves, ``..``, backslashes or drive letters. No two entries may be
one file on a case-insensitive or normalising file system, and no name both a file and a
folder. Every refusal is a DataError naming the entry.
"""

from __future__ import annotations

import os
import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from greenrunner.errors import DataError

# Entries macOS's archiver adds beside the real files: resource forks and folder settings.
_IGNORED = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$)")
NAME_MAX_BYTES = 255  # one file or folder name (Linux, macOS and Windows all stop here)
MAX_PATH_BYTES = 1024  # a whole entry path: far below PATH_MAX (4096) with the data folder
MAX_DEPTH = 32
SHOWN_CHARS = 80  # of an entry's name in a message
# Windows refuses these in names (and ':' opens NTFS streams); refusing them everywhere
# keeps what one server accepts valid on every other.
_RESERVED = frozenset('<>:"|?*')
# How to name a character without a Unicode name (control characters have none).
_KINDS = {"Cc": "a control character", "Cs": "a surrogate", "Co": "a private-use character"}


def fs_name_max(folder: Path) -> int:
    """The longest name (in bytes) the file system under ``folder`` takes: 255 on most,
    less on some (eCryptfs takes 143)."""
    try:
        return min(NAME_MAX_BYTES, os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # AttributeError: no pathconf (Windows)
        return NAME_MAX_BYTES


def shown(name: str) -> str:
    """An entry's name for a message: quoted, control characters escaped, long names cut."""
    if len(name) > SHOWN_CHARS:  # the start and the end, which has the file's extension
        name = name[: SHOWN_CHARS - 21] + "…" + name[-20:]
    return repr(name)


# --- names --------------------------------------------------------------------------------
def check_name(name: str, name_max: int = NAME_MAX_BYTES) -> PurePosixPath | None:
    """The entry's relative path, None for entries to skip; DataError for unsafe names."""
    if _IGNORED.search(name):
        return None
    quoted = shown(name)
    if "\\" in name:
        raise DataError(
            f"zip entry {quoted} has a backslash in its name; make the zip with a standard "
            "tool (forward slashes between folders)"
        )
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise DataError(f"zip entry {quoted} has an absolute path; entries must be relative")
    path = PurePosixPath(name)
    if ".." in path.parts:
        raise DataError(f"zip entry {quoted} points outside the archive ('..')")
    if not path.parts:
        return None
    if len(path.parts) > MAX_DEPTH:
        raise DataError(
            f"zip entry {quoted} is {len(path.parts)} levels deep, more than the limit of "
            f"{MAX_DEPTH}; put the files in fewer nested folders"
        )
    for part in path.parts:
        _check_part(part, quoted, name_max)
    length = len(_encoded(path.as_posix(), quoted))
    if length > MAX_PATH_BYTES:
        raise DataError(
            f"zip entry {quoted} has a path of {length:,} bytes, more than the limit of "
            f"{MAX_PATH_BYTES:,}; use shorter folder and file names"
        )
    return path


def _allowed(char: str) -> bool:
    # Letters, marks (accents of decomposed letters), digits, punctuation, symbols, and the
    # plain space; not control, format (bidirectional overrides, zero-width), surrogate,
    # private-use or unassigned characters, other spaces or line breaks.
    return char == " " or (unicodedata.category(char)[0] in "LMNPS" and char not in _RESERVED)


def _check_part(part: str, quoted: str, name_max: int) -> None:
    bad = next((c for c in part if not _allowed(c)), None)
    if bad is not None:
        label = unicodedata.name(bad, "") or _KINDS.get(unicodedata.category(bad), "unassigned")
        raise DataError(
            f"zip entry {quoted} has the character U+{ord(bad):04X} ({label}) in its name; "
            "names may hold letters, digits, spaces and punctuation other than "
            + " ".join(sorted(_RESERVED))
        )
    size = len(_encoded(part, quoted))
    if size > name_max:
        raise DataError(
            f"zip entry {quoted} has a file or folder name of {size:,} bytes, more than the "
            f"limit of {name_max} (letters outside ASCII take 2 to 4 bytes each); shorten it"
        )


def _encoded(text: str, quoted: str) -> bytes:
    """``text`` as the file system stores it."""
    try:
        return os.fsencode(text)
    except UnicodeEncodeError:
        raise DataError(
            f"zip entry {quoted} has characters this server's file system cannot store "
            f"(it uses {sys.getfilesystemencoding()}); use ASCII names"
        ) from None


def _fold(part: str) -> str:
    """A name as a case-insensitive, normalising file system compares it (macOS and Windows:
    'A' is 'a', a decomposed 'é' is the composed one; Windows also drops trailing dots
    and spaces)."""
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", part).casefold())
    return folded.rstrip(" .")


@dataclass
class _Node:
    entry: str  # the entry that made this file or folder
    part: str  # its name as that entry spells it
    folder: bool
    explicit: bool  # an entry of its own, not only a parent of one


class Names:
    """Every file and folder the archive makes, keyed as :func:`_fold` compares names:
    each is a file or a folder, never both, made by one entry and spelled one way."""

    def __init__(self) -> None:
        self._nodes: dict[tuple[str, ...], _Node] = {}

    def add(self, entry: str, parts: tuple[str, ...], folder: bool) -> None:
        keys = tuple(_fold(p) for p in parts)
        for depth in range(1, len(keys)):
            parent = _Node(entry, parts[depth - 1], folder=True, explicit=False)
            above = self._nodes.setdefault(keys[:depth], parent)
            if not above.folder:
                why = f"{shown(above.entry)} is a file, but {shown(entry)} puts something in it"
                raise _clash(above.entry, entry, why)
            if above.part != parts[depth - 1]:
                raise _clash(above.entry, entry, _ONE_NAME)
        if (node := self._nodes.get(keys)) is None:
            self._nodes[keys] = _Node(entry, parts[-1], folder, explicit=True)
        elif folder != node.folder:
            file, other = (node.entry, entry) if folder else (entry, node.entry)
            why = f"{shown(file)} is a file, but {shown(other)} makes a folder of that name"
            raise _clash(node.entry, entry, why)
        elif node.part != parts[-1]:
            raise _clash(node.entry, entry, _ONE_NAME)
        elif folder and not node.explicit:
            node.explicit = True  # "a/" listed after "a/b": the folder "a/b" made
        else:
            raise DataError(f"zip entry {shown(entry)} appears twice; keep one")


_ONE_NAME = (
    "they differ only in upper and lower case, accents written two ways or trailing dots and "
    "spaces, so macOS and Windows would store them as one"
)


def _clash(first: str, second: str, why: str) -> DataError:
    return DataError(
        f"zip entries {shown(first)} and {shown(second)} clash: {why}; rename one of them"
    )
