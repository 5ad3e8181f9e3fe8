"""Hostile data sets stay bounded: a .npz is read only through members whose .npy headers
were checked (whatever they are called), and a CSV costs one check per distinct image and
has a bounded size, field length and number of rows (the CLI's default, an upload's
``max_files``)."""

from __future__ import annotations

import io
import json
import os
import random
import time
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from greenrunner.datasets import files as dataset_files
from greenrunner.datasets import open_dataset
from greenrunner.datasets._images import check_image
from greenrunner.datasets.files import DEFAULT_MAX_SAMPLES
from greenrunner.errors import ConfigError, DataError


def npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array(out, array, allow_pickle=True)
    return out.getvalue()


def npy_header(descr: str, shape: tuple[int, ...], body: bytes = b"") -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        out, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return out.getvalue() + body


def write_npz(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """A zip of (name, content) members, in order, repeats allowed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in members:
                z.writestr(name, data)
    return path


IMAGES = np.zeros((2, 8, 8), np.uint8)
LABELS = np.array([0, 1], np.int64)
NAMES = np.array(["a", "b"])


def test_a_plain_npz_still_opens(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, images=IMAGES, labels=LABELS, class_names=NAMES)
    data = open_dataset(path)
    assert len(data) == 2 and data.class_names == ("a", "b")
    np.savez_compressed(path, images=IMAGES, labels=np.array(["b", "a"]), extra=np.zeros(3))
    assert open_dataset(path).labels.tolist() == [1, 0]


# The red team's bypass: numpy's NpzFile loads raw member names too (and prefers them), so
# a member called ``images`` skipped every check made on ``images.npy`` headers.
@pytest.mark.parametrize(
    ("members", "words"),
    [
        ([("images", npy(IMAGES)), ("labels.npy", npy(LABELS))], "'images' is not an array file"),
        (
            [("images.npy", npy(IMAGES)), ("images", npy(IMAGES)), ("labels.npy", npy(LABELS))],
            "'images' is not an array file",
        ),
        (
            [("images.npy", npy(IMAGES)), ("labels.npy", npy(LABELS)), ("images.npy", b"x")],
            "holds the array 'images' twice",
        ),
        ([("images.npy", npy(IMAGES)), ("labels.npy", b"0,1\n")], "'labels.npy' is not a .npy"),
        ([("images.npy", npy(IMAGES)), ("labels.npy", npy(LABELS)), ("x/", b"")], "'x/'"),
        ([("images.npy", npy(IMAGES)), ("labels.npy", npy(LABELS)), (".npy", b"")], "'.npy'"),
    ],
)
def test_npz_members_must_be_distinct_npy_arrays(
    tmp_path: Path, members: list[tuple[str, bytes]], words: str
) -> None:
    path = write_npz(tmp_path / "d.npz", members)
    with pytest.raises(DataError) as info:
        open_dataset(path)
    assert words in str(info.value)


def test_a_raw_member_cannot_smuggle_an_oversized_image(tmp_path: Path) -> None:
    big = np.zeros((1, 300, 300), np.uint8)  # 90,000 pixels against a 10,000 limit
    ok = write_npz(tmp_path / "ok.npz", [("images.npy", npy(big)), ("labels.npy", npy(LABELS[:1]))])
    with pytest.raises(DataError, match="declares images of 300 x 300"):
        open_dataset(ok, max_image_pixels=10_000)
    raw = write_npz(
        tmp_path / "raw.npz",
        [("images", npy(big)), ("labels.npy", npy(LABELS[:1])), ("class_names.npy", npy(NAMES))],
    )
    with pytest.raises(DataError, match="not an array file"):
        open_dataset(raw, max_image_pixels=10_000)
    # Last of two entries of one name is what zipfile opens by name: never a way around.
    twice = write_npz(
        tmp_path / "twice.npz",
        [("images.npy", npy(IMAGES)), ("labels.npy", npy(LABELS)), ("images.npy", npy(big))],
    )
    with pytest.raises(DataError, match="twice"):
        open_dataset(twice, max_image_pixels=10_000)


class _Marker:
    """Unpickling it would create a file: the proof that a pickle was run."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


@pytest.mark.parametrize("member", ["images", "labels", "class_names"])
def test_object_and_structured_arrays_are_refused_from_the_header(
    tmp_path: Path, member: str
) -> None:
    marker = tmp_path / "ran"
    arrays = {"images": npy(IMAGES), "labels": npy(LABELS), "class_names": npy(NAMES)}
    evil = np.empty(2, dtype=object)
    evil[:] = [_Marker(str(marker)), 1]
    arrays[member] = npy(evil)
    path = write_npz(tmp_path / "o.npz", [(f"{k}.npy", v) for k, v in arrays.items()])
    with pytest.raises(DataError, match="object and structured arrays are refused"):
        open_dataset(path)
    assert not marker.exists()
    arrays[member] = npy(np.zeros(2, dtype=[("a", "u1"), ("b", "f4")]))
    path = write_npz(tmp_path / "s.npz", [(f"{k}.npy", v) for k, v in arrays.items()])
    with pytest.raises(DataError, match="structured arrays are refused"):
        open_dataset(path)


def test_npz_arrays_it_does_not_use_are_not_read(tmp_path: Path) -> None:
    # junk.npy declares a terabyte and holds nothing: checking its header is enough.
    path = write_npz(
        tmp_path / "d.npz",
        [
            ("images.npy", npy(IMAGES)),
            ("labels.npy", npy(LABELS)),
            ("junk.npy", npy_header("<f8", (10**6, 10**6))),
        ],
    )
    assert len(open_dataset(path)) == 2


def test_npz_bounds_members_and_unnamed_classes(tmp_path: Path) -> None:
    many = [("images.npy", npy(IMAGES)), ("labels.npy", npy(LABELS))]
    many += [(f"x{i}.npy", npy(np.zeros(1))) for i in range(100)]
    with pytest.raises(DataError, match="holds 102 members"):
        open_dataset(write_npz(tmp_path / "many.npz", many))
    huge_label = np.array([0, 10**15], np.int64)
    path = write_npz(
        tmp_path / "l.npz", [("images.npy", npy(IMAGES)), ("labels.npy", npy(huge_label))]
    )
    started = time.monotonic()
    with pytest.raises(DataError, match="add a class_names array"):
        open_dataset(path)
    assert time.monotonic() - started < 5


# --- CSV ----------------------------------------------------------------------------------
def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4)).save(path, "PNG")
    return path


def _csv(folder: Path, rows: int, image: str = "i.png", labels: str = "abcd") -> Path:
    csv = folder / "d.csv"
    body = "".join(f"{image},{labels[k % len(labels)]}\n" for k in range(rows))
    csv.write_text("path,label\n" + body)
    return csv


def test_each_distinct_image_is_checked_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _png(tmp_path / "i.png")
    _png(tmp_path / "j.png")
    checked: list[Path] = []

    def counting(path: Path, limit: int) -> None:
        checked.append(path)
        check_image(path, limit)

    monkeypatch.setattr(dataset_files, "check_image", counting)
    csv = _csv(tmp_path, 50_000)
    with csv.open("a") as f:
        f.write("j.png,a\n./j.png,b\n")
    started = time.monotonic()
    data = open_dataset(csv)
    assert len(data) == 50_002
    assert sorted(p.name for p in checked) == ["i.png", "j.png"]
    data.fingerprint()
    assert time.monotonic() - started < 10


def test_csv_rows_are_bounded(tmp_path: Path) -> None:
    _png(tmp_path / "i.png")
    csv = _csv(tmp_path, 101)
    with pytest.raises(DataError, match="holds more than 100 rows"):
        open_dataset(csv, max_samples=100)
    assert len(open_dataset(csv, max_samples=101)) == 101
    assert DEFAULT_MAX_SAMPLES == 1_000_000
    for bad in (0, -1, True, 2.5, "10"):
        with pytest.raises(ConfigError, match="max_samples must be a positive whole number"):
            open_dataset(csv, max_samples=bad)  # type: ignore[arg-type]


def test_image_folders_are_bounded_too(tmp_path: Path) -> None:
    for i in range(5):
        _png(tmp_path / "root" / "cat" / f"{i}.png")
    with pytest.raises(DataError, match="holds more than 4 images"):
        open_dataset(tmp_path / "root", max_samples=4)
    assert len(open_dataset(tmp_path / "root", max_samples=5)) == 5


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("path,label\n" + "a" * 200_000 + ",x\n", "line 2: not valid CSV (field larger"),
        ("path,label\ni.png," + "x" * 1001 + "\n", "line 2: a path may have at most 4,096"),
        ("path,label\n" + "d/" * 2100 + "i.png,x\n", "line 2: a path may have at most"),
        ("path,label\ni.png,a\ni.png\n", "line 3 needs both a path and a label"),
        ("label\ni.png\n", "columns path,label"),
        ("", "columns path,label"),
        ("path,label\n\n\n", "columns path,label"),
    ],
)
def test_csv_fields_and_structure_give_one_clear_error(
    tmp_path: Path, text: str, words: str
) -> None:
    _png(tmp_path / "i.png")
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(DataError) as info:
        open_dataset(tmp_path / "d.csv")
    assert words in str(info.value)


def test_csv_size_and_encoding_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _png(tmp_path / "i.png")
    csv = _csv(tmp_path, 200)
    monkeypatch.setattr(dataset_files, "MAX_CSV_BYTES", 1000)
    with pytest.raises(DataError, match="a CSV data set may have"):
        open_dataset(csv)
    monkeypatch.undo()
    csv.write_bytes(b"path,label\ni.png,\xff\n")
    with pytest.raises(DataError, match="not UTF-8 text"):
        open_dataset(csv)
    csv.write_bytes("\ufeffpath,label\r\ni.png,a\r\n".encode())  # Excel's BOM and CRLF
    assert open_dataset(csv).class_names == ("a",)


def test_csv_in_an_upload_stays_inside_it(tmp_path: Path) -> None:
    _png(tmp_path / "up" / "i.png")
    _png(tmp_path / "outside.png")
    csv = tmp_path / "up" / "d.csv"
    for value in ("../outside.png", "/etc/passwd", "~/x.png", "a\\b.png"):
        csv.write_text(f"path,label\ni.png,a\n{value},b\n")
        with pytest.raises(DataError, match="line 3: path"):
            open_dataset(csv, within=tmp_path / "up")
    os.symlink(tmp_path / "outside.png", tmp_path / "up" / "link.png")
    csv.write_text("path,label\nlink.png,a\n")
    with pytest.raises(DataError, match="leads outside"):
        open_dataset(csv, within=tmp_path / "up")
    assert len(open_dataset(csv)) == 1  # the user's own CSV may follow links


# --- the web app and the CLI ---------------------------------------------------------------
def zip_of(files: Mapping[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return out.getvalue()


def _png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, "PNG")
    return out.getvalue()


def _raw_member_npz() -> bytes:
    """The red team's npz.py, small: ``images`` without .npy (accepted before the fix)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("images", npy(np.zeros((1, 8, 8), np.uint8)))
        z.writestr("labels.npy", npy(np.array([0], np.int64)))
        z.writestr("class_names.npy", npy(np.array(["a", "b"])))
    return out.getvalue()


def _repeated_csv_zip(rows: int) -> bytes:
    """The red team's csvrows2.py: one 4x4 PNG named ``rows`` times, labels at random (so
    the CSV compresses less than the zip-bomb ratio allows)."""
    rng = random.Random(1)
    body = "".join(f"i.png,{rng.choice('abcd')}\n" for _ in range(rows))
    return zip_of({"d.csv": ("path,label\n" + body).encode(), "i.png": _png_bytes()})


pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from greenrunner.web.app import create_app  # noqa: E402
from greenrunner.web.settings import WebSettings  # noqa: E402


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = WebSettings(data_dir=tmp_path / "web", progress_interval=0.0, max_files=1000)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        yield c


def _upload(client: TestClient, content: bytes) -> Any:
    return client.post("/api/datasets", files={"file": ("d.zip", content, "application/zip")})


def test_uploads_refuse_raw_npz_members(client: TestClient) -> None:
    r = _upload(client, zip_of({"d.npz": _raw_member_npz()}, zipfile.ZIP_STORED))
    assert r.status_code == 400, r.text
    assert "is not an array file <name>.npy" in r.json()["detail"]
    assert client.get("/api/datasets").json() == [
        d for d in client.get("/api/datasets").json() if d["kind"] != "uploaded"
    ]


def test_uploads_bound_csv_rows_by_max_files(client: TestClient) -> None:
    started = time.monotonic()
    r = _upload(client, _repeated_csv_zip(200_000))
    assert r.status_code == 400, r.text
    assert "holds more than 1,000 rows" in r.json()["detail"]
    assert time.monotonic() - started < 15
    r = _upload(client, _repeated_csv_zip(1000))  # within the limit: one image, checked once
    assert r.status_code == 201, r.text
    assert r.json()["n_samples"] == 1000


def test_uploaded_csvs_still_only_name_files_inside_the_zip(client: TestClient) -> None:
    for value in ("../../../etc/passwd", "/etc/hostname", "~/.bashrc"):
        content = zip_of({"d.csv": f"path,label\ni.png,a\n{value},b\n".encode(), "i.png": b""})
        r = _upload(client, content)
        assert r.status_code == 400, r.text
        assert "line 3: path" in r.json()["detail"]


@pytest.mark.slow
def test_a_real_server_refuses_both(tmp_path: Path) -> None:
    from tests.live_server import LiveServer, multipart

    server = LiveServer(tmp_path)  # default limits: max_files 20,000
    try:
        for content, words in (
            (zip_of({"d.npz": _raw_member_npz()}, zipfile.ZIP_STORED), "not an array file"),
            (_repeated_csv_zip(200_000), "holds more than 20,000 rows"),
        ):
            body, kind = multipart({}, {"file": ("d.zip", content)})
            started = time.monotonic()
            reply = server.request("POST", "/api/datasets", body, {"Content-Type": kind})
            assert reply.status == 400, reply.text
            assert words in json.loads(reply.text)["detail"]
            assert time.monotonic() - started < 20
        listed = json.loads(server.request("GET", "/api/datasets").text)
        assert all(d["kind"] != "uploaded" for d in listed)
    finally:
        server.stop()


@pytest.mark.slow
def test_the_cli_refuses_them_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from tests.test_cache_key import run_greenrunner, write_zoo

    zoo = write_zoo(tmp_path / "zoo", {"m": {}})
    npz = tmp_path / "d.npz"
    npz.write_bytes(_raw_member_npz())
    _png(tmp_path / "csv" / "i.png")
    csv = _csv(tmp_path / "csv", DEFAULT_MAX_SAMPLES + 1)
    for data, words in ((npz, "is not an array file"), (csv, "holds more than 1,000,000 rows")):
        proc = run_greenrunner(
            "select", "--models", str(zoo), "--data", str(data), "--strategy", "brute_force",
            cache=tmp_path / "cache", timeout=120,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert words in " ".join(proc.stderr.split())  # rich wraps long lines
