"""Huge and hostile images: bounded pixels, one clear line, one image decoded at a time.

Issue 11, item 6: a 400-megapixel PNG gave a DecompressionBombError traceback on the
command line, and ten 12000 x 12000 PNGs (1.4 MB of files) made a run peak at 2.5 GB. The
PNGs here are written by hand, row by row, so a test never holds a huge image itself.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import struct
import subprocess
import sys
import textwrap
import threading
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from greenrunner.datasets import open_dataset
from greenrunner.datasets._images import DEFAULT_MAX_IMAGE_PIXELS, decode, pil_limit
from greenrunner.errors import ConfigError, DataError
from greenrunner.preprocessing import Preprocessing, prepare
from tests.test_cache_key import REPO, run_greenrunner, write_zoo


# --- writing images without holding them ------------------------------------------------------
def _chunk(tag: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + tag + data + zlib.crc32(tag + data).to_bytes(4, "big")


def write_png(
    path: Path, width: int, height: int, *, idat: bytes | None = None, value: int = 0
) -> Path:
    """An 8-bit grey PNG of one value, compressed row by row; ``idat`` replaces the pixel
    data (a few bytes under a huge declared size)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
        if idat is None:
            z, row, parts = zlib.compressobj(6), b"\0" + bytes([value]) * width, []
            for y in range(height):
                parts.append(z.compress(row))
                if y % 1024 == 1023:
                    f.write(_chunk(b"IDAT", b"".join(parts)))
                    parts = []
            parts.append(z.flush())
            idat = b"".join(parts)
        f.write(_chunk(b"IDAT", idat))
        f.write(_chunk(b"IEND", b""))
    return path


def _small(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), value).save(path)
    return path


def _folder_with(tmp_path: Path, odd: Path | None = None) -> Path:
    """An ImageFolder of small grey PNGs in classes a, b, c (``odd`` goes into a/)."""
    root = tmp_path / "target"
    for k, name in enumerate("abc"):
        for i in range(2):
            _small(root / name / f"{i}.png", 40 * k + i)
    if odd is not None:
        odd.rename(root / "a" / odd.name)
    return root


TINY = zlib.compress(b"\0" * 64)


# --- the limit, from the command line ---------------------------------------------------------
def _cli_select(tmp_path: Path, data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("torch")
    zoo = write_zoo(tmp_path / "zoo", {"m": {}})
    return run_greenrunner(
        "select", "--models", str(zoo), "--data", str(data), "--strategy", "brute_force",
        *extra, cache=tmp_path / "cache",
    )  # fmt: skip


@pytest.mark.slow
def test_cli_refuses_a_400_megapixel_png_in_one_line(tmp_path: Path) -> None:
    data = _folder_with(tmp_path, write_png(tmp_path / "huge.png", 20000, 20000, idat=TINY))
    proc = _cli_select(tmp_path, data)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "DecompressionBomb" not in proc.stderr
    message = " ".join(proc.stderr.split())  # rich wraps long lines
    assert "huge.png: 20000 x 20000 pixels (400.0 MP)" in message
    assert "64.0 MP allowed per image" in message
    assert "--max-image-pixels 400000000" in message


@pytest.mark.slow
def test_cli_pillow_warning_range_is_ours_too(tmp_path: Path) -> None:
    """100 MP lies between Pillow's warning (89 MP) and its error (179 MP): still one line,
    no Pillow warning, and the same run goes through once the limit is raised."""
    data = _folder_with(tmp_path, write_png(tmp_path / "big.png", 10000, 10000))
    proc = _cli_select(tmp_path, data)
    assert proc.returncode == 2, proc.stderr
    assert "Warning" not in proc.stderr and "Traceback" not in proc.stderr
    assert "big.png: 10000 x 10000 pixels" in " ".join(proc.stderr.split())
    out = tmp_path / "r.json"
    proc = _cli_select(tmp_path, data, "--max-image-pixels", "100000000", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr
    assert json.loads(out.read_text())["cache"]["computed"] == 7


@pytest.mark.slow
def test_cli_raised_limit_past_pillow_error_and_truncated_data(tmp_path: Path) -> None:
    """Past Pillow's own error (179 MP), under a raised limit: the file is read (no
    DecompressionBombError), and its missing data is one line naming it."""
    data = _folder_with(tmp_path, write_png(tmp_path / "lie.png", 14000, 14000, idat=TINY))
    proc = _cli_select(tmp_path, data, "--max-image-pixels", "200000000")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "DecompressionBomb" not in proc.stderr
    assert "lie.png: cannot decode the image" in " ".join(proc.stderr.split())


def test_the_option_is_documented_and_checked(capsys: pytest.CaptureFixture[str]) -> None:
    from greenrunner.cli import build_parser

    parser = build_parser()
    for command in ("select", "run"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--max-image-pixels N" in text and f"{DEFAULT_MAX_IMAGE_PIXELS:,}" in text
    args = parser.parse_args(["select", "--replay", "x", "--max-image-pixels", "100_000_000"])
    assert args.max_image_pixels == 100_000_000
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["select", "--replay", "x", "--max-image-pixels", "0"])
    assert exc.value.code == 2


# --- the limit, from Python -------------------------------------------------------------------
def test_python_parameter(tmp_path: Path) -> None:
    data = _folder_with(tmp_path, write_png(tmp_path / "wide.png", 3000, 2000, idat=TINY))
    with pytest.raises(DataError, match=r"wide\.png: 3000 x 2000 pixels \(6\.0 MP\)"):
        open_dataset(data, max_image_pixels=5_000_000)
    assert len(open_dataset(data, max_image_pixels=6_000_000)) == 7
    for bad in (0, -1, True, 2.5, "64"):
        with pytest.raises(ConfigError, match="max_image_pixels must be a positive"):
            open_dataset(data, max_image_pixels=bad)  # type: ignore[arg-type]


def test_the_api_passes_the_limit_on(tmp_path: Path) -> None:
    from greenrunner.api import open_real

    data = _folder_with(tmp_path, write_png(tmp_path / "wide.png", 3000, 2000, idat=TINY))
    zoo = write_zoo(tmp_path / "zoo", {"m": {}})
    with pytest.raises(DataError, match=r"wide\.png: 3000 x 2000"):
        open_real(zoo, data, use_cache=False, max_image_pixels=1_000_000)


def test_a_file_that_grew_after_opening_is_refused_at_decode(tmp_path: Path) -> None:
    data = open_dataset(_folder_with(tmp_path), max_image_pixels=1_000_000)
    write_png(tmp_path / "target" / "a" / "0.png", 2000, 1000, idat=TINY)
    with pytest.raises(DataError, match=r"0\.png: 2000 x 1000 pixels"):
        data.load(np.array([0]))


def test_pillow_global_limit_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ours replaces Pillow's for our reads, in both directions, and Pillow's is back as it
    was afterwards, for the rest of the process."""
    big = write_png(tmp_path / "big.png", 10000, 10000)  # over Pillow's 89 MP
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert 24 <= min(decode(big, 100_000_000, fit=(8, 8)).shape) < 48
    assert Image.MAX_IMAGE_PIXELS == 89478485
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # an application's stricter choice
    assert decode(_small(tmp_path / "s.png")).shape == (8, 8)
    assert Image.MAX_IMAGE_PIXELS == 100


def test_a_lifted_limit_is_restored_even_when_threads_overlap(tmp_path: Path) -> None:
    from PIL import Image as PILImage

    saved = PILImage.MAX_IMAGE_PIXELS
    seen: list[int | None] = []
    inside, release = threading.Event(), threading.Event()

    def lifter() -> None:
        with pil_limit(10**9):
            inside.set()
            release.wait(5)

    t = threading.Thread(target=lifter)
    t.start()
    inside.wait(5)

    def reader() -> None:
        with pil_limit(10):  # under Pillow's: nothing to lift, but it waits for the lifter
            seen.append(PILImage.MAX_IMAGE_PIXELS)

    r = threading.Thread(target=reader)
    r.start()
    release.set()
    t.join(5)
    r.join(5)
    assert seen == [saved]
    assert saved == PILImage.MAX_IMAGE_PIXELS


# --- hostile and unusual files ---------------------------------------------------------------
def _truncated_png(path: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("truncated.png", _truncated_png),
        ("lying.png", lambda p: write_png(p, 5000, 4000, idat=TINY)),  # 20 MP declared, 20 B
        ("text.png", lambda p: p.write_text("not an image at all") and p),
        ("empty.jpg", lambda p: p.write_bytes(b"") and p),
        ("header-only.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n") and p),
    ],
)
def test_broken_files_are_one_error_naming_the_file(
    tmp_path: Path, name: str, make: object
) -> None:
    path = tmp_path / name
    make(path)  # type: ignore[operator]
    root = _folder_with(tmp_path, path)
    with pytest.raises(DataError, match=re.escape(f"{name}: ")):
        data = open_dataset(root)
        for i in range(len(data)):  # truncated pixel data can only show when decoded
            data.load(np.array([i]), fit=(8, 8))


def test_only_image_formats_are_decoded_whatever_the_name(tmp_path: Path) -> None:
    """Pillow recognises formats by content; PostScript it renders with Ghostscript. A file
    named .png holding PostScript is refused when the dataset is opened."""
    eps = tmp_path / "drawing.png"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n")
    with pytest.raises(DataError, match=r"drawing\.png: not a readable image"):
        open_dataset(_folder_with(tmp_path, eps))
    jpeg = tmp_path / "really-a-jpeg.png"  # a wrong suffix on a real image format is fine
    Image.new("RGB", (8, 8), (0, 90, 0)).save(jpeg, format="JPEG")
    got = open_dataset(_folder_with(tmp_path / "ok", jpeg)).load(np.array([2]))[0]
    assert got.shape == (8, 8, 3)


def _saved(tmp_path: Path, name: str, img: Image.Image, **options: Any) -> Path:
    path = tmp_path / name
    img.save(path, **options)
    return path


def _png16(path: Path, pixels: np.ndarray) -> Path:
    """A 16-bit PNG (grey H x W or RGB H x W x 3) from uint16 values."""
    h, w = pixels.shape[:2]
    colour = 2 if pixels.ndim == 3 else 0
    rows = b"".join(b"\0" + pixels[y].astype(">u2").tobytes() for y in range(h))
    with path.open("wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0)))
        f.write(_chunk(b"IDAT", zlib.compress(rows)))
        f.write(_chunk(b"IEND", b""))
    return path


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    values = (np.arange(16, dtype=np.uint16) * 4369).reshape(4, 4)  # 0 .. 65535
    grey = decode(_png16(tmp_path / "g16.png", values))
    np.testing.assert_array_equal(grey, np.arange(16).reshape(4, 4) * 17)
    rgb = decode(_png16(tmp_path / "c16.png", np.stack([values] * 3, axis=-1)))
    assert rgb.shape == (4, 4, 3) and abs(int(rgb[3, 3, 0]) - 255) <= 1 and rgb[0, 0, 0] == 0


def test_wide_grey_modes_keep_their_meaning(tmp_path: Path) -> None:
    fractions = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    got = decode(_saved(tmp_path, "f.tif", Image.fromarray(fractions)))
    np.testing.assert_array_equal(got, np.rint(fractions * 255).astype(np.uint8))
    wide = (np.arange(16, dtype=np.int32) * 4369).reshape(4, 4)  # a 16-bit range in 32 bits
    got = decode(_saved(tmp_path, "i.tif", Image.fromarray(wide)))
    assert got[0, 0] == 0 and got[3, 3] == 255 and got[2, 0] == 136


@pytest.mark.parametrize(
    ("name", "image", "options", "expected"),
    [
        ("palette.png", "P", {"transparency": 0}, (10, 20, 30)),
        ("alpha.png", "RGBA", {}, (200, 100, 50)),
        ("grey-alpha.png", "LA", {}, 90),
        ("bilevel.png", "1", {}, 255),
        ("cmyk.jpg", "CMYK", {"quality": 100}, (255, 0, 0)),
        ("animated.gif", "GIF", {}, (10, 20, 30)),
        ("pages.tif", "TIFF", {}, (200, 100, 50)),
    ],
)
def test_other_modes_and_multi_frame_files_work(
    tmp_path: Path, name: str, image: str, options: dict[str, object], expected: object
) -> None:
    if image == "P":
        img = Image.new("P", (6, 6), 1)
        img.putpalette([0, 0, 0, 10, 20, 30] * 128)
    elif image == "RGBA":
        img = Image.new("RGBA", (6, 6), (200, 100, 50, 0))  # fully transparent: colour kept
    elif image == "LA":
        img = Image.new("LA", (6, 6), (90, 10))
    elif image == "1":
        img = Image.new("1", (6, 6), 1)
    elif image == "CMYK":
        img = Image.new("CMYK", (6, 6), (0, 255, 255, 0))  # red
    elif image == "GIF":
        frames = [Image.new("P", (6, 6), k) for k in range(3)]
        for f in frames:
            f.putpalette([0, 0, 0, 10, 20, 30, 90, 90, 90] + [0] * 759)
        frames[1].save(tmp_path / name, save_all=True, append_images=[frames[2], frames[0]])
        img = None
    else:
        pages = [Image.new("RGB", (6, 6), c) for c in ((200, 100, 50), (1, 2, 3))]
        pages[0].save(tmp_path / name, save_all=True, append_images=pages[1:])
        img = None
    path = tmp_path / name if img is None else _saved(tmp_path, name, img, **options)
    data = open_dataset(_folder_with(tmp_path, path))
    index = [p.name for p in data.paths].index(name)  # type: ignore[attr-defined]
    got = data.load(np.array([index]))[0]
    assert got.shape[:2] == (6, 6)
    pixel = got[2, 2]
    if isinstance(expected, int):
        assert got.ndim == 2 and pixel == expected
    else:
        assert got.ndim == 3
        assert np.abs(pixel.astype(int) - np.asarray(expected)).max() <= 2, pixel


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int) -> None:
    """Stored 40 wide and 20 high with a red block at the top left; shown upright."""
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 8, 8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    got = decode(_saved(tmp_path, "photo.jpg", img, exif=exif, quality=95))
    red = {3: (-4, -4), 6: (4, -4), 8: (-4, 4)}[orientation]  # where the block ends up
    assert got.shape == ((20, 40, 3) if orientation == 3 else (40, 20, 3))
    assert got[red][0] > 200 and got[red][2] < 60
    assert got[got.shape[0] // 2, got.shape[1] // 2][2] > 200  # blue elsewhere


def test_a_broken_exif_block_does_not_lose_the_image(tmp_path: Path) -> None:
    path = _saved(tmp_path, "x.jpg", Image.new("RGB", (8, 8), (0, 200, 0)), exif=b"Exif\0\0junk")
    assert decode(path).shape == (8, 8, 3)


# --- very large images: decoded small, prepared the same -------------------------------------
def test_a_huge_png_is_reduced_and_prepares_as_the_full_decode_would(tmp_path: Path) -> None:
    gradient = np.tile(np.linspace(0, 255, 5000).astype(np.uint8), (4000, 1))  # 20 MP
    path = _saved(tmp_path, "g.png", Image.fromarray(gradient))
    spec = Preprocessing(size=(32, 32), channels=1, resize=40)
    reduced = decode(path, fit=spec.fit)
    assert min(reduced.shape) >= 3 * 40 and reduced.size < gradient.size / 4
    exact = prepare([gradient], spec)
    assert np.abs(prepare([reduced], spec) - exact).max() < 0.05  # of a [0, 1] range


def test_a_huge_jpeg_is_decoded_at_a_reduced_scale(tmp_path: Path) -> None:
    y, x = np.mgrid[0:3600, 0:4800]
    smooth = (x / 4800 * 200 + y / 3600 * 55).astype(np.uint8)  # 17 MP
    path = _saved(tmp_path, "p.jpg", Image.fromarray(smooth).convert("RGB"), quality=90)
    spec = Preprocessing(size=(64, 64), channels=3)
    reduced = decode(path, fit=spec.fit)
    assert reduced.shape[0] >= 3 * 64 and reduced.shape[1] >= 3 * 64
    assert reduced.shape[0] * reduced.shape[1] <= 3600 * 4800 // 16  # draft 1/8, then reduce
    full = decode(path)
    assert full.shape == (3600, 4800, 3)  # no fit: the exact decode
    assert np.abs(prepare([reduced], spec) - prepare([full], spec)).max() < 0.05


# --- the in-memory formats -------------------------------------------------------------------
def _idx_header(shape: tuple[int, ...]) -> bytes:
    return bytes([0, 0, 8, len(shape)]) + b"".join(int(d).to_bytes(4, "big") for d in shape)


def _idx_pair(tmp_path: Path, images: bytes, labels: bytes, zipped: bool = False) -> Path:
    tmp_path.mkdir(exist_ok=True)
    suffix = ".gz" if zipped else ""
    pack = gzip.compress if zipped else (lambda b: b)
    (tmp_path / f"x-images-idx3-ubyte{suffix}").write_bytes(pack(images))
    (tmp_path / f"x-labels-idx1-ubyte{suffix}").write_bytes(pack(labels))
    return tmp_path


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((1, 2**32 - 1, 2**32 - 1), r"declares images of 4294967295 x 4294967295 pixels"),
        ((2**22, 2**21, 2**21), r"declares images of 2097152 x 2097152"),  # 2^64: int64 wraps to 0
        ((2**31, 100, 100), r"more than this machine's memory"),
        ((4, 3, 3), r"header says \(4, 3, 3\) \(36 bytes of data\) but the file holds 0 bytes"),
    ],
)
@pytest.mark.parametrize("zipped", [False, True])
def test_idx_declared_sizes_are_bounded(
    tmp_path: Path, shape: tuple[int, ...], match: str, zipped: bool
) -> None:
    _idx_pair(tmp_path, _idx_header(shape), _idx_header((4,)) + bytes(4), zipped)
    with pytest.raises(DataError, match=match):
        open_dataset(tmp_path)


def test_idx_with_more_data_than_declared_or_the_wrong_rank(tmp_path: Path) -> None:
    labels = _idx_header((2,)) + bytes(2)
    longer = _idx_pair(tmp_path / "longer", _idx_header((2, 2, 2)) + bytes(1008), labels, True)
    with pytest.raises(DataError, match="but the file holds more bytes than that"):
        open_dataset(longer)
    flat = _idx_pair(tmp_path / "flat", _idx_header((2, 4)) + bytes(8), labels)
    with pytest.raises(DataError, match=r"holds 2-dimensional data; expected images"):
        open_dataset(flat)
    good = _idx_pair(tmp_path / "good", _idx_header((2, 2, 2)) + bytes(8), labels)
    assert len(open_dataset(good)) == 2


@pytest.mark.slow
def test_cli_idx_header_that_overflows_is_one_line(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    target.mkdir()
    _idx_pair(target, _idx_header((2**22, 2**21, 2**21)), _idx_header((4,)) + bytes(4))
    proc = _cli_select(tmp_path, target)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "declares images of" in proc.stderr


def _npz_with_header(path: Path, shape: tuple[int, ...], data: bytes = b"") -> Path:
    """An .npz whose images.npy declares ``shape`` but holds ``data``."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": shape}
    )
    labels = io.BytesIO()
    np.save(labels, np.zeros(2, np.int64))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("images.npy", header.getvalue() + data)
        z.writestr("labels.npy", labels.getvalue())
    return path


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((2, 100_000, 100_000), r"declares images of 100000 x 100000 pixels"),
        ((10**7, 1000, 1000), r"more than this machine's memory"),
    ],
)
def test_npz_declared_sizes_are_bounded(tmp_path: Path, shape: tuple[int, ...], match: str) -> None:
    path = _npz_with_header(tmp_path / "d.npz", shape)
    with pytest.raises(DataError, match=match):
        open_dataset(path)


def test_npz_that_is_not_a_zip_or_holds_less_than_declared(tmp_path: Path) -> None:
    good = tmp_path / "good.npz"
    np.savez(good, images=np.zeros((2, 4, 4), np.uint8), labels=np.zeros(2, np.int64))
    assert len(open_dataset(good)) == 2
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:40])
    with pytest.raises(DataError, match=r"cut\.npz: not a readable \.npz"):
        open_dataset(cut)
    short = _npz_with_header(tmp_path / "short.npz", (2, 4, 4), bytes(5))
    with pytest.raises(DataError, match=r"short\.npz: not a readable \.npz"):
        open_dataset(short)


# --- memory: one full-size image at a time ---------------------------------------------------
_PEAK_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from greenrunner.datasets import open_dataset
    from greenrunner.evaluation.inference import InferenceEvaluator
    from greenrunner.preprocessing import Preprocessing

    data = open_dataset(sys.argv[1], max_image_pixels=int(sys.argv[2]))
    evaluator = InferenceEvaluator(data, {})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    batch = evaluator.batch(Preprocessing(size=(8, 8), channels=1), list(range(len(data))))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) * 1024, batch.shape)
    """
)


def peak_of_one_batch(root: Path, max_pixels: int) -> int:
    """Bytes by which preparing every sample of ``root`` in one batch raises peak RSS."""
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(root), str(max_pixels)],
        capture_output=True, text=True, timeout=300, check=False, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[0])


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
def test_a_batch_of_huge_images_holds_one_at_a_time(tmp_path: Path) -> None:
    """Ten 8000 x 8000 PNGs (64 MB each decoded, 60 KB each on disk) in one batch: before,
    all ten were decoded at once (640 MB and more); now one at a time."""
    root = tmp_path / "huge"
    for k in range(10):
        write_png(root / "abc"[k % 3] / f"{k}.png", 8000, 8000, value=25 * k)
    peak = peak_of_one_batch(root, DEFAULT_MAX_IMAGE_PIXELS)
    assert peak < 320 * 2**20, f"peak rose by {peak / 2**20:.0f} MiB"
