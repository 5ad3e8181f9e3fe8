"""What the web app does, as plain methods over the database; the REST API and the pages
both call this, so a rule (who may start what, which upload is acceptable) lives once.

``Service(settings)`` opens the database, lists the bundled repositories, marks runs that a
previous server left ``running`` as ``interrupted`` and starts the background workers;
``close()`` stops them. Every refusal is a :class:`ServiceError` whose message the user
sees; its ``status`` is the HTTP status.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import select, update
from starlette.requests import Request  # at run time: FastAPI reads get_service's signature

from greenrunner.errors import ConfigError, GreenRunnerError
from greenrunner.web import catalog
from greenrunner.web.db import Database, DatasetRow, ExperimentRow, RepositoryRow, iso
from greenrunner.web.runner import Runner, progress_dict, queued_progress
from greenrunner.web.settings import WebSettings
from greenrunner.web.views import (
    Conflict,
    DatasetView,
    ExperimentRequest,
    ExperimentView,
    NotFound,
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
    "ExperimentView",
    "NotFound",
    "Rejected",
    "RepositoryView",
    "Service",
    "ServiceError",
    "TooLarge",
    "get_service",
]

log = logging.getLogger(__name__)

INTERRUPTED = "the server stopped while this experiment was running; resume it to finish"


def get_service(request: Request) -> Service:
    """The app's service (a FastAPI dependency for the API and the pages)."""
    service: Service = request.app.state.service
    return service


def _user_error(exc: GreenRunnerError) -> ServiceError:
    return exc if isinstance(exc, ServiceError) else Rejected(str(exc))


class Service:
    def __init__(self, settings: WebSettings, *, start_workers: bool = True) -> None:
        self.settings = settings
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the data folder {settings.data_dir}: {exc.strerror or exc}; "
                "choose a writable one with --data-dir"
            ) from None
        self.db = Database(settings.database_url)
        with self.db.session() as s:
            catalog.sync_bundled(s)
            # One server per database: whatever it left running died with it.
            stale = s.execute(
                update(ExperimentRow)
                .where(ExperimentRow.status == "running")
                .values(status="interrupted", error=INTERRUPTED)
            )
            if count := _rowcount(stale):
                log.warning("%d experiment(s) were interrupted by a restart", count)
        self.runner = Runner(self.db, settings, start=start_workers)

    def close(self) -> None:
        self.runner.close()
        self.db.close()

    # --- repositories and datasets ------------------------------------------------------
    def list_repositories(self) -> list[RepositoryView]:
        with self.db.session() as s:
            catalog.refresh_demo(s)
            rows = s.scalars(select(RepositoryRow).order_by(RepositoryRow.created)).all()
            return [_repository_view(r) for r in rows]

    def get_repository(self, repository_id: str) -> RepositoryView:
        with self.db.session() as s:
            return _repository_view(_get_repository(s, repository_id))

    def list_datasets(self) -> list[DatasetView]:
        with self.db.session() as s:
            catalog.refresh_demo(s)
            rows = s.scalars(select(DatasetRow).order_by(DatasetRow.created)).all()
            return [_dataset_view(r) for r in rows]

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
        with self.db.session() as s:
            # A conditional update: two clicks on "run" cannot both start it.
            claimed = s.execute(
                update(ExperimentRow)
                .where(ExperimentRow.id == experiment_id, ExperimentRow.status.in_(allowed))
                .values(
                    status="running",
                    progress=queued_progress(),
                    result=None,
                    error=None,
                    runs=ExperimentRow.runs + 1,
                )
            )
            if not _rowcount(claimed):
                row = self._row(s, experiment_id)
                hint = {
                    "running": "it is already running; watch its progress",
                    "done": "it has finished; create a new experiment to run again",
                    "staging": "start it with POST /api/experiments/{id}/run",
                }.get(row.status, "resume it instead")
                raise Conflict(
                    f"experiment {experiment_id} is {row.status} and cannot be {verb}: "
                    + hint.replace("{id}", str(experiment_id))
                )
        self.runner.submit(experiment_id)
        return self.get_experiment(experiment_id)

    def get_experiment(self, experiment_id: int) -> ExperimentView:
        with self.db.session() as s:
            return self._view(s, self._row(s, experiment_id))

    def list_experiments(self) -> list[ExperimentView]:
        with self.db.session() as s:
            rows = s.scalars(select(ExperimentRow).order_by(ExperimentRow.id.desc())).all()
            return [self._view(s, r) for r in rows]

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
    @staticmethod
    def _row(s: Session, experiment_id: int) -> ExperimentRow:
        row = s.get(ExperimentRow, experiment_id)
        if row is None:
            raise NotFound(f"no experiment {experiment_id}; GET /api/experiments lists them")
        return row

    @staticmethod
    def _view(s: Session, row: ExperimentRow) -> ExperimentView:
        repo = s.get(RepositoryRow, row.repository_id)
        data = s.get(DatasetRow, row.dataset_id) if row.dataset_id else None
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
        )


def _rowcount(result: object) -> int:
    """Rows an UPDATE changed (typed Result objects do not declare it; cursors have it)."""
    return int(getattr(result, "rowcount", 0))


def _get_repository(s: Session, repository_id: str) -> RepositoryRow:
    row = s.get(RepositoryRow, repository_id)
    if row is None:
        raise NotFound(f"no repository {repository_id!r}; GET /api/repositories lists them")
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
