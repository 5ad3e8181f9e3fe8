"""What the web app does, as plain methods over the database; the REST API and the pages
both call this, so a rule (who may start what, which upload is acceptable) lives once.

``Service(settings)`` opens the database, lists the bundled repositories, marks runs whose
server stopped (their lease expired) ``interrupted`` and starts the background workers;
``close()`` stops them. Several servers may share one database: each runs only what it
claimed, and a run whose server is alive is never taken over (:mod:`.leases`). Every
refusal is a :class:`ServiceError` whose message the user sees; its ``status`` is the HTTP
status.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request  # at run time: FastAPI reads get_service's signature

from greenrunner.errors import ConfigError, GreenRunnerError
from greenrunner.web import catalog
from greenrunner.web.db import (
    Database,
    DatasetRow,
    ExperimentRow,
    RepositoryRow,
    iso,
    now,
    valid_id,
    valid_key,
)
from greenrunner.web.leases import Clock, Holder, holder
from greenrunner.web.runner import Runner, progress_dict, queued_progress
from greenrunner.web.settings import WebSettings
from greenrunner.web.summaries import summary_page
from greenrunner.web.views import (
    MAX_PAGE,
    Conflict,
    DatasetView,
    ExperimentRequest,
    ExperimentSummary,
    ExperimentView,
    NotFound,
    Page,
    Paging,
    Rejected,
    RepositoryView,
    ServiceError,
    TooLarge,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "Conflict",
    "DatasetView",
    "ExperimentRequest",
    "ExperimentSummary",
    "ExperimentView",
    "NotFound",
    "Page",
    "Paging",
    "Rejected",
    "RepositoryView",
    "Service",
    "ServiceError",
    "TooLarge",
    "get_service",
]

log = logging.getLogger(__name__)


def get_service(request: Request) -> Service:
    """The app's service (a FastAPI dependency for the API and the pages)."""
    service: Service = request.app.state.service
    return service


def _user_error(exc: GreenRunnerError) -> ServiceError:
    return exc if isinstance(exc, ServiceError) else Rejected(str(exc))


class Service:
    def __init__(
        self, settings: WebSettings, *, start_workers: bool = True, clock: Clock = now
    ) -> None:
        self.settings = settings
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the data folder {settings.data_dir}: {exc.strerror or exc}; "
                "choose a writable one with --data-dir"
            ) from None
        self.db = Database(settings.database_url)
        self._sync_bundled()
        self.runner = Runner(self.db, settings, start=start_workers, clock=clock)
        # Only runs whose server stopped renewing their lease: a live run of another
        # server on this database goes on (and this server's own last runs are marked
        # once their lease runs out, within lease_seconds of the restart).
        self.runner.leases.reap()

    def _sync_bundled(self) -> None:
        # Two servers starting at once on one database may insert the same bundled row;
        # the second then finds it there on its retry.
        for attempt in (1, 2):
            try:
                with self.db.session() as s:
                    catalog.sync_bundled(s)
                return
            except IntegrityError:
                if attempt == 2:
                    raise

    def close(self) -> None:
        self.runner.close()
        self.db.close()

    # --- repositories and datasets ------------------------------------------------------
    def list_repositories(self, limit: int = MAX_PAGE, offset: int = 0) -> list[RepositoryView]:
        """Oldest first (the bundled ones, then uploads), at most ``limit``."""
        paging = Paging(limit=limit, offset=offset)
        with self.db.session() as s:
            catalog.refresh_demo(s)
            query = select(RepositoryRow).order_by(RepositoryRow.created, RepositoryRow.id)
            rows = s.scalars(query.limit(paging.limit).offset(paging.offset)).all()
            return [_repository_view(r) for r in rows]

    def count_repositories(self) -> int:
        with self.db.session() as s:
            return int(s.scalar(select(func.count()).select_from(RepositoryRow)) or 0)

    def get_repository(self, repository_id: str) -> RepositoryView:
        with self.db.session() as s:
            return _repository_view(_get_repository(s, repository_id))

    def list_datasets(self, limit: int = MAX_PAGE, offset: int = 0) -> list[DatasetView]:
        """Oldest first, at most ``limit``."""
        paging = Paging(limit=limit, offset=offset)
        with self.db.session() as s:
            catalog.refresh_demo(s)
            query = select(DatasetRow).order_by(DatasetRow.created, DatasetRow.id)
            rows = s.scalars(query.limit(paging.limit).offset(paging.offset)).all()
            return [_dataset_view(r) for r in rows]

    def count_datasets(self) -> int:
        with self.db.session() as s:
            return int(s.scalar(select(func.count()).select_from(DatasetRow)) or 0)

    def add_repository_zip(self, filename: str, fileobj: IO[bytes]) -> RepositoryView:
        """Store and check an uploaded zip of ONNX files (with classes.txt) or of a
        manifest with its files; every model is loaded once before it is accepted."""
        from greenrunner.web import uploads

        try:
            row = uploads.add_repository(self.settings, filename, fileobj)
        except uploads.UploadTooLarge as exc:
            raise TooLarge(str(exc)) from None
        except GreenRunnerError as exc:
            raise _user_error(exc) from None
        with self.db.session() as s:
            s.add(row)
        return _repository_view(row)

    def add_dataset_zip(self, filename: str, fileobj: IO[bytes]) -> DatasetView:
        """Store and check an uploaded zip of an ImageFolder, or of a CSV (path,label)
        with the images it names; every image is opened before it is accepted."""
        from greenrunner.web import uploads

        try:
            row = uploads.add_dataset(self.settings, filename, fileobj)
        except uploads.UploadTooLarge as exc:
            raise TooLarge(str(exc)) from None
        except GreenRunnerError as exc:
            raise _user_error(exc) from None
        with self.db.session() as s:
            s.add(row)
        return _dataset_view(row)

    # --- experiments --------------------------------------------------------------------
    def create_experiment(self, request: ExperimentRequest) -> ExperimentView:
        """Check the set-up, ask the advisor for weights, store it as ``staging``."""
        from greenrunner.web.experiments import check_request, suggest

        try:
            with self.db.session() as s:
                fields = check_request(s, request)
            suggestion = suggest(self.settings, request.use_case)
        except GreenRunnerError as exc:
            raise _user_error(exc) from None
        with self.db.session() as s:
            row = ExperimentRow(
                status="staging",
                suggestion=suggestion.to_dict(),
                weights=suggestion.weights.as_dict(),
                decision="accepted",
                progress={},
                summary={},
                **fields,
            )
            s.add(row)
            s.flush()
            return self._view(s, row)

    def set_weights(self, experiment_id: int, weights: Mapping[str, float]) -> ExperimentView:
        """The user's weights at staging, scaled to sum 1 (as the CLI's staging does)."""
        from greenrunner.web.experiments import staged_weights

        with self.db.session() as s:
            row = self._row(s, experiment_id)
            if row.status != "staging":
                raise Conflict(
                    f"experiment {experiment_id} is {row.status}; weights can only change "
                    "at staging, before the run starts (create a new experiment instead)"
                )
            try:
                row.weights, row.decision = staged_weights(weights, row.suggestion)
            except GreenRunnerError as exc:
                raise _user_error(exc) from None
            return self._view(s, row)

    def start_run(self, experiment_id: int) -> ExperimentView:
        """Queue the run of a staging experiment; returns at once."""
        return self._launch(experiment_id, ("staging",), "started")

    def resume(self, experiment_id: int) -> ExperimentView:
        """Run an interrupted (or failed) experiment again with the same seed and settings:
        the same evaluations in the same order, each one served by the prediction cache
        if it was computed before."""
        return self._launch(experiment_id, ("interrupted", "failed"), "resumed")

    def _launch(self, experiment_id: int, allowed: tuple[str, ...], verb: str) -> ExperimentView:
        self._check_id(experiment_id)  # before the UPDATE binds it
        with self.db.session() as s:
            # A conditional update with the lease in one transaction: two clicks, two
            # requests or two servers cannot both start it.
            claimed = self.runner.leases.claim(
                s,
                experiment_id,
                allowed,
                progress=queued_progress(),
                result=None,
                error=None,
            )
            if not claimed:
                row = self._row(s, experiment_id)  # an unknown id is a 404, not a conflict
                raise Conflict(
                    f"experiment {experiment_id} is {row.status} and cannot be {verb}: "
                    + self._refusal_hint(s, row)
                )
        self.runner.submit(experiment_id)
        return self.get_experiment(experiment_id)

    def _refusal_hint(self, s: Session, row: ExperimentRow) -> str:
        if row.status == "running":
            held = holder(s, row.id)
            if held is None:
                return "it is already running; watch its progress"
            where = (
                "on this server"
                if held.owner == self.runner.leases.owner
                else f"on another server ({held.owner})"
            )
            age = (self.runner.leases.now() - held.renewed).total_seconds()
            return (
                f"it is already running {where}, which renewed its lease {age:.0f} s ago; "
                "watch its progress. If that server was stopped, the run shows as "
                f"interrupted once its lease expires (within {self.settings.lease_seconds:g} "
                "s) and can be resumed then"
            )
        return {
            "done": "it has finished; create a new experiment to run again",
            "staging": f"start it with POST /api/experiments/{row.id}/run",
        }.get(row.status, "resume it instead")

    def get_experiment(self, experiment_id: int) -> ExperimentView:
        with self.db.session() as s:
            return self._view(s, self._row(s, experiment_id))

    def list_experiments(self, paging: Paging | None = None) -> Page:
        """One page of summaries, newest first by default (see :mod:`.summaries`)."""
        with self.db.session() as s:
            return summary_page(s, paging or Paging())

    def result_json(self, experiment_id: int) -> dict[str, Any]:
        """The result in the selection engine's JSON shape (with the staging record)."""
        view = self.get_experiment(experiment_id)
        if view.result is None:
            raise Conflict(f"experiment {experiment_id} has no result yet (it is {view.status})")
        return view.result

    def report_html(self, experiment_id: int) -> str:
        """A standalone HTML report of a finished experiment."""
        from greenrunner.web.htmlreport import html_report

        view = self.get_experiment(experiment_id)
        self.result_json(experiment_id)  # refuses unfinished experiments
        return html_report(view)

    @staticmethod
    def strategies() -> list[tuple[str, str]]:
        """(name, one-line summary) of every strategy, ``default`` first."""
        from greenrunner.strategies import describe

        return describe()

    # --- helpers ------------------------------------------------------------------------
    def _check_id(self, experiment_id: int) -> None:
        # An id the database cannot hold would reach the driver as an error (OverflowError
        # in SQLite, "integer out of range" in PostgreSQL): it is simply not there.
        if not valid_id(experiment_id, self.db.max_id):
            raise NotFound(
                f"no experiment {_cut(experiment_id)}: experiment ids are whole numbers from 1 "
                f"to {self.db.max_id}; GET /api/experiments lists them"
            )

    def _row(self, s: Session, experiment_id: int) -> ExperimentRow:
        self._check_id(experiment_id)
        row = s.get(ExperimentRow, experiment_id)
        if row is None:
            raise NotFound(f"no experiment {experiment_id}; GET /api/experiments lists them")
        return row

    @staticmethod
    def _view(s: Session, row: ExperimentRow) -> ExperimentView:
        repo = s.get(RepositoryRow, row.repository_id)
        data = s.get(DatasetRow, row.dataset_id) if row.dataset_id else None
        held: Holder | None = holder(s, row.id) if row.status == "running" else None
        return ExperimentView(
            id=row.id,
            status=row.status,
            repository=row.repository_id,
            repository_name=repo.name if repo else row.repository_id,
            dataset=row.dataset_id,
            dataset_name=data.name if data else None,
            use_case=row.use_case,
            strategy=row.strategy,
            params=dict(row.params or {}),
            budget={"value": row.budget, "unit": row.budget_unit},
            seed=row.seed,
            suggestion=row.suggestion,
            weights=dict(row.weights),
            decision=row.decision,
            progress=dict(row.progress or {}) or progress_dict("not started"),
            result=row.result,
            summary=dict(row.summary or {}),
            error=row.error,
            runs=row.runs,
            created=iso(row.created),
            updated=iso(row.updated),
            owner=held.owner if held else None,
        )


# What a list reads of an experiment: everything but the JSON columns of the run itself.
def _cut(value: object, chars: int = 40) -> str:
    """A value for a message, cut short (an id in a URL may be thousands of digits)."""
    if isinstance(value, int) and value.bit_length() > 4 * chars:
        # str() of a huge int is slow, and refused past 4300 digits.
        return f"{'-' if value < 0 else ''}(a number of {value.bit_length()} bits)"
    text = str(value)
    return text if len(text) <= chars else text[: chars - 3] + "..."


def _get_repository(s: Session, repository_id: str) -> RepositoryRow:
    row = s.get(RepositoryRow, repository_id) if valid_key(repository_id) else None
    if row is None:
        raise NotFound(
            f"no repository {_cut(repr(repository_id))}; GET /api/repositories lists them"
        )
    return row


def _repository_view(row: RepositoryRow) -> RepositoryView:
    return RepositoryView(
        id=row.id,
        name=row.name,
        kind=row.kind,
        n_models=row.n_models,
        description=row.description,
        created=iso(row.created),
        needs_dataset=row.kind == "uploaded",
        default_dataset=catalog.DEMO_DATASET if row.id == catalog.DEMO_REPOSITORY else None,
    )


def _dataset_view(row: DatasetRow) -> DatasetView:
    return DatasetView(
        id=row.id,
        name=row.name,
        kind=row.kind,
        n_samples=row.n_samples,
        classes=tuple(row.classes or ()),
        description=row.description,
        created=iso(row.created),
    )
