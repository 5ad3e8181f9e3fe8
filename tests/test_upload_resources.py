"""Issue 11, red team 3a, 3b and 5: what checking an uploaded repository may cost the
server. Input sizes are bounded; the models are loaded and run in a child process with a
memory and a time limit, so a graph or builder that asks for gigabytes is refused (413)
and the server never allocates them; that child has no network and none of the server's
secrets; torch builders are built on the meta device first, so builder arguments that ask
for a huge model are refused before anything is allocated (on the command line too);
torchvision weights load only from the torch cache, and refusals name no server path.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("torch")
pytest.importorskip("torchvision")

import torch
import torchvision
from fastapi.testclient import TestClient
from onnx import TensorProto, helper

from greenrunner.web.app import create_app
from greenrunner.web.settings import WebSettings
from tests import torch_models
from tests.live_server import LiveServer, multipart
from tests.web_helpers import zip_bytes

ROOT = Path(__file__).resolve().parents[1]
MB = 1 << 20
CLASSES = b"a\nb\nc\n"


def _client(tmp_path: Path, **settings: Any) -> TestClient:
    config = WebSettings(data_dir=tmp_path / "web", progress_interval=0.0, **settings)
    return TestClient(create_app(config), base_url="http://127.0.0.1")


def _upload(client: TestClient, content: bytes) -> Any:
    return client.post("/api/repositories", files={"file": ("r.zip", content, "application/zip")})


def _refused(reply: Any, status: int, *words: str) -> str:
    assert reply.status_code == status, reply.text
    detail = str(reply.json()["detail"])
    for word in words:
        assert word in detail, detail
    return detail


def _graph(nodes: list[Any], inits: list[Any], dims: list[Any], out: list[Any]) -> bytes:
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, out)
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def mean_onnx() -> bytes:
    """Three scores for any input size: the mean over H and W of each channel."""
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])
    node = helper.make_node("ReduceMean", ["image", "axes"], ["logits"], keepdims=0)
    return _graph([node], [axes], ["N", 3, "H", "W"], ["N", 3])


def constant_bomb_onnx(side: int) -> bytes:
    """A few hundred bytes whose run allocates a 3 x side x side float tensor."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1, 3, side, side])
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])
    one = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], value=one),
        helper.make_node("ReduceMean", ["big", "axes"], ["logits"], keepdims=0),
    ]
    return _graph(nodes, [shape, axes], ["N", 3, 8, 8], [1, 3])


def _state_dict_zip(builder: str, args: str, weights: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    torch.save({}, buf)
    manifest = (
        f'[[models]]\nname = "b"\nformat = "torch_state_dict"\npath = "w.pt"\n'
        f'builder = "{builder}"\nbuilder_args = {args}\nclasses = ["a", "b", "c"]\n'
        "[models.preprocessing]\nsize = [8, 8]\nchannels = 1\n"
    )
    return zip_bytes({"manifest.toml": manifest.encode(), "w.pt": weights or buf.getvalue()})


# A model that is accepted: the mean model with its size in a sidecar.
FITS = zip_bytes({"m.onnx": mean_onnx(), "classes.txt": CLASSES, "m.json": b'{"size": [8, 8]}'})


# --- 3a: input sizes ----------------------------------------------------------------------
SIZE_REFUSALS = [
    ("sidecar size", {"m.json": {"size": [9000, 9000]}}, "input size 9000 x 9000"),
    ("sidecar resize", {"m.json": {"size": [224, 224], "resize": 15000}}, "resize 15000"),
    ("upload limit", {"m.json": {"size": [3000, 3000]}}, "for uploaded models"),
]


@pytest.mark.parametrize(
    ("sidecar", "words"), [pytest.param(s, w, id=i) for i, s, w in SIZE_REFUSALS]
)
def test_an_uploaded_input_size_over_the_limit_is_refused(
    tmp_path: Path, sidecar: dict[str, Any], words: str
) -> None:
    files = {"m.onnx": mean_onnx(), "classes.txt": CLASSES}
    files.update({k: json.dumps(v).encode() for k, v in sidecar.items()})
    with _client(tmp_path) as client:
        _refused(_upload(client, zip_bytes(files)), 400, "model 'm'", words, "over the limit")


def test_a_manifest_input_size_over_the_limit_is_refused(tmp_path: Path) -> None:
    manifest = (
        '[[models]]\nname = "wide"\nformat = "onnx"\npath = "m.onnx"\n'
        'classes = ["a", "b", "c"]\n[models.preprocessing]\nsize = [2048, 4096]\n'
    )
    content = zip_bytes({"manifest.toml": manifest.encode(), "m.onnx": mean_onnx()})
    with _client(tmp_path) as client:
        _refused(_upload(client, content), 400, "model 'wide'", "2048 x 4096", "4,194,304")


# --- 3b: the check process's limits -------------------------------------------------------
def test_a_graph_that_needs_more_than_the_memory_limit_is_refused(tmp_path: Path) -> None:
    content = zip_bytes({"m.onnx": constant_bomb_onnx(6000), "classes.txt": CLASSES})  # 432 MB
    with _client(tmp_path, check_memory_bytes=200 * MB) as client:
        _refused(_upload(client, content), 413, "model 'm' needs more memory", "200 MB")
        # a model that fits is accepted by the same server
        assert _upload(client, FITS).status_code == 201


def test_a_check_over_its_time_limit_is_stopped(tmp_path: Path) -> None:
    gate = tmp_path / "slow"
    gate.write_text("")
    buf = io.BytesIO()
    from tests.web_helpers import gated

    torch.save(gated().state_dict(), buf)
    content = _state_dict_zip(
        "tests.web_helpers:gated", f'{{ gate = "{gate}", delay = 120.0 }}', buf.getvalue()
    )
    settings = {"check_seconds": 3.0, "builders": ("tests.web_helpers:gated",)}
    with _client(tmp_path, **settings) as client:
        _refused(_upload(client, content), 400, "model 'b'", "took longer", "3 s")


def test_a_builder_asking_for_a_huge_model_is_refused_before_it_is_built(
    tmp_path: Path,
) -> None:
    content = _state_dict_zip("torchvision.models:resnet18", "{ num_classes = 500000 }")
    with _client(tmp_path) as client:
        _refused(_upload(client, content), 400, "nothing was built", "267,686,132 parameters")


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module on the path whose builder records what the check process can reach."""
    folder = tmp_path / "planted"
    folder.mkdir()
    name = f"gr_reach_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import json, os, socket
            from torch import nn

            def build(report: str, port: int) -> nn.Module:
                seen = {"env": sorted(k for k in os.environ if "TOKEN" in k or "KEY" in k)}
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=2).close()
                    seen["network"] = "connected"
                except OSError as exc:
                    seen["network"] = str(exc)
                with open(report, "a") as f:
                    f.write(json.dumps(seen) + "\\n")
                return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
            """
        )
    )
    monkeypatch.syspath_prepend(str(folder))
    yield name
    sys.modules.pop(name, None)


def test_the_check_process_has_no_network_and_no_secrets(
    tmp_path: Path, planted: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENRUNNER_TOKEN", "a-secret-token-0123456789")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-for-uploads")
    report = tmp_path / "report.jsonl"
    weights = io.BytesIO()
    torch.save(
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)).state_dict(), weights
    )
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        args = f'{{ report = "{report}", port = {port} }}'
        content = _state_dict_zip(f"{planted}:build", args, weights.getvalue())
        with _client(tmp_path, builders=(f"{planted}:*",)) as client:
            assert _upload(client, content).status_code == 201
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody connected
    seen = [json.loads(line) for line in report.read_text().splitlines()]
    assert seen, "the builder did not run"
    for entry in seen:
        assert entry["env"] == []
        assert "may not use the network" in entry["network"]


def test_died_reports_the_model_and_the_limit() -> None:
    from greenrunner.errors import DataError
    from greenrunner.web.archive import UploadTooLarge
    from greenrunner.web.modelcheck import CheckLimits, _died

    limits = CheckLimits(memory_bytes=512 * MB, seconds=10)
    with pytest.raises(UploadTooLarge, match=r"model 'm'.*SIGKILL.*512 MB"):
        _died(-9, "m", limits)
    with pytest.raises(DataError, match=r"model 'm' crashed \(SIGSEGV\)"):
        _died(-11, "m", limits)


# --- the command line: a meta build before the real one -----------------------------------
def test_builder_arguments_for_a_huge_model_fail_without_allocating_it(tmp_path: Path) -> None:
    """resnet18 with 5,000,000 classes is 10 GB of parameters: refused under a 1 GB
    limit on new allocations, by comparing the meta build with the state_dict."""
    torch.save({}, tmp_path / "w.pt")
    script = textwrap.dedent(
        f"""
        import resource
        from pathlib import Path
        import torch, torchvision
        from greenrunner.adapters.base import ModelSpec, load_adapter
        from greenrunner.evaluation.base import EvaluationError
        from greenrunner.preprocessing import Preprocessing

        def data():
            for line in open("/proc/self/status"):
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024

        limit = data() + (1 << 30)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.RLIM_INFINITY))
        spec = ModelSpec(
            "b", "torch_state_dict", path=Path({str(tmp_path / "w.pt")!r}),
            builder="torchvision.models:resnet18", builder_args={{"num_classes": 5_000_000}},
            preprocessing=Preprocessing(size=(8, 8)), classes=("a", "b"),
        )
        try:
            load_adapter(spec)
        except EvaluationError as exc:
            print(exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "nothing was built" in done.stdout and "fc.weight" in done.stdout, done.stdout


class MetaShy(torch.nn.Module):
    """A builder that cannot be built on the meta device (it reads a value at build time)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(64, 3)
        self.scale = float(torch.ones(1).sum().item())  # .item() fails on meta tensors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(x.flatten(1)) * self.scale
        return out


def test_a_builder_that_cannot_build_on_meta_is_built_for_real(tmp_path: Path) -> None:
    import numpy as np

    from greenrunner.adapters.base import ModelSpec, load_adapter
    from greenrunner.preprocessing import Preprocessing

    torch.save(MetaShy().state_dict(), tmp_path / "w.pt")
    spec = ModelSpec(
        "shy",
        "torch_state_dict",
        path=tmp_path / "w.pt",
        builder="tests.test_upload_resources:MetaShy",
        preprocessing=Preprocessing(size=(8, 8), channels=1),
        classes=("a", "b", "c"),
    )
    assert load_adapter(spec).predict(np.zeros((2, 1, 8, 8), np.float32)).shape == (2, 3)
    # and the meta comparison names what does not fit, for a builder that does build there
    torch.save(torch_models.mlp(16).state_dict(), tmp_path / "mlp.pt")
    wrong = ModelSpec(
        "mlp",
        "torch_state_dict",
        path=tmp_path / "mlp.pt",
        builder="tests.torch_models:mlp",
        builder_args={"width": 32},
        preprocessing=Preprocessing(size=(8, 8), channels=1),
    )
    from greenrunner.evaluation.base import EvaluationError

    with pytest.raises(EvaluationError, match=r"1\.weight is 16 x 64 in the file, 32 x 64"):
        load_adapter(wrong)


# --- 5: no downloads, no server paths --------------------------------------------------------
TORCHVISION_MANIFEST = (
    b'[[models]]\nname = "r"\nformat = "torchvision"\nbuilder = "resnet18"\n'
    b'weights = "IMAGENET1K_V1"\n'
)


def test_an_uploaded_torchvision_model_loads_only_cached_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch_home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    checkpoints = torch_home / "hub" / "checkpoints"
    content = zip_bytes({"manifest.toml": TORCHVISION_MANIFEST})
    with _client(tmp_path) as client:
        detail = _refused(
            _upload(client, content),
            400,
            "model 'r'",
            "not in this server's torch cache",
            "pre-fetch",
            "resnet18-f37072fd.pth",
        )
        assert str(tmp_path) not in detail and "checkpoints" not in detail
        assert not checkpoints.exists() or not any(checkpoints.iterdir())  # nothing fetched
        # once the operator has put the file in the cache, the same upload is accepted
        checkpoints.mkdir(parents=True)
        torch.save(
            torchvision.models.resnet18().state_dict(), checkpoints / "resnet18-f37072fd.pth"
        )
        assert _upload(client, content).status_code == 201


@pytest.mark.parametrize("arg", ["pretrained = true", 'weights = "DEFAULT"'])
def test_builder_arguments_that_download_are_refused(tmp_path: Path, arg: str) -> None:
    content = _state_dict_zip("torchvision.models:resnet18", f"{{ {arg} }}")
    with _client(tmp_path) as client:
        _refused(_upload(client, content), 400, "would make torchvision download weights")


def test_messages_name_no_server_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from greenrunner.web.uploads import _relative

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    staging = tmp_path / "web" / "uploads" / ".incoming-r-1"
    text = (
        f"cannot load {staging}/sub/m.onnx; the cache copy {tmp_path}/home/.cache/torch/x.pth "
        "is broken; '/etc/passwd' is not allowed; see https://example.org/a/b.html"
    )
    out = _relative(text, staging)
    assert str(tmp_path) not in out
    assert "sub/m.onnx" in out and ".../x.pth" in out
    assert "'/etc/passwd'" in out and "https://example.org/a/b.html" in out  # the upload's own


# --- a real server --------------------------------------------------------------------------
def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field}")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_a_real_server_refuses_memory_bombs_without_allocating_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # an empty torch cache
    server = LiveServer(tmp_path, "--check-memory-mb", "300", "--check-seconds", "120")

    def upload(files: dict[str, bytes] | bytes) -> tuple[int, str]:
        content = files if isinstance(files, bytes) else zip_bytes(files)
        body, kind = multipart({}, {"file": ("r.zip", content)})
        reply = server.request("POST", "/api/repositories", body, {"Content-Type": kind})
        return reply.status, reply.text

    try:
        assert upload(FITS)[0] == 201
        before = _status(server.proc.pid, "VmHWM")
        status, text = upload({"m.onnx": constant_bomb_onnx(16000), "classes.txt": CLASSES})
        assert status == 413 and "model 'm' needs more memory" in text, text  # 3 GB asked
        status, text = upload(
            {
                "m.onnx": mean_onnx(),
                "classes.txt": CLASSES,
                "m.json": json.dumps({"size": [10000, 10000]}).encode(),
            }
        )
        assert status == 400 and "10000 x 10000" in text, text
        status, text = upload({"manifest.toml": TORCHVISION_MANIFEST})
        assert status == 400 and "torch cache" in text, text
        grown = _status(server.proc.pid, "VmHWM") - before
        assert grown < 1024 * MB, f"the server's peak grew by {grown / MB:.0f} MB"
        assert upload(FITS)[0] == 201  # still up
    finally:
        server.stop()
