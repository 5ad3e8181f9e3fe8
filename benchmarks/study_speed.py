"""How fast is the study? The issue's bar: 200 repeats x 5 strategies on a 100-model x
1,000-sample replay, well under a minute on 2 cores.

    python benchmarks/study_speed.py            # writes benchmarks/results/study_speed.{json,md}

Also reports each strategy's mean time per selection run in one process, so a regression
in one strategy shows up by name. Timings depend on the machine; the committed output says
which machine it came from.
"""

from __future__ import annotations

import json
import os
import platform
import time

import numpy as np

from greenrunner.budget import Budget
from greenrunner.engine import run_selection
from greenrunner.repositories.replay import load_replay
from greenrunner.reward import RewardModel, Weights
from greenrunner.strategies import create
from greenrunner.study import run_study

HERE = os.path.dirname(os.path.abspath(__file__))
REPLAY = os.path.join(HERE, "replays", "testbed-imagenetv2-sim")
STRATEGIES = ["default", "thompson", "top_two_thompson", "sequential_halving", "racing"]
REPEATS = 200


def per_run_ms(name: str, runs: int = 20) -> float:
    repo = load_replay(REPLAY)
    reward = RewardModel(Weights({"accuracy": 1.0}), repo.candidates)
    start = time.perf_counter()
    for seed in range(runs):
        run_selection(repo.candidates, repo.evaluator, reward, create(name), Budget(0.1), seed)
    return (time.perf_counter() - start) / runs * 1000


def main() -> None:
    repo = load_replay(REPLAY)
    shape = repo.evaluator.correct.shape
    start = time.perf_counter()
    run_study(
        repo.candidates,
        repo.evaluator.correct,
        Weights({"accuracy": 1.0}),
        STRATEGIES,
        [Budget(0.1)],
        repeats=REPEATS,
    )
    wall = time.perf_counter() - start
    per_run = {name: round(per_run_ms(name), 1) for name in STRATEGIES}
    out = {
        "command": "python benchmarks/study_speed.py",
        "replay": f"testbed-imagenetv2-sim ({shape[1]} models x {shape[0]} samples)",
        "strategies": STRATEGIES,
        "repeats": REPEATS,
        "budget": "0.1 calls",
        "workers": os.cpu_count(),
        "wall_seconds": round(wall, 1),
        "per_run_ms_one_process": per_run,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "numpy": np.__version__,
    }
    results = os.path.join(HERE, "results")
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, "study_speed.json"), "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=2)
        fh.write("\n")
    lines = [
        "# Study speed",
        "",
        f"Command: `{out['command']}`. Machine: {out['machine']}.",
        "",
        f"{REPEATS} repeats x {len(STRATEGIES)} strategies ({', '.join(STRATEGIES)}) at a 10% "
        f"calls budget on {out['replay']}: **{wall:.1f} s** wall time with "
        f"{out['workers']} worker processes.",
        "",
        "| strategy | ms per selection run (one process) |",
        "| --- | ---: |",
        *[f"| {k} | {v} |" for k, v in per_run.items()],
        "",
    ]
    with open(os.path.join(results, "study_speed.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
