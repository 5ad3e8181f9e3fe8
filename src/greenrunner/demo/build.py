"""Train the demo zoo and write it as a manifest repository next to its shifted target.

Layout of a built demo::

    manifest.toml        the repository (see greenrunner.repositories.manifest)
    classes.txt          "0".."9", one per line
    weights/*.pt         state_dicts, loadable with torch.load(..., weights_only=True)
    target/<digit>/*.png the user's data set as an ImageFolder of 28x28 grey PNGs
    README.md            what this is and how it was made

:func:`ensure_demo` builds it once into the cache and reuses it; heavy imports (torch,
scikit-learn, Pillow) happen inside the functions so importing the package stays cheap.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
import tomllib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from greenrunner.demo.data import CLASSES, DigitSplits, Render, render, shift, split_digits
from greenrunner.demo.zoo import ZOO, Recipe
from greenrunner.preprocessing import Preprocessing, prepare

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

VERSION = "v1"  # bump when the recipe, the data or the layout changes: a new cache folder
BUILDER = "greenrunner.demo.zoo:build"
BATCH = 64


@dataclass(frozen=True)
class _External:
    """A published network from the ccexam package, used as it ships."""

    name: str
    builder: str
    input_size: int
    weights: str  # file inside the installed package
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


# ccexam's own preprocessing (ccexam.constants.DATASET_STATS and ccexam.inference): grey
# 28x28 for MNIST, grey 16x16 for USPS, RGB 32x32 for SVHN, each with its own mean/std.
EXTERNAL = (
    _External("ccexam_mnist", "ccexam.models:MNISTNet", 28, "mnist.pth", 1, (0.1307,), (0.3081,)),
    _External("ccexam_usps", "ccexam.models:USPSNet", 16, "usps.pth", 1, (0.2471,), (0.2994,)),
    _External(
        "ccexam_svhn",
        "ccexam.models:SVHNNet",
        32,
        "svhn.pth",
        3,
        (0.4377, 0.4438, 0.4728),
        (0.1980, 0.2010, 0.1970),
    ),
)


@dataclass(frozen=True)
class _Entry:
    """One manifest entry as written."""

    name: str
    path: str
    builder: str
    builder_args: dict[str, Any]
    card_accuracy: float
    prep: Preprocessing
    params: int
    macs: float
    note: str


def demo_dir() -> Path:
    """Where the demo lives: ``demo/v1`` in GreenRunner's cache folder (see cache_home)."""
    from greenrunner.evaluation.cache import cache_home

    return cache_home() / "demo" / VERSION


def ensure_demo(*, progress: bool = True) -> Path:
    """The demo folder, built on first use (about 40 s on two cores) and reused after.

    The build goes to a temporary sibling folder that is renamed into place when complete,
    so an interrupted build never leaves a half repository behind. A demo whose model files
    went missing (the ccexam package uninstalled, a virtual environment moved) is rebuilt.
    """
    final = demo_dir()
    if _complete(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{VERSION}-build-", dir=final.parent))
    try:
        build_demo(tmp, progress=progress)
        tmp.chmod(0o755)  # mkdtemp makes it private; the finished demo is an ordinary folder
        if _complete(final):  # another process finished first, its build is as good
            return final
        if final.exists():  # stale: move it aside first, a rename cannot replace a folder
            stale = Path(tempfile.mkdtemp(prefix=f".{VERSION}-stale-", dir=final.parent))
            with contextlib.suppress(OSError):  # another process may have just replaced it
                final.rename(stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            tmp.rename(final)
        except OSError:
            # Another process finished in between; equally good (same seed).
            if not _complete(final):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _complete(folder: Path) -> bool:
    """A finished demo: the manifest (written last) is there and every file it names."""
    manifest = folder / "manifest.toml"
    if not manifest.is_file():
        return False
    try:
        models = tomllib.loads(manifest.read_text(encoding="utf-8"))["models"]
        files = [folder / str(m["path"]) for m in models]  # absolute paths stay absolute
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        return False
    missing = [f for f in files if not f.is_file()]
    if missing:
        log.warning("the cached demo misses %s; rebuilding it", ", ".join(map(str, missing)))
    return not missing


def build_demo(out_dir: Path, *, seed: int = 0, progress: bool = True, small: bool = False) -> Path:
    """Train the zoo on the clean source and write the repository and the shifted target.

    ``small`` trains four of the cheaper models for a few epochs (for tests: real training,
    a fraction of the time). The same seed gives byte-identical target images and the same
    weights on the same machine and thread count. Returns ``out_dir``.
    """
    import torch

    started = time.perf_counter()
    out_dir = Path(out_dir)
    (out_dir / "weights").mkdir(parents=True, exist_ok=True)
    splits = split_digits(seed)
    recipes = _small_zoo() if small else ZOO

    target = shift(render(splits.target.images), seed + 7)
    _write_target(out_dir / "target", target, splits.target.labels)
    (out_dir / "classes.txt").write_text("\n".join(CLASSES) + "\n", encoding="utf-8")

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    # One intra-op thread per available core (training is CPU-bound); deterministic kernels
    # so a seed reproduces the weights. Both are process-wide, so they are restored after.
    torch.set_num_threads(_cores())
    torch.use_deterministic_algorithms(True)
    try:
        # fork_rng: seeding the initialisations (and ccexam's throwaway ones) must not
        # disturb the caller's global torch RNG.
        with torch.random.fork_rng(devices=[]):
            entries = _train_zoo(recipes, splits, out_dir / "weights", seed, progress)
            entries += _external(splits)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)

    # No timings in the files: the whole folder is a function of the seed (and machine).
    (out_dir / "README.md").write_text(_readme(entries, splits, seed), encoding="utf-8")
    # The manifest goes last: its presence marks a complete build (see _complete).
    (out_dir / "manifest.toml").write_text(_manifest(entries), encoding="utf-8")
    seconds = time.perf_counter() - started
    log.info("built the demo (%d models) in %s in %.0f s", len(entries), out_dir, seconds)
    return out_dir


def _small_zoo() -> tuple[Recipe, ...]:
    from dataclasses import replace

    keep = ("logreg_s14", "mlp_w32_d1_s14", "cnn_w8_d1_s14", "mlp_w64_d1_crude")
    return tuple(replace(r, epochs=min(r.epochs, 4)) for r in ZOO if r.name in keep)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (cgroups, taskset)
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


def _write_target(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    from PIL import Image

    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(img).save(folder / CLASSES[int(label)] / f"{i:04d}.png")


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


def _train_zoo(
    recipes: tuple[Recipe, ...],
    splits: DigitSplits,
    weights: Path,
    seed: int,
    progress: bool,
) -> list[_Entry]:
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
            card = _accuracy(model, val, splits.val.labels)
            params, macs = _measure(model, prep)
            log.info("trained %s: clean validation accuracy %.3f", recipe.name, card)
            entries.append(
                _Entry(
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


def _accuracy(model: torch.nn.Module, x: np.ndarray, labels: np.ndarray) -> float:
    import torch

    with torch.inference_mode():
        predicted = model(torch.from_numpy(x)).argmax(1).numpy()
    return round(float(np.mean(predicted == labels)), 4)


def _measure(model: torch.nn.Module, prep: Preprocessing) -> tuple[int, float]:
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


def _external(splits: DigitSplits) -> list[_Entry]:
    """The ccexam networks that load safely, or none (logged) where ccexam is missing."""
    if importlib.util.find_spec("ccexam") is None:
        log.info("ccexam is not installed: the demo zoo goes without its three digit networks")
        return []
    import torch

    from greenrunner.adapters.torch import import_builder

    clean_val = list(render(splits.val.images))
    entries = []
    for ext in EXTERNAL:
        path = Path(str(importlib.resources.files("ccexam") / "weights" / ext.weights))
        prep = Preprocessing(
            size=(ext.input_size, ext.input_size),
            channels=ext.channels,
            mean=ext.mean,
            std=ext.std,
        )
        try:
            model = import_builder(ext.builder, ext.name)(input_size=ext.input_size)
            # map_location: the files were saved from a GPU; weights_only: tensors, no code.
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as exc:  # a changed ccexam release must not break the demo
            log.warning("skipping %s: cannot load %s: %s", ext.name, path, exc)
            continue
        model.eval()
        # ccexam's model cards report accuracy on its own MNIST/USPS/SVHN test sets; those
        # numbers are not comparable with our zoo's, so the card here is the accuracy on
        # the same clean-source validation digits every other model's card uses.
        card = _accuracy(model, prepare(clean_val, prep), splits.val.labels)
        params, macs = _measure(model, prep)
        entries.append(
            _Entry(
                ext.name,
                str(path),
                ext.builder,
                {"input_size": ext.input_size},
                card,
                prep,
                params,
                macs,
                f"ccexam {ext.weights} as published (trained on {ext.weights[:-4].upper()})",
            )
        )
    return entries


def _toml(value: Any) -> str:
    """A TOML value for the few types the manifest uses (JSON strings are TOML strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _manifest(entries: list[_Entry]) -> str:
    lines = [
        "# Written by greenrunner.demo.build: real networks, real (shifted) digits.",
        "[repository]",
        'name = "digits-demo"',
        "description = "
        + _toml(
            "Digit classifiers trained on clean scikit-learn digits"
            + (" (and published ccexam networks)" if any(_is_external(e) for e in entries) else "")
            + ", to be chosen for a shifted target of the same digits"
        ),
        'classes_file = "classes.txt"',
    ]
    for e in entries:
        lines += [
            "",
            f"# {e.note}; {e.params:,} parameters, {e.macs / 1e6:.3f} MMACs",
            "[[models]]",
            f"name = {_toml(e.name)}",
            'format = "torch_state_dict"',
            f"path = {_toml(e.path)}",
            f"builder = {_toml(e.builder)}",
            f"builder_args = {_toml(e.builder_args)}",
            f"card_accuracy = {_toml(e.card_accuracy)}",
            'license = "MIT"',
            "[models.preprocessing]",
            f"size = {_toml(list(e.prep.size))}",
            f"channels = {e.prep.channels}",
            f"mean = {_toml(list(e.prep.mean))}",
            f"std = {_toml(list(e.prep.std))}",
        ]
    return "\n".join(lines) + "\n"


def _is_external(entry: _Entry) -> bool:
    return entry.builder != BUILDER


def _readme(entries: list[_Entry], splits: DigitSplits, seed: int) -> str:
    rows = "\n".join(
        f"| {e.name} | {e.params:,} | {e.macs / 1e6:.3f} | {e.card_accuracy:.3f} | {e.note} |"
        for e in entries
    )
    return f"""# digits-demo: a real model repository and a real shifted target

Built by `greenrunner.demo` (seed {seed}; under a minute on two CPU cores) from
scikit-learn's bundled `load_digits` (1,797 scans of handwritten digits, 8x8, 16 grey
levels). Nothing here is simulated: every model below is a real PyTorch network and every
number comes from running it. Rebuild with `greenrunner.demo.build_demo(folder, seed=...)`.

* **Source** ({len(splits.train)} training + {len(splits.val)} validation digits, a
  stratified split): rendered at 28x28 (smooth upsampling into a centred 20x20 box, like
  MNIST), or for models marked *crude*, as nearest-neighbour blocks filling 24x24.
* **Target** (`target/`, {len(splits.target)} digits, an ImageFolder of 28x28 grey PNGs):
  the remaining digits, rendered cleanly and then shifted per image with a seeded mix of
  rotation (up to 20 degrees), scaling, translation, thicker or thinner strokes, blur,
  faded contrast on a brighter background and sensor noise.
* **Models** (`manifest.toml`, `weights/`): trained here with PyTorch on the source, plus
  the published ccexam MNIST/USPS/SVHN networks (MIT) used as shipped where ccexam is
  installed. `card_accuracy` is the accuracy on the clean validation digits (rendered as
  the model was trained) - the number a model card would show. It is not the accuracy on
  the target, which is what GreenRunner estimates.

| model | parameters | MMACs/sample | card accuracy | how it was made |
|---|---:|---:|---:|---|
{rows}
"""
