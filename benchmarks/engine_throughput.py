"""Engine throughput at scale, and Ray scaling from 1 to 2 workers.

    python benchmarks/engine_throughput.py [--quick]

Part 1: the selection engine on a replay of 10,000 models x 10,000 samples. Correctness is
not stored (1e8 outcomes): a hash of (model, sample) against each model's accuracy answers
every call, so what is timed and measured is the engine (strategy decisions, budget
bookkeeping, pruning, the history) plus a near-free evaluator. Reported: rounds and pulls
(evaluation calls decided) per second, the engine's time per call beside real inference's,
and peak memory (tracemalloc, which sees numpy's buffers; a second, untraced run gives the
times).

Part 2: the same real selection (brute force on small torch MLPs, 2,000 samples) on a
local Ray instance with 1 and then 2 model workers of one CPU each (torch limited to one
thread per worker), after the workers are warm.

Writes benchmarks/results/engine_throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from _common import RESULTS, code_version, command_line, table
from greenrunner.budget import Budget
from greenrunner.candidates import Candidate
from greenrunner.engine import run_selection
from greenrunner.reward import RewardModel, Weights
from greenrunner.strategies import create

# The Ray part's workers (and this script) import the tests' model builders.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WEIGHTS = Weights({"accuracy": 0.63, "size": 0.25, "complexity": 0.21})
MOBILENET_CALLS_PER_S = 231.2  # benchmarks/results/throughput.md, warm, 2 cores


class HashedReplay:
    """Replay of K models x N samples computed on demand: model k is right on sample i
    when a hash of (k, i) falls below k's accuracy. Nothing is stored per sample."""

    def __init__(self, accuracies: np.ndarray, n_samples: int) -> None:
        self.accuracy = accuracies
        self._n = n_samples
        self.index: dict[str, int] = {}

    @property
    def n_samples(self) -> int:
        return self._n

    def evaluate(self, candidate: Candidate, sample_ids: np.ndarray) -> np.ndarray:
        k = self.index[candidate.name]
        h = (np.asarray(sample_ids, dtype=np.uint64) * np.uint64(2654435761)) ^ np.uint64(
            (k * 40503 + 1) * 97
        )
        h = (h * np.uint64(0x9E3779B1)) % np.uint64(1 << 32)
        return np.asarray(h / float(1 << 32) < self.accuracy[k])


def _replay(k: int, n: int) -> tuple[list[Candidate], HashedReplay]:
    rng = np.random.default_rng(0)
    acc = rng.uniform(0.3, 0.9, k)
    size = rng.lognormal(3, 1, k) * 1e6
    macs = rng.lognormal(19, 1.5, k)
    candidates = [
        Candidate(name=f"m{j}", size_bytes=float(size[j]), macs=float(macs[j]), params=1000)
        for j in range(k)
    ]
    evaluator = HashedReplay(acc, n)
    evaluator.index = {c.name: j for j, c in enumerate(candidates)}
    return candidates, evaluator


def _engine_run(k: int, n: int, strategy: str, budget: float, traced: bool) -> dict[str, Any]:
    candidates, evaluator = _replay(k, n)
    eval_s = 0.0
    inner = evaluator.evaluate

    def timed(candidate: Candidate, ids: np.ndarray) -> np.ndarray:
        nonlocal eval_s
        t = time.perf_counter()
        out = inner(candidate, ids)
        eval_s += time.perf_counter() - t
        return out

    evaluator.evaluate = timed  # type: ignore[method-assign,assignment]
    if traced:
        tracemalloc.start()
    start = time.perf_counter()
    history, stop = run_selection(
        candidates,
        evaluator,
        RewardModel(WEIGHTS, candidates),
        create(strategy),
        Budget(budget),
        seed=0,
    )
    wall = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] if traced else 0
    if traced:
        tracemalloc.stop()
    engine_s = wall - eval_s
    return {
        "strategy": strategy,
        "models": k,
        "samples": n,
        "budget": budget,
        "stop": stop,
        "rounds": history.rounds,
        "calls": history.calls,
        "wall_s": round(wall, 2),
        "evaluator_s": round(eval_s, 2),
        "engine_s": round(engine_s, 2),
        "rounds_per_s": round(history.rounds / engine_s, 2),
        "calls_decided_per_s": round(history.calls / engine_s),
        "engine_us_per_call": round(engine_s / history.calls * 1e6, 3),
        "peak_mb": round(peak / 1e6, 1),
    }


def part_engine(quick: bool) -> list[dict[str, Any]]:
    k, n = (1000, 1000) if quick else (10_000, 10_000)
    rows = []
    for strategy in ("default", "thompson", "sequential_halving"):
        row = _engine_run(k, n, strategy, 0.1, traced=False)
        row["peak_mb"] = _engine_run(k, n, strategy, 0.1, traced=True)["peak_mb"]
        print(row, flush=True)
        rows.append(row)
    return rows


def _zoo(folder: Path, n_models: int, n_samples: int) -> tuple[Path, Path]:
    import torch
    from tests import torch_models

    models = folder / "zoo"
    models.mkdir(parents=True)
    (models / "classes.txt").write_text("a\nb\nc\n")
    entries = []
    for j in range(n_models):
        width = 512 + 128 * j
        name = f"mlp{width}"
        torch.manual_seed(j)
        model = torch_models.mlp(width=width, pixels=32 * 32)
        torch.save(model.state_dict(), models / f"{name}.pt")
        entries.append(
            f'[[models]]\nname = "{name}"\nformat = "torch_state_dict"\npath = "{name}.pt"\n'
            f'builder = "tests.torch_models:mlp"\nbuilder_args = {{ width = {width}, '
            f"pixels = 1024 }}\n[models.preprocessing]\nsize = [32, 32]\nchannels = 1\n"
        )
    (models / "manifest.toml").write_text(
        '[repository]\nname = "mlp-zoo"\nclasses_file = "classes.txt"\n\n' + "\n".join(entries)
    )
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n_samples, 32, 32), dtype=np.uint8)
    labels = np.arange(n_samples) % 3
    data = folder / "target.npz"
    np.savez(data, images=images, labels=labels, class_names=np.array(["a", "b", "c"]))
    return models, data


def part_ray(quick: bool) -> list[dict[str, Any]]:
    import ray

    from greenrunner.api import open_real, select
    from greenrunner.energy import EnergySettings
    from greenrunner.evaluation.executors import RayOptions, create_executor

    n_models, n_samples = (4, 500) if quick else (4, 2000)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models, data = _zoo(Path(tmp), n_models, n_samples)
        env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}", "OMP_NUM_THREADS": "1"}
        ray.init(
            num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env}
        )
        try:
            _, _, prepared = open_real(models, data, use_cache=False, batch_size=64)
            for workers in (1, 2):
                executor = create_executor("ray", RayOptions(num_cpus=1, max_workers=workers))
                times = []
                for _ in range(3):  # the first pass starts the workers; report the best warm one
                    start = time.perf_counter()
                    result = select(
                        prepared.candidates,
                        prepared.evaluator,
                        WEIGHTS,
                        strategy="brute_force",
                        executor=executor,
                        energy=EnergySettings(mode="off"),
                    )
                    times.append(time.perf_counter() - start)
                executor.close()
                rows.append(
                    {
                        "workers": workers,
                        "models": n_models,
                        "samples": n_samples,
                        "calls": result.calls,
                        "first_s": round(times[0], 2),
                        "warm_s": round(min(times[1:]), 2),
                        "calls_per_s": round(result.calls / min(times[1:])),
                    }
                )
                print(rows[-1], flush=True)
        finally:
            ray.shutdown()
    rows[1]["speed_up"] = round(rows[0]["warm_s"] / rows[1]["warm_s"], 2)
    return rows


# Measured per-call cost of MobileNet-V3-Small here (benchmarks/results/throughput.md:
# 231 samples/s warm); the yardstick the engine's own cost is compared with.
MOBILENET_US_PER_CALL = 4_300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 x 1,000 and fewer samples")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    engine = part_engine(args.quick)
    scaling = [] if args.skip_ray else part_ray(args.quick)
    payload = {
        "code": code_version(),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "engine": engine,
        "ray_scaling": scaling,
    }
    suffix = "_quick" if args.quick else ""
    (RESULTS / f"engine_throughput{suffix}.json").write_text(json.dumps(payload, indent=2) + "\n")
    out = RESULTS / f"engine_throughput{suffix}.md"
    out.write_text(markdown(payload))
    print(f"wrote {out}")


def _notes() -> dict[str, str]:
    """The sections of engine_throughput_notes.md (the prose around the figures)."""
    text = (Path(__file__).with_name("engine_throughput_notes.md")).read_text(encoding="utf-8")
    parts = text.split("\n## ")[1:]
    return {p.split("\n", 1)[0].strip(): p.split("\n", 1)[1].strip() for p in parts}


def markdown(payload: dict[str, Any]) -> str:
    notes = _notes()
    engine, scaling = payload["engine"], payload["ray_scaling"]
    engine_rows = [
        [
            r["strategy"],
            r["stop"],
            r["rounds"],
            f"{r['calls']:,}",
            f"{r['engine_s']:.2f}",
            f"{r['rounds_per_s']:.1f}",
            f"{r['calls_decided_per_s']:,}",
            f"{r['engine_us_per_call']:.2f}",
            f"{r['peak_mb']:.1f}",
        ]
        for r in engine
    ]
    worst = max(r["engine_us_per_call"] for r in engine)
    lines = [
        "# Engine throughput and Ray scaling",
        "",
        f"Reproduce: `{command_line()}` (code {payload['code']}); {payload['machine']}. "
        "Raw figures: `engine_throughput.json`.",
        "",
        f"## The engine on {engine[0]['models']:,} models x {engine[0]['samples']:,} samples",
        "",
        notes["engine_intro"],
        "",
        table(
            [
                "strategy",
                "stop",
                "rounds",
                "calls",
                "engine s",
                "rounds/s",
                "calls decided/s",
                "engine µs/call",
                "peak MB",
            ],
            engine_rows,
            align="llrrrrrrr",
        ),
        "",
        f"- The engine never dominates real evaluation: at most {worst:.2f} µs of engine time "
        f"per call, against ~{MOBILENET_US_PER_CALL:,} µs per call for MobileNet-V3-Small on "
        f"these cores (`throughput.md`): about 1/{MOBILENET_US_PER_CALL / worst:,.0f} of the "
        "cost.",
        notes["memory"],
        "",
    ]
    if scaling:
        rows = [
            [
                r["workers"],
                f"{r['first_s']:.2f}",
                f"{r['warm_s']:.2f}",
                f"{r['calls_per_s']:,}",
                f"{r.get('speed_up', '')}",
            ]
            for r in scaling
        ]
        lines += [
            "## Ray: 1 vs 2 model workers on real models",
            "",
            notes["ray_intro"],
            "",
            table(
                ["model workers", "first pass s", "best warm pass s", "calls/s", "speed-up"],
                rows,
                align="rrrrr",
            ),
            "",
            notes["ray_after"] + f" Speed-up with 2 workers: {scaling[-1].get('speed_up')}x.",
            "",
        ]
    lines += ["## The cluster plan on paper: what changes at 100 GPUs", "", notes["plan"], ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
