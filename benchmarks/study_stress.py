"""Does `default` hold up on zoos unlike the ones it was chosen on?

    python benchmarks/study_stress.py [--repeats 200] [--quick]

The realistic study (study_realistic.py) chose the default. Here each zoo is drawn fresh
from a generator family the strategies were never tuned on, with a seed of its own, and
every family breaks one assumption a strategy might lean on:

- ``independent``: no correlation between models' errors (pairing buys nothing);
- ``no-cards``: no model-card accuracy at all (the empirical-Bayes prior has no line);
- ``shuffled-cards``: cards that say nothing about the target;
- ``reversed-cards``: cards that rank the models backwards on the target;
- ``crowded-top``: twelve models within one point of the best;
- ``cheap-leader``: the most accurate models are also the cheapest;
- ``shared-costs``: 20 architectures with 5 trained weights each (same size and MACs,
  accuracies a few points apart), so that with the drone weights accuracy decides among
  the cheap architectures' weights (elsewhere the cheapest models tend to win outright).

Each zoo has 100 models and 1,000 samples, leaders within a point or two. Every strategy is
run at 10% of brute force in the two settings of the issue (accuracy only with a budget in
calls; the paper's drone weights with a budget in MACs) and scored against brute force.
Writes benchmarks/results/study_stress.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import _common as common
from greenrunner.budget import Budget
from greenrunner.candidates import Candidate
from greenrunner.simulate import simulate_correctness
from greenrunner.strategies.registry import DEFAULT
from greenrunner.study import run_study

STRATEGIES = ("default", "thompson", "top_two_thompson", "sequential_halving", "benchmark")
BUDGET = 0.1
EPS = 0.01
K, N = 100, 1000
ZOO_SEED = 20261128  # fixed, and different from every seed the replays were built with

Zoo = tuple[list[Candidate], np.ndarray]


def _accuracies(rng: np.random.Generator, top: float, leaders: int, gap: float) -> np.ndarray:
    """``leaders`` models within ``gap`` of ``top``; the rest spread well below."""
    lead = top - rng.uniform(0, gap, leaders)
    lead[0] = top
    rest = rng.uniform(top - 0.35, top - gap, K - leaders)
    return np.asarray(rng.permutation(np.concatenate([lead, rest])))


def _costs(
    rng: np.random.Generator, acc: np.ndarray, cheap_is_good: bool, spread: float
) -> np.ndarray:
    """MACs per sample (millions), loosely rising with accuracy as in real zoos (or not)."""
    z = (acc - acc.mean()) / acc.std()
    sign = -1.0 if cheap_is_good else 1.0
    log = sign * 1.2 * z + rng.normal(0, 0.8, acc.size)
    log = (log - log.min()) / np.ptp(log) * spread  # spread: log of the max/min ratio
    return np.asarray(np.exp(3.0 + log))


def _zoo(
    rng: np.random.Generator,
    acc: np.ndarray,
    cards: np.ndarray | None,
    *,
    independent: bool = False,
    cheap_is_good: bool = False,
    families: int = 0,
) -> Zoo:
    mmacs = _costs(rng, acc, cheap_is_good, np.log(300.0))
    size_mb = mmacs / 40 * np.exp(rng.normal(0, 0.5, K))
    if families:  # each model shares its architecture's size and MACs
        arch = np.arange(K) % families
        mmacs, size_mb = mmacs[:families][arch], size_mb[:families][arch]
    if independent:
        correct = simulate_correctness(acc, N, rng, difficulty_spread=0.0, idiosyncrasy=0.01)
    else:
        correct = simulate_correctness(acc, N, rng)
    cands = [
        Candidate(
            name=f"model_{k:03d}",
            size_bytes=float(size_mb[k]) * 1e6,
            macs=float(mmacs[k]) * 1e6,
            params=int(size_mb[k] * 2.5e5),
            benchmark_accuracy=None if cards is None else float(cards[k]),
        )
        for k in range(K)
    ]
    return cands, correct


def _honest_cards(rng: np.random.Generator, acc: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip(acc + 0.12 + rng.normal(0, 0.02, acc.size), 0, 1))


def independent(rng: np.random.Generator) -> Zoo:
    acc = _accuracies(rng, 0.82, 5, 0.012)
    return _zoo(rng, acc, _honest_cards(rng, acc), independent=True)


def no_cards(rng: np.random.Generator) -> Zoo:
    return _zoo(rng, _accuracies(rng, 0.74, 5, 0.012), None)


def shuffled_cards(rng: np.random.Generator) -> Zoo:
    acc = _accuracies(rng, 0.66, 5, 0.012)
    return _zoo(rng, acc, rng.permutation(_honest_cards(rng, acc)))


def reversed_cards(rng: np.random.Generator) -> Zoo:
    acc = _accuracies(rng, 0.58, 5, 0.012)
    order = np.argsort(np.argsort(acc))
    cards = np.sort(_honest_cards(rng, acc))[::-1][order]
    return _zoo(rng, acc, cards)


def crowded_top(rng: np.random.Generator) -> Zoo:
    acc = _accuracies(rng, 0.9, 12, 0.01)
    return _zoo(rng, acc, _honest_cards(rng, acc))


def cheap_leader(rng: np.random.Generator) -> Zoo:
    acc = _accuracies(rng, 0.7, 5, 0.015)
    return _zoo(rng, acc, _honest_cards(rng, acc), cheap_is_good=True)


def shared_costs(rng: np.random.Generator) -> Zoo:
    families = 20
    base = rng.uniform(0.45, 0.8, families)
    acc = np.clip(base[np.arange(K) % families] + rng.uniform(-0.03, 0.03, K), 0, 1)
    return _zoo(rng, acc, _honest_cards(rng, acc), families=families)


FAMILIES: dict[str, Callable[[np.random.Generator], Zoo]] = {
    "independent": independent,
    "no-cards": no_cards,
    "shuffled-cards": shuffled_cards,
    "reversed-cards": reversed_cards,
    "crowded-top": crowded_top,
    "cheap-leader": cheap_leader,
    "shared-costs": shared_costs,
}


def run(repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, (family, make) in enumerate(FAMILIES.items()):
        cands, correct = make(np.random.default_rng(ZOO_SEED + i))
        out[family] = {}
        for setting in common.SETTINGS:
            t0 = time.perf_counter()
            rows = run_study(
                cands,
                correct,
                setting.weights,
                STRATEGIES,
                [Budget(BUDGET, setting.unit)],
                repeats=repeats,
                eps=EPS,
            )
            out[family][setting.key] = {r.strategy: r.as_dict() for r in rows}
            print(f"{family:16s} {setting.key:16s} {time.perf_counter() - t0:6.1f}s", flush=True)
    return out


def markdown(results: dict[str, Any], repeats: int, minutes: float) -> str:
    lines = [
        "# Stress study: zoos unlike the ones the default was chosen on",
        "",
        f"Reproduce: `{common.command_line()}` (code {common.code_version()}, default = {DEFAULT})",
        "",
        f"{repeats} seeded runs per (zoo, setting, strategy) at {BUDGET:.0%} of brute force; "
        f"`p_eps`: share of runs within eps = {EPS} of brute force's pick; regret: brute "
        f"force's reward minus the pick's. All zoos SIMULATED ({K} models x {N} samples; "
        "see the docstring of study_stress.py for what each family breaks). "
        f"Took {minutes:.1f} minutes on {common.cores()} cores.",
    ]
    for setting in common.SETTINGS:
        lines += ["", f"## {setting.title}", ""]
        header = ["zoo", *(f"{s} p_eps" for s in STRATEGIES), "default regret", "thompson regret"]
        rows = []
        for family, per in results.items():
            r = per[setting.key]
            rows.append(
                [
                    family,
                    *(r[s]["p_eps"] for s in STRATEGIES),
                    f"{r['default']['mean_regret']:.4f}",
                    f"{r['thompson']['mean_regret']:.4f}",
                ]
            )
        lines.append(common.table(header, rows))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="5 repeats, a smoke run")
    args = parser.parse_args(argv)
    repeats = 5 if args.quick else args.repeats
    t0 = time.perf_counter()
    results = run(repeats)
    minutes = (time.perf_counter() - t0) / 60
    stem = "study_stress_quick" if args.quick else "study_stress"
    common.RESULTS.mkdir(exist_ok=True)
    (common.RESULTS / f"{stem}.json").write_text(
        json.dumps({"repeats": repeats, "budget": BUDGET, "results": results}, indent=2) + "\n"
    )
    (common.RESULTS / f"{stem}.md").write_text(markdown(results, repeats, minutes))
    print(f"wrote {common.RESULTS / stem}.json and .md in {minutes:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
