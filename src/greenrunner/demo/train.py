"""Training the demo zoo: each recipe of greenrunner.demo.zoo fitted, saved and measured.

:func:`train_zoo` turns recipes into state_dicts under ``weights/`` and manifest entries;
:func:`accuracy` and :func:`measure` give the card accuracy and the size of any network
(the ccexam ones too). Torch is imported inside the functions, so importing stays cheap.
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from greenrunner.demo.data import DigitSplits, Render, render
from greenrunner.demo.manifest import BUILDER, Entry
from greenrunner.demo.zoo import Recipe
from greenrunner.preprocessing import Preprocessing, prepare

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

BATCH = 64


def _prep(recipe: Recipe) -> Preprocessing:
    return Preprocessing(
        size=(recipe.size, recipe.size), channels=1, mean=(recipe.mean,), std=(recipe.std,)
    )


class _Inputs:
    """Rendered and prepared source images, made once per (part, render, preprocessing)."""

    def __init__(self, splits: DigitSplits) -> None:
        self.splits = splits
        self._rendered: dict[tuple[str, Render], np.ndarray] = {}
        self._prepared: dict[tuple[str, Render, str], np.ndarray] = {}

    def get(self, part: str, style: Render, prep: Preprocessing) -> np.ndarray:
        key = (part, style, prep.fingerprint())
        if key not in self._prepared:
            if (part, style) not in self._rendered:
                raw = getattr(self.splits, part).images
                self._rendered[part, style] = render(raw, style)
            # The same prepare() the evaluator runs on the target PNGs: no train/serve skew.
            images = list(self._rendered[part, style])
            self._prepared[key] = prepare(images, prep)
        return self._prepared[key]


@contextlib.contextmanager
def _bar(enabled: bool, total: int) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        bar.add_task("training the demo zoo", total=total)
        yield bar


def train_zoo(
    recipes: tuple[Recipe, ...],
    splits: DigitSplits,
    weights: Path,
    seed: int,
    progress: bool,
) -> list[Entry]:
    import torch

    inputs = _Inputs(splits)
    entries = []
    with _bar(progress, sum(r.epochs for r in recipes)) as bar:
        for recipe in recipes:
            # Seeded by name, not position: adding a model to the recipe leaves the others'
            # weights as they were.
            model_seed = seed * 1_000_003 + zlib.crc32(recipe.name.encode())
            prep = _prep(recipe)
            x = torch.from_numpy(inputs.get("train", recipe.render, prep))
            y = torch.from_numpy(splits.train.labels)
            torch.manual_seed(model_seed)  # the initial weights
            model = _fit(recipe, x, y, model_seed, bar)
            path = weights / f"{recipe.name}.pt"
            torch.save(model.state_dict(), path)
            # The card is the developer's own benchmark: the held-out part of the source,
            # rendered the way the model was trained (crude models get a crude card).
            val = inputs.get("val", recipe.render, prep)
            card = accuracy(model, val, splits.val.labels)
            params, macs = measure(model, prep)
            log.info("trained %s: clean validation accuracy %.3f", recipe.name, card)
            entries.append(
                Entry(
                    recipe.name,
                    f"weights/{recipe.name}.pt",
                    BUILDER,
                    recipe.builder_args(),
                    card,
                    prep,
                    params,
                    macs,
                    _note(recipe),
                )
            )
    return entries


def _fit(recipe: Recipe, x: torch.Tensor, y: torch.Tensor, seed: int, bar: Any) -> torch.nn.Module:
    import torch
    import torch.nn.functional as F  # noqa: N812 (the conventional name)

    from greenrunner.demo.zoo import build

    model = build(arch=recipe.arch, width=recipe.width, depth=recipe.depth, size=recipe.size)
    gen = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    steps = recipe.epochs * -(-len(x) // BATCH)
    # Cosine decay: converges in few epochs without tuning a step schedule per model.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    model.train()
    for _ in range(recipe.epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), BATCH):
            idx = order[start : start + BATCH]
            batch = _augment(x[idx], recipe, gen)
            loss = F.cross_entropy(model(batch), y[idx])
            optimiser.zero_grad()
            torch.autograd.backward(loss)  # Tensor.backward is untyped for mypy
            optimiser.step()
            schedule.step()
        if bar is not None:
            bar.update(bar.task_ids[0], advance=1, description=f"training {recipe.name}")
    model.eval()
    return model


def _augment(x: torch.Tensor, recipe: Recipe, gen: torch.Generator) -> torch.Tensor:
    """Training-time augmentation in pixel space ([0, 1]), then back to the model's scale.

    ``geometric``: random rotation (up to 15 degrees), scale and shift, the usual digit
    augmentation. ``full`` adds faded contrast, grey backgrounds and noise. Neither copies
    the target's shift exactly: a practitioner guesses the deployment conditions, and some
    guesses are better than others.
    """
    import torch
    import torch.nn.functional as F  # noqa: N812

    if recipe.augment == "none":
        return x
    n = len(x)
    pixels = x * recipe.std + recipe.mean
    angle = (torch.rand(n, generator=gen) * 2 - 1) * np.deg2rad(15.0)
    scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * 0.1
    pixel = 2.0 / recipe.size  # affine_grid spans the image with [-1, 1]
    move = (torch.rand(n, 2, generator=gen) * 2 - 1) * 2 * pixel  # up to 2 pixels
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, move[:, 0]], 1), torch.stack([sin, cos, move[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    pixels = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if recipe.augment == "full":
        faded = torch.rand(n, 1, 1, 1, generator=gen) < 0.5
        contrast = 0.5 + 0.5 * torch.rand(n, 1, 1, 1, generator=gen)
        background = 0.3 * torch.rand(n, 1, 1, 1, generator=gen)
        pixels = torch.where(faded, background + pixels * contrast, pixels)
        sigma = 0.08 * torch.rand(n, 1, 1, 1, generator=gen)
        pixels = pixels + sigma * torch.randn(pixels.shape, generator=gen)
    return (pixels - recipe.mean) / recipe.std


def accuracy(model: torch.nn.Module, x: np.ndarray, labels: np.ndarray) -> float:
    import torch

    with torch.inference_mode():
        predicted = model(torch.from_numpy(x)).argmax(1).numpy()
    return round(float(np.mean(predicted == labels)), 4)


def measure(model: torch.nn.Module, prep: Preprocessing) -> tuple[int, float]:
    """Parameters and MACs per sample, counted the way the torch adapter counts them."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, prep.channels, *prep.size))
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() / 2


def _note(recipe: Recipe) -> str:
    source = "crude (nearest-neighbour) render" if recipe.render == "crude" else "clean render"
    aug = {"none": "no augmentation", "geometric": "geometric augmentation"}.get(
        recipe.augment, "geometric + photometric augmentation"
    )
    return f"{recipe.size}x{recipe.size} input, {source}, {aug}, {recipe.epochs} epochs"
