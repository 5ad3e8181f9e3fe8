"""How often does each strategy find brute force's pick on realistic replays, at what cost?

    python benchmarks/build_replays.py          # once; the replays are also committed
    python benchmarks/study_realistic.py [--repeats 200] [--quick]

Runs greenrunner.study.run_study on every replay in benchmarks/replays plus the bundled
objectnet-sim, for every strategy at budgets of 5%, 10% and 20% of brute force, in two
settings: accuracy-only weights with a budget in calls, and the paper's drone weights
(accuracy 0.63, size 0.25, complexity 0.21) with a budget in MACs. Each run is scored
against brute force on the full pool. Writes benchmarks/results/study_realistic.{json,md}
(``--quick``: a smoke run with few repeats, written to study_realistic_quick.*).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

import _common as common
from greenrunner.budget import Budget
from greenrunner.strategies.registry import DEFAULT
from greenrunner.study import run_study

STRATEGIES = (
    "default",
    "thompson",
    "top_two_thompson",
    "sequential_halving",
    "racing",
    "epsilon_greedy",
    "ucb",
    "uniform",
    "benchmark",
)
BUDGETS = (0.05, 0.1, 0.2)
KEY_BUDGET = 0.1
EPS = 0.01
# The "Done when": p_eps at 10% of brute force, per setting.
TARGETS = {"accuracy_calls": 0.90, "weighted_macs": 0.95}
# The criterion is about zoos of about 100 models and 1,000 samples; smaller replays (the
# paper's 31 x 105 objectnet-sim) are reported but not held to it.
CRITERION_MIN_MODELS, CRITERION_MIN_SAMPLES = 50, 500


def run(args: argparse.Namespace) -> dict[str, Any]:
    names = [str(p) for p in common.replay_folders()] + [common.BUNDLED]
    replays: dict[str, Any] = {}
    for where in names:
        repo = common.load(where)
        if args.only and repo.name not in args.only:
            continue
        n, k = repo.evaluator.correct.shape
        entry: dict[str, Any] = {
            "kind": common.kind(repo),
            "models": k,
            "samples": n,
            "criterion": k >= CRITERION_MIN_MODELS and n >= CRITERION_MIN_SAMPLES,
            "settings": {},
        }
        for setting in common.SETTINGS:
            t0 = time.perf_counter()
            rows = run_study(
                list(repo.candidates),
                repo.evaluator.correct,
                setting.weights,
                args.strategies,
                [Budget(b, setting.unit) for b in BUDGETS],
                repeats=args.repeats,
                eps=EPS,
                seed=args.seed,
                workers=args.workers,
            )
            seconds = time.perf_counter() - t0
            entry["settings"][setting.key] = {
                "brute_force": common.brute_force_pick(repo, setting.weights, EPS),
                "seconds": round(seconds, 1),
                "rows": [r.as_dict() for r in rows],
            }
            print(f"{repo.name:28s} {setting.key:15s} {seconds:6.1f}s", flush=True)
        replays[repo.name] = entry
    return replays


def row(rows: list[dict[str, Any]], strategy: str, budget: float) -> dict[str, Any]:
    return next(r for r in rows if r["strategy"] == strategy and abs(r["budget"] - budget) < 1e-9)


def summarise(replays: dict[str, Any], strategies: list[str]) -> dict[str, Any]:
    """Per setting and strategy: p_eps at 10% (mean, worst), mean regret; the target check."""
    summary: dict[str, Any] = {}
    for setting in common.SETTINGS:
        per: dict[str, Any] = {}
        for s in strategies:
            p = {
                name: row(e["settings"][setting.key]["rows"], s, KEY_BUDGET)["p_eps"]
                for name, e in replays.items()
            }
            regret = [
                row(e["settings"][setting.key]["rows"], s, b)["mean_regret"]
                for e in replays.values()
                for b in BUDGETS
            ]
            worst = min(p, key=lambda name: p[name])
            per[s] = {
                "p_eps_10_mean": float(np.mean(list(p.values()))),
                "p_eps_10_worst": p[worst],
                "p_eps_10_worst_replay": worst,
                "mean_regret": float(np.mean(regret)),
            }
        summary[setting.key] = per
    return summary


def check_default(replays: dict[str, Any]) -> dict[str, Any]:
    """The issue's target for ``default``, replay by replay."""
    out: dict[str, Any] = {}
    for name, e in replays.items():
        checks: dict[str, Any] = {"criterion_replay": e["criterion"]}
        for setting in common.SETTINGS:
            rows = e["settings"][setting.key]["rows"]
            p = row(rows, "default", KEY_BUDGET)["p_eps"]
            worse = [
                b
                for b in BUDGETS
                if row(rows, "default", b)["mean_regret"]
                > row(rows, "thompson", b)["mean_regret"] + 1e-9
            ]
            checks[setting.key] = {
                "p_eps_10": p,
                "target": TARGETS[setting.key],
                "meets_p_eps": p >= TARGETS[setting.key],
                "regret_above_thompson_at": worse,
            }
        # The target is at 10%; other budgets are reported, not held to it.
        checks["pass"] = all(
            checks[s.key]["meets_p_eps"]
            and KEY_BUDGET not in checks[s.key]["regret_above_thompson_at"]
            for s in common.SETTINGS
        )
        out[name] = checks
    return out


def markdown(result: dict[str, Any]) -> str:
    out = [
        "# Strategy study on realistic replays",
        "",
        f"Reproduce: `{result['command']}` (code {result['code']}, default = "
        f"{result['default_is']})",
        "",
        f"{result['repeats']} seeded runs per (replay, setting, strategy, budget); every run is "
        f"scored against brute force on the full pool. `p_eps`: share of runs whose pick's "
        f"reward is within eps = {EPS} of brute force's pick; `p_best`: share that pick brute "
        "force's model; regret: brute force's reward minus the pick's (accuracy-only: "
        "accuracy points as fractions). `spent`: mean share of brute force's calls (or MACs) "
        f"actually used at the 10% budget. `default` is currently `{DEFAULT}`. "
        f"Took {result['seconds'] / 60:.1f} minutes on {result['cores']} cores.",
        "",
        "REAL replays hold real per-sample results of models trained and run here; SIMULATED "
        "ones simulate which samples each model gets right from published accuracies (see "
        "each replay's README). objectnet-sim is the paper's small setting (31 models x 105 "
        "images), simulated.",
        "",
        "## Summary",
    ]
    for setting in common.SETTINGS:
        per = result["summary"][setting.key]
        out += [
            "",
            f"### {setting.title}",
            "",
            common.table(
                [
                    *("strategy", "p_eps@10% mean", "p_eps@10% worst", "worst on"),
                    "mean regret (all replays, budgets)",
                ],
                [
                    [
                        s,
                        v["p_eps_10_mean"],
                        v["p_eps_10_worst"],
                        v["p_eps_10_worst_replay"],
                        f"{v['mean_regret']:.4f}",
                    ]
                    for s, v in per.items()
                ],
                "lrrlr",
            ),
        ]
    names = list(result["replays"])
    for setting in common.SETTINGS:
        out += [
            "",
            f"### p_eps at 10% by replay: {setting.title}",
            "",
            common.table(
                ["strategy", *names],
                [
                    [
                        s,
                        *[
                            row(
                                result["replays"][n]["settings"][setting.key]["rows"], s, KEY_BUDGET
                            )["p_eps"]
                            for n in names
                        ],
                    ]
                    for s in result["strategies"]
                ],
            ),
        ]
    out += ["", "### Does `default` meet the target?", ""]
    out += [
        f"Target: p_eps >= {TARGETS['accuracy_calls']:.2f} at 10% of brute-force calls with "
        f"accuracy-only weights, p_eps >= {TARGETS['weighted_macs']:.2f} at 10% of brute-force "
        "MACs with the drone weights, and mean regret at 10% never above thompson's; where "
        "default's mean regret is above thompson's at another budget it is listed for "
        "information. "
        f"It applies to replays of at least {CRITERION_MIN_MODELS} models and "
        f"{CRITERION_MIN_SAMPLES} samples; others are shown for information.",
        "",
    ]
    rows = []
    for name, c in result["check"].items():
        a, w = c["accuracy_calls"], c["weighted_macs"]
        rows.append(
            [
                name,
                "yes" if c["criterion_replay"] else "no (info)",
                f"{a['p_eps_10']:.3f} {'ok' if a['meets_p_eps'] else 'MISS'}",
                f"{w['p_eps_10']:.3f} {'ok' if w['meets_p_eps'] else 'MISS'}",
                ", ".join(
                    s.key
                    for s in common.SETTINGS
                    if KEY_BUDGET in c[s.key]["regret_above_thompson_at"]
                )
                or "never",
                ", ".join(
                    f"{s.key}@{b:g}"
                    for s in common.SETTINGS
                    for b in c[s.key]["regret_above_thompson_at"]
                    if b != KEY_BUDGET
                )
                or "never",
                ("PASS" if c["pass"] else "FAIL")
                if c["criterion_replay"]
                else f"(info: {'would pass' if c['pass'] else 'would fail'})",
            ]
        )
    out.append(
        common.table(
            [
                "replay",
                "held to it",
                "accuracy, calls",
                "weighted, MACs",
                "regret > thompson at 10%",
                "at 5% or 20% (info)",
                "",
            ],
            rows,
            "llrrlll",
        )
    )
    held = [c["pass"] for c in result["check"].values() if c["criterion_replay"]]
    verdict = (
        "no replay is large enough to be held to it"
        if not held
        else ("PASS" if all(held) else "FAIL")
    )
    out += ["", f"**Overall: {verdict}** on the held replays."]
    for name, e in result["replays"].items():
        out += ["", f"## {name} ({e['kind']}, {e['models']} models x {e['samples']} samples)"]
        for setting in common.SETTINGS:
            st = e["settings"][setting.key]
            bf = st["brute_force"]
            out += [
                "",
                f"### {setting.title}",
                "",
                f"Brute force picks {bf['name']} (target accuracy {bf['accuracy']:.3f}, reward "
                f"{bf['reward']:.4f}); {bf['within_eps']} model(s) within eps of it; runner-up "
                f"{bf['runner_up_gap']:.4f} behind. {st['seconds']:.0f}s.",
                "",
                _replay_table(st["rows"], result["strategies"]),
            ]
    return "\n".join(out) + "\n"


def _replay_table(rows: list[dict[str, Any]], strategies: list[str]) -> str:
    header = ["strategy"]
    header += [f"p_eps@{b:.0%}" for b in BUDGETS]
    header += [f"p_best@{KEY_BUDGET:.0%}"]
    header += [f"regret@{b:.0%}" for b in BUDGETS]
    header += ["spent@10% calls", "spent@10% MACs"]
    body = []
    for s in strategies:
        key = row(rows, s, KEY_BUDGET)
        body.append(
            [
                s,
                *[row(rows, s, b)["p_eps"] for b in BUDGETS],
                key["p_best"],
                *[f"{row(rows, s, b)['mean_regret']:.4f}" for b in BUDGETS],
                key["mean_calls_fraction"],
                key["mean_macs_fraction"],
            ]
        )
    return common.table(header, body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Strategy study on realistic replays.")
    parser.add_argument("--repeats", type=int, default=200, help="runs per cell (default 200)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 repeats, *_quick.*")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument("--only", nargs="+", help="only these replays (by folder name)")
    parser.add_argument(
        "--strategies",
        type=lambda text: [s.strip() for s in text.split(",") if s.strip()],
        default=list(STRATEGIES),
        help=f"comma-separated (default {','.join(STRATEGIES)}); must include default, thompson",
    )
    args = parser.parse_args(argv)
    for needed in ("default", "thompson"):
        if needed not in args.strategies:
            parser.error(f"--strategies must include {needed} (the target check compares them)")
    if args.quick:
        args.repeats = 5
    if not common.replay_folders():
        print("no replays in benchmarks/replays; run python benchmarks/build_replays.py first")
    start = time.perf_counter()
    replays = run(args)
    result: dict[str, Any] = {
        "command": common.command_line(),
        "repeats": args.repeats,
        "seed": args.seed,
        "eps": EPS,
        "budgets": list(BUDGETS),
        "strategies": args.strategies,
        "default_is": DEFAULT,
        "code": common.code_version(),
        "settings": {
            s.key: {"weights": s.weights.as_dict(), "budget_unit": s.unit} for s in common.SETTINGS
        },
        "cores": common.cores(),
        "replays": replays,
        "summary": summarise(replays, args.strategies),
        "check": check_default(replays),
    }
    result["seconds"] = round(time.perf_counter() - start, 1)
    common.RESULTS.mkdir(exist_ok=True)
    stem = "study_realistic_quick" if args.quick else "study_realistic"
    (common.RESULTS / f"{stem}.json").write_text(
        json.dumps(result, indent=1) + "\n", encoding="utf-8"
    )
    (common.RESULTS / f"{stem}.md").write_text(markdown(result), encoding="utf-8")
    print(f"wrote {common.RESULTS / stem}.json and .md in {result['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
