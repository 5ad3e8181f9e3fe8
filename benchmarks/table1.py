"""The paper's Table I, redone on the bundled objectnet-sim replay (a SIMULATION).

    python benchmarks/table1.py [--repeats 200] [--quick]

GreenRunnerGPT (Kannan et al., 2023) compared brute force, the model-card benchmark and
three bandits on 71 torchvision models x 105 ObjectNet images (7,455 calls; Thompson
sampling spent 3,045-3,360 of them, about 43%). ObjectNet images cannot be shipped, so this
runs on objectnet-sim: the 31 torchvision weights with a published ObjectNet accuracy,
105 images, per-image correctness SIMULATED (see its README). Budgets: 10%, 20% and 43% of
brute-force calls, with accuracy-only and the paper's drone weights (0.63, 0.25, 0.21).
Writes benchmarks/results/table1.{json,md} (``--quick``: table1_quick.*).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

import _common as common
from greenrunner.api import select
from greenrunner.budget import Budget
from greenrunner.reward import RewardModel, Weights
from greenrunner.strategies.registry import DEFAULT
from greenrunner.study import run_study

REPLAY = common.BUNDLED
BASELINES = ("benchmark", "brute_force")
PAPER = ("thompson", "epsilon_greedy", "ucb")  # the paper's three bandits
OURS = ("default", "sequential_halving", "racing", "top_two_thompson")
BUDGETS = (0.1, 0.2, 0.43)
EXAMPLE_BUDGET = 0.43
EPS = 0.01
WEIGHTINGS = {"accuracy_only": common.ACCURACY_ONLY, "drone": common.DRONE}

PAPER_NOTE = """\
The paper's own Table I (71 models, 7,455 calls): with accuracy-only weights brute force
picked regnet_y_128gf (0.45 on ObjectNet, 2,581 MB, 127,750 MMACs) and Thompson sampling,
at 3,045-3,360 calls, picked models averaging 0.32. Its drone weights (0.63, 0.25, 0.21)
are the average of 100 GPT-4 suggestions."""


def study(weights: Weights, repeats: int, seed: int) -> list[dict[str, Any]]:
    repo = common.load(REPLAY)
    cands, correct = list(repo.candidates), repo.evaluator.correct
    rows = run_study(
        cands,
        correct,
        weights,
        ["brute_force"],
        [Budget(1.0)],
        repeats=1,  # exact: every run is the same
        eps=EPS,
        seed=seed,
        workers=1,
    )
    rows += run_study(
        cands,
        correct,
        weights,
        ["benchmark", *PAPER, *OURS],
        [Budget(b) for b in BUDGETS],
        repeats=repeats,
        eps=EPS,
        seed=seed,
    )
    # The benchmark spends nothing, so its budget is moot: keep one row.
    rows = [r for r in rows if r.strategy != "benchmark" or r.budget == BUDGETS[0]]
    return [r.as_dict() for r in rows]


def examples(weights: Weights) -> list[dict[str, Any]]:
    """One run per strategy at seed 0: what a user would see."""
    repo = common.load(REPLAY)
    truth_acc = repo.evaluator.correct.mean(axis=0)
    reward = np.asarray(RewardModel(weights, repo.candidates).reward(truth_acc))
    index = {c.name: j for j, c in enumerate(repo.candidates)}
    out = []
    for name in (*BASELINES, *PAPER, *OURS):
        res = select(
            repo.candidates,
            repo.evaluator,
            weights,
            strategy=name,
            budget=Budget(EXAMPLE_BUDGET),
            seed=0,
        )
        j = index[res.recommended]
        out.append(
            {
                "strategy": name,
                "pick": res.recommended,
                "estimated_accuracy": res.top[0].accuracy,
                "true_accuracy": round(float(truth_acc[j]), 4),
                "regret": round(float(reward.max() - reward[j]), 4),
                "size_mb": repo.candidates[j].size_mb,
                "pick_mmacs": repo.candidates[j].mmacs,
                "calls": res.calls,
                "calls_fraction": res.calls / res.brute_force_calls,
                "mmacs_spent": None if res.macs is None else res.macs / 1e6,
                "stop_reason": res.stop_reason,
            }
        )
    return out


def markdown(result: dict[str, Any]) -> str:
    out = [
        "# Table I of GreenRunnerGPT, redone on objectnet-sim (SIMULATED)",
        "",
        f"Reproduce: `{result['command']}` (code {result['code']}, default = "
        f"{result['default_is']})",
        "",
        f"Replay: bundled `objectnet-sim`, {result['models']} torchvision models x "
        f"{result['samples']} images; brute force = {result['brute_force_calls']} calls. Real "
        "sizes, MACs and ObjectNet accuracies; which image each model gets right is SIMULATED, "
        "so this shows how the strategies behave in the paper's setting, not what the models "
        f"score. {result['repeats']} seeded runs per row; p_eps uses eps = {EPS}. `default` is "
        f"currently `{DEFAULT}`. Budgets are fractions of brute-force calls (the paper's unit); "
        "43% matches the paper's Thompson sampling. Took "
        f"{result['seconds']:.0f}s.",
        "",
        PAPER_NOTE,
    ]
    for key, title in (
        ("accuracy_only", "Accuracy-only weights"),
        ("drone", "Drone weights: accuracy 0.63, size 0.25, complexity 0.21"),
    ):
        part = result[key]
        bf = part["brute_force_pick"]
        out += [
            "",
            f"## {title}",
            "",
            f"Brute force picks {bf['name']} (accuracy {bf['accuracy']:.3f}, "
            f"{bf['size_mb']:.0f} MB, {bf['mmacs']:.0f} MMACs, reward {bf['reward']:.4f}); "
            f"{bf['within_eps']} model(s) within eps of it.",
            "",
            common.table(
                ["strategy", "budget", "p_best", "p_eps", "mean regret", "calls", "MACs"],
                [
                    [
                        r["strategy"],
                        "-" if r["strategy"] == "benchmark" else f"{r['budget']:.0%}",
                        r["p_best"],
                        r["p_eps"],
                        f"{r['mean_regret']:.4f}",
                        r["mean_calls_fraction"],
                        r["mean_macs_fraction"],
                    ]
                    for r in part["rows"]
                ],
            ),
            "",
            f"One run each at seed 0, budget {EXAMPLE_BUDGET:.0%} of brute-force calls "
            "(`est. acc`: the run's estimate; for benchmark, the model card's ImageNet figure; "
            "`true acc`: on all images):",
            "",
            common.table(
                [
                    *("strategy", "pick", "est. acc", "true acc", "regret", "MB", "MMACs/img"),
                    *("calls", "MMACs spent", "stop"),
                ],
                [
                    [
                        e["strategy"],
                        e["pick"],
                        e["estimated_accuracy"],
                        e["true_accuracy"],
                        f"{e['regret']:.4f}",
                        f"{e['size_mb']:.0f}",
                        f"{e['pick_mmacs']:.0f}",
                        e["calls"],
                        "-" if e["mmacs_spent"] is None else f"{e['mmacs_spent']:,.0f}",
                        e["stop_reason"],
                    ]
                    for e in part["examples"]
                ],
                "llrrrrrrrl",
            ),
        ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The paper's Table I on objectnet-sim.")
    parser.add_argument("--repeats", type=int, default=200, help="runs per row (default 200)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 repeats, *_quick.*")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 5
    start = time.perf_counter()
    repo = common.load(REPLAY)
    n, k = repo.evaluator.correct.shape
    result: dict[str, Any] = {
        "command": common.command_line(),
        "replay": REPLAY,
        "models": k,
        "samples": n,
        "brute_force_calls": n * k,
        "repeats": args.repeats,
        "eps": EPS,
        "budgets": list(BUDGETS),
        "default_is": DEFAULT,
        "code": common.code_version(),
    }
    for key, weights in WEIGHTINGS.items():
        result[key] = {
            "weights": weights.as_dict(),
            "brute_force_pick": common.brute_force_pick(repo, weights, EPS),
            "rows": study(weights, args.repeats, args.seed),
            "examples": examples(weights),
        }
        print(f"{key}: done", flush=True)
    result["seconds"] = round(time.perf_counter() - start, 1)
    common.RESULTS.mkdir(exist_ok=True)
    stem = "table1_quick" if args.quick else "table1"
    (common.RESULTS / f"{stem}.json").write_text(
        json.dumps(result, indent=1) + "\n", encoding="utf-8"
    )
    (common.RESULTS / f"{stem}.md").write_text(markdown(result), encoding="utf-8")
    print(f"wrote {common.RESULTS / stem}.json and .md in {result['seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
