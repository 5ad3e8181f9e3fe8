"""Checks at set-up and staging: everything a user can get wrong is refused before a run.

A bad strategy, budget, seed, a dataset whose classes match no model class, a dataset
given for a replay: each is a one-line message at ``POST /api/experiments``, not a failed
run minutes later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from greenrunner.budget import Budget
from greenrunner.errors import ConfigError, DataError
from greenrunner.reasoning.suggestion import WeightSuggestion, check_use_case, normalise
from greenrunner.reward import Weights
from greenrunner.web import catalog
from greenrunner.web.db import MAX_KEY_CHARS, DatasetRow, RepositoryRow, valid_key
from greenrunner.web.settings import WebSettings
from greenrunner.web.views import ExperimentRequest, NotFound, Rejected

Row = TypeVar("Row", RepositoryRow, DatasetRow)


def check_request(s: Session, request: ExperimentRequest) -> dict[str, Any]:
    """The experiment's stored fields, once every part of the request checks out."""
    from greenrunner.strategies import check_params

    repo = _lookup(s, RepositoryRow, request.repository)
    if repo is None:
        raise NotFound(
            f"no repository {_shown(request.repository)}; GET /api/repositories lists them"
        )
    dataset_id = request.dataset or None
    if repo.kind == "replay" and dataset_id is not None:
        raise Rejected(
            f"{repo.name} is a replay: it carries its own recorded samples, so it takes no "
            "dataset; leave the dataset empty"
        )
    if repo.id == catalog.DEMO_REPOSITORY and dataset_id is None:
        dataset_id = catalog.DEMO_DATASET
    dataset = None
    if repo.kind != "replay":
        if dataset_id is None:
            raise Rejected(
                f"repository {repo.name} needs a target dataset: pick one or upload a zip "
                "of an ImageFolder (POST /api/datasets)"
            )
        dataset = _lookup(s, DatasetRow, dataset_id)
        if dataset is None:
            raise NotFound(f"no dataset {_shown(dataset_id)}; GET /api/datasets lists them")
    seed = request.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise Rejected(f"seed must be an integer from 0 to 2147483647; got {seed!r}")
    # An unknown strategy or parameter, or a value of the wrong type or out of range, is
    # named here; what is stored is the checked values (the run checks them again).
    params = check_params(request.strategy, request.params)
    budget = _budget(request.budget, request.budget_unit)
    check_use_case(request.use_case)
    if repo.kind == "uploaded" and dataset is not None:
        _check_classes(repo, dataset)
    return {
        "repository_id": repo.id,
        "dataset_id": dataset.id if dataset else None,
        "use_case": " ".join(request.use_case.split()),
        "strategy": request.strategy,
        "params": params,
        "budget": float(budget.value),
        "budget_unit": budget.unit,
        "seed": seed,
    }


def _lookup(s: Session, table: type[Row], key: object) -> Row | None:
    """The row with id ``key``; None also for a key no row can have (not text, longer than
    the id column, control characters), which must not reach the database: PostgreSQL
    answers a NUL character with an error, not with no row."""
    return s.get(table, key) if valid_key(key) else None


def _shown(key: object) -> str:
    """An id for a message: its repr, cut to a little over the longest real id."""
    text = repr(key)
    limit = MAX_KEY_CHARS + 10
    return text if len(text) <= limit else text[:limit] + "...' (cut short)"


def _budget(value: float | str, unit: str) -> Budget:
    if isinstance(value, str):
        return Budget.parse(value, unit)
    if unit not in ("calls", "macs"):
        raise ConfigError(f"budget unit must be calls or macs; got {unit!r}")
    return Budget(value, unit)  # type: ignore[arg-type]  # unit checked just above


def _check_classes(repo: RepositoryRow, dataset: DatasetRow) -> None:
    """Every target class must name a class of every model (the web app has no label
    map), checked on the class lists alone: no model is loaded."""
    from greenrunner.datasets.labels import build_label_map
    from greenrunner.repositories.models import open_models

    if not dataset.classes:
        return
    for spec in open_models(repo.path).specs:
        if spec.classes is None:
            continue
        try:
            build_label_map(dataset.classes, spec.classes)
        except DataError as exc:
            detail = str(exc).split("; give a label map")[0]
            raise Rejected(
                f"dataset {dataset.name} does not fit model {spec.name!r} of {repo.name}: "
                f"{detail}. The dataset's class names (its folder names or CSV labels) must "
                f"be the models' class names; the models know: "
                f"{', '.join(spec.classes[:8])}{' ...' if len(spec.classes) > 8 else ''}"
            ) from None


def suggest(settings: WebSettings, use_case: str) -> WeightSuggestion:
    """The configured advisor's suggestion (offline by default: instant, no network)."""
    from greenrunner.reasoning import advise, make_advisor

    return advise(make_advisor(settings.advisor), use_case)


def staged_weights(
    weights: Mapping[str, float], suggestion: Mapping[str, Any] | None
) -> tuple[dict[str, float], str]:
    """The user's weights scaled to sum 1, and the staging decision they amount to."""
    if not isinstance(weights, Mapping) or not weights:
        raise ConfigError(
            "weights must be an object of metric: weight, e.g. "
            '{"accuracy": 0.6, "size": 0.2, "complexity": 0.2}'
        )
    checked = Weights(dict(weights))  # names, numbers, non-negative, not all zero
    scaled = Weights(normalise(checked.values)).as_dict()
    suggested = (suggestion or {}).get("weights") or {}
    same = all(
        abs(scaled.get(k, 0.0) - float(suggested.get(k, 0.0))) < 1e-9 for k in {*scaled, *suggested}
    )
    return scaled, "accepted" if same else "edited"
