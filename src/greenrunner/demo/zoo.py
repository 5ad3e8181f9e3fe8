"""The demo zoo's architectures and the recipe of what to train.

:func:`build` is the manifest's builder (``greenrunner.demo.zoo:build``): keyword
arguments in, an untrained ``nn.Module`` out, so a state_dict written by the demo build
loads back with nothing but this function and ``torch.load(..., weights_only=True)``.
The recipe (:data:`ZOO`) mixes kinds, sizes, input resolutions, training renders and
augmentation on purpose: a zoo of near-copies would make model selection trivial.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from torch import nn

Arch = Literal["linear", "mlp", "cnn"]
Augment = Literal["none", "geometric", "full"]


def build(
    *,
    arch: Arch,
    width: int = 0,
    depth: int = 0,
    channels: int = 1,
    size: int = 28,
    classes: int = 10,
) -> nn.Module:
    """An untrained classifier for ``channels`` x ``size`` x ``size`` inputs.

    ``linear``: one Linear layer over the pixels (multinomial logistic regression; width
    and depth are ignored). ``mlp``: ``depth`` hidden layers of ``width`` units. ``cnn``:
    ``depth`` blocks of 3x3 convolution + ReLU + 2x2 max-pool, ``width`` channels in the
    first block and doubling per block (the usual trade of resolution for features), then
    one Linear layer over the flattened feature map.
    """
    from torch import nn  # here, so the recipe can be read without importing torch

    if channels < 1 or size < 1 or classes < 2:
        raise ValueError(
            f"channels and size must be positive and classes at least 2; "
            f"got channels={channels}, size={size}, classes={classes}"
        )
    pixels = channels * size * size
    if arch == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(pixels, classes))
    if width < 1 or depth < 1:
        raise ValueError(f"{arch} needs width >= 1 and depth >= 1; got {width} and {depth}")
    if arch == "mlp":
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = pixels
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), nn.ReLU()]
            fan_in = width
        return nn.Sequential(*layers, nn.Linear(fan_in, classes))
    if arch == "cnn":
        layers = []
        c_in, side = channels, size
        for i in range(depth):
            c_out = width * 2**i
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c_in, side = c_out, side // 2
        if side < 1:
            raise ValueError(f"a {depth}-block cnn pools a {size}-pixel input away to nothing")
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * side * side, classes))
    raise ValueError(f"arch must be linear, mlp or cnn; got {arch!r}")


@dataclass(frozen=True)
class Recipe:
    """How one zoo model is made: its architecture, its input, its training."""

    name: str
    arch: Arch
    width: int = 0
    depth: int = 0
    size: int = 28  # input side; 28 is the render, smaller inputs are resized from it
    render: Literal["clean", "crude"] = "clean"
    augment: Augment = "none"
    epochs: int = 30
    lr: float = 2e-3
    # Inputs scaled to [-1, 1] by default; a few models use [0, 1] like many real
    # repositories do, so the zoo does not share one preprocessing setting.
    mean: float = 0.5
    std: float = 0.5

    def builder_args(self) -> dict[str, Any]:
        """The keyword arguments of :func:`build`, as the manifest records them."""
        args: dict[str, Any] = {"arch": self.arch}
        if self.arch != "linear":
            args |= {"width": self.width, "depth": self.depth}
        return args | {"channels": 1, "size": self.size, "classes": 10}


# Sizes span four orders of magnitude in MACs (2 k to 30 M per sample). Suffixes: _s14 reads
# a 14x14 input, _crude was trained on the crude render, _geo with geometric augmentation,
# _full with geometric and photometric augmentation.
ZOO: tuple[Recipe, ...] = (
    Recipe("logreg_s14", "linear", size=14, epochs=60, lr=5e-3, mean=0.0, std=1.0),
    Recipe("logreg", "linear", epochs=60, lr=5e-3),
    Recipe("mlp_w32_d1_s14", "mlp", 32, 1, size=14),
    Recipe("mlp_w64_d1_s14_full", "mlp", 64, 1, size=14, augment="full", epochs=40),
    Recipe("mlp_w64_d1_crude", "mlp", 64, 1, render="crude"),
    Recipe("mlp_w128_d2", "mlp", 128, 2, mean=0.0, std=1.0),
    Recipe("mlp_w256_d2_geo", "mlp", 256, 2, augment="geometric"),
    Recipe("mlp_w512_d3", "mlp", 512, 3, epochs=25),
    Recipe("cnn_w8_d1_s14", "cnn", 8, 1, size=14),
    Recipe("cnn_w8_d2", "cnn", 8, 2),
    Recipe("cnn_w8_d2_full", "cnn", 8, 2, augment="full"),
    Recipe("cnn_w16_d2_crude", "cnn", 16, 2, render="crude"),
    Recipe("cnn_w16_d2_full", "cnn", 16, 2, augment="full"),
    Recipe("cnn_w32_d2", "cnn", 32, 2, epochs=20),
    Recipe("cnn_w32_d2_full", "cnn", 32, 2, augment="full", epochs=20),
    Recipe("cnn_w32_d3_geo", "cnn", 32, 3, augment="geometric", epochs=20),
    Recipe("cnn_w64_d3", "cnn", 64, 3, epochs=12),
    Recipe("cnn_w64_d3_geo", "cnn", 64, 3, augment="geometric", epochs=12),
)
