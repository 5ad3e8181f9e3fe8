"""Small real torch models for the tests: builders importable as tests.torch_models:NAME."""

from __future__ import annotations

import torch
from torch import nn


def mlp(width: int = 16, classes: int = 3, pixels: int = 64) -> nn.Module:
    """Flatten -> Linear(pixels, width) -> ReLU -> Linear(width, classes)."""
    torch.manual_seed(width)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(pixels, width), nn.ReLU(), nn.Linear(width, classes)
    )


def cnn(channels: int = 4, classes: int = 3) -> nn.Module:
    """Conv(1->channels, 3x3, pad 1) on 8x8 -> ReLU -> mean pool -> Linear(channels, classes)."""
    torch.manual_seed(channels)
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(channels, classes),
    )


class Constant(nn.Module):
    """Always predicts ``label`` (a model with a known accuracy)."""

    def __init__(self, label: int = 0, classes: int = 3) -> None:
        super().__init__()
        self.label, self.classes = label, classes
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], self.classes) * self.scale
        out[:, self.label] = 1.0
        return out


def constant(label: int = 0, classes: int = 3) -> nn.Module:
    return Constant(label, classes)


class Broken(nn.Module):
    def __init__(self, mode: str = "nan", classes: int = 3) -> None:
        super().__init__()
        self.mode, self.classes = mode, classes
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "raise":
            raise RuntimeError("boom")
        if self.mode == "shape":
            return torch.zeros(x.shape[0], self.classes + 1) * self.scale
        return torch.full((x.shape[0], self.classes), float("nan")) * self.scale


def broken(mode: str = "nan", classes: int = 3) -> nn.Module:
    return Broken(mode, classes)


def efficientnet_lite(model_name: str) -> nn.Module:
    """EfficientNet-Lite by name: a builder names one function, not a classmethod such as
    ``EfficientNet.from_name``, so a manifest reaches that through a function like this."""
    from efficientnet_lite_pytorch import EfficientNet  # type: ignore[import-untyped]

    return EfficientNet.from_name(model_name)  # type: ignore[no-any-return]
