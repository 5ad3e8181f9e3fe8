"""`select`, `run`, `demo` and `resume`: open a source, settle the weights, select, report."""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from greenrunner.budget import Budget
from greenrunner.errors import ConfigError, GreenRunnerError
from greenrunner.reward import Weights

if TYPE_CHECKING:
    from greenrunner.candidates import Candidate
    from greenrunner.energy import EnergySettings
    from greenrunner.evaluation.executors import Executor
    from greenrunner.evaluation.recording import RecordingExecutor
    from greenrunner.result import SelectionResult
    from greenrunner.store import Experiment, ExperimentStore


from greenrunner.commands._common import (
    check_outputs,
    check_paths,
    finish,
    parse_params,
    write_json,
)
from greenrunner.commands.advice import stage_weights, suggest

DEMO_USE_CASE = (
    "Recommend a model for reading the digits painted on landing pads, deployed on a delivery drone"
)


def _select_on_source(
    args: argparse.Namespace,
    console: Console,
    stage: Callable[[Sequence[Candidate]], Weights],
    executor: Executor,
    recorder: _Recorder | None = None,
) -> tuple[SelectionResult, str, str]:
    """Open the replay or the real models and data, settle the weights for these
    candidates with ``stage``, and select on ``executor``, recording in the store if
    ``recorder`` is given. Returns the result, its source and a note."""
    from greenrunner.api import select
    from greenrunner.render import progress_bar
    from greenrunner.store import real_fingerprint, replay_fingerprint

    budget = Budget.parse(args.budget, args.budget_unit)
    params = _strategy_params(args)
    fingerprint: Callable[[], dict[str, Any]]
    with contextlib.ExitStack() as stack:
        if args.replay:
            from greenrunner.repositories.replay import load_replay

            repo = load_replay(args.replay)
            candidates, evaluator, unavailable = repo.candidates, repo.evaluator, {}
            source, note = f"replay {repo.name}", repo.description
            names = [c.name for c in candidates]

            def fingerprint() -> dict[str, Any]:
                return replay_fingerprint(names, repo.evaluator.correct, repr(repo.candidates))

        else:
            progress = stack.enter_context(progress_bar(console))  # spans loading and selection
            models, dataset, prepared = _open_real(args, progress)
            candidates, evaluator = prepared.candidates, prepared.evaluator
            unavailable = prepared.unavailable
            source = f"models {models.name} on {dataset.name} ({len(dataset)} samples)"
            note = models.description

            def fingerprint() -> dict[str, Any]:
                # Unavailable models have no identity beyond their name: they were not run.
                specs = {
                    s.name: evaluator.identity(s.name) if s.name in evaluator.models else ""
                    for s in models.specs
                }
                return real_fingerprint(dataset.fingerprint(), specs)

        weights = stage(candidates)
        if recorder is not None:
            executor = recorder.wrap(args, executor, weights, fingerprint())
        result = select(
            candidates,
            evaluator,
            weights,
            strategy=args.strategy,
            budget=budget,
            seed=args.seed,
            energy=_energy(args),
            executor=executor,
            **params,
        ).with_unavailable(unavailable)
    return result, source, note


def _strategy_params(args: argparse.Namespace) -> dict[str, Any]:
    """``--param name=value`` pairs, checked against the strategy's declared parameters
    (type and range), so a bad value fails the command at once, before any work."""
    from greenrunner.strategies import check_params

    pairs = getattr(args, "param", None) or []
    return check_params(getattr(args, "strategy", "default"), parse_params(pairs))


def _executor(args: argparse.Namespace) -> Executor:
    """Where evaluations run (select, run); other commands' namespaces lack the options.

    Made before the source is opened, so a Ray cluster that cannot be reached fails the
    command in seconds, before models are loaded or the user is asked about weights."""
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
        # Absent from experiments stored before the option existed: the default then.
        max_image_pixels=getattr(args, "max_image_pixels", None),
        # Never taken from a stored experiment: resume passes its own --allow-builder.
        allow_builders=getattr(args, "allow_builder", None) or (),
    )


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


def cmd_select(args: argparse.Namespace, console: Console) -> None:
    weights = Weights.parse(args.weights)
    _strategy_params(args)
    recorder = _recorder(args, console)
    executor = _executor(args)
    result, source, note = _select_on_source(args, console, lambda _: weights, executor, recorder)
    finish(args, console, result, source, note)
    if recorder is not None:
        recorder.finish(result)


def cmd_resume(args: argparse.Namespace, console: Console) -> None:
    from dataclasses import replace

    from greenrunner.errors import DataError
    from greenrunner.result import SelectionResult
    from greenrunner.store import ExperimentStore, damaged, result_problem

    store = ExperimentStore(args.store, create=False)
    experiment = store.get(args.id)
    if experiment.done:
        assert experiment.result is not None
        problem = result_problem(experiment.result)
        if problem is not None:
            raise damaged(experiment.id, store.path, f"its stored result: {problem}")
        try:
            stored = SelectionResult.from_dict(experiment.result)
        except DataError:
            stored = None  # stored by another version: shown as JSON below
        console.print(f"Experiment {experiment.id} is already done; its stored result:")
        if stored is not None:
            finish(args, console, stored, f"experiment {experiment.id} in {args.store}", "")
            return
        console.print_json(data=experiment.result)  # stored by another version
        if args.json:
            write_json(args.json, experiment.result)
        return
    settings = _stored_settings(experiment.id, store.path, experiment.settings, args)
    run_args = argparse.Namespace(**settings, store=args.store)
    # A resumed run writes where the original asked, unless told otherwise: check those
    # paths before any work too (the command's own options are checked in cli.main).
    check_outputs(settings)
    weights = Weights(settings["weights"])
    recorder = _Recorder(store, console, experiment)
    executor = _executor(run_args)  # its errors are about the cluster, not the source
    try:
        result, source, note = _select_on_source(
            run_args, console, lambda _: weights, executor, recorder
        )
    except GreenRunnerError as exc:
        from greenrunner.adapters.builders import BuilderError

        if recorder.source_opened:
            raise
        if isinstance(exc, BuilderError):  # about this command's --allow-builder/--trust
            raise BuilderError(f"cannot resume experiment {experiment.id}: {exc}") from None
        raise type(exc)(
            f"cannot resume experiment {experiment.id}: {exc}; its source must still be where "
            "it was when the experiment started"
        ) from None
    if settings.get("staging") is not None:
        result = replace(result, staging=settings["staging"])
    finish(run_args, console, result, source, note)
    recorder.finish(result)


def _stored_settings(
    exp_id: int, path: Path, stored: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """A stored experiment's settings, checked by the rules of `select`'s own options
    (types, choices, the parser's validators) before any is used: the store is a file
    anyone who can write it may have edited. Trust and allowed builders are never taken
    from it: they come from this resume command (``--trust``, ``--allow-builder``)."""
    from greenrunner.cli import command_options
    from greenrunner.store import SETTINGS_KEYS, damaged

    unknown = sorted(set(stored) - SETTINGS_KEYS)
    if unknown:
        raise damaged(exp_id, path, f"unknown setting(s) {', '.join(map(repr, unknown[:5]))}")
    options = command_options("select")
    settings: dict[str, Any] = {}
    for key in sorted(SETTINGS_KEYS - {"weights", "staging"}):
        action = options[key]
        if key not in stored:  # stored before the option existed: its default
            settings[key] = action.default
            continue
        try:
            settings[key] = _stored_option(action, stored[key])
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise damaged(exp_id, path, f"setting {key} = {stored[key]!r}: {exc}") from None
    if settings["batch_size"] < 1:  # the parser takes any int; open_real refuses it
        raise damaged(
            exp_id, path, f"setting batch_size = {settings['batch_size']}: must be 1 or more"
        )
    if "weights" not in stored:
        raise damaged(exp_id, path, "its settings have no weights")
    staging = stored.get("staging")
    if staging is not None and not isinstance(staging, dict):
        raise damaged(exp_id, path, f"its staging record is {staging!r}, not a JSON object")
    settings["staging"] = staging
    if (settings["replay"] is None) == (settings["models"] is None):
        raise damaged(exp_id, path, "its settings name neither a replay nor models (or both)")
    try:
        settings["weights"] = dict(Weights(stored["weights"]).values)
        Budget.parse(settings["budget"], settings["budget_unit"])
        _strategy_params(argparse.Namespace(**settings))
        check_paths(settings)
    except GreenRunnerError as exc:
        raise damaged(exp_id, path, str(exc)) from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise damaged(exp_id, path, f"its weights {stored['weights']!r}: {exc}") from None
    if settings["trust"] and not args.trust:
        raise ConfigError(
            f"experiment {exp_id} was started with --trust, which a resume does not take from "
            "the store (anyone who can write the store could have set it): pass --trust to "
            "`greenrunner resume` if you still trust its model files"
        )
    settings["trust"] = bool(args.trust)
    settings["allow_builder"] = list(getattr(args, "allow_builder", None) or [])
    for key in ("json", "report"):
        settings[key] = getattr(args, key) or settings[key]
    return settings


def _stored_option(action: argparse.Action, value: Any) -> Any:
    """One stored option, held to its parser action: a flag is true or false, a list of
    text for a repeatable option, else what the option's type makes of its text; null
    (an option the command that stored it did not have) is the option's default."""
    if value is None:
        return list(action.default) if isinstance(action.default, list) else action.default
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if isinstance(action, argparse._AppendAction):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("must be a list of text")
        return list(value)
    convert = action.type
    if convert is None or convert is str:
        if not isinstance(value, str):
            raise ValueError("must be text")
        converted: Any = value
    else:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
        converted = convert(str(value))  # type: ignore[operator]  # the parser's own type
        if isinstance(converted, float) and not math.isfinite(converted):
            raise ValueError("must be a finite number")
    if action.choices is not None and converted not in action.choices:
        raise ValueError(f"must be one of {', '.join(map(str, action.choices))}")
    return converted


def cmd_run(args: argparse.Namespace, console: Console) -> None:
    from dataclasses import replace

    from greenrunner.reasoning.staging import fit_to_candidates

    # A store path that cannot be used, or a cluster that cannot be reached, fails before
    # the advisor and the staging prompt (the store itself is created once they settle).
    if getattr(args, "store", None):
        from greenrunner.store import check_store_path

        check_store_path(Path(args.store), create=True)
    _strategy_params(args)  # before the advisor and the staging prompt
    executor = _executor(args)
    suggestion = suggest(args, console)
    record = stage_weights(args, console, suggestion)

    def stage(candidates: Sequence[Candidate]) -> Weights:
        nonlocal record
        weights, notes = fit_to_candidates(record.weights, candidates)
        for note in notes:
            console.print(f"[yellow]Note:[/] {note}", highlight=False)
        record = replace(record, weights=weights, notes=(*record.notes, *notes))
        return weights

    recorder = _recorder(args, console, lambda: record.to_dict())
    result, source, note = _select_on_source(args, console, stage, executor, recorder)
    result = replace(result, staging=record.to_dict())
    finish(args, console, result, source, note)
    if recorder is not None:
        recorder.finish(result)


def cmd_demo(args: argparse.Namespace, console: Console) -> None:
    from greenrunner.demo.build import ensure_demo

    out = Path(args.out)
    outputs = {"json": str(out / "demo-result.json"), "report": str(out / "demo-report.md")}
    check_outputs(outputs)  # before the zoo is trained
    console.print("Demo: digit classifiers trained on clean digits, a shifted target set.")
    folder = ensure_demo(progress=True)
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
        **outputs,
    )
    cmd_run(demo_args, console)
