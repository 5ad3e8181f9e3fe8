"""What a build writes as text: one :class:`Entry` per model, ``manifest.toml`` and the README.

The manifest format is greenrunner.repositories.manifest's; the text is produced by hand
(no TOML writer is needed for the few value types used) so the same entries always give
the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from greenrunner.demo.data import DigitSplits
from greenrunner.preprocessing import Preprocessing

BUILDER = "greenrunner.demo.zoo:build"


@dataclass(frozen=True)
class Entry:
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


def manifest_text(entries: list[Entry]) -> str:
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


def _is_external(entry: Entry) -> bool:
    return entry.builder != BUILDER


def readme_text(entries: list[Entry], splits: DigitSplits, seed: int) -> str:
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
