"""What the service hands to the REST API and the pages: plain, immutable views.

Each view has ``to_dict()`` in the REST API's JSON shape, so the API and the pages show
the same facts. An experiment's ``result`` is ``SelectionResult.to_dict()`` unchanged; a
list holds :class:`ExperimentSummary` rows, a page of them at a time (:class:`Paging`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from greenrunner.errors import GreenRunnerError
from greenrunner.web.db import MAX_ID, STATUSES

# Lists come a page at a time: a full result is ~15 kB, and 238 of them in one answer
# (3.6 MB) stalled the server. A summary row is a few hundred bytes.
DEFAULT_PAGE = 50
MAX_PAGE = 500
ORDERS = ("newest", "oldest")


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
    owner: str | None = None  # the server process running it (host:pid:random), if running

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def recommended(self) -> str | None:
        return None if self.result is None else str(self.result["top"][0]["name"])


def outcome(result: Mapping[str, Any]) -> dict[str, Any]:
    """What a list shows of a finished run, from its result: the recommended model with
    its accuracy and interval, calls spent and the savings (the result's own names)."""
    top: Mapping[str, Any] = (result.get("top") or [{}])[0]
    return {
        "recommended": top.get("name"),
        "accuracy": top.get("accuracy"),
        "ci_low": top.get("ci_low"),
        "ci_high": top.get("ci_high"),
        "calls": result.get("calls"),
        "brute_force_calls": result.get("brute_force_calls"),
        "savings": dict(result.get("savings") or {}) or None,
    }


@dataclass(frozen=True)
class ExperimentSummary:
    """One row of a list: what the history shows, never the result or the progress.
    ``recommended``, ``accuracy`` (with ``ci_low``/``ci_high``), ``calls`` and
    ``savings`` (calls_fraction, macs_fraction, mmacs) are None until the run is done."""

    id: int
    status: str
    repository: str
    repository_name: str
    dataset: str | None
    dataset_name: str | None
    use_case: str
    strategy: str
    budget: dict[str, Any]
    seed: int
    runs: int
    created: str
    updated: str
    recommended: str | None = None
    accuracy: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    calls: int | None = None
    brute_force_calls: int | None = None
    savings: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Paging:
    """Which page of a list: ``limit`` rows (1 to 500) from ``offset``, only ``status``
    (None for all), ``order`` newest or oldest first. Checked when built, so the API and
    the pages refuse the same values with the same words."""

    limit: int = DEFAULT_PAGE
    offset: int = 0
    status: str | None = None
    order: str = "newest"

    def __post_init__(self) -> None:
        if not _whole(self.limit) or not 1 <= self.limit <= MAX_PAGE:
            raise Rejected(
                f"limit must be a whole number from 1 to {MAX_PAGE}; got {self.limit!r} "
                "(ask for further pages with offset)"
            )
        if not _whole(self.offset) or not 0 <= self.offset <= MAX_ID:
            raise Rejected(f"offset must be a whole number from 0; got {self.offset!r}")
        if self.status is not None and self.status not in STATUSES:
            raise Rejected(
                f"unknown status {_shown(self.status)}; the statuses are {', '.join(STATUSES)} "
                "(leave it out for all)"
            )
        if self.order not in ORDERS:
            raise Rejected(f"order must be newest or oldest; got {_shown(self.order)}")

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Paging:
        """From a page's query string (``limit``, ``offset``, ``status``, ``order``; an
        empty value is the default), with the same refusals as the API."""

        def number(name: str, default: int) -> int:
            raw = (query.get(name) or "").strip()
            if not raw:
                return default
            if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
                raise Rejected(f"{name} must be a whole number; got {_shown(raw)}")
            return int(raw)

        return cls(
            limit=number("limit", DEFAULT_PAGE),
            offset=number("offset", 0),
            status=(query.get("status") or "").strip() or None,
            order=(query.get("order") or "").strip() or "newest",
        )


@dataclass(frozen=True)
class Page:
    """One page of a list and where it sits: ``total`` rows match over all pages."""

    items: tuple[ExperimentSummary, ...]
    total: int
    paging: Paging

    @property
    def next_offset(self) -> int | None:
        following = self.paging.offset + len(self.items)
        return following if following < self.total and self.items else None

    @property
    def previous_offset(self) -> int | None:
        if self.paging.offset == 0:
            return None
        return max(0, min(self.paging.offset, self.total) - self.paging.limit)

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [item.to_dict() for item in self.items],
            "total": self.total,
            "limit": self.paging.limit,
            "offset": self.paging.offset,
            "next_offset": self.next_offset,
        }


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: object, chars: int = 60) -> str:
    """A user's value for a message, cut short: a message must not echo a megabyte."""
    text = repr(value)
    return text if len(text) <= chars else text[: chars - 4] + "...'"
