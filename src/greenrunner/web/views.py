"""What the service hands to the REST API and the pages: plain, immutable views.

Each view has ``to_dict()`` in the REST API's JSON shape, so the API and the pages show
the same facts. An experiment's ``result`` is ``SelectionResult.to_dict()`` unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from greenrunner.errors import GreenRunnerError


class ServiceError(GreenRunnerError):
    """A request the service refuses; ``status`` is the HTTP status the API answers with."""

    status = 400


class NotFound(ServiceError):  # noqa: N818 (HTTP-style names)
    status = 404


class Rejected(ServiceError):  # noqa: N818 (HTTP-style names)
    """Invalid input (a bad value, an upload that is not what it claims to be)."""

    status = 400


class Conflict(ServiceError):  # noqa: N818 (HTTP-style names)
    """The request does not fit the experiment's state (start twice, edit while running)."""

    status = 409


class TooLarge(ServiceError):  # noqa: N818 (HTTP-style names)
    status = 413


@dataclass(frozen=True)
class RepositoryView:
    """``kind``: ``replay`` (recorded outcomes), ``bundled-real`` (the digits demo zoo,
    built on first use) or ``uploaded``. ``n_models`` is None until known (the demo before
    its first build). ``default_dataset`` is the dataset used when none is chosen."""

    id: str
    name: str
    kind: str
    n_models: int | None
    description: str = ""
    created: str = ""
    needs_dataset: bool = True
    default_dataset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DatasetView:
    """``kind``: ``bundled`` or ``uploaded``; ``n_samples`` None until known."""

    id: str
    name: str
    kind: str
    n_samples: int | None
    classes: tuple[str, ...] = ()
    description: str = ""
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["classes"] = list(self.classes)
        return out


@dataclass(frozen=True)
class ExperimentRequest:
    """What the set-up screen (or ``POST /api/experiments``) asks for.

    ``budget``: a fraction of brute force in (0, 1], an absolute number of calls or MACs,
    or text such as ``"10%"``. ``dataset`` may be None for a replay (its samples are
    recorded) and for the demo zoo (its bundled target is used)."""

    repository: str
    use_case: str
    dataset: str | None = None
    strategy: str = "default"
    budget: float | str = 0.1
    budget_unit: str = "calls"
    seed: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExperimentView:
    """One experiment as the API returns it.

    ``progress``: ``phase`` (queued, building the demo, loading models, selecting,
    finished), ``done_calls``, ``budget_calls`` (None for a MAC budget), ``spent`` and
    ``budget_limit`` in the budget's unit, ``fraction`` of the budget spent, ``pulls`` per
    model so far, ``leader`` (the current best estimate) and ``detail``.
    ``suggestion``: the advisor's ``WeightSuggestion.to_dict()``; ``weights``: what the
    run uses (the suggestion or the user's edit, summing to 1); ``decision``: accepted or
    edited. ``summary``: ``source`` and ``note`` (for reports) and ``benchmark`` (the model
    the card-accuracy approach would pick, at no evaluation cost), once a run finished.
    """

    id: int
    status: str
    repository: str
    repository_name: str
    dataset: str | None
    dataset_name: str | None
    use_case: str
    strategy: str
    params: dict[str, Any]
    budget: dict[str, Any]
    seed: int
    suggestion: dict[str, Any] | None
    weights: dict[str, float]
    decision: str
    progress: dict[str, Any]
    result: dict[str, Any] | None
    summary: dict[str, Any]
    error: str | None
    runs: int
    created: str
    updated: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def recommended(self) -> str | None:
        return None if self.result is None else str(self.result["top"][0]["name"])
