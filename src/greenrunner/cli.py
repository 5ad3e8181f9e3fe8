"""The command line: parses arguments, calls the Python API, renders with rich.

Every user mistake ends as one clear line on stderr and exit status 2; a traceback means a
bug in GreenRunner.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from greenrunner import __version__
from greenrunner.budget import UNITS, Budget
from greenrunner.errors import ConfigError, GreenRunnerError
from greenrunner.render import print_result, print_strategies, print_study

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line (plus the usage hint)."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_USER_ERROR, f"error: {message}\n(see `{self.prog} --help`)\n")


def _params(pairs: Sequence[str]) -> dict[str, Any]:
    """``--param epsilon=0.2`` -> {"epsilon": 0.2}; numbers parsed, the rest kept as text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param takes name=value, e.g. --param epsilon=0.2; got {pair!r}")
        value: Any = raw.strip()
        for convert in (int, float):
            try:
                value = convert(raw)
                break
            except ValueError:
                continue
        out[key.strip()] = value
    return out


def _write_json(path: str, payload: Any) -> None:
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise GreenRunnerError(f"cannot write {path}: {exc.strerror or exc}") from None


def _cmd_select(args: argparse.Namespace, console: Console) -> None:
    from greenrunner.api import select
    from greenrunner.repositories.replay import load_replay
    from greenrunner.reward import Weights

    weights = Weights.parse(args.weights)
    budget = Budget.parse(args.budget, args.budget_unit)
    repo = load_replay(args.replay)
    result = select(
        repo.candidates,
        repo.evaluator,
        weights,
        strategy=args.strategy,
        budget=budget,
        seed=args.seed,
        **_params(args.param),
    )
    print_result(console, result, source=f"replay {repo.name}", note=repo.description)
    if args.json:
        _write_json(args.json, result.to_dict())
        console.print(f"Result written to {args.json}")


def _cmd_study(args: argparse.Namespace, console: Console) -> None:
    from greenrunner.repositories.replay import load_replay
    from greenrunner.reward import Weights
    from greenrunner.study import run_study

    weights = Weights.parse(args.weights)
    budgets = [Budget.parse(b, args.budget_unit) for b in args.budgets.split(",") if b.strip()]
    if not budgets:
        raise ConfigError("--budgets needs at least one value, e.g. --budgets 0.05,0.1,0.2")
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if not strategies:
        raise ConfigError(
            "--strategies needs at least one name, e.g. --strategies default,thompson"
        )
    repo = load_replay(args.replay)
    rows = run_study(
        repo.candidates,
        repo.evaluator.correct,
        weights,
        strategies,
        budgets,
        repeats=args.repeats,
        eps=args.eps,
        seed=args.seed,
        workers=args.workers,
    )
    print_study(console, rows, source=f"replay {repo.name}", note=repo.description)
    if args.json:
        _write_json(args.json, [r.as_dict() for r in rows])
        console.print(f"Study written to {args.json}")


def _cmd_strategies(args: argparse.Namespace, console: Console) -> None:
    print_strategies(console)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="greenrunner",
        description="Pick the right pre-trained model for your data, spending little compute.",
    )
    parser.add_argument("--version", action="version", version=f"greenrunner {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the engine does")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--replay",
            required=True,
            metavar="DIR",
            help="replay folder (models.csv + correct.npy) or a bundled replay name, "
            "e.g. objectnet-sim",
        )
        p.add_argument(
            "--weights",
            default="accuracy=1",
            metavar="W",
            help="metric weights, e.g. accuracy=0.63,size=0.25,complexity=0.21 "
            "(default: accuracy=1)",
        )
        p.add_argument(
            "--budget-unit",
            default="calls",
            choices=UNITS,
            help="calls (one model on one sample) or macs (default: calls)",
        )
        p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
        p.add_argument("--json", metavar="OUT", help="also write the result as JSON to OUT")

    sel = sub.add_parser("select", help="select the best model for the weights within a budget")
    common(sel)
    sel.add_argument(
        "--strategy", default="default", help="strategy name (see `greenrunner strategies`)"
    )
    sel.add_argument(
        "--budget",
        default="0.1",
        help="fraction of brute force in (0, 1] (e.g. 0.1 or 10%%), or an absolute "
        "number of calls or MACs (default: 0.1)",
    )
    sel.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a strategy parameter, e.g. --param epsilon=0.2 (repeatable)",
    )
    sel.set_defaults(run=_cmd_select)

    st = sub.add_parser("study", help="repeat strategies at several budgets against brute force")
    common(st)
    st.add_argument(
        "--strategies", default="default,thompson,sequential_halving,racing,top_two_thompson"
    )
    st.add_argument("--budgets", default="0.05,0.1,0.2", help="comma-separated budgets")
    st.add_argument(
        "--repeats", type=int, default=200, help="runs per strategy and budget (default: 200)"
    )
    st.add_argument(
        "--eps",
        type=float,
        default=0.01,
        help="regret tolerance for p_eps, in reward units (default: 0.01)",
    )
    st.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: one per core)"
    )
    st.set_defaults(run=_cmd_study)

    ls = sub.add_parser("strategies", help="list the strategies with one line each")
    ls.set_defaults(run=_cmd_strategies)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    console = Console()
    try:
        args.run(args, console)
    except GreenRunnerError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
