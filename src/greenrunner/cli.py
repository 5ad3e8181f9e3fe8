"""The command line: parses arguments, calls the Python API, renders with rich.

Every user mistake ends as one clear line on stderr and exit status 2; a traceback means a
bug in GreenRunner.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from greenrunner import __version__
from greenrunner.budget import UNITS, Budget
from greenrunner.errors import ConfigError, GreenRunnerError
from greenrunner.reasoning.providers import PROVIDERS
from greenrunner.render import print_result, print_strategies, print_study
from greenrunner.reward import Weights

if TYPE_CHECKING:
    from greenrunner.candidates import Candidate
    from greenrunner.energy import EnergySettings
    from greenrunner.evaluation.executors import Executor
    from greenrunner.evaluation.recording import RecordingExecutor
    from greenrunner.reasoning.suggestion import WeightSuggestion
    from greenrunner.result import SelectionResult
    from greenrunner.store import Experiment, ExperimentStore

EXIT_USER_ERROR = 2
DEMO_USE_CASE = (
    "Recommend a model for reading the digits painted on landing pads, deployed on a delivery drone"
)


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
    _write_text(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")


def _write_text(path: str, text: str) -> None:
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise GreenRunnerError(f"cannot write {path}: {exc.strerror or exc}") from None


class StagingCancelledError(GreenRunnerError):
    """The user declined the weights at staging."""


def _select_on_source(
    args: argparse.Namespace,
    console: Console,
    stage: Callable[[Sequence[Candidate]], Weights],
    recorder: _Recorder | None = None,
) -> tuple[SelectionResult, str, str]:
    """Open the replay or the real models and data, settle the weights for these
    candidates with ``stage``, and select, recording in the store if ``recorder`` is given.
    Returns the result, its source and a note."""
    from greenrunner.api import select
    from greenrunner.store import real_fingerprint, replay_fingerprint

    budget = Budget.parse(args.budget, args.budget_unit)
    params = _params(getattr(args, "param", []))
    if args.replay:
        from greenrunner.repositories.replay import load_replay

        repo = load_replay(args.replay)
        weights = stage(repo.candidates)
        executor = _executor(args)
        if recorder is not None:
            names = [c.name for c in repo.candidates]
            fingerprint = replay_fingerprint(names, repo.evaluator.correct, repr(repo.candidates))
            executor = recorder.wrap(args, executor, weights, fingerprint)
        result = select(
            repo.candidates,
            repo.evaluator,
            weights,
            strategy=args.strategy,
            budget=budget,
            seed=args.seed,
            energy=_energy(args),
            executor=executor,
            **params,
        )
        return result, f"replay {repo.name}", repo.description
    from greenrunner.render import progress_bar

    with progress_bar(console) as progress:
        models, dataset, prepared = _open_real(args, progress)
        weights = stage(prepared.candidates)
        executor = _executor(args)
        if recorder is not None:
            fingerprint = real_fingerprint(
                dataset.fingerprint(), {s.name: s.fingerprint() for s in models.specs}
            )
            executor = recorder.wrap(args, executor, weights, fingerprint)
        result = select(
            prepared.candidates,
            prepared.evaluator,
            weights,
            strategy=args.strategy,
            budget=budget,
            seed=args.seed,
            energy=_energy(args),
            executor=executor,
            **params,
        ).with_unavailable(prepared.unavailable)
    return (
        result,
        f"models {models.name} on {dataset.name} ({len(dataset)} samples)",
        (models.description),
    )


def _executor(args: argparse.Namespace) -> Executor:
    """Where evaluations run (select, run); other commands' namespaces lack the options."""
    import atexit

    from greenrunner.evaluation.executors import RayOptions, create_executor

    address = getattr(args, "address", None)
    options = RayOptions(
        address=address,
        num_cpus=getattr(args, "cpus_per_model", 1.0),
        num_gpus=getattr(args, "gpus_per_model", 0.0),
    )
    executor = create_executor(getattr(args, "executor", "inprocess"), options)
    # The command ends with the process: release Ray's workers (and a Ray instance this
    # process started) then, without threading a context manager through every command.
    atexit.register(executor.close)
    return executor


def _energy(args: argparse.Namespace) -> EnergySettings:
    """The energy options (select, run, demo); other commands' namespaces lack them."""
    from greenrunner.energy import EnergySettings

    return EnergySettings(
        mode=getattr(args, "energy", "auto"),
        country=getattr(args, "country", None),
        region=getattr(args, "region", None),
    )


def _open_real(args: argparse.Namespace, progress: Any) -> Any:
    from greenrunner.api import open_real

    if not args.data:
        raise ConfigError("--models needs --data DATASET (an ImageFolder, a CSV, IDX or .npz)")
    return open_real(
        args.models,
        args.data,
        label_map=args.label_map,
        restrict=args.restrict_logits,
        trust=args.trust,
        use_cache=not args.no_cache,
        batch_size=args.batch_size,
        progress=progress,
    )


def _finish(
    args: argparse.Namespace, console: Console, result: SelectionResult, source: str, note: str
) -> None:
    """Print the result and write the JSON and the report where asked."""
    from greenrunner.report import markdown_report

    print_result(console, result, source=source, note=note)
    if args.json:
        _write_json(args.json, result.to_dict())
        console.print(f"Result written to {args.json}")
    if args.report:
        _write_text(args.report, markdown_report(result, source=source, note=note))
        console.print(f"Report written to {args.report}")


class _Recorder:
    """Ties one selection to ``--store``: creates the experiment (or takes up a stored one)
    once the weights are settled, records every observation (around the executor, so it
    stays in this process on a cluster too), stores the result."""

    def __init__(
        self,
        store: ExperimentStore,
        console: Console,
        experiment: Experiment | None = None,
        staging: Callable[[], dict[str, Any] | None] = lambda: None,
    ) -> None:
        self.store, self.console, self.experiment = store, console, experiment
        self.staging = staging
        self.executor: RecordingExecutor | None = None
        self.source_opened = False  # the source opened; errors from here on are not about it

    def wrap(
        self,
        args: argparse.Namespace,
        executor: Executor,
        weights: Weights,
        fingerprint: dict[str, Any],
    ) -> RecordingExecutor:
        from greenrunner.evaluation.recording import RecordingExecutor
        from greenrunner.store import settings_from_options, source_changes

        self.source_opened = True
        where = self.store.path
        if self.experiment is None:
            settings = settings_from_options(vars(args), weights.values, self.staging())
            exp_id = self.store.create(settings, fingerprint)
            self.console.print(
                f"Experiment {exp_id} in {where}; if stopped, resume with: "
                f"greenrunner resume {exp_id} --store {where}",
                highlight=False,
                soft_wrap=True,
            )
        else:
            exp_id = self.experiment.id
            changes = source_changes(self.experiment.fingerprint, fingerprint)
            if changes:
                raise ConfigError(
                    f"experiment {exp_id}'s source changed since it started "
                    f"({'; '.join(changes)}), so its stored observations no longer apply; "
                    "restore the original files, or start a new experiment with "
                    "`greenrunner select ... --store`"
                )
            before = self.store.count(exp_id)
            self.console.print(
                f"Resuming experiment {exp_id}: {before:,} observations stored in {where}.",
                highlight=False,
                soft_wrap=True,
            )
        self.executor = RecordingExecutor(executor, self.store, exp_id)
        return self.executor

    def finish(self, result: SelectionResult) -> None:
        assert self.executor is not None
        rec = self.executor
        self.store.finish(rec.experiment, result.to_dict())
        self.console.print(
            f"Store: experiment {rec.experiment} done; {rec.computed:,} evaluations computed "
            f"by this run, {rec.served:,} served from the store.",
            highlight=False,
            soft_wrap=True,
        )


def _recorder(
    args: argparse.Namespace,
    console: Console,
    staging: Callable[[], dict[str, Any] | None] = lambda: None,
) -> _Recorder | None:
    if not getattr(args, "store", None):
        return None
    from greenrunner.store import ExperimentStore

    return _Recorder(ExperimentStore(args.store), console, staging=staging)


def _cmd_select(args: argparse.Namespace, console: Console) -> None:
    weights = Weights.parse(args.weights)
    recorder = _recorder(args, console)
    result, source, note = _select_on_source(args, console, lambda _: weights, recorder)
    _finish(args, console, result, source, note)
    if recorder is not None:
        recorder.finish(result)


def _cmd_resume(args: argparse.Namespace, console: Console) -> None:
    from dataclasses import replace

    from greenrunner.store import ExperimentStore, result_from_dict

    if not Path(args.store).is_file():
        raise ConfigError(
            f"no store at {args.store}; give the --store path the experiment was started with"
        )
    store = ExperimentStore(args.store)
    experiment = store.get(args.id)
    settings = dict(experiment.settings)
    for key in ("json", "report"):
        settings[key] = getattr(args, key) or settings.get(key)
    run_args = argparse.Namespace(**settings, store=args.store)
    if experiment.done:
        assert experiment.result is not None
        console.print(f"Experiment {experiment.id} is already done; its stored result:")
        stored = result_from_dict(experiment.result)
        if stored is not None:
            _finish(args, console, stored, f"experiment {experiment.id} in {args.store}", "")
            return
        console.print_json(data=experiment.result)  # stored by another version
        if args.json:
            _write_json(args.json, experiment.result)
        return
    weights = Weights(settings["weights"])
    recorder = _Recorder(store, console, experiment)
    try:
        result, source, note = _select_on_source(run_args, console, lambda _: weights, recorder)
    except GreenRunnerError as exc:
        if recorder.source_opened:
            raise
        raise type(exc)(
            f"cannot resume experiment {experiment.id}: {exc}; its source must still be where "
            "it was when the experiment started"
        ) from None
    if settings.get("staging") is not None:
        result = replace(result, staging=settings["staging"])
    _finish(run_args, console, result, source, note)
    recorder.finish(result)


def _suggest(args: argparse.Namespace, console: Console) -> WeightSuggestion:
    from greenrunner.reasoning import ProviderSettings, advise, make_advisor
    from greenrunner.render import print_suggestion

    settings = ProviderSettings(
        provider=args.provider,
        base_url=args.base_url,
        model=args.model,
        api_key_env=args.api_key_env,
        timeout=args.timeout,
    )
    advisor = make_advisor(settings)
    with console.status(f"Asking the {settings.provider} advisor..."):
        suggestion = advise(advisor, args.use_case, samples=args.samples)
    print_suggestion(console, suggestion)
    return suggestion


def _cmd_advise(args: argparse.Namespace, console: Console) -> None:
    suggestion = _suggest(args, console)
    if args.json:
        _write_json(args.json, suggestion.to_dict())
        console.print(f"Suggestion written to {args.json}")


def _stage(args: argparse.Namespace, console: Console, suggestion: WeightSuggestion) -> Any:
    """The staging step: --weights or --yes decide at once; otherwise the user accepts the
    suggested weights or edits them at a prompt."""
    from greenrunner.reasoning.staging import StagingRecord, apply_edit

    if args.weights:
        return StagingRecord(
            suggestion,
            Weights.parse(args.weights),
            "given",
            ("--weights replaced the suggested weights",),
        )
    if args.yes:
        return StagingRecord(suggestion, suggestion.weights, "accepted")
    current = suggestion.weights
    console.print(
        "Review the weights. Press Enter to accept them; type changes as metric=value "
        "(e.g. size=0.4 or accuracy=0.7,complexity=0.1; the rest keep their values and all "
        "are scaled to sum 1); q cancels."
    )
    while True:
        try:
            answer = console.input(f"weights [bold]{current}[/] > ").strip()
        except EOFError:
            raise ConfigError(
                "staging needs an answer on standard input; pass --yes to accept the "
                "suggested weights or --weights to set them"
            ) from None
        if answer.lower() in ("", "y", "yes"):
            if current == suggestion.weights:
                return StagingRecord(suggestion, current, "accepted")
            return StagingRecord(suggestion, current, "edited")
        if answer.lower() in ("q", "quit", "n", "no"):
            raise StagingCancelledError("cancelled at staging; nothing was run")
        try:
            current = apply_edit(current, answer)
        except ConfigError as exc:
            console.print(f"[red]{exc}[/]", highlight=False)


def _cmd_run(args: argparse.Namespace, console: Console) -> None:
    from dataclasses import replace

    from greenrunner.reasoning.staging import fit_to_candidates

    suggestion = _suggest(args, console)
    record = _stage(args, console, suggestion)

    def stage(candidates: Sequence[Candidate]) -> Weights:
        nonlocal record
        weights, notes = fit_to_candidates(record.weights, candidates)
        for note in notes:
            console.print(f"[yellow]Note:[/] {note}", highlight=False)
        record = replace(record, weights=weights, notes=(*record.notes, *notes))
        return weights

    recorder = _recorder(args, console, lambda: record.to_dict())
    result, source, note = _select_on_source(args, console, stage, recorder)
    result = replace(result, staging=record.to_dict())
    _finish(args, console, result, source, note)
    if recorder is not None:
        recorder.finish(result)


def _cmd_demo(args: argparse.Namespace, console: Console) -> None:
    from greenrunner.demo.build import ensure_demo

    console.print("Demo: digit classifiers trained on clean digits, a shifted target set.")
    folder = ensure_demo(progress=True)
    out = Path(args.out)
    # The demo is the `run` pipeline on the bundled zoo, with the offline advisor and no
    # prompt, so it runs unattended.
    demo_args = argparse.Namespace(
        **vars(args),
        models=str(folder),
        data=str(folder / "target"),
        replay=None,
        label_map=None,
        restrict_logits=False,
        trust=False,
        no_cache=False,
        batch_size=64,
        provider="offline",
        base_url=None,
        model=None,
        api_key_env="OPENAI_API_KEY",
        timeout=60.0,
        samples=1,
        yes=True,
        json=str(out / "demo-result.json"),
        report=str(out / "demo-report.md"),
    )
    _cmd_run(demo_args, console)


def _cmd_inspect(args: argparse.Namespace, console: Console) -> None:
    from greenrunner.evaluation.cache import PredictionCache
    from greenrunner.evaluation.inference import measure_models
    from greenrunner.render import print_inspection, progress_bar
    from greenrunner.repositories.models import open_models

    repo = open_models(args.models)
    specs = list(repo.specs)
    if args.trust:
        from dataclasses import replace

        specs = [replace(s, trust=True) for s in specs]
    cache = None if args.no_cache else PredictionCache()
    with progress_bar(console) as progress:
        rows = measure_models(specs, cache=cache, progress=progress)
    print_inspection(console, repo.name, rows)
    if args.json:
        _write_json(args.json, rows)
        console.print(f"Written to {args.json}")


def _cmd_study(args: argparse.Namespace, console: Console) -> None:
    from greenrunner.repositories.replay import load_replay
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


def _cmd_serve(args: argparse.Namespace, console: Console) -> None:
    import importlib.util

    from greenrunner.reasoning import ProviderSettings
    from greenrunner.web.settings import (
        DEFAULT_BUILDERS,
        MB,
        WebSettings,
        default_data_dir,
        resolve_token,
    )

    missing = [
        m
        for m in ("fastapi", "uvicorn", "sqlalchemy", "jinja2", "multipart")
        if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise ConfigError(f"the web app needs {', '.join(missing)}: pip install 'greenrunner[web]'")
    settings = WebSettings(
        data_dir=Path(args.data_dir) if args.data_dir else default_data_dir(),
        db_url=args.db,
        host=args.host,
        port=args.port,
        token=resolve_token(args.token),
        workers=args.workers,
        max_upload_bytes=int(args.max_upload_mb * MB),
        builders=(*DEFAULT_BUILDERS, *args.allow_builder),
        advisor=ProviderSettings(
            provider=args.provider,
            base_url=args.base_url,
            model=args.model,
            api_key_env=args.api_key_env,
            timeout=args.timeout,
        ),
    )
    from greenrunner.web.app import serve

    serve(settings, console)


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

    def real_models(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--trust",
            action="store_true",
            help="allow pickle-based model files (they can run code when loaded)",
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
        p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
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
    sel.set_defaults(run=_cmd_select)

    adv = sub.add_parser(
        "advise", help="suggest weights for a use case, with a justification and trade-offs"
    )
    adv.add_argument("use_case", metavar="USE_CASE", help='e.g. "detect objects on a drone"')
    advisor(adv)
    adv.add_argument("--json", metavar="OUT", help="also write the suggestion as JSON to OUT")
    adv.set_defaults(run=_cmd_advise)

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
    run.set_defaults(run=_cmd_run)

    res = sub.add_parser(
        "resume",
        help="finish a stopped `select`/`run --store` experiment without evaluating anything twice",
    )
    res.add_argument("id", type=int, metavar="ID", help="the experiment id printed at its start")
    res.add_argument("--store", required=True, metavar="PATH", help="the experiment's store")
    res.add_argument("--json", metavar="OUT", help="write the result JSON here (default: as set)")
    res.add_argument("--report", metavar="OUT.md", help="write the report here (default: as set)")
    res.set_defaults(run=_cmd_resume)

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
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="out", help="folder for the JSON result and the report")
    energy_options(demo)
    demo.set_defaults(run=_cmd_demo)

    ins = sub.add_parser(
        "inspect", help="list the models of a repository with measured size, MACs and params"
    )
    ins.add_argument("--models", required=True, metavar="REPO", help="as for select")
    ins.add_argument("--json", metavar="OUT", help="also write the table as JSON to OUT")
    real_models(ins)
    ins.set_defaults(run=_cmd_inspect)

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
    srv.add_argument("--workers", type=int, default=1, help="experiments run at once (1)")
    srv.add_argument(
        "--max-upload-mb", type=float, default=200.0, help="largest upload in MB (200)"
    )
    srv.add_argument(
        "--allow-builder",
        action="append",
        default=[],
        metavar="MODULE:",
        help="also allow uploaded manifests to name builders starting with this "
        "(e.g. mypackage.models:); repeatable",
    )
    srv.add_argument("--provider", default="offline", choices=PROVIDERS, help="weight advisor")
    srv.add_argument("--base-url", metavar="URL", help="endpoint for --provider openai")
    srv.add_argument("--model", metavar="NAME", help="model for --provider openai or local")
    srv.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR")
    srv.add_argument("--timeout", type=float, default=60.0, help="seconds per LLM request")
    srv.set_defaults(run=_cmd_serve)

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
