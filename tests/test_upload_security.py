"""Uploaded manifests against the server (issue 11, items 1 and 4): a builder off the
server's list is refused before its module is imported, and so is a builder that is on the
list only by prefix; a path that could leave the upload (``~``, absolute, ``..``, a
backslash walk, ONNX external data outside) is refused on the same path the loader opens.
Each hostile upload would leave a marker file if it ran anything; none may.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from fastapi.testclient import TestClient  # noqa: E402

from greenrunner.web.app import create_app  # noqa: E402
from greenrunner.web.settings import WebSettings  # noqa: E402
from tests import torch_models  # noqa: E402
from tests.web_helpers import onnx_repository_files, zip_bytes  # noqa: E402

EXPLOIT = "torchvision.models:resnet.torch.serialization.os.system"
Plant = Callable[[str], str]


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


@pytest.fixture
def plant(tmp_path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Plant]:
    """``plant(source)`` -> a fresh importable module's name (``{marker}`` in the source is
    the marker file)."""
    folder = tmp_path / "planted"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    names: list[str] = []

    def make(source: str) -> str:
        name = f"gr_upload_{uuid.uuid4().hex[:10]}"
        text = textwrap.dedent(source).replace("{marker}", str(marker))
        (folder / f"{name}.py").write_text(text)
        names.append(name)
        return name

    yield make
    for name in names:
        sys.modules.pop(name, None)


def _client(tmp_path: Path, builders: tuple[str, ...] = ()) -> TestClient:
    settings = WebSettings(data_dir=tmp_path / "web", progress_interval=0.0, builders=builders)
    return TestClient(create_app(settings), base_url="http://127.0.0.1")


def _upload(client: TestClient, content: bytes) -> Any:
    r = client.post("/api/repositories", files={"file": ("r.zip", content, "application/zip")})
    return r


def _weights() -> bytes:
    buf = io.BytesIO()
    torch.save(torch_models.mlp(16).state_dict(), buf)
    return buf.getvalue()


def _state_dict_zip(builder: str, args: str = "{}", *, fmt: str = "torch_state_dict") -> bytes:
    manifest = (
        '[repository]\nname = "r"\nclasses = ["a", "b", "c"]\n'
        f'[[models]]\nname = "m"\nformat = "{fmt}"\npath = "w.pt"\n'
        f"builder = {builder!r}\nbuilder_args = {args}\n"
        "[models.preprocessing]\nsize = [8, 8]\nchannels = 1\n"
    )
    return zip_bytes({"manifest.toml": manifest.encode(), "w.pt": _weights()})


def _refused(r: Any, words: str) -> str:
    assert r.status_code == 400, r.text
    detail = str(r.json()["detail"])
    assert words in detail, detail
    return detail


# --- builders ---------------------------------------------------------------------------------
def test_the_issues_exploit_upload_runs_no_command(tmp_path: Path, marker: Path) -> None:
    with _client(tmp_path) as client:
        r = _upload(client, _state_dict_zip(EXPLOIT, f'{{ command = "touch {marker}" }}'))
        _refused(r, "attribute of an attribute")
    assert not marker.exists()


@pytest.mark.parametrize(
    "builder",
    [
        "torchvision.models:get_weight",  # in torchvision.models, but no model builder
        "torchvision.models:fasterrcnn_resnet50_fpn",  # a builder, but not a classifier
        "torchvision.models:resnet18.__globals__",
        "greenrunner.demo.zoo:Recipe",
        "subprocess:run",
        "builtins:exec",
    ],
)
def test_an_upload_names_only_builders_on_the_list(
    tmp_path: Path, marker: Path, builder: str
) -> None:
    with _client(tmp_path) as client:
        r = _upload(client, _state_dict_zip(builder, f'{{ args = ["touch", "{marker}"] }}'))
        detail = _refused(r, f"model 'm': builder '{builder}'")
    assert "not on this server's list" in detail or "attribute of an attribute" in detail
    assert not marker.exists()


def test_a_name_that_only_starts_like_an_allowed_one_is_refused(
    tmp_path: Path, marker: Path, plant: Plant
) -> None:
    module = plant(
        """
        from pathlib import Path
        from tests.torch_models import mlp

        def build(width=16):
            return mlp(width)

        def build_evil(**kw):
            Path("{marker}").touch()
        """
    )
    with _client(tmp_path, (f"{module}:build",)) as client:
        r = _upload(client, _state_dict_zip(f"{module}:build_evil"))
        _refused(r, "not on this server's list")
        assert not marker.exists()
        ok = _upload(client, _state_dict_zip(f"{module}:build", "{ width = 16 }"))
        assert ok.status_code == 201, ok.text


def test_a_module_the_list_does_not_name_is_never_imported(
    tmp_path: Path, marker: Path, plant: Plant
) -> None:
    module = plant('from pathlib import Path\nPath("{marker}").touch()\ndef build(): pass\n')
    with _client(tmp_path, ("tests.web_helpers:gated",)) as client:
        _refused(_upload(client, _state_dict_zip(f"{module}:build")), "not on this server's list")
    assert module not in sys.modules and not marker.exists()


def test_a_module_star_allows_its_builders_under_the_object_rules(
    tmp_path: Path, marker: Path, plant: Plant
) -> None:
    module = plant(
        """
        from pathlib import Path
        from tests.torch_models import mlp

        def build(width=16):
            return mlp(width)

        lam = lambda **kw: Path("{marker}").touch()
        """
    )
    with _client(tmp_path, (f"{module}:*",)) as client:
        ok = _upload(client, _state_dict_zip(f"{module}:build", "{ width = 16 }"))
        assert ok.status_code == 201, ok.text
        _refused(_upload(client, _state_dict_zip(f"{module}:lam")), "under another name")
        _refused(_upload(client, _state_dict_zip(f"{module}:mlp")), "is defined in tests.")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("fmt", "builder", "words"),
    [
        ("onnx", "os:system", "format onnx takes no builder"),
        ("torchvision", "fasterrcnn_resnet50_fpn", "not one of torchvision's classification"),
        ("torchvision", "resnet18.__class__", "not one of torchvision's classification"),
    ],
)
def test_formats_built_by_name_take_only_their_own_names(
    tmp_path: Path, fmt: str, builder: str, words: str
) -> None:
    with _client(tmp_path) as client:
        _refused(_upload(client, _state_dict_zip(builder, fmt=fmt)), words)


def test_an_upload_cannot_make_torchvision_download_weights(tmp_path: Path) -> None:
    content = _state_dict_zip("torchvision.models:resnet18", '{ weights = "IMAGENET1K_V1" }')
    with _client(tmp_path) as client:
        _refused(_upload(client, content), "builder_args weights would make torchvision download")


# --- paths ------------------------------------------------------------------------------------
@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The server's home folder, holding a working model an upload must not reach."""
    folder = tmp_path / "home"
    files = onnx_repository_files(tmp_path / "onnx", names=("mlp",))
    folder.mkdir()
    (folder / "secret.onnx").write_bytes(files["mlp.onnx"])
    monkeypatch.setenv("HOME", str(folder))
    return folder


def _onnx_manifest_zip(
    model: str, repository: str = 'classes = ["a", "b", "c"]', **extra: bytes
) -> bytes:
    manifest = (
        f'[repository]\nname = "r"\n{repository}\n'
        f'[[models]]\nname = "m"\nformat = "onnx"\n{model}\n'
    )
    return zip_bytes({"manifest.toml": manifest.encode(), **extra})


CLASSES = 'classes = ["a", "b", "c"]'
PATH_REFUSALS = [
    ("home", 'path = "~/secret.onnx"', CLASSES),
    ("home, missing file", 'path = "~/no-such.onnx"', CLASSES),
    ("other user's home", 'path = "~root/secret.onnx"', CLASSES),
    ("absolute", 'path = "/etc/passwd"', CLASSES),
    ("dot-dot", 'path = "sub/../../secret.onnx"', CLASSES),
    ("backslash walk", 'path = "sub\\\\..\\\\..\\\\secret.onnx"', CLASSES),
    ("drive letter", 'path = "C:secret.onnx"', CLASSES),
    ("model classes_file", 'path = "m.onnx"\nclasses_file = "~/classes.txt"', ""),
    ("repository classes_file", 'path = "m.onnx"', 'classes_file = "~/classes.txt"'),
]


@pytest.mark.parametrize(
    ("model", "repository"), [pytest.param(m, r, id=i) for i, m, r in PATH_REFUSALS]
)
def test_an_uploaded_manifest_reaches_no_server_file(
    tmp_path: Path, home: Path, model: str, repository: str
) -> None:
    (home / "classes.txt").write_text("a\nb\nc\n")
    files = onnx_repository_files(tmp_path / "onnx", names=("mlp",))
    content = _onnx_manifest_zip(model, repository, **{"m.onnx": files["mlp.onnx"]})
    with _client(tmp_path) as client:
        detail = _refused(_upload(client, content), "must be a relative path inside the zip")
    # The same answer whether or not the file exists: no server path, no oracle.
    assert str(home) not in detail and "not found" not in detail


def test_onnx_external_data_outside_the_upload_is_refused(tmp_path: Path) -> None:
    from tests.test_manifest_paths import _onnx_with_external

    model = _onnx_with_external(tmp_path / "m.onnx", "../../../outside.bin", "constant")
    content = zip_bytes({"classes.txt": b"a\nb\nc\n", "m.onnx": model.read_bytes()})
    with _client(tmp_path) as client:
        _refused(_upload(client, content), "m.onnx: external data: '../../../outside.bin'")


# --- a real server ----------------------------------------------------------------------------
@pytest.mark.slow
def test_a_real_server_refuses_the_exploit_and_home_paths(tmp_path: Path, home: Path) -> None:
    pytest.importorskip("uvicorn")
    from tests.test_web_api import Server

    marker = tmp_path / "pwned"
    env = {**os.environ, "GREENRUNNER_CACHE": str(tmp_path / "cache"), "HOME": str(home)}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")])
    env.pop("GREENRUNNER_TOKEN", None)
    server = Server(tmp_path / "web", env)
    try:
        exploit = _state_dict_zip(EXPLOIT, f'{{ command = "touch {marker}" }}')
        with pytest.raises(AssertionError, match="attribute of an attribute"):
            server.upload("/api/repositories", "evil.zip", exploit)
        with pytest.raises(AssertionError, match="must be a relative path inside the zip"):
            server.upload(
                "/api/repositories", "home.zip", _onnx_manifest_zip('path = "~/secret.onnx"')
            )
        assert server.call("GET", "/api/repositories")  # still serving
    finally:
        server.stop(signal.SIGTERM)
    assert not marker.exists()
