"""Shared image decoding and validation for file-based datasets.

Hostile or merely unusual files must end as one clear error naming the file, never as a
traceback or an exhausted machine:

- Pixels per image are bounded (``max_image_pixels``, default 64 MP = 8000 x 8000), checked
  from the header when the dataset is opened, before anything is decoded, and again when a
  file is decoded (it may have changed since). A 1 MB PNG can declare 400 MP.
- Pillow has its own, process-wide bound (``Image.MAX_IMAGE_PIXELS``: a warning past
  89 MP, ``DecompressionBombError`` past twice that). Ours replaces it for our own reads;
  see :func:`pil_limit` for how it is lifted without leaking.
- A very large image is decoded at a reduced scale where the format allows (JPEG's DCT
  scaling through ``draft``) and box-reduced (``reduce``) while still at least
  :data:`REDUCING_GAP` times the size the model's resize needs, so the array handed on is
  small; one image is decoded at a time (the evaluator's job).
- Modes are normalised to 8-bit grey or RGB with their meaning kept: 16-bit images are
  scaled (Pillow's own conversion clips them to white), alpha is dropped, palettes, CMYK
  and the rest go through Pillow's RGB conversion; EXIF orientation is applied, so a phone
  photo is seen upright, as the person who labelled it saw it.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from greenrunner.errors import ConfigError, DataError

if TYPE_CHECKING:
    from PIL import Image as PILImage

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# The Pillow decoders tried on a file, whatever its name says: those of the suffixes above.
# Pillow otherwise detects any format it knows from the content, EPS among them, which it
# renders by running Ghostscript.
PIL_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")  # JPEG covers MPO (camera) files

# 8000 x 8000: past any photo a camera or phone takes (a 200 MP phone sensor bins to
# 12-50 MP), and one such image decodes to at most 256 MB (RGBA).
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000
# Images above this are decoded at a reduced scale (when at least REDUCING_GAP times the
# model's input on each side remains); smaller ones are decoded exactly as torchvision's
# loader does, so published accuracies reproduce.
REDUCE_ABOVE_PIXELS = 16_000_000
# Pillow's own guidance for reducing_gap: from 3 on, reduce-then-resize is "indistinguishable
# from fair resampling in most cases".
REDUCING_GAP = 3

# EXIF orientation -> the transpose that shows the image upright (ImageOps.exif_transpose's table).
_ORIENTATION = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
                6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}  # fmt: skip
# Modes Image.reduce accepts; the others are converted to 8-bit first.
_REDUCIBLE = frozenset({"L", "LA", "La", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "I", "F"})

_PIL_LOCK = threading.RLock()


def check_max_pixels(value: object) -> int:
    """The pixels-per-image limit as a positive int (ConfigError naming the bad value)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(
            f"max_image_pixels must be a positive whole number of pixels; got {value!r} "
            f"(the default is {DEFAULT_MAX_IMAGE_PIXELS:,})"
        )
    return int(value)


@contextmanager
def pil_limit(pixels: int | None) -> Iterator[None]:
    """Let Pillow's module-wide limit allow ``pixels`` (None: any size) inside this block.

    Our own limit has been checked from the header by then, so Pillow's is redundant; but
    it is one global, so it is only ever raised, only when it is below what this image
    needs, for this block, under a lock, and put back afterwards. Most reads (images under
    Pillow's 89 MP) touch nothing. The lock also means one such huge image is decoded at a
    time in this process, whatever the number of threads.
    """
    from PIL import Image

    _PIL_LOCK.acquire()
    current = Image.MAX_IMAGE_PIXELS
    if current is None or (pixels is not None and pixels <= current):
        _PIL_LOCK.release()
        yield
        return
    # Held for the whole block: a thread deciding whether to lift must see the saved
    # value, not ours, and must not restore before we are done.
    try:
        Image.MAX_IMAGE_PIXELS = pixels
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = current
        _PIL_LOCK.release()


def _unreadable(path: Path, exc: BaseException) -> DataError:
    return DataError(f"{path}: not a readable image ({exc}); remove or replace it")


def _open(path: Path) -> PILImage.Image:
    """The file opened lazily (header only) by one of PIL_FORMATS, whatever size it declares."""
    from PIL import Image

    try:
        with pil_limit(None):
            return Image.open(path, formats=PIL_FORMATS)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise _unreadable(path, exc) from None


def check_pixels(path: Path, size: tuple[int, int], max_pixels: int) -> int:
    """width x height, or a DataError saying the image is too large and how to allow it."""
    w, h = size
    pixels = int(w) * int(h)
    if pixels > max_pixels:
        raise DataError(
            f"{path}: {w} x {h} pixels ({pixels / 1e6:,.1f} MP) is more than the "
            f"{max_pixels / 1e6:,.1f} MP allowed per image; shrink it, or raise the limit "
            f"with --max-image-pixels {pixels} (max_image_pixels={pixels} in Python)"
        )
    return pixels


def check_image(path: Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
    """Read the header and verify the structure (chunks, checksums) without a full decode:
    a corrupt, non-image or oversized file is caught before any compute, and checking
    thousands of files stays fast. Truncated pixel data can still only show on decode."""
    from PIL import Image

    with _open(path) as img:
        pixels = check_pixels(path, img.size, max_pixels)
        try:
            with pil_limit(pixels):
                img.verify()
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
            raise _unreadable(path, exc) from None


def decode(
    path: Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, fit: tuple[int, int] | None = None
) -> np.ndarray:
    """uint8 H x W (grey) or H x W x 3 (RGB), upright.

    ``fit`` is the (width, height) the image is about to be resized to cover; an image over
    :data:`REDUCE_ABOVE_PIXELS` is then decoded and reduced to a size that still covers it
    :data:`REDUCING_GAP` times over, never to a whole full-size array.
    """
    from PIL import Image

    with _open(path) as img:
        pixels = check_pixels(path, img.size, max_pixels)
        try:
            with pil_limit(pixels):
                orientation = _orientation(img)
                out = _eight_bit(_fitted(img, fit, orientation))
                if orientation in _ORIENTATION:
                    out = out.transpose(getattr(Image.Transpose, _ORIENTATION[orientation]))
                return np.asarray(out, dtype=np.uint8)
        except MemoryError:
            raise DataError(
                f"{path}: not enough memory to decode its {img.width} x {img.height} pixels; "
                "shrink the image or lower --max-image-pixels"
            ) from None
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
            raise DataError(f"{path}: cannot decode the image ({exc})") from None


def _orientation(img: PILImage.Image) -> int:
    """The EXIF orientation (1 = as stored); a malformed EXIF block counts as none."""
    try:
        value = img.getexif().get(0x0112, 1)
    except Exception:  # Pillow raises assorted errors on broken EXIF; the pixels are fine
        return 1
    return value if isinstance(value, int) else 1


def _fitted(img: PILImage.Image, fit: tuple[int, int] | None, orientation: int) -> PILImage.Image:
    """The image at a reduced scale if it is very large and ``fit`` allows, else as is."""
    if fit is None or img.width * img.height <= REDUCE_ABOVE_PIXELS:
        return img
    fw, fh = (fit[1], fit[0]) if orientation in (5, 6, 7, 8) else fit  # stored sideways
    want = (max(1, fw) * REDUCING_GAP, max(1, fh) * REDUCING_GAP)
    if img.format == "JPEG":
        img.draft(None, want)  # decodes at 1/2, 1/4 or 1/8 scale, never below ``want``
    factor = min(img.width // want[0], img.height // want[1])
    if factor < 2:
        return img
    if img.mode not in _REDUCIBLE:
        img = _eight_bit(img)
    return img.reduce(factor)


def _eight_bit(img: PILImage.Image) -> PILImage.Image:
    """Mode L or RGB with the pixel values' meaning kept."""
    from PIL import Image

    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode in ("LA", "La"):
        return img.getchannel(0)
    if mode.startswith("I;16"):
        return Image.fromarray(_grey_from_wide(np.asarray(img).astype(np.uint16), bits=16))
    if mode in ("I", "F"):
        return Image.fromarray(_grey_from_wide(np.asarray(img)))
    return img.convert("RGB")  # P, PA, RGBA, RGBa, RGBX, CMYK, YCbCr, LAB, HSV


def _grey_from_wide(a: np.ndarray, bits: int | None = None) -> np.ndarray:
    """16-bit, 32-bit integer or float grey to uint8. 16-bit images are scaled from their
    full range; a 32-bit one from the range its values use (8-bit, 16-bit or wider); floats
    in [0, 1] as fractions, other floats clipped."""
    hi = float(a.max()) if a.size else 0.0
    if bits == 16:
        scaled = a / 257.0
    elif a.dtype.kind == "f":
        scaled = a * 255.0 if hi <= 1.0 else a
    elif hi > 65535:
        scaled = a * (255.0 / hi)
    elif hi > 255:
        scaled = a / 257.0
    else:
        scaled = a
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


# Files a data set names more than once are hashed from memory after the first read, up
# to this size each and in all (a CSV may name one image a million times).
_REPEAT_FILE_BYTES = 1 << 20
_REPEAT_TOTAL_BYTES = 64 << 20


def fingerprint_files(paths: Sequence[Path], labels: np.ndarray, classes: Sequence[str]) -> str:
    """A content hash of the files (in order, repeats included), their labels and the
    class names."""
    h = hashlib.sha256("\n".join(classes).encode())
    h.update(np.asarray(labels, dtype=np.int64).tobytes())
    repeats = {p for p, n in Counter(paths).items() if n > 1}
    held: dict[Path, bytes] = {}
    room = _REPEAT_TOTAL_BYTES
    for p in paths:
        data = held.get(p)
        if data is None and p in repeats and room > 0 and p.stat().st_size <= _REPEAT_FILE_BYTES:
            data = held[p] = p.read_bytes()
            room -= len(data)
        if data is not None:
            h.update(data)
        else:
            with p.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:24]
