"""The experiment list: one page of small summaries, read without any result column.

A run's outcome (recommended model, accuracy, savings) is kept in the experiment's small
``summary`` column when it finishes, so a list never loads a stored result; rows finished
by an older version get theirs worked out once, on the page that shows them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from greenrunner.web.db import DatasetRow, ExperimentRow, RepositoryRow, iso
from greenrunner.web.views import ExperimentSummary, Page, Paging, outcome

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def summary_page(s: Session, paging: Paging) -> Page:
    """The page ``paging`` asks for. The query reads only the small columns, ordered by the
    primary key and filtered on the indexed ``status``."""
    where = [] if paging.status is None else [ExperimentRow.status == paging.status]
    order = ExperimentRow.id.desc() if paging.order == "newest" else ExperimentRow.id.asc()
    query = (
        select(*_SUMMARY_COLUMNS, RepositoryRow.name, DatasetRow.name)
        .outerjoin(RepositoryRow, RepositoryRow.id == ExperimentRow.repository_id)
        .outerjoin(DatasetRow, DatasetRow.id == ExperimentRow.dataset_id)
        .where(*where)
        .order_by(order)
        .limit(paging.limit)
        .offset(paging.offset)
    )
    count = select(func.count()).select_from(ExperimentRow).where(*where)
    total = int(s.scalar(count) or 0)
    rows = s.execute(query).all()
    outcomes = _outcomes(s, rows)
    items = tuple(_summary(r, outcomes.get(r.id)) for r in rows)
    return Page(items=items, total=total, paging=paging)


_SUMMARY_COLUMNS = (
    ExperimentRow.id,
    ExperimentRow.status,
    ExperimentRow.repository_id,
    ExperimentRow.dataset_id,
    ExperimentRow.use_case,
    ExperimentRow.strategy,
    ExperimentRow.budget,
    ExperimentRow.budget_unit,
    ExperimentRow.seed,
    ExperimentRow.runs,
    ExperimentRow.created,
    ExperimentRow.updated,
    ExperimentRow.summary,
)


def _outcomes(s: Session, rows: Sequence[Any]) -> dict[int, dict[str, Any]]:
    """Each finished row's outcome from its summary. A run finished by an older version
    has none there: its result is read once (for this page's rows only) and the outcome
    stored, so the next list does not read it again."""
    found: dict[int, dict[str, Any]] = {}
    missing: list[int] = []
    for r in rows:
        kept = (r.summary or {}).get("outcome")
        if isinstance(kept, dict):
            found[r.id] = kept
        elif r.status == "done":
            missing.append(r.id)
    if missing:
        query = select(ExperimentRow.id, ExperimentRow.result, ExperimentRow.summary).where(
            ExperimentRow.id.in_(missing), ExperimentRow.status == "done"
        )
        for eid, result, summary in s.execute(query).all():
            if not result:
                continue
            found[eid] = outcome(result)
            s.execute(
                update(ExperimentRow)
                .where(ExperimentRow.id == eid)
                .values(
                    summary={**(summary or {}), "outcome": found[eid]},
                    updated=ExperimentRow.updated,
                )
            )
    return found


def _summary(r: Any, done: Mapping[str, Any] | None) -> ExperimentSummary:
    repository_name, dataset_name = r[-2], r[-1]
    fields = {k: (done or {}).get(k) for k in _OUTCOME_FIELDS}
    return ExperimentSummary(
        id=r.id,
        status=r.status,
        repository=r.repository_id,
        repository_name=repository_name or r.repository_id,
        dataset=r.dataset_id,
        dataset_name=dataset_name,
        use_case=r.use_case,
        strategy=r.strategy,
        budget={"value": r.budget, "unit": r.budget_unit},
        seed=r.seed,
        runs=r.runs,
        created=iso(r.created),
        updated=iso(r.updated),
        **fields,
    )


_OUTCOME_FIELDS = (
    "recommended",
    "accuracy",
    "ci_low",
    "ci_high",
    "calls",
    "brute_force_calls",
    "savings",
)
