"""Zips the web app's tests upload (ONNX repositories, manifests, ImageFolders, CSVs), a
model that can be slowed down from outside (to stop a server mid-run), and polling."""

from __future__ import annotations

import io
import stat
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ("a", "b", "c")


def zip_bytes(files: Mapping[str, bytes], *, symlinks: Mapping[str, str] | None = None) -> bytes:
    """A zip of ``files`` (name -> content); ``symlinks`` adds link entries (name -> target)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def png(seed: int, size: int = 10) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


def image_folder_files(
    n: int = 30, classes: tuple[str, ...] = CLASSES, prefix: str = "target/"
) -> dict[str, bytes]:
    """``prefix<class>/<i>.png``: n small RGB noise photos spread over the classes."""
    return {f"{prefix}{classes[i % len(classes)]}/{i:03d}.png": png(i) for i in range(n)}


def onnx_repository_files(
    folder: Path, names: tuple[str, ...] = ("mlp", "cnn")
) -> dict[str, bytes]:
    """Tiny ONNX classifiers (8x8 grey input, 3 classes) with classes.txt, as zip entries."""
    from tests import torch_models
    from tests.onnx_models import export

    folder.mkdir(parents=True, exist_ok=True)
    makers = {"mlp": lambda: torch_models.mlp(8), "cnn": lambda: torch_models.cnn(4)}
    files = {"classes.txt": ("\n".join(CLASSES) + "\n").encode()}
    for name in names:
        path = export(makers[name](), folder / f"{name}.onnx", (1, 1, 8, 8))
        files[f"{name}.onnx"] = path.read_bytes()
    return files


def gated(gate: str = "", delay: float = 0.0, seed: int = 0) -> Any:
    """A small linear classifier on 8x8 grey images whose forward pass sleeps ``delay``
    seconds while the file ``gate`` exists: a test can keep a real run going long enough
    to stop the server in the middle of it, then let the resumed run go at full speed."""
    import torch
    from torch import nn

    class GatedNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.head = nn.Linear(64, len(CLASSES))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if gate and Path(gate).exists():
                time.sleep(delay)
            out: torch.Tensor = self.head(x.flatten(1))
            return out

    return GatedNet()


def gated_manifest_files(gate: Path, delay: float, n_models: int = 3) -> dict[str, bytes]:
    """A manifest repository of ``n_models`` gated nets (state_dicts) with classes.txt."""
    import torch

    files = {"classes.txt": ("\n".join(CLASSES) + "\n").encode()}
    lines = ['[repository]\nname = "gated"\nclasses_file = "classes.txt"\n']
    for k in range(n_models):
        buf = io.BytesIO()
        torch.save(gated(seed=k).state_dict(), buf)
        files[f"weights/net{k}.pt"] = buf.getvalue()
        lines.append(
            f'[[models]]\nname = "net{k}"\nformat = "torch_state_dict"\n'
            f'path = "weights/net{k}.pt"\nbuilder = "tests.web_helpers:gated"\n'
            f'builder_args = {{ gate = "{gate}", delay = {delay}, seed = {k} }}\n'
            "[models.preprocessing]\nsize = [8, 8]\nchannels = 1\n"
        )
    files["manifest.toml"] = "\n".join(lines).encode()
    return files


def wait_until(
    fetch: Callable[[], dict[str, Any]],
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 60.0,
    every: float = 0.05,
) -> dict[str, Any]:
    """Poll ``fetch`` until ``done`` holds for its answer; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting; last answer: {value}")
        time.sleep(every)
