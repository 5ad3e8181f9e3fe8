"""Tiny torch models exported to ONNX for the tests (legacy exporter: no onnxscript)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from tests import torch_models


def export(
    model: nn.Module,
    path: Path,
    shape: tuple[int, ...],
    *,
    dynamic: dict[int, str] | None = None,
) -> Path:
    """Write ``model`` to ``path`` for an input of ``shape``; ``dynamic`` names the input
    axes left symbolic (the batch by default; an empty dict fixes every axis)."""
    model.eval()
    axes = {0: "batch"} if dynamic is None else dynamic
    with warnings.catch_warnings():  # the legacy exporter warns that it is legacy
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(shape),),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": axes, "logits": {0: "batch"}} if axes else None,
            dynamo=False,
        )
    return path


def mlp_onnx(folder: Path, name: str = "mlp", dynamic: dict[int, str] | None = None) -> Path:
    """tests.torch_models.mlp(16) on 1 x 8 x 8 grey images."""
    return export(torch_models.mlp(16), folder / f"{name}.onnx", (1, 1, 8, 8), dynamic=dynamic)


def cnn_onnx(folder: Path, name: str = "cnn", dynamic: dict[int, str] | None = None) -> Path:
    """tests.torch_models.cnn(4) on 1 x 8 x 8 grey images."""
    return export(torch_models.cnn(4), folder / f"{name}.onnx", (1, 1, 8, 8), dynamic=dynamic)


class Nhwc(nn.Module):
    """Takes N x H x W x 3 (a TensorFlow-style export) and classifies into 3."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1, groups=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.permute(0, 3, 1, 2)).relu().mean(dim=(2, 3))
        return self.head(y)  # type: ignore[no-any-return]


class Mixed(nn.Module):
    """Grouped conv, transposed conv and a batched matmul, for exact MAC counts."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(4, 8, (3, 1), padding=(1, 0), groups=2, bias=False)  # 8x8 out
        self.up = nn.ConvTranspose2d(8, 2, 2, stride=2)  # 8x8 -> 16x16
        self.proj = nn.Parameter(torch.randn(16, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up(self.conv(x))  # 1 x 2 x 16 x 16
        z = torch.matmul(y, self.proj)  # batched: (1, 2) x (16 x 16 @ 16 x 5)
        return z.flatten(1)


def mixed_macs() -> int:
    conv = (8 * 8 * 8) * (4 // 2) * 3  # output elements x (C_in / groups) x kernel
    up = (8 * 8 * 8) * 2 * (2 * 2)  # input elements x (C_out / groups) x kernel
    matmul = 2 * 16 * 16 * 5
    return conv + up + matmul
