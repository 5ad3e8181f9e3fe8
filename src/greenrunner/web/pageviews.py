"""What the pages show, computed from the service's views: plain dicts for the templates.

The templates only format; every choice (which rows make the top-3, what the benchmark pick
scored on the target, how a weight's share is computed) is made here, where it is typed and
testable without a browser.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from greenrunner.reasoning.suggestion import CORE_METRICS
from greenrunner.render import STOP_REASONS
from greenrunner.reward import METRICS
from greenrunner.web.db import MAX_ID
from greenrunner.web.views import DEFAULT_PAGE, ExperimentSummary, ExperimentView, Page

# The compare page loads each experiment whole; more columns than this are unreadable anyway.
MAX_COMPARE = 10

# Statuses of an experiment whose run has not ended: the results page polls while in these.
LIVE = ("running",)
# Slider resolution: the staging page's sliders move in steps of 0.01.
SLIDER_DECIMALS = 2


def budget_text(budget: Mapping[str, Any]) -> str:
    """``10% of brute-force calls`` or ``5,000 calls`` (a value above 1 is absolute)."""
    value, unit = float(budget.get("value", 0.0)), str(budget.get("unit", "calls"))
    if 0 < value <= 1:
        return f"{value * 100:g}% of brute-force {'MACs' if unit == 'macs' else 'calls'}"
    return f"{value:,.0f} {'MACs' if unit == 'macs' else 'calls'}"


def metric_rows(view: ExperimentView) -> list[dict[str, Any]]:
    """One slider per metric: the core three always, then any other metric weighed.

    ``value`` is what the slider shows (the experiment's current weights), ``suggested`` the
    advisor's, ``share`` the value after scaling to sum 1, ``about`` what the metric measures
    (the advisor's trade-offs have their own panel).
    """
    suggested: Mapping[str, float] = (view.suggestion or {}).get("weights") or {}
    names = list(CORE_METRICS) + [
        n for n in (*suggested, *view.weights) if n not in CORE_METRICS and n in METRICS
    ]
    names = list(dict.fromkeys(names))
    values = {n: float(view.weights.get(n, suggested.get(n, 0.0))) for n in names}
    total = sum(values.values()) or 1.0
    return [
        {
            "name": n,
            "value": values[n],
            "suggested": float(suggested.get(n, 0.0)),
            "share": values[n] / total,
            "about": METRICS[n].description,
        }
        for n in names
    ]


def posted_weights(form: Mapping[str, str], view: ExperimentView) -> dict[str, float]:
    """The weights from the staging form (fields ``weight-<metric>``).

    A slider the user did not move posts the suggestion rounded to the slider's step; it is
    mapped back to the exact suggested value, so accepting the suggestion unchanged is
    recorded as accepted, not as an edit by rounding.
    """
    suggested: Mapping[str, float] = (view.suggestion or {}).get("weights") or {}
    out: dict[str, float] = {}
    for key, raw in form.items():
        if not key.startswith("weight-"):
            continue
        name = key.removeprefix("weight-")
        try:
            value = float(raw)
        except ValueError:
            value = math.nan  # the service names the metric and refuses the value
        exact = suggested.get(name)
        if exact is not None and abs(value - round(float(exact), SLIDER_DECIMALS)) < 1e-9:
            value = float(exact)
        out[name] = value
    return out


def _model_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    models: Sequence[Mapping[str, Any]] = result.get("models") or []
    recommended = (result.get("top") or [{}])[0].get("name")
    return [{**m, "recommended": m.get("name") == recommended} for m in models]


def top_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The first three of the ranking that did not fail: the contenders first, then the
    best of the eliminated (whose status the table shows). ``result["top"]`` holds only
    contenders, which after an early stop may be a single model."""
    return [m for m in _model_rows(result) if m.get("status") != "failed"][:3]


def savings(result: Mapping[str, Any]) -> dict[str, Any]:
    """Compute spent and saved against brute force, in MMACs and calls."""
    saved: Mapping[str, Any] = result.get("savings") or {}
    macs, bf_macs = result.get("macs"), result.get("brute_force_macs")
    return {
        "mmacs_saved": saved.get("mmacs"),
        "macs_fraction": saved.get("macs_fraction"),
        "calls_fraction": saved.get("calls_fraction"),
        "mmacs_spent": None if macs is None else macs / 1e6,
        "mmacs_brute_force": None if bf_macs is None else bf_macs / 1e6,
        "calls": result.get("calls"),
        "brute_force_calls": result.get("brute_force_calls"),
    }


def energy(result: Mapping[str, Any]) -> dict[str, Any]:
    """The run's energy for the results page: the figures, their source and one line."""
    from greenrunner.energy import EnergyReport, format_kwh, summary

    data = result.get("energy")
    report = None if data is None else EnergyReport.from_dict(data)
    return {
        "measured": report is not None,
        "kwh": None if report is None else format_kwh(report.kwh),
        "source": None if report is None else report.source,
        "brute_force": None
        if report is None or report.brute_force_kwh_estimate is None
        else format_kwh(report.brute_force_kwh_estimate),
        "text": summary(report, str(result.get("energy_note") or "")),
    }


def benchmark(view: ExperimentView) -> dict[str, Any] | None:
    """The model-card pick (from the service's summary) with what our run measured of it
    on the target, if it was evaluated."""
    pick = view.summary.get("benchmark")
    if not isinstance(pick, Mapping) or view.result is None:
        return None
    rows = {m["name"]: m for m in _model_rows(view.result)}
    measured = rows.get(str(pick.get("name")))
    ours = view.recommended
    return {
        "name": pick.get("name"),
        "card_accuracy": pick.get("card_accuracy"),
        "card_reward": pick.get("card_reward"),
        "missing_cards": pick.get("missing_cards") or 0,
        "target": measured,
        "same_as_ours": pick.get("name") == ours,
        "ours": rows.get(ours or ""),
    }


def chart_data(view: ExperimentView) -> dict[str, Any]:
    """What app.js draws: per model (in rank order) its pulls, reward with its interval,
    accuracy, MMACs and size; the recommended and benchmark picks are flagged."""
    if view.result is None:
        return {"models": []}
    pick = view.summary.get("benchmark")
    pick_name = pick.get("name") if isinstance(pick, Mapping) else None
    keys = (
        "name",
        "pulls",
        "reward",
        "reward_ci_low",
        "reward_ci_high",
        "accuracy",
        "ci_low",
        "ci_high",
        "mmacs",
        "size_mb",
        "status",
        "recommended",
    )
    models = [
        {**{k: m.get(k) for k in keys}, "benchmark": m.get("name") == pick_name}
        for m in _model_rows(view.result)
        if m.get("status") != "failed"
    ]
    return {
        "models": models,
        "confidence": view.result.get("confidence", 0.95),
        "n_samples": view.result.get("n_samples"),
    }


def stop_reason(result: Mapping[str, Any]) -> str:
    """Why the run stopped, in words (the CLI's wording)."""
    code = str(result.get("stop_reason") or "")
    return STOP_REASONS.get(code, code.replace("_", " "))


def failed_models(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [m for m in _model_rows(result) if m.get("status") == "failed"]


def progress(view: ExperimentView) -> dict[str, Any]:
    """The progress fields the results page shows (the same names app.js reads)."""
    p = view.progress
    fraction = p.get("fraction")
    return {
        "phase": p.get("phase") or view.status,
        "detail": p.get("detail") or "",
        "fraction": float(fraction) if isinstance(fraction, int | float) else 0.0,
        "done_calls": p.get("done_calls"),
        "budget_calls": p.get("budget_calls"),
        "leader": p.get("leader"),
    }


def history_row(item: ExperimentSummary) -> dict[str, Any]:
    saved: Mapping[str, Any] = item.savings or {}
    return {
        "id": item.id,
        "created": item.created.replace("T", " ").removesuffix("+00:00"),
        "use_case": item.use_case,
        "repository": item.repository_name,
        "dataset": item.dataset_name,
        "status": item.status,
        "recommended": item.recommended,
        "mmacs_saved": saved.get("mmacs"),
        "macs_fraction": saved.get("macs_fraction"),
        "calls_fraction": saved.get("calls_fraction"),
    }


def history_pages(page: Page) -> dict[str, Any]:
    """Where the history page stands: rows shown (1-based), the total, and the query of
    the previous and next pages (None at either end), keeping the status filter."""
    paging = page.paging

    def query(offset: int | None) -> str | None:
        if offset is None:
            return None
        parts = {"status": paging.status or "", "offset": str(offset) if offset else ""}
        if paging.order != "newest":
            parts["order"] = paging.order
        if paging.limit != DEFAULT_PAGE:
            parts["limit"] = str(paging.limit)
        given = "&".join(f"{k}={v}" for k, v in parts.items() if v)
        return f"?{given}" if given else ""

    first = paging.offset + 1 if page.items else 0
    return {
        "first": first,
        "last": paging.offset + len(page.items),
        "total": page.total,
        "status": paging.status or "",
        "previous": query(page.previous_offset),
        "next": query(page.next_offset),
    }


def compare_column(view: ExperimentView) -> dict[str, Any]:
    result = view.result or {}
    top = top_rows(result) if result else []
    pick = benchmark(view)
    return {
        "id": view.id,
        "status": view.status,
        "use_case": view.use_case,
        "repository": view.repository_name,
        "dataset": view.dataset_name,
        "strategy": view.strategy,
        "budget": budget_text(view.budget),
        "seed": view.seed,
        "weights": view.weights,
        "recommended": top[0] if top else None,
        "savings": savings(result) if result else None,
        "benchmark": pick["name"] if pick else None,
    }


def parse_ids(raw: Sequence[str]) -> list[int]:
    """``?ids=1,2`` or ``?ids=1&ids=2`` (what a plain form of checkboxes sends), in order,
    without repeats, at most :data:`MAX_COMPARE`; ValueError names the first part that is
    not an id (ASCII digits, 1 to 2**63 - 1: a larger number cannot be an id)."""
    ids: list[int] = []
    for part in (p.strip() for chunk in raw for p in chunk.split(",")):
        if not part:
            continue
        shown = part if len(part) <= 30 else part[:27] + "..."
        if (
            not (part.isascii() and part.isdigit())
            or len(part) > 19
            or not 1 <= int(part) <= MAX_ID
        ):
            raise ValueError(f"{shown!r} is not an experiment id (ids are 1 to {MAX_ID})")
        if int(part) not in ids:
            ids.append(int(part))
        if len(ids) > MAX_COMPARE:
            raise ValueError(f"at most {MAX_COMPARE} experiments can be compared at once")
    return ids
