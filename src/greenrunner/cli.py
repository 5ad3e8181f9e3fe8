"""The command line: parses arguments, calls the Python API, renders with rich.

Every user mistake ends as one clear line on stderr and exit status 2; a traceback means a
bug in GreenRunner.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from greenrunner import __version__
from greenrunner.budget import UNITS
from greenrunner.datasets._images import DEFAULT_MAX_IMAGE_PIXELS
from greenrunner.errors import GreenRunnerError
from greenrunner.reasoning.providers import PROVIDERS

if TYPE_CHECKING:
    pass

from greenrunner.commands._common import (
    StagingCancelledError,
    check_outputs,
    check_paths,
    os_error_message,
)
from greenrunner.commands.advice import cmd_advise
from greenrunner.commands.selection import (
    DEMO_USE_CASE,
    cmd_demo,
    cmd_resume,
    cmd_run,
    cmd_select,
)
from greenrunner.commands.tools import cmd_inspect, cmd_serve, cmd_strategies, cmd_study

EXIT_USER_ERROR = 2

__all__ = ["DEMO_USE_CASE", "EXIT_USER_ERROR", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line (plus the usage hint)."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_USER_ERROR, f"error: {message}\n(see `{self.prog} --help`)\n")


def _positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (underscores and commas allowed: 100_000_000)."""
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number; got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0 (a seed)."""
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of 0 or more; got {text!r}")
    return value


ALLOW_BUILDER_HELP = (
    "also allow the manifest to name this builder from an installed package: "
    "mypackage.models:build (that function or nn.Module class) or mypackage.models:* (every "
    "one that module defines). Allowed without it: torchvision's classification builders, "
    "the demo zoo's and your own code (outside site-packages); --trust allows any. Repeatable"
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="greenrunner",
        description="Pick the right pre-trained model for your data, spending little compute.",
    )
    parser.add_argument("--version", action="version", version=f"greenrunner {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the engine does")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def real_models(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--trust",
            action="store_true",
            help="allow pickle-based model files and any builder (both can run any code)",
        )
        p.add_argument(
            "--allow-builder",
            action="append",
            default=[],
            metavar="MODULE:NAME",
            help=ALLOW_BUILDER_HELP,
        )
        p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")

    def common(
        p: argparse.ArgumentParser, *, models: bool = False, weights: str | None = "accuracy=1"
    ) -> None:
        source = p.add_mutually_exclusive_group(required=True) if models else p
        source.add_argument(
            "--replay",
            required=not models,
            metavar="DIR",
            help="replay folder (models.csv + correct.npy) or a bundled replay name, "
            "e.g. objectnet-sim",
        )
        if models:
            source.add_argument(
                "--models",
                metavar="REPO",
                help="a manifest (.toml), a folder of .onnx files with classes.txt, or torchvision",
            )
            p.add_argument(
                "--data",
                metavar="DATASET",
                help="target data: an ImageFolder, a CSV of path,label, IDX files or .npz",
            )
            p.add_argument(
                "--label-map",
                metavar="FILE",
                help="JSON or CSV mapping target classes to model classes (one-to-many)",
            )
            p.add_argument(
                "--restrict-logits",
                action="store_true",
                help="restrict each model's scores to the mapped classes before the argmax",
            )
            p.add_argument(
                "--batch-size", type=int, default=64, help="samples per forward pass (64)"
            )
            p.add_argument(
                "--max-image-pixels",
                type=_positive_int,
                default=DEFAULT_MAX_IMAGE_PIXELS,
                metavar="N",
                help="refuse images of more than N pixels (width x height), checked from "
                f"each file's header before any inference (default: {DEFAULT_MAX_IMAGE_PIXELS:,}"
                ", 8000 x 8000)",
            )
            real_models(p)
        p.add_argument(
            "--weights",
            default=weights,
            metavar="W",
            help="metric weights, e.g. accuracy=0.63,size=0.25,complexity=0.21 "
            + (f"(default: {weights})" if weights else "(skips staging)"),
        )
        p.add_argument(
            "--budget-unit",
            default="calls",
            choices=UNITS,
            help="calls (one model on one sample) or macs (default: calls)",
        )
        p.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default: 0)")
        p.add_argument("--json", metavar="OUT", help="also write the result as JSON to OUT")

    def selection(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--strategy", default="default", help="strategy name (see `greenrunner strategies`)"
        )
        p.add_argument(
            "--budget",
            default="0.1",
            help="fraction of brute force in (0, 1] (e.g. 0.1 or 10%%), or an absolute "
            "number of calls or MACs (default: 0.1)",
        )
        p.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="a strategy parameter, e.g. --param epsilon=0.2 (repeatable)",
        )
        p.add_argument("--report", metavar="OUT.md", help="also write a readable report")
        p.add_argument(
            "--executor",
            default="inprocess",
            choices=("inprocess", "ray"),
            help="where evaluations run: in this process (default) or on Ray, one worker per "
            "model, a round's evaluations in parallel (extra greenrunner[ray])",
        )
        p.add_argument(
            "--address",
            metavar="ADDR",
            help="Ray cluster to join: auto (this machine's `ray start` cluster) or "
            "ray://HOST:10001; default: start a local Ray instance",
        )
        p.add_argument(
            "--cpus-per-model", type=float, default=1.0, help="Ray: CPUs per model worker (1)"
        )
        p.add_argument(
            "--gpus-per-model", type=float, default=0.0, help="Ray: GPUs per model worker (0)"
        )
        energy_options(p)

    def energy_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--energy",
            default="auto",
            choices=("auto", "on", "off"),
            help="measure the energy of real inference with CodeCarbon's offline tracker: "
            "auto (if installed), on (required), off (default: auto)",
        )
        p.add_argument(
            "--country",
            metavar="ISO3",
            help="country whose grid sets the CO2 figure, e.g. FRA (default: world average)",
        )
        p.add_argument("--region", metavar="NAME", help="region within --country, e.g. california")
        p.add_argument(
            "--store",
            metavar="PATH",
            help="record the experiment and every observation in this SQLite file as they "
            "arrive, so a stopped run can be resumed (`greenrunner resume ID --store PATH`)",
        )

    def advisor(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--provider",
            default="offline",
            choices=PROVIDERS,
            help="offline rules (default; no network), openai (any OpenAI-compatible "
            "endpoint) or local (a GGUF model run in-process)",
        )
        p.add_argument(
            "--base-url", metavar="URL", help="endpoint for openai, e.g. http://127.0.0.1:8080/v1"
        )
        p.add_argument(
            "--model",
            metavar="NAME",
            help="model name at the endpoint (openai) or path of a GGUF file (local)",
        )
        p.add_argument(
            "--api-key-env",
            default="OPENAI_API_KEY",
            metavar="VAR",
            help="environment variable that holds the API key (default: OPENAI_API_KEY); "
            "keys are never taken on the command line",
        )
        p.add_argument(
            "--timeout", type=float, default=60.0, help="seconds per LLM request (default: 60)"
        )
        p.add_argument(
            "--samples",
            type=int,
            default=1,
            help="ask N times and report the mean weights and their spread (default: 1)",
        )

    sel = sub.add_parser("select", help="select the best model for the weights within a budget")
    common(sel, models=True)
    selection(sel)
    sel.set_defaults(run=cmd_select)

    adv = sub.add_parser(
        "advise", help="suggest weights for a use case, with a justification and trade-offs"
    )
    adv.add_argument("use_case", metavar="USE_CASE", help='e.g. "detect objects on a drone"')
    advisor(adv)
    adv.add_argument("--json", metavar="OUT", help="also write the suggestion as JSON to OUT")
    adv.set_defaults(run=cmd_advise)

    run = sub.add_parser(
        "run", help="use case -> suggested weights -> staging (review, edit) -> selection"
    )
    common(run, models=True, weights=None)
    selection(run)
    run.add_argument("--use-case", required=True, metavar="TEXT", help="what the model is for")
    advisor(run)
    run.add_argument(
        "--yes", action="store_true", help="accept the suggested weights without a prompt"
    )
    run.set_defaults(run=cmd_run)

    res = sub.add_parser(
        "resume",
        help="finish a stopped `select`/`run --store` experiment without evaluating anything twice",
    )
    res.add_argument("id", type=int, metavar="ID", help="the experiment id printed at its start")
    res.add_argument("--store", required=True, metavar="PATH", help="the experiment's store")
    res.add_argument("--json", metavar="OUT", help="write the result JSON here (default: as set)")
    res.add_argument("--report", metavar="OUT.md", help="write the report here (default: as set)")
    res.add_argument(
        "--trust",
        action="store_true",
        help="allow pickle-based model files and any builder again: a stored experiment's "
        "trust is not taken from the store",
    )
    res.add_argument(
        "--allow-builder",
        action="append",
        default=[],
        metavar="MODULE:NAME",
        help="as for select; allowed builders are not taken from the store either",
    )
    res.set_defaults(run=cmd_resume)

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
        "--workers",
        type=_positive_int,
        default=None,
        help="worker processes (default: one per core)",
    )
    st.set_defaults(run=cmd_study)

    demo = sub.add_parser(
        "demo",
        help="build (once) and run the bundled real demo: use case -> weights -> selection "
        "of a digit zoo on shifted digits",
    )
    demo.add_argument("--use-case", default=DEMO_USE_CASE, metavar="TEXT")
    demo.add_argument("--weights", default=None, help="set the weights instead of the advisor")
    demo.add_argument("--strategy", default="default")
    demo.add_argument("--budget", default="0.1")
    demo.add_argument("--budget-unit", default="macs", choices=UNITS)
    demo.add_argument("--seed", type=_non_negative_int, default=0)
    demo.add_argument("--out", default="out", help="folder for the JSON result and the report")
    energy_options(demo)
    demo.set_defaults(run=cmd_demo)

    ins = sub.add_parser(
        "inspect", help="list the models of a repository with measured size, MACs and params"
    )
    ins.add_argument("--models", required=True, metavar="REPO", help="as for select")
    ins.add_argument("--json", metavar="OUT", help="also write the table as JSON to OUT")
    real_models(ins)
    ins.set_defaults(run=cmd_inspect)

    srv = sub.add_parser(
        "serve", help="the web app: set-up, staging, live results, history (greenrunner[web])"
    )
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    srv.add_argument("--port", type=int, default=8000, help="port (8000)")
    srv.add_argument(
        "--db",
        metavar="URL",
        help="database URL (default: SQLite in the data folder), "
        "e.g. postgresql+psycopg://user@host/greenrunner",
    )
    srv.add_argument(
        "--data-dir",
        metavar="DIR",
        help="uploads and the SQLite database "
        "(default: web/ in the cache folder, $GREENRUNNER_CACHE)",
    )
    srv.add_argument(
        "--token",
        help="access token the API and pages require (needed to listen on a "
        "non-loopback address); prefer the GREENRUNNER_TOKEN environment variable",
    )
    srv.add_argument(
        "--forwarded-allow-ips",
        default="",
        metavar="IPS",
        help="comma-separated addresses or networks of your reverse proxies: requests from "
        "them take the client's address from X-Forwarded-For and the scheme from "
        "X-Forwarded-Proto, which the proxy must set (replace, not append to what the client "
        "sent). Default: none trusted, so behind a proxy every client has the proxy's address "
        "(one guesser of the token locks all of them out) and https looks like http",
    )
    srv.add_argument("--workers", type=int, default=1, help="experiments run at once (1)")
    srv.add_argument(
        "--lease-seconds",
        type=float,
        default=30.0,
        metavar="S",
        help="a run stays this server's for S seconds without a heartbeat (renewed every "
        "S/5); then any server on the database shows it interrupted (30)",
    )
    srv.add_argument(
        "--max-upload-mb", type=float, default=200.0, help="largest upload in MB (200)"
    )
    srv.add_argument(
        "--check-memory-mb",
        type=int,
        default=2048,
        metavar="MB",
        help="memory that loading and running one uploaded model on one image may take, "
        "beyond the libraries' own: the check runs in a child process, and a model that "
        "needs more is refused; raise it with --max-upload-mb for larger models (2048)",
    )
    srv.add_argument(
        "--check-seconds",
        type=float,
        default=300.0,
        metavar="S",
        help="time that checking an uploaded repository's models may take (300)",
    )
    srv.add_argument(
        "--allow-builder",
        action="append",
        default=[],
        metavar="MODULE:NAME",
        help="also allow uploaded manifests to name this builder: mypackage.models:build "
        "(that one function or nn.Module class), or mypackage.models:* (every function and "
        "nn.Module class that module or its submodules define: all of them can then be "
        "called by uploads with any arguments). Built in: torchvision's classification "
        "builders and the demo zoo's. Repeatable",
    )
    srv.add_argument("--provider", default="offline", choices=PROVIDERS, help="weight advisor")
    srv.add_argument("--base-url", metavar="URL", help="endpoint for --provider openai")
    srv.add_argument("--model", metavar="NAME", help="model for --provider openai or local")
    srv.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR")
    srv.add_argument("--timeout", type=float, default=60.0, help="seconds per LLM request")
    srv.set_defaults(run=cmd_serve)

    ls = sub.add_parser("strategies", help="list the strategies with one line each")
    ls.set_defaults(run=cmd_strategies)
    return parser


def command_options(command: str) -> dict[str, argparse.Action]:
    """The options of one command by destination (``seed`` -> its action, with its type,
    choices and default), so stored settings can be checked by the parser's own rules."""
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            sub: argparse.ArgumentParser = action.choices[command]
            return {a.dest: a for a in sub._actions}
    raise KeyError(command)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    console = Console()
    try:
        check_paths(vars(args))  # a name no file system allows, before anything else
        check_outputs(vars(args))  # an unwritable --json/--report fails before any work
        args.run(args, console)
    except StagingCancelledError as exc:
        Console(stderr=True).print(str(exc), highlight=False)
        return 1
    except GreenRunnerError as exc:
        # escape: messages hold brackets ("pip install 'greenrunner[web]'") rich would eat
        Console(stderr=True).print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted")
        return 130
    except OSError as exc:
        # A file the command needed could not be used (a reader that missed the check, a
        # disk that filled): the file and the reason in one line. Other exceptions are
        # bugs and keep their traceback.
        Console(stderr=True).print(
            f"[bold red]error:[/] {escape(os_error_message(exc))}", highlight=False, soft_wrap=True
        )
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
