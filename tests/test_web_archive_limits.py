"""Hostile zips: bombs under the per-entry floor, names the file system cannot store or that
clash, special and damaged archives, and compressed files inside the zip. Each is refused
with a message that names what was wrong (HTTP 400 or 413, never a 500) and leaves nothing
on disk: unpacked directly, uploaded to the app, and uploaded to a real server."""

from __future__ import annotations

import gzip
import io
import os
import socket
import stat
import struct
import subprocess
import sys
import time
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pytest

from greenrunner.errors import ConfigError, DataError
from greenrunner.web import archive
from greenrunner.web.archive import UploadTooLarge, safe_extract
from greenrunner.web.settings import MB, WebSettings
from tests.web_helpers import zip_bytes

MiB = 1 << 20


# --- archives built in memory -------------------------------------------------------------
def repeated_zip(n: int, size: int, pattern: str = "f{:05d}.bin") -> bytes:
    """``n`` entries of ``size`` zero bytes, deflated once and the stream reused, so even a
    500 MB bomb takes milliseconds to build (zipfile would compress every entry again)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = packer.compress(b"\0" * size) + packer.flush()
    crc = zlib.crc32(b"\0" * size)
    out, central = io.BytesIO(), []
    for i in range(n):
        name = pattern.format(i).encode()
        offset = out.tell()
        fields = (20, 0, zipfile.ZIP_DEFLATED, 0, 0x21, crc, len(data), size, len(name))
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", *fields, 0) + name + data)
        central.append(
            struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, *fields, 0, 0, 0, 0, 0, offset) + name
        )
    directory = b"".join(central)
    start = out.tell()
    out.write(directory)
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(directory), start, 0))
    return out.getvalue()


def issue_bomb() -> bytes:
    """The issue's case: 500 entries of 1 MiB - 1 zero bytes, just under the per-entry floor."""
    return repeated_zip(500, MiB - 1)


def patch_directory(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Overwrite one field of every central-directory header (``offset`` into it)."""
    out = bytearray(data)
    size, start = struct.unpack("<2L", out[-10:-2])
    pos = start
    while pos < start + size:
        out[pos + offset : pos + offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
        name, extra, comment = struct.unpack("<3H", out[pos + 28 : pos + 34])
        pos += 46 + name + extra + comment
    return bytes(out)


def raw_zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    """Entries as given, duplicates included (zipfile only warns about those)."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        warnings.simplefilter("ignore")
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def special(name: str, kind: int) -> bytes:
    info = zipfile.ZipInfo(name)
    info.external_attr = (kind | 0o644) << 16
    return raw_zip([(info, b"")])


def corrupt_deflate() -> bytes:
    data = bytearray(zip_bytes({"a.txt": b"hello world, " * 500}))
    start = 30 + len("a.txt")  # the deflated stream follows the local header and the name
    data[start + 2 : start + 22] = b"\xff" * 20
    return bytes(data)


def bad_crc() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("first.txt", b"intact")
        zf.writestr("second.txt", b"this text is changed after its CRC was taken")
    return buf.getvalue().replace(b"is changed", b"IS CHANGED", 1)


def invalid_utf8_names() -> bytes:
    # zipfile sets the UTF-8 flag for a non-ASCII name; the bytes then stop being UTF-8.
    return zip_bytes({"caf\u00e9.txt": b"x"}).replace("\u00e9".encode(), b"\xff\xfe")


def compressed_npz(size: int) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, images=np.zeros(size, np.uint8), labels=np.zeros(1, np.int64))
    return buf.getvalue()


def extract(tmp_path: Path, data: bytes, **limits: Any) -> list[str]:
    """Unpack with the server's default limits (or ``limits``); the files written."""
    defaults = WebSettings(data_dir=tmp_path / "web")
    given = {
        "max_bytes": defaults.extract_limit,
        "max_files": defaults.max_files,
        "max_ratio": defaults.max_ratio,
        "max_entry_bytes": defaults.entry_limit,
        **limits,
    }
    upload = tmp_path / "upload.zip"
    upload.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    try:
        safe_extract(upload, out, **given)
    finally:
        written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    return written


def refused(
    tmp_path: Path, data: bytes, words: str, error: type[DataError] = DataError, **limits: Any
) -> str:
    with pytest.raises(error) as caught:
        extract(tmp_path, data, **limits)
    message = str(caught.value)
    assert words in message
    assert list((tmp_path / "out").iterdir()) == []  # nothing kept, not even a part
    return message


# --- sizes --------------------------------------------------------------------------------
def test_the_issue_bomb_is_refused_by_default_before_a_byte_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = issue_bomb()
    assert len(bomb) < 700_000
    assert WebSettings().extract_limit >= 500 * MiB  # refused for its ratio, not its size
    writes: list[object] = []
    monkeypatch.setattr(archive, "_write", lambda *a: writes.append(a))
    message = refused(tmp_path, bomb, "zip bomb")
    assert "the zip expands" in message and "500 MB from" in message
    assert writes == []


def test_limits_hold_while_writing_when_the_directory_is_not_believed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the up-front checks skipped, the bytes actually written still stop the bomb."""

    def trusting_plan(zf: zipfile.ZipFile, *_: object) -> tuple[list[Any], int]:
        return [(i, PurePosixPath(i.filename)) for i in zf.infolist()], 0

    monkeypatch.setattr(archive, "_plan", trusting_plan)
    refused(tmp_path, repeated_zip(40, MiB - 1), "zip bomb")
    refused(tmp_path, repeated_zip(6, MiB - 1), "more than 4 MB", UploadTooLarge, max_bytes=4 * MiB)


def test_sizes_that_lie_are_refused_and_the_partial_file_removed(tmp_path: Path) -> None:
    # Every entry claims 1,000 bytes; the first one unpacks to more and fails its CRC.
    lying = patch_directory(issue_bomb(), 24, "<L", 1000)
    refused(tmp_path, lying, "is damaged")


@pytest.mark.parametrize(
    ("data", "limits", "error", "words"),
    [
        pytest.param(repeated_zip(9, MiB - 1), {"max_bytes": 8 * MiB}, UploadTooLarge,
                     "the zip unpacks to more than 8 MB", id="total"),
        pytest.param(zip_bytes({"a.bin": os.urandom(3 * MiB)}), {"max_entry_bytes": 2 * MiB},
                     UploadTooLarge, "'a.bin' unpacks to 3 MB, more than the limit of 2 MB",
                     id="one entry"),
        pytest.param(repeated_zip(11, 10), {"max_files": 10}, UploadTooLarge,
                     "more than 10 entries", id="entries"),
        pytest.param(repeated_zip(2, 2 * MiB), {}, DataError, "expands", id="entry ratio"),
    ],
)  # fmt: skip
def test_each_size_limit_is_enforced(
    tmp_path: Path, data: bytes, limits: dict[str, int], error: type[DataError], words: str
) -> None:
    refused(tmp_path, data, words, error, **limits)


def test_small_repetitive_zips_are_not_bombs(tmp_path: Path) -> None:
    # 15 MB of zeros from 15 KB (1000-fold) stays under the whole-archive floor.
    assert len(extract(tmp_path, repeated_zip(15, MiB - 1))) == 15


def test_a_huge_directory_is_refused_before_zipfile_parses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """zipfile builds an object per entry before anything can be checked (a 90 MB zip of
    a million empty entries costs seconds and 460 MB of memory); the raw count comes first."""
    crowded = repeated_zip(5000, 0)

    def no_parse(*_: object, **__: object) -> None:
        raise AssertionError("zipfile parsed the directory")

    monkeypatch.setattr(zipfile, "ZipFile", no_parse)
    refused(tmp_path, crowded, "more than 100 entries", UploadTooLarge, max_files=100)


def test_macos_clutter_does_not_count_against_the_entry_limit(tmp_path: Path) -> None:
    files = {f"p/{i}.txt": b"x" for i in range(60)} | {
        f"__MACOSX/p/._{i}.txt": b"x" for i in range(60)
    }
    assert len(extract(tmp_path, zip_bytes(files), max_files=61)) == 61  # 60 files, p/


def test_the_unpack_limits_follow_the_upload_limit_and_are_validated() -> None:
    assert WebSettings().extract_limit == 1024 * MB
    bigger = WebSettings(max_upload_bytes=1000 * MB)
    assert (bigger.extract_limit, bigger.entry_limit) == (5000 * MB, 5000 * MB)
    set_ = WebSettings(max_extract_bytes=10 * MB, max_entry_bytes=20 * MB)
    assert (set_.extract_limit, set_.entry_limit) == (10 * MB, 10 * MB)
    for bad in ({"max_extract_bytes": 0}, {"max_entry_bytes": -1}, {"max_entry_bytes": 1.5}):
        with pytest.raises(ConfigError, match="must be a positive integer"):
            WebSettings(**bad)


def test_a_full_disk_is_refused_up_front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Usage:
        free = 1000

    monkeypatch.setattr("shutil.disk_usage", lambda _: Usage)
    refused(tmp_path, zip_bytes({"a.bin": b"x" * 5000}), "too little free disk", UploadTooLarge)


# --- names --------------------------------------------------------------------------------
NAME_REFUSALS = [
    ("long", "a" * 256 + ".txt", "a file or folder name of 260 bytes, more than the limit"),
    ("long in bytes", "\u00e9" * 128 + ".txt", "name of 260 bytes"),  # 132 characters
    ("long folder", "d" * 300 + "/x.txt", "name of 300 bytes"),
    ("deep", "d/" * 40 + "x.txt", "41 levels deep, more than the limit of 32"),
    ("long path", "/".join(["p" * 200] * 6) + "/x.txt", "has a path of 1,211 bytes"),
    ("newline", "a\nb.txt", "U+000A"),
    ("tab", "a\tb.txt", "U+0009"),
    ("bidi override", "invoice\u202efdp.exe", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
    ("zero width", "a\u200bb.txt", "U+200B"),
    ("line separator", "a\u2028b.txt", "U+2028"),
    ("private use", "a\ue000.txt", "U+E000 (a private-use character)"),
    ("colon", "note:b.txt", "U+003A (COLON)"),
    ("question mark", "what?.txt", "U+003F"),
    ("backslash", "a\\b.txt", "backslash"),
    ("drive letter", "C:/x.txt", "absolute path"),
    ("absolute", "/etc/x.txt", "absolute path"),
    ("dot-dot", "a/../../x.txt", "points outside the archive"),
]


@pytest.mark.parametrize(("name", "words"), [pytest.param(n, w, id=i) for i, n, w in NAME_REFUSALS])
def test_unsafe_names_are_refused_with_the_entry_named(
    tmp_path: Path, name: str, words: str
) -> None:
    message = refused(tmp_path, zip_bytes({"ok.txt": b"x", name: b"x"}), words)
    assert "zip entry " in message and len(message) < 400  # a long name is cut in the message


def test_the_longest_names_that_fit_and_any_script_are_accepted(tmp_path: Path) -> None:
    names = [
        "\u00e9" * 125 + ".png",  # 254 bytes in 129 characters
        "/".join(["d"] * 31) + "/x.txt",  # 32 levels
        "Café/写真 (1) – ünïcödé, #2 [copy] & más!.png",
        "emoji 🐱/x.txt",
    ]
    assert set(names) <= set(extract(tmp_path, zip_bytes(dict.fromkeys(names, b"x"))))


CLASHES = [
    ("file, then inside it", [("a", b"x"), ("a/b", b"y")], "'a' is a file, but 'a/b' puts"),
    ("inside, then file", [("a/b", b"x"), ("a", b"y")], "'a' is a file, but 'a/b' makes a folder"),
    ("folder entry and file", [("a/", b""), ("a", b"y")], "makes a folder of that name"),
    ("duplicate", [("a.txt", b"x"), ("a.txt", b"y")], "'a.txt' appears twice"),
    ("duplicate via ./", [("d/a.txt", b"x"), ("d/./a.txt", b"y")], "appears twice"),
    ("case", [("A.png", b"x"), ("a.png", b"y")], "differ only in upper and lower case"),
    ("case of a folder", [("Cat/1.png", b"x"), ("cat/2.png", b"y")], "differ only"),
    ("unicode form", [("caf\u00e9.txt", b"x"), ("cafe\u0301.txt", b"y")], "differ only"),
    ("trailing dot", [("a.txt", b"x"), ("a.txt.", b"y")], "differ only"),
]


@pytest.mark.parametrize(("entries", "words"), [pytest.param(e, w, id=i) for i, e, w in CLASHES])
def test_names_that_clash_are_refused(
    tmp_path: Path, entries: list[tuple[str, bytes]], words: str
) -> None:
    message = refused(tmp_path, raw_zip(list(entries)), words)
    assert "rename one" in message or "keep one" in message


def test_a_folder_listed_after_its_files_is_no_clash(tmp_path: Path) -> None:
    assert extract(tmp_path, raw_zip([("a/b.txt", b"x"), ("a/", b"")])) == ["a", "a/b.txt"]


# --- kinds and damage ---------------------------------------------------------------------
ARCHIVE_REFUSALS = [
    ("not a zip", b"just some text", "not a zip archive"),
    ("a png", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "not a zip archive"),
    ("cut short", zip_bytes({"a.txt": b"x" * 100})[:-30], "cut short"),
    ("damaged stream", corrupt_deflate(), "zip entry 'a.txt' is damaged"),
    ("bad crc", bad_crc(), "zip entry 'second.txt' is damaged (Bad CRC-32"),
    ("names not utf-8", invalid_utf8_names(), "not valid UTF-8"),
    ("middle missing", zip_bytes({"a.txt": b"x" * 100, "b.txt": b"y"})[:40] + b"\0" * 60
     + zip_bytes({"a.txt": b"x" * 100, "b.txt": b"y"})[100:], "damaged"),
    ("encrypted", patch_directory(zip_bytes({"a.txt": b"x"}), 8, "<H", 1), "is encrypted"),
    ("deflate64", patch_directory(zip_bytes({"a.txt": b"x"}), 10, "<H", 9),
     "compressed with method 9 (Deflate64)"),
    ("unknown method", patch_directory(zip_bytes({"a.txt": b"x"}), 10, "<H", 77),
     "method 77 (unknown)"),
    ("symlink", zip_bytes({}, symlinks={"m.onnx": "/etc/passwd"}), "is a symbolic link"),
    ("fifo", special("pipe", stat.S_IFIFO), "'pipe' is not a regular file or folder"),
    ("device", special("disk", stat.S_IFBLK), "not a regular file or folder"),
    ("nested zip", zip_bytes({"inner.zip": zip_bytes({"a.txt": b"x"})}), "a zip inside the zip"),
    ("empty", b"PK\x05\x06" + b"\0" * 18, "the zip archive is empty"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "words"), [pytest.param(d, w, id=i) for i, d, w in ARCHIVE_REFUSALS]
)
def test_special_and_damaged_archives_are_refused(tmp_path: Path, data: bytes, words: str) -> None:
    refused(tmp_path, data, words)


def test_compressed_files_inside_are_bounded_like_the_upload(tmp_path: Path) -> None:
    """An .npz or IDX .gz is expanded whole in memory by its loader: a 20 KB file of
    20 MB of zeros is a bomb one level down."""
    npz = compressed_npz(20 * MiB)
    assert len(npz) < 100_000
    refused(tmp_path, zip_bytes({"data.npz": npz}), "'data.npz' (itself compressed) expands")
    gz = gzip.compress(b"\0" * 20 * MiB)
    refused(tmp_path, zip_bytes({"t-images-idx3-ubyte.gz": gz}), "itself compressed) expands")
    refused(tmp_path, zip_bytes({"d.npz": compressed_npz(3 * MiB)}), "'d.npz' (itself compressed)"
            " unpacks to more than 2 MB", UploadTooLarge, max_bytes=2 * MiB)  # fmt: skip
    # Each under its own limits, together over the budget for measuring them.
    pair = {f"{i}-images-idx3-ubyte.gz": gzip.compress(b"\0" * (3 * MiB // 2)) for i in (1, 2)}
    refused(tmp_path, zip_bytes(pair), "the compressed files inside the zip unpack to more "
            "than 2 MB in all", UploadTooLarge, max_bytes=2 * MiB)  # fmt: skip
    plain = io.BytesIO()
    np.savez(plain, images=np.arange(1000, dtype=np.uint8), labels=np.zeros(10))
    fine = {"a.npz": plain.getvalue(), "b.gz": gzip.compress(os.urandom(1000))}
    assert extract(tmp_path, zip_bytes(fine)) == ["a.npz", "b.gz"]


# --- through the app ----------------------------------------------------------------------
def _web_cases() -> list[Any]:
    crowded = repeated_zip(2 * 20_000 + 65, 0)  # the default max_files, macOS room included
    cases = [
        ("bomb", issue_bomb(), 400, "zip bomb"),
        ("long name", zip_bytes({"\u00e9" * 200 + ".onnx": b"x"}), 400, "name of 405 bytes"),
        ("deep", zip_bytes({"d/" * 40 + "m.onnx": b"x"}), 400, "41 levels deep"),
        ("long path", zip_bytes({"/".join(["p" * 250] * 20): b"x"}), 400, "path of 5,019"),
        ("file and folder", raw_zip([("m", b"x"), ("m/a.onnx", b"y")]), 400, "puts something"),
        ("case", raw_zip([("M.onnx", b"x"), ("m.onnx", b"y")]), 400, "differ only"),
        ("control", zip_bytes({"m\r.onnx": b"x"}), 400, "U+000D"),
        ("damaged", corrupt_deflate(), 400, "is damaged"),
        ("names not utf-8", invalid_utf8_names(), 400, "not valid UTF-8"),
        ("nested zip", zip_bytes({"models.zip": zip_bytes({"a": b"x"})}), 400, "zip inside"),
        ("crowded", crowded, 413, "more than 20,000 entries"),
        ("npz bomb", zip_bytes({"d.npz": compressed_npz(20 * MiB)}), 400, "itself compressed"),
    ]
    return [pytest.param(d, s, w, id=i) for i, d, s, w in cases]


@pytest.mark.parametrize(("data", "status", "words"), _web_cases())
def test_hostile_uploads_to_the_app_are_refused_and_leave_nothing(
    tmp_path: Path, data: bytes, status: int, words: str
) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from greenrunner.web.app import create_app

    settings = WebSettings(data_dir=tmp_path / "web", progress_interval=0.0)  # default limits
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        for kind in ("repositories", "datasets"):
            r = client.post(f"/api/{kind}", files={"file": ("u.zip", data, "application/zip")})
            assert r.status_code == status, r.text
            assert words in r.json()["detail"]
            assert str(settings.data_dir) not in r.json()["detail"]
        assert client.get("/api/repositories").status_code == 200
    assert list(settings.uploads_dir.iterdir()) == []


# --- through a real server ----------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """``greenrunner serve`` with its default limits: (url, data folder, log)."""
    pytest.importorskip("uvicorn")
    root = tmp_path_factory.mktemp("archive-server")
    port = _free_port()
    log = root / "server.log"
    env = {**os.environ, "GREENRUNNER_CACHE": str(root / "cache"), "PYTHONUNBUFFERED": "1"}
    env.pop("GREENRUNNER_TOKEN", None)
    command = [sys.executable, "-m", "greenrunner.cli", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--data-dir", str(root / "data")]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process, log)
        yield url, root / "data", log
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited early:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(url + "/api/strategies", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the server did not answer within 60 s:\n{log.read_text(errors='replace')}")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        pytest.param(issue_bomb(), "zip bomb", id="bomb"),
        pytest.param(zip_bytes({"x" * 300 + ".onnx": b"x"}), "name of 305 bytes", id="long"),
        pytest.param(zip_bytes({"\u00e9" * 200 + "/m.onnx": b"x"}), "400 bytes", id="utf-8"),
        pytest.param(zip_bytes({"d/" * 100 + "m.onnx": b"x"}), "101 levels deep", id="deep"),
        pytest.param(raw_zip([("a", b"x"), ("a/b", b"y")]), "puts something", id="clash"),
    ],
)
def test_a_real_server_refuses_hostile_zips_and_keeps_serving(
    server: tuple[str, Path, Path], data: bytes, words: str
) -> None:
    import httpx

    url, data_dir, log = server
    r = httpx.post(
        url + "/api/repositories", files={"file": ("u.zip", data, "application/zip")}, timeout=60
    )
    assert r.status_code == 400, r.text
    assert words in r.json()["detail"]
    assert httpx.get(url + "/api/repositories", timeout=10).status_code == 200
    uploads = data_dir / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []
    assert "Traceback" not in log.read_text(errors="replace")
