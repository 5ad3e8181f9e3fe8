"""Ids out of range are a 4xx with a message, never a 500 (issue 11, item 9).

An experiment id at or over 2**63 was an OverflowError in the SQLite driver (a 500 with a
traceback); zero, negative, non-ASCII digits and absurd lengths must not reach the database
either. The same for repository and dataset ids in API bodies and form fields (PostgreSQL
answers a NUL character in text with an error, not with no row). Through the TestClient for
every route, then against a real server, whose log must stay free of tracebacks.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from fastapi.testclient import TestClient

from greenrunner.web.app import create_app
from greenrunner.web.db import MAX_ID, valid_id, valid_key
from greenrunner.web.service import ExperimentRequest, NotFound, Service
from greenrunner.web.settings import WebSettings

BASE = "http://127.0.0.1"
USE_CASE = "Recommend a model for detecting objects deployed on a drone"
OUT_OF_RANGE = ["0", "-1", "-9223372036854775809", str(2**63), str(2**64 + 5), "9" * 30]
# Over 4300 digits pydantic does not even parse: a 422 there too (JSON, pages included).
UNPARSEABLE = "1" + "0" * 5000
API_ROUTES = [
    ("GET", "/api/experiments/{id}"),
    ("GET", "/api/experiments/{id}/report.html"),
    ("GET", "/api/experiments/{id}/report.json"),
    ("PUT", "/api/experiments/{id}/weights"),
    ("POST", "/api/experiments/{id}/run"),
    ("POST", "/api/experiments/{id}/resume"),
]
PAGE_ROUTES = [
    ("GET", "/experiments/{id}"),
    ("GET", "/experiments/{id}/staging"),
    ("POST", "/experiments/{id}/start"),
    ("POST", "/experiments/{id}/resume"),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = WebSettings(data_dir=tmp_path_factory.mktemp("ids") / "web")
    app = create_app(settings)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as c:
        token = re.search(r'name="csrf-token" content="([^"]+)"', c.get("/").text)
        if token:  # the form token the pages' forms carry
            c.headers["X-CSRF-Token"] = token.group(1)
        yield c


@pytest.mark.parametrize("value", OUT_OF_RANGE)
@pytest.mark.parametrize(("method", "route"), API_ROUTES)
def test_api_ids_out_of_range_are_422_with_the_range(
    client: TestClient, method: str, route: str, value: str
) -> None:
    body = {"weights": {"accuracy": 1.0}} if method == "PUT" else None
    r = client.request(method, route.format(id=value), json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "path.experiment_id" in detail
    assert "greater than or equal to 1" in detail or f"less than or equal to {MAX_ID}" in detail


@pytest.mark.parametrize("value", OUT_OF_RANGE)
@pytest.mark.parametrize(("method", "route"), PAGE_ROUTES)
def test_page_ids_out_of_range_are_a_404_page(
    client: TestClient, method: str, route: str, value: str
) -> None:
    r = client.request(method, route.format(id=value), headers={"accept": "text/html"})
    assert r.status_code == 404, r.text[-500:]
    assert 'id="error"' in r.text and "experiment ids are whole numbers from 1" in r.text
    assert "Traceback" not in r.text and len(r.text) < 20_000


@pytest.mark.parametrize(("method", "route"), API_ROUTES + PAGE_ROUTES)
def test_an_id_too_long_to_parse_is_a_422(client: TestClient, method: str, route: str) -> None:
    r = client.request(method, route.format(id=UNPARSEABLE))
    assert r.status_code == 422 and "path.experiment_id" in r.json()["detail"], r.text[-300:]


@pytest.mark.parametrize(
    "ids", [str(2**63), "0", "-3", "1,99999999999999999999", "\u00b2", "\u0661", "1" * 5000]
)
def test_compare_refuses_ids_out_of_range(client: TestClient, ids: str) -> None:
    r = client.get("/compare", params={"ids": ids})
    assert r.status_code == 400 and "is not an experiment id" in r.text, r.text[-500:]
    assert len(r.text) < 20_000


@pytest.mark.parametrize(
    ("field", "value", "status"),
    [
        ("repository", "a" * 65, 422),
        ("repository", "objectnet-sim\x00", 404),
        ("repository", "\x1b[31m", 404),
        ("dataset", "d" * 10_000, 422),
        ("dataset", "nul\x00here", 404),
    ],
)
def test_api_repository_and_dataset_ids_that_cannot_exist(
    client: TestClient, field: str, value: str, status: int
) -> None:
    body: dict[str, Any] = {"repository": "digits-demo", "use_case": USE_CASE, field: value}
    r = client.post("/api/experiments", json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert field in detail and len(detail) < 400


@pytest.mark.parametrize(
    ("field", "value"),
    [("repository", "x" * 5000), ("repository", "bad\x00id"), ("dataset", "\x00" * 100)],
)
def test_form_repository_and_dataset_ids_that_cannot_exist(
    client: TestClient, field: str, value: str
) -> None:
    form = {"repository": "digits-demo", "use_case": USE_CASE, "budget": "0.1", field: value}
    r = client.post("/", data=form, headers={"accept": "text/html"})
    assert r.status_code == 404, r.text[-800:]
    assert f"no {field}" in r.text and len(r.text) < 60_000


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_service_checks_ids_itself(tmp_path: Path, backend: str) -> None:
    """The pages and the runner call the service directly: it refuses on its own, within
    the range of the database in use (PostgreSQL's INTEGER id column is 32-bit)."""
    url = None
    if backend == "postgresql":
        url = os.environ.get("GREENRUNNER_TEST_POSTGRES")
        if not url:
            pytest.skip("set GREENRUNNER_TEST_POSTGRES to a PostgreSQL URL to run this")
    service = Service(WebSettings(data_dir=tmp_path / "web", db_url=url), start_workers=False)
    try:
        wide = (2**31, 2**63 - 1)  # SQLite holds them (merely not there), PostgreSQL not
        for bad in (0, -1, *wide, 2**63, 10**400, 10**5000, True):
            words = "no experiment" if backend == "sqlite" and bad in wide else "ids are whole"
            with pytest.raises(NotFound, match=words):
                service.get_experiment(bad)
            with pytest.raises(NotFound):
                service.resume(bad)
        for repository, dataset in [("r" * 100, None), ("a\x00b", None), ("digits-demo", "\x00")]:
            request = ExperimentRequest(repository, USE_CASE, dataset=dataset)
            with pytest.raises(NotFound, match=r"no (repository|dataset)"):
                service.create_experiment(request)
        assert valid_id(MAX_ID) and not valid_id(MAX_ID + 1) and not valid_id(1.0)
        assert valid_key("objectnet-sim") and not valid_key("") and not valid_key("a\tb")
    finally:
        service.close()


# --- a real server ----------------------------------------------------------------------
def _get(url: str, accept: str = "application/json") -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _post(url: str, body: dict[str, Any]) -> tuple[int, str]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.slow
def test_a_real_server_answers_ids_out_of_range_without_a_traceback(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    from tests.test_web_api import Server

    env = {**os.environ, "GREENRUNNER_CACHE": str(tmp_path / "cache")}
    env.pop("GREENRUNNER_TOKEN", None)
    server = Server(tmp_path / "web", env)
    try:
        url = server.url
        for value in (str(2**63), "0", "-1", "9" * 400):
            status, text = _get(f"{url}/api/experiments/{value}")
            assert status == 422 and "experiment_id" in json.loads(text)["detail"], text
            for page in (f"/experiments/{value}", f"/experiments/{value}/staging"):
                status, text = _get(url + page, accept="text/html")
                assert status == 404 and "experiment ids are whole numbers" in text, text[-500:]
            status, text = _post(f"{url}/api/experiments/{value}/resume", {})
            assert status == 422, text
        status, text = _get(f"{url}/compare?ids={2**63}", accept="text/html")
        assert status == 400 and "is not an experiment id" in text
        status, text = _get(f"{url}/api/experiments?offset={2**63}")
        assert status == 422 and "offset" in text
        status, text = _get(f"{url}/history?offset={2**64}", accept="text/html")
        assert status == 400 and "offset must be a whole number" in text
        for body in ({"repository": "objectnet-sim\x00"}, {"repository": "r" * 65}):
            status, text = _post(f"{url}/api/experiments", {"use_case": USE_CASE, **body})
            assert status in (404, 422) and "repository" in json.loads(text)["detail"], text
        assert _get(f"{url}/api/experiments/1")[0] == 404  # in range, just not there
    finally:
        server.stop()
    log = server.log.read_text()
    assert "Traceback" not in log and "OverflowError" not in log, log[-3000:]
    assert " 500 " not in log
