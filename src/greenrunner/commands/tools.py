"""`inspect`, `study`, `serve` and `strategies`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from greenrunner.budget import Budget
from greenrunner.errors import ConfigError
from greenrunner.render import print_strategies, print_study
from greenrunner.reward import Weights

if TYPE_CHECKING:
    pass


from greenrunner.commands._common import write_json


def cmd_inspect(args: argparse.Namespace, console: Console) -> None:
    from greenrunner.adapters.builders import BuilderPolicy
    from greenrunner.evaluation.base import EvaluationError
    from greenrunner.evaluation.cache import PredictionCache
    from greenrunner.evaluation.inference import measure_models
    from greenrunner.render import print_inspection, progress_bar
    from greenrunner.repositories.models import open_models

    policy = BuilderPolicy(args.allow_builder)
    repo = open_models(args.models)
    specs = list(repo.specs)
    if args.trust:
        from dataclasses import replace

        specs = [replace(s, trust=True) for s in specs]
    policy.check_specs(specs)  # before any model's module is imported
    cache = None if args.no_cache else PredictionCache()
    with progress_bar(console) as progress:
        rows = measure_models(specs, cache=cache, progress=progress)
    print_inspection(console, repo.name, rows)
    if args.json:
        write_json(args.json, rows)
        console.print(f"Written to {args.json}")
    failed = [row for row in rows if row.get("status") != "ok"]
    if rows and len(failed) == len(rows):
        raise EvaluationError(
            f"none of the {len(rows)} model(s) in {repo.name} could be loaded and measured "
            f"(first: {failed[0]['name']}: {failed[0].get('note', '')}); see the table above"
        )


def cmd_study(args: argparse.Namespace, console: Console) -> None:
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
        write_json(args.json, [r.as_dict() for r in rows])
        console.print(f"Study written to {args.json}")


def cmd_serve(args: argparse.Namespace, console: Console) -> None:
    import importlib.util

    from greenrunner.reasoning import ProviderSettings
    from greenrunner.web.settings import (
        DEFAULT_BUILDERS,
        MB,
        WebSettings,
        default_data_dir,
        parse_proxies,
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
        lease_seconds=args.lease_seconds,
        max_upload_bytes=int(args.max_upload_mb * MB),
        check_memory_bytes=args.check_memory_mb * MB,
        check_seconds=args.check_seconds,
        builders=(*DEFAULT_BUILDERS, *args.allow_builder),
        forwarded_allow_ips=parse_proxies(args.forwarded_allow_ips),
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


def cmd_strategies(args: argparse.Namespace, console: Console) -> None:
    print_strategies(console)
