"""How close is GreenRunner's evaluation to a bare batched PyTorch loop?

    python benchmarks/throughput.py [--quick]

Same model, same samples, same batch size, same threads. The bare loop is what a careful
engineer would write: tensors prepared in advance, ``torch.inference_mode``, batches of
64, argmax. GreenRunner's path is ``InferenceEvaluator.evaluate`` over all samples with
the cache off: it adds decoding the image files, preparing them (resize, crop,
normalise), the shape and NaN checks and the label-map lookup. Two figures:

- warm: samples already decoded and prepared (as for every model after the first that
  shares a preprocessing setting); this is the evaluation overhead proper;
- cold: a fresh evaluator, so decoding and preparing are included once (the bare loop's
  own preparation, timed separately, is added to its side for a fair ratio).

Ratio = bare time / GreenRunner time (1.0 = no overhead). Models: torchvision ResNet-18
and MobileNet-V3-Small built without downloading weights (speed does not depend on the
weights), on 256 photo crops from scikit-image at 224 px. Writes
benchmarks/results/throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import _common as common
from greenrunner.adapters.base import ModelSpec
from greenrunner.adapters.torch import TorchAdapter
from greenrunner.adapters.torchvision import get_weights, preprocessing_of
from greenrunner.datasets.files import image_folder
from greenrunner.datasets.labels import build_label_map
from greenrunner.evaluation.inference import InferenceEvaluator, _Model
from greenrunner.preprocessing import prepare

BATCH = 64


def _photos(root: Path, n: int, seed: int = 0) -> None:
    """``n`` random 320 x 320 crops of scikit-image's photos, as PNGs in one class."""
    import skimage.data as data
    from PIL import Image

    rng = np.random.default_rng(seed)
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    (root / "photo").mkdir(parents=True)
    for i in range(n):
        img = sources[i % len(sources)]
        y = int(rng.integers(0, img.shape[0] - 256))
        x = int(rng.integers(0, img.shape[1] - 256))
        crop = Image.fromarray(img[y : y + 256, x : x + 256]).resize((320, 320))
        crop.save(root / "photo" / f"{i:04d}.png")


def _bare(model: Any, batches: list[np.ndarray]) -> float:
    import torch

    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in batches:
            model(torch.from_numpy(b)).argmax(1)
    return time.perf_counter() - t0


def run(builder: str, root: Path, repeats: int) -> dict[str, Any]:
    import torch
    import torchvision

    weights = get_weights(builder, None, builder)
    prep = preprocessing_of(weights)
    module = torchvision.models.get_model(builder, weights=None).eval()
    dataset = image_folder(root)
    ids = np.arange(len(dataset))
    classes = tuple(weights.meta["categories"])
    spec = ModelSpec(builder, "torchvision", builder=builder, preprocessing=prep, classes=classes)
    label_map = build_label_map(["photo"], classes, {"photo": [classes[0]]})

    def evaluator() -> InferenceEvaluator:
        ev = InferenceEvaluator(dataset, {builder: _Model(spec, label_map, "bench")})
        ev._adapters[builder] = TorchAdapter(builder, module, prep, classes)
        return ev

    t0 = time.perf_counter()
    prepared = prepare(dataset.load(ids), prep)
    bare_prepare = time.perf_counter() - t0
    batches = [prepared[i : i + BATCH] for i in range(0, len(prepared), BATCH)]
    candidate = _candidate(builder)
    _bare(module, batches[:1])  # warm-up: first calls allocate
    bare, warm, cold = [], [], []
    for _ in range(repeats):
        bare.append(_bare(module, batches))
        ev = evaluator()
        t0 = time.perf_counter()
        ev.evaluate(candidate, ids)
        cold.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ev.evaluate(candidate, ids)  # no cache: runs the model again on memoised tensors
        warm.append(time.perf_counter() - t0)
    b, w, c = (float(np.median(x)) for x in (bare, warm, cold))
    return {
        "model": builder,
        "samples": len(dataset),
        "batch": BATCH,
        "threads": torch.get_num_threads(),
        "bare_s": round(b, 3),
        "greenrunner_warm_s": round(w, 3),
        "ratio_warm": round(b / w, 3),
        "bare_prepare_s": round(bare_prepare, 3),
        "greenrunner_cold_s": round(c, 3),
        "ratio_cold": round((b + bare_prepare) / c, 3),
        "samples_per_s_warm": round(len(dataset) / w, 1),
    }


def _candidate(name: str) -> Any:
    from greenrunner.candidates import Candidate

    return Candidate(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 samples, one repeat")
    args = parser.parse_args(argv)
    n, repeats = (64, 1) if args.quick else (256, 3)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        _photos(root, n)
        for builder in ("resnet18", "mobilenet_v3_small"):
            row = run(builder, root, repeats)
            rows.append(row)
            print(json.dumps(row), flush=True)
    stem = "throughput_quick" if args.quick else "throughput"
    common.RESULTS.mkdir(exist_ok=True)
    (common.RESULTS / f"{stem}.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        "# Evaluation throughput: GreenRunner vs a bare batched PyTorch loop",
        "",
        f"Reproduce: `{common.command_line()}` (code {common.code_version()}); "
        f"{os.cpu_count()} cores, median of {repeats} repeats, batch {BATCH}.",
        "",
        "Ratio = bare time / GreenRunner time (1.0 = no overhead). Warm: samples already "
        "decoded and prepared (every model after the first with the same preprocessing). "
        "Cold: a fresh evaluator, decoding and preparing included on both sides.",
        "",
        common.table(
            [
                "model",
                "samples",
                "bare s",
                "GreenRunner warm s",
                "ratio warm",
                "cold s",
                "ratio cold",
                "samples/s warm",
            ],
            [
                [
                    r["model"],
                    r["samples"],
                    r["bare_s"],
                    r["greenrunner_warm_s"],
                    f"{r['ratio_warm']:.3f}",
                    r["greenrunner_cold_s"],
                    f"{r['ratio_cold']:.3f}",
                    r["samples_per_s_warm"],
                ]
                for r in rows
            ],
        ),
    ]
    (common.RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {common.RESULTS / stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
