"""Build the realistic replays the study runs on, into benchmarks/replays/<name>/.

    pip install -e '.[bench]'          # scikit-learn, for the real model zoos
    python benchmarks/build_replays.py [--only NAME ...] [--out DIR]

Two REAL zoos (about 110 scikit-learn classifiers trained here on the bundled digits and
really evaluated on 1,000 shifted digits) and two SIMULATED ones (published ImageNetV2 and
ObjectNet accuracy spreads, per-sample correctness simulated). Deterministic: fixed seeds
give the same files. Writes a summary of every replay's accuracy spread to
benchmarks/results/replays.json. About two minutes on two cores, nearly all of it training.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import _digits_zoo as digits
import _replay_readmes as readmes
import _sim_zoos as sims
from greenrunner.candidates import Candidate
from greenrunner.repositories.replay import load_replay, write_replay

HERE = Path(__file__).resolve().parent
REPLAYS = HERE / "replays"
RESULTS = HERE / "results"

# replay name -> (target shift, shift seed)
DIGITS = {
    "digits-noise-real": ("noise_blur_contrast", 1),
    "digits-rotate-real": ("rotate_translate", 2),
}
SIMULATED = ("testbed-imagenetv2-sim", "torchvision-objectnet-sim")
NAMES = (*DIGITS, *SIMULATED)


def show(name: str, sp: readmes.Spread, seconds: float) -> None:
    print(
        f"{name}: {sp.models} models x {sp.samples} samples ({seconds:.1f}s); target accuracy "
        f"median {sp.median:.3f}, min {sp.min:.3f}; {sp.within_1pt} within 1 point of the best"
    )
    for model, acc in sp.top5:
        print(f"    {acc:.3f}  {model}")
    print(f"    model-card pick: {sp.card_pick} ({sp.card_pick_target:.3f} on the target)")


def write(name: str, out: Path, cands: list[Candidate], correct: np.ndarray, text: str) -> None:
    write_replay(out / name, cands, correct, text)
    back = load_replay(out / name)  # what the study reads must round-trip
    if back.evaluator.correct.shape != correct.shape or len(back.candidates) != len(cands):
        raise RuntimeError(f"{out / name} did not read back as written")


def build_digits(wanted: list[str], out: Path, summary: dict[str, object]) -> None:
    if not wanted:
        return
    t0 = time.perf_counter()
    print(f"training the digits zoo ({len(digits.model_specs())} models) ...", flush=True)
    zoo = digits.build_zoo(dict(DIGITS[n] for n in wanted), log=lambda _line: None)
    print(f"  trained and evaluated in {zoo.seconds:.0f}s")
    for name in wanted:
        shift, seed = DIGITS[name]
        correct = zoo.correct[shift]
        sp = readmes.spread(zoo.candidates, correct)
        write(
            name,
            out,
            zoo.candidates,
            correct,
            readmes.digits_readme(name, shift, seed, zoo.candidates, correct, sp),
        )
        show(name, sp, time.perf_counter() - t0)
        summary[name] = {"kind": "REAL", **sp.as_dict()}


def build_simulated(wanted: list[str], out: Path, summary: dict[str, object]) -> None:
    for name in wanted:
        t0 = time.perf_counter()
        if name == "testbed-imagenetv2-sim":
            zoo = sims.testbed_imagenetv2(seed=0)
            sp = readmes.spread(zoo.candidates, zoo.correct)
            text = readmes.testbed_readme(zoo, sp)
        else:
            zoo = sims.torchvision_objectnet(seed=0)
            sp = readmes.spread(zoo.candidates, zoo.correct)
            text = readmes.torchvision_readme(zoo, sp)
        write(name, out, zoo.candidates, zoo.correct, text)
        show(name, sp, time.perf_counter() - t0)
        summary[name] = {"kind": "SIMULATED", **sp.as_dict()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the realistic replays for the study.")
    parser.add_argument("--only", nargs="+", choices=NAMES, help="build only these replays")
    parser.add_argument("--out", type=Path, default=REPLAYS, help=f"default {REPLAYS}")
    args = parser.parse_args(argv)
    wanted = [n for n in NAMES if n in set(args.only or NAMES)]
    start = time.perf_counter()
    summary: dict[str, object] = {}
    build_digits([n for n in wanted if n in DIGITS], args.out, summary)
    build_simulated([n for n in wanted if n in SIMULATED], args.out, summary)
    seconds = time.perf_counter() - start
    if args.out == REPLAYS and not args.only:
        RESULTS.mkdir(exist_ok=True)
        record = {"command": "python benchmarks/build_replays.py", "seconds": round(seconds)}
        (RESULTS / "replays.json").write_text(
            json.dumps({**record, "replays": summary}, indent=2) + "\n", encoding="utf-8"
        )
    print(f"done in {seconds:.0f}s; replays in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
