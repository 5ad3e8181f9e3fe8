"""Train the demo zoo and write it as a manifest repository next to its shifted target.

Layout of a built demo::

    manifest.toml        the repository (see greenrunner.repositories.manifest)
    classes.txt          "0".."9", one per line
    weights/*.pt         state_dicts, loadable with torch.load(..., weights_only=True)
    target/<digit>/*.png the user's data set as an ImageFolder of 28x28 grey PNGs
    README.md            what this is and how it was made

:func:`ensure_demo` builds it once into the cache and reuses it; :func:`build_demo` does
one build, with the training in greenrunner.demo.train, the ccexam networks in
greenrunner.demo.external and the manifest and README text in greenrunner.demo.manifest.
Heavy imports (torch, scikit-learn, Pillow) happen inside the functions so importing the
package stays cheap.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np

from greenrunner.demo.data import CLASSES, render, shift, split_digits
from greenrunner.demo.external import external_entries
from greenrunner.demo.manifest import manifest_text, readme_text
from greenrunner.demo.train import train_zoo
from greenrunner.demo.zoo import ZOO, Recipe

log = logging.getLogger(__name__)

VERSION = "v1"  # bump when the recipe, the data or the layout changes: a new cache folder


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
            entries = train_zoo(recipes, splits, out_dir / "weights", seed, progress)
            entries += external_entries(splits)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)

    # No timings in the files: the whole folder is a function of the seed (and machine).
    (out_dir / "README.md").write_text(readme_text(entries, splits, seed), encoding="utf-8")
    # The manifest goes last: its presence marks a complete build (see _complete).
    (out_dir / "manifest.toml").write_text(manifest_text(entries), encoding="utf-8")
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
