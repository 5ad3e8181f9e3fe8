"""Uploads through the REST API: a real ONNX zip and an ImageFolder zip run to a result,
and every unsafe, unknown or corrupt upload is refused with a message and leaves nothing
behind."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from fastapi.testclient import TestClient

from greenrunner.web.app import create_app
from greenrunner.web.settings import WebSettings
from tests.web_helpers import (
    image_folder_files,
    onnx_repository_files,
    png,
    wait_until,
    zip_bytes,
)

USE_CASE = "Recommend a model for sorting photos on a phone"


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return onnx_repository_files(tmp_path_factory.mktemp("onnx"))


@pytest.fixture
def settings(tmp_path: Path) -> WebSettings:
    return WebSettings(
        data_dir=tmp_path / "web", progress_interval=0.0, max_files=50, max_upload_bytes=8 << 20
    )


@pytest.fixture
def client(settings: WebSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        yield c


def upload(client: TestClient, kind: str, content: bytes, name: str = "upload.zip") -> Any:
    return client.post(f"/api/{kind}", files={"file": (name, content, "application/zip")})


def leftovers(settings: WebSettings) -> list[str]:
    folder = settings.uploads_dir
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def run_to_end(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    made = client.post("/api/experiments", json={"use_case": USE_CASE, **body})
    assert made.status_code == 201, made.text
    eid = made.json()["id"]
    assert client.post(f"/api/experiments/{eid}/run").status_code == 202
    return wait_until(
        lambda: dict(client.get(f"/api/experiments/{eid}").json()),
        lambda e: e["status"] != "running",
    )


def test_onnx_zip_and_image_folder_zip_run_to_a_result(
    client: TestClient, settings: WebSettings, onnx_files: dict[str, bytes]
) -> None:
    # Wrapped in a top folder, as zipping a folder usually does; macOS clutter is skipped.
    repo_zip = zip_bytes({f"zoo/{k}": v for k, v in onnx_files.items()} | {"__MACOSX/._x": b"x"})
    r = upload(client, "repositories", repo_zip, "my zoo.zip")
    assert r.status_code == 201, r.text
    repo = r.json()
    assert (repo["kind"], repo["n_models"], repo["name"]) == ("uploaded", 2, "my zoo")
    r = upload(client, "datasets", zip_bytes(image_folder_files(45)), "photos.zip")
    assert r.status_code == 201, r.text
    data = r.json()
    assert (data["n_samples"], data["classes"]) == (45, ["a", "b", "c"])
    assert {repo["id"], data["id"]} <= {r["id"] for r in client.get("/api/repositories").json()} | {
        d["id"] for d in client.get("/api/datasets").json()
    }
    body = {"repository": repo["id"], "dataset": data["id"], "budget": 0.5, "seed": 2}
    first = run_to_end(client, body)
    assert first["status"] == "done", first["error"]
    result = first["result"]
    assert {m["name"] for m in result["models"]} == {"mlp", "cnn"}
    assert result["cache"]["computed"] > 0 and result["n_samples"] == 45
    assert first["summary"]["source"].startswith("models my zoo on target (45 samples)")
    # The same experiment again: every prediction comes from the cache.
    second = run_to_end(client, body)
    assert second["result"]["cache"]["computed"] == 0
    assert second["result"]["top"] == result["top"]
    assert sorted(leftovers(settings)) == sorted([repo["id"], data["id"]])


def test_csv_dataset_in_a_zip_and_a_dataset_whose_classes_fit_no_model(
    client: TestClient, onnx_files: dict[str, bytes]
) -> None:
    rows = "path,label\n" + "".join(f"img/{i}.png,{'ab'[i % 2]}\n" for i in range(6))
    files = {"labels.csv": rows.encode()} | {f"img/{i}.png": png(i) for i in range(6)}
    r = upload(client, "datasets", zip_bytes(files))
    assert r.status_code == 201, r.text
    assert (r.json()["n_samples"], r.json()["classes"]) == (6, ["a", "b"])
    repo = upload(client, "repositories", zip_bytes(onnx_files)).json()
    strangers = upload(
        client, "datasets", zip_bytes(image_folder_files(6, classes=("cat", "dog")))
    ).json()
    r = client.post(
        "/api/experiments",
        json={"repository": repo["id"], "dataset": strangers["id"], "use_case": USE_CASE},
    )
    assert r.status_code == 400
    assert "'cat', 'dog'" in r.json()["detail"] and "a, b, c" in r.json()["detail"]
    missing = client.post("/api/experiments", json={"repository": repo["id"], "use_case": USE_CASE})
    assert missing.status_code == 400 and "needs a target dataset" in missing.json()["detail"]
    unknown = client.post(
        "/api/experiments",
        json={"repository": repo["id"], "dataset": "d-nope", "use_case": USE_CASE},
    )
    assert unknown.status_code == 404


def _bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("classes.txt", "a\n")
        zf.writestr("model.onnx", b"\0" * (4 << 20))  # 4 MB of zeros: ~4 KB compressed
    return buf.getvalue()


def _manifest(model: str, extra: dict[str, bytes] | None = None) -> bytes:
    text = '[repository]\nname = "m"\nclasses = ["a", "b"]\n[[models]]\nname = "x"\n' + model
    return zip_bytes({"manifest.toml": text.encode(), **(extra or {})})


REPOSITORY_REFUSALS = [
    ("not a zip", b"this is text", "not a zip archive"),
    ("dot-dot", zip_bytes({"../evil.onnx": b"x"}), "points outside the archive"),
    ("absolute", zip_bytes({"/tmp/evil.onnx": b"x"}), "absolute path"),
    ("symlink", zip_bytes({"classes.txt": b"a\n"}, symlinks={"m.onnx": "/etc/passwd"}),
     "symbolic link"),
    ("too many files", zip_bytes({f"f{i}.txt": b"x" for i in range(60)}), "more than 50 entries"),
    ("zip bomb", _bomb(), "zip bomb"),
    ("corrupt onnx", zip_bytes({"classes.txt": b"a\nb\nc\n", "broken.onnx": b"not a model"}),
     "broken.onnx: not a readable ONNX model"),
    ("no classes", zip_bytes({"m.onnx": b"x"}), "no classes.txt"),
    ("nothing", b"PK\x05\x06" + b"\0" * 18, "the zip archive is empty"),
    ("nothing known", zip_bytes({"readme.md": b"hello"}), "neither a manifest.toml nor .onnx"),
    ("trust", _manifest('format = "torch_state_dict"\npath = "w.pt"\ntrust = true\n',
                        {"w.pt": b"x"}), "sets trust = true"),
    ("torchscript", _manifest('format = "torchscript"\npath = "w.pt"\n', {"w.pt": b"x"}),
     "format torchscript, which uploads cannot use"),
    ("builder", _manifest('format = "torch_state_dict"\npath = "w.pt"\nbuilder = "os:system"\n',
                          {"w.pt": b"x"}), "builder 'os:system' is not on this server's list"),
    ("path outside", _manifest('format = "onnx"\npath = "/etc/passwd"\n'),
     "must be a relative path inside the zip"),
    ("empty", b"", "the upload is empty"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "words"),
    [pytest.param(c, w, id=i) for i, c, w in REPOSITORY_REFUSALS],
)
def test_bad_repository_uploads_are_refused_and_leave_nothing(
    client: TestClient, settings: WebSettings, content: bytes, words: str
) -> None:
    r = upload(client, "repositories", content)
    assert r.status_code in (400, 413), r.text
    assert words in r.json()["detail"]
    assert str(settings.data_dir) not in r.json()["detail"]  # no server paths in messages
    assert leftovers(settings) == []
    assert "uploaded" not in {x["kind"] for x in client.get("/api/repositories").json()}


DATASET_REFUSALS = [
    ("csv alone", "labels.csv", b"path,label\na.png,a\n", 400, "must come in a zip"),
    ("undecodable", "d.zip", zip_bytes({"a/1.png": png(1), "b/2.png": b"\x89PNG broken"}), 400,
     "2.png: not a readable image"),
    ("csv outside", "d.zip", zip_bytes({"l.csv": b"path,label\n../../etc/passwd,a\n"}), 400,
     "must be a relative path inside the zip"),
    ("csv absolute", "d.zip", zip_bytes({"l.csv": b"path,label\n/etc/passwd,a\n"}), 400,
     "must be a relative path inside the zip"),
    ("unknown layout", "d.zip", zip_bytes({"readme.txt": b"hi"}), 400,
     "the zip holds no dataset GreenRunner knows"),
    ("empty class", "d.zip", zip_bytes({"a/1.png": png(1), "b/notes.txt": b"x"}), 400,
     "class 'b' has no images"),
    ("too big", "d.zip", zip_bytes({"a/noise.png": np.random.default_rng(0).bytes(9 << 20)}),
     413, "over the limit of 8 MB"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content", "status", "words"),
    [pytest.param(n, c, s, w, id=i) for i, n, c, s, w in DATASET_REFUSALS],
)
def test_bad_dataset_uploads_are_refused_and_leave_nothing(
    client: TestClient, settings: WebSettings, name: str, content: bytes, status: int, words: str
) -> None:
    r = upload(client, "datasets", content, name)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    assert leftovers(settings) == []


def test_the_service_enforces_the_size_limit_while_copying(tmp_path: Path) -> None:
    """Without the HTTP layer (a body sent without a length): the copy stops at the limit."""
    from greenrunner.web.service import Service, TooLarge

    service = Service(WebSettings(data_dir=tmp_path, max_upload_bytes=1 << 20), start_workers=False)
    try:
        started = time.monotonic()
        with pytest.raises(TooLarge, match="over the limit of 1 MB"):
            service.add_dataset_zip("big.zip", io.BytesIO(b"\0" * (3 << 20)))
        assert time.monotonic() - started < 5
        assert list((tmp_path / "uploads").iterdir()) == []
    finally:
        service.close()


def test_an_entry_larger_than_it_declares_is_stopped(tmp_path: Path) -> None:
    from greenrunner.errors import DataError
    from greenrunner.web.archive import safe_extract

    archive = tmp_path / "lie.zip"
    archive.write_bytes(zip_bytes({"a.bin": b"x" * 5000}))
    data = bytearray(archive.read_bytes())
    # Forge the sizes in the central directory: 5000 bytes claim to be 10.
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24 : cd + 28] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(data))
    (tmp_path / "out").mkdir()
    with pytest.raises(DataError, match=r"more than it declares|damaged"):
        safe_extract(archive, tmp_path / "out", max_bytes=1 << 20, max_files=10, max_ratio=200)


def test_the_demo_zoo_is_built_by_the_run_not_the_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, onnx_files: dict[str, bytes]
) -> None:
    """The bundled real repository, with a stand-in for the minute-long training: it is
    listed before it exists, built by the background run, and counted once built."""
    import greenrunner.demo.build as build

    folder = tmp_path / "demo"
    builds: list[Path] = []

    def fake_build(*, progress: bool = True) -> Path:
        for name, data in {**onnx_files, **image_folder_files(30, prefix="target/")}.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        (folder / "manifest.toml").write_text(
            "[repository]\nclasses_file = 'classes.txt'\n"
            + "".join(f"[[models]]\nname = '{m}'\nformat = 'onnx'\npath = '{m}.onnx'\n"
                      for m in ("mlp", "cnn"))
        )  # fmt: skip
        builds.append(folder)
        return folder

    monkeypatch.setattr(build, "demo_dir", lambda: folder)
    monkeypatch.setattr(build, "ensure_demo", fake_build)
    settings = WebSettings(data_dir=tmp_path / "web", progress_interval=0.0)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        demo = {r["id"]: r for r in client.get("/api/repositories").json()}["digits-demo"]
        assert (demo["kind"], demo["n_models"], demo["default_dataset"]) == (
            "bundled-real", None, "digits-demo-target",
        )  # fmt: skip
        assert builds == []
        done = run_to_end(client, {"repository": "digits-demo", "budget": 0.5})
        assert done["status"] == "done", done["error"]
        assert builds == [folder] and done["dataset"] == "digits-demo-target"
        demo = {r["id"]: r for r in client.get("/api/repositories").json()}["digits-demo"]
        assert demo["n_models"] == 2
        target = {d["id"]: d for d in client.get("/api/datasets").json()}["digits-demo-target"]
        assert (target["n_samples"], target["classes"]) == (30, ["a", "b", "c"])


def test_stopping_the_server_interrupts_a_run_at_once_and_resume_finishes_it(
    tmp_path: Path,
) -> None:
    from tests.web_helpers import gated_manifest_files

    gate = tmp_path / "slow"
    gate.touch()
    settings = WebSettings(
        data_dir=tmp_path / "web", progress_interval=0.0, builders=("tests.web_helpers:gated",)
    )
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        files = gated_manifest_files(gate, 0.05, n_models=2)
        repo = upload(client, "repositories", zip_bytes(files)).json()
        data = upload(client, "datasets", zip_bytes(image_folder_files(60))).json()
        body = {"repository": repo["id"], "dataset": data["id"], "use_case": USE_CASE,
                "strategy": "uniform", "budget": 1.0}  # fmt: skip
        eid = client.post("/api/experiments", json=body).json()["id"]
        client.post(f"/api/experiments/{eid}/run")
        wait_until(
            lambda: dict(client.get(f"/api/experiments/{eid}").json()),
            lambda e: e["progress"]["done_calls"] > 0,
        )
    # The client's exit is the server's shutdown: the run stops at its next round.
    gate.unlink()
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        stopped = client.get(f"/api/experiments/{eid}").json()
        assert stopped["status"] == "interrupted" and stopped["progress"]["phase"] == "interrupted"
        client.post(f"/api/experiments/{eid}/resume")
        done = wait_until(
            lambda: dict(client.get(f"/api/experiments/{eid}").json()),
            lambda e: e["status"] != "running",
        )
        assert done["status"] == "done", done["error"]
        assert done["result"]["cache"]["served"] >= stopped["progress"]["done_calls"]


@pytest.mark.parametrize(
    ("classes", "words"),
    [
        (b"\xff\xfe\x00bad", "the class list is not UTF-8 text (it looks like UTF-16)"),
        (b"a\nb\n", "gives 3 scores per image, but 2 classes are listed"),
    ],
)
def test_a_class_list_that_does_not_fit_the_models_is_refused(
    client: TestClient,
    settings: WebSettings,
    onnx_files: dict[str, bytes],
    classes: bytes,
    words: str,
) -> None:
    r = upload(client, "repositories", zip_bytes({**onnx_files, "classes.txt": classes}))
    assert r.status_code == 400, r.text
    assert words in r.json()["detail"]
    assert leftovers(settings) == []
