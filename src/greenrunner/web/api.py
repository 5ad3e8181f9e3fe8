"""The REST API (OpenAPI at /docs), mirroring the screens; a thin layer over Service.

Errors answer ``{"detail": "what was wrong and what to do"}``: 400 for bad input, 401
without the token, 404 for unknown ids, 409 for a request that does not fit the
experiment's state, 413 for uploads over the limit, 422 for a malformed request (a body
that does not fit its schema, an id or a paging value out of range).

Lists come a page at a time: ``GET /api/experiments`` answers summaries (never a result)
with ``total``; the repository and dataset lists take ``limit``/``offset`` and send the
total in ``X-Total-Count``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Query, Response, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from greenrunner.web.auth import require_token
from greenrunner.web.db import MAX_ID, MAX_KEY_CHARS
from greenrunner.web.service import ExperimentRequest, Paging, Service, get_service
from greenrunner.web.views import DEFAULT_PAGE, MAX_PAGE

router = APIRouter(prefix="/api", dependencies=[Depends(require_token)], tags=["api"])
ServiceDep = Annotated[Service, Depends(get_service)]
Status = Literal["staging", "running", "done", "failed", "interrupted"]
# Checked before the database sees it: an id over 2**63 - 1 would be an OverflowError there.
ExperimentId = Annotated[
    int, PathParam(ge=1, le=MAX_ID, description=f"an experiment id, 1 to {MAX_ID}")
]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"rows per page, 1 to {MAX_PAGE}")]
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="rows to skip (0: the first page)")]


class Problem(BaseModel):
    detail: str


class Repository(BaseModel):
    id: str
    name: str
    kind: Literal["replay", "bundled-real", "uploaded"]
    n_models: int | None = Field(description="None until known (the demo before its build)")
    description: str = ""
    created: str = ""
    needs_dataset: bool = True
    default_dataset: str | None = None


class Dataset(BaseModel):
    id: str
    name: str
    kind: Literal["bundled", "uploaded"]
    n_samples: int | None
    classes: list[str] = []
    description: str = ""
    created: str = ""


class Strategy(BaseModel):
    name: str
    summary: str


class ExperimentIn(BaseModel):
    """The set-up screen's choices."""

    model_config = ConfigDict(extra="forbid")
    repository: str = Field(examples=["objectnet-sim"], max_length=MAX_KEY_CHARS)
    dataset: str | None = Field(
        None, max_length=MAX_KEY_CHARS, description="optional for replays and the demo zoo"
    )
    use_case: str = Field(examples=["Recommend a model for detecting objects on a drone"])
    strategy: str = "default"
    budget: float | str = Field(
        0.1, description="fraction of brute force in (0, 1], an absolute number, or '10%'"
    )
    budget_unit: Literal["calls", "macs"] = "calls"
    seed: int = Field(0, ge=0, lt=2**31)
    # Strict: kept as sent (true stays a bool, "0.2" stays text), so the strategy's own
    # declarations judge them and name the rule they break (400), not a silent cast.
    params: dict[str, StrictFloat | StrictInt | StrictStr | StrictBool | None] = Field(
        {}, description='strategy parameters, e.g. {"delta": 0.01} for racing'
    )


class WeightsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weights: dict[str, float] = Field(examples=[{"accuracy": 0.6, "size": 0.2, "complexity": 0.2}])


class Suggestion(BaseModel):
    weights: dict[str, float]
    justification: str
    tradeoffs: dict[str, str]
    evidence: dict[str, list[str]] = {}
    notes: list[str] = []
    provider: str = ""
    model: str = ""
    use_case: str = ""
    samples: int = 1
    spread: dict[str, float] = {}


class Progress(BaseModel):
    phase: str
    detail: str = ""
    done_calls: int = 0
    budget_calls: int | None = None
    brute_force_calls: int | None = None
    spent: float = 0.0
    budget_limit: float | None = None
    unit: str | None = None
    fraction: float = 0.0
    pulls: dict[str, int] = {}
    leader: str | None = None
    rounds: int = 0


class Experiment(BaseModel):
    id: int
    status: Status
    repository: str
    repository_name: str
    dataset: str | None
    dataset_name: str | None
    use_case: str
    strategy: str
    params: dict[str, Any]
    budget: dict[str, Any]
    seed: int
    suggestion: Suggestion | None
    weights: dict[str, float]
    decision: str
    progress: Progress
    result: dict[str, Any] | None = Field(description="SelectionResult.to_dict() once done")
    summary: dict[str, Any] = Field(description="source, note and the benchmark pick")
    error: str | None
    runs: int
    created: str
    updated: str
    owner: str | None = Field(
        None, description="while running: the server process that holds its lease"
    )


class Savings(BaseModel):
    calls_fraction: float | None = None
    macs_fraction: float | None = None
    mmacs: float | None = None


class ExperimentSummary(BaseModel):
    """An experiment in a list: no result, progress or weights (GET /api/experiments/{id}
    has them); the outcome fields are None until the run is done."""

    id: int
    status: Status
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
    recommended: str | None = Field(None, description="the recommended model")
    accuracy: float | None = Field(None, description="its estimated target accuracy")
    ci_low: float | None = None
    ci_high: float | None = None
    calls: int | None = Field(None, description="evaluation calls spent")
    brute_force_calls: int | None = None
    savings: Savings | None = Field(None, description="against brute force")


class ExperimentPage(BaseModel):
    items: list[ExperimentSummary]
    total: int = Field(description="experiments that match the filter, on all pages")
    limit: int
    offset: int
    next_offset: int | None = Field(description="the offset of the next page; None on the last")


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 401, 404, 409, 413)
}


@router.get("/repositories", response_model=list[Repository])
def list_repositories(
    service: ServiceDep, response: Response, limit: Limit = MAX_PAGE, offset: Offset = 0
) -> list[dict[str, Any]]:
    """Oldest first (the bundled ones, then uploads); the total is in ``X-Total-Count``."""
    response.headers["X-Total-Count"] = str(service.count_repositories())
    return [r.to_dict() for r in service.list_repositories(limit, offset)]


@router.post("/repositories", response_model=Repository, status_code=201, responses=ERRORS)
def upload_repository(
    service: ServiceDep, file: Annotated[UploadFile, File(description="a .zip")]
) -> dict[str, Any]:
    """A zip of .onnx files with classes.txt, or a manifest.toml with its files."""
    return service.add_repository_zip(file.filename or "", file.file).to_dict()


@router.get("/datasets", response_model=list[Dataset])
def list_datasets(
    service: ServiceDep, response: Response, limit: Limit = MAX_PAGE, offset: Offset = 0
) -> list[dict[str, Any]]:
    """Oldest first; the total is in ``X-Total-Count``."""
    response.headers["X-Total-Count"] = str(service.count_datasets())
    return [d.to_dict() for d in service.list_datasets(limit, offset)]


@router.post("/datasets", response_model=Dataset, status_code=201, responses=ERRORS)
def upload_dataset(
    service: ServiceDep, file: Annotated[UploadFile, File(description="a .zip")]
) -> dict[str, Any]:
    """A zip of an ImageFolder (class folders of images), or of one CSV (path,label) with
    the images it names, or of one .npz (images, labels)."""
    return service.add_dataset_zip(file.filename or "", file.file).to_dict()


@router.get("/strategies", response_model=list[Strategy])
def list_strategies(service: ServiceDep) -> list[dict[str, str]]:
    return [{"name": n, "summary": s} for n, s in service.strategies()]


@router.post("/experiments", response_model=Experiment, status_code=201, responses=ERRORS)
def create_experiment(body: ExperimentIn, service: ServiceDep) -> dict[str, Any]:
    """Check the set-up and suggest weights for the use case; the experiment waits at
    ``staging`` for the user to adjust the weights and start it."""
    return service.create_experiment(ExperimentRequest(**body.model_dump())).to_dict()


@router.get("/experiments", response_model=ExperimentPage, responses=ERRORS)
def list_experiments(
    service: ServiceDep,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
    status: Annotated[Status | None, Query(description="only experiments in this state")] = None,
    order: Annotated[Literal["newest", "oldest"], Query(description="by id")] = "newest",
) -> dict[str, Any]:
    """A page of summaries (newest first) and the total; the next page is at
    ``offset=next_offset``. The full experiment, with its result, is at
    GET /api/experiments/{id}."""
    paging = Paging(limit=limit, offset=offset, status=status, order=order)
    return service.list_experiments(paging).to_dict()


@router.get("/experiments/{experiment_id}", response_model=Experiment, responses=ERRORS)
def get_experiment(experiment_id: ExperimentId, service: ServiceDep) -> dict[str, Any]:
    return service.get_experiment(experiment_id).to_dict()


@router.put("/experiments/{experiment_id}/weights", response_model=Experiment, responses=ERRORS)
def set_weights(
    experiment_id: ExperimentId, body: WeightsIn, service: ServiceDep
) -> dict[str, Any]:
    """Replace the weights at staging; they are scaled to sum 1."""
    return service.set_weights(experiment_id, body.weights).to_dict()


@router.post(
    "/experiments/{experiment_id}/run",
    response_model=Experiment,
    status_code=202,
    responses=ERRORS,
)
def start_run(experiment_id: ExperimentId, service: ServiceDep) -> dict[str, Any]:
    """Start the run in the background; poll GET /api/experiments/{id} for progress."""
    return service.start_run(experiment_id).to_dict()


@router.post(
    "/experiments/{experiment_id}/resume",
    response_model=Experiment,
    status_code=202,
    responses=ERRORS,
)
def resume(experiment_id: ExperimentId, service: ServiceDep) -> dict[str, Any]:
    """Run an interrupted or failed experiment again with the same seed and settings;
    evaluations computed before are served from the prediction cache."""
    return service.resume(experiment_id).to_dict()


@router.get(
    "/experiments/{experiment_id}/report.html", response_class=HTMLResponse, responses=ERRORS
)
def report_html(
    experiment_id: ExperimentId, service: ServiceDep, download: bool = True
) -> HTMLResponse:
    page = service.report_html(experiment_id)
    return HTMLResponse(page, headers=_attachment(f"greenrunner-{experiment_id}.html", download))


@router.get("/experiments/{experiment_id}/report.json", responses=ERRORS)
def report_json(
    experiment_id: ExperimentId, service: ServiceDep, download: bool = True
) -> JSONResponse:
    """The result in the selection engine's JSON shape (as ``select --json`` writes it)."""
    result = service.result_json(experiment_id)
    return JSONResponse(result, headers=_attachment(f"greenrunner-{experiment_id}.json", download))


def _attachment(name: str, download: bool) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'} if download else {}
