"""The web app's pages without a browser: every screen in every state renders (templates are
strict: an undefined name fails), forms work without JavaScript, refusals are pages with
the message in #error, and the token guards the pages as it guards the API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from fastapi.testclient import TestClient
from sqlalchemy import update

from greenrunner.web import pageviews as pv
from greenrunner.web.app import create_app
from greenrunner.web.db import ExperimentRow
from greenrunner.web.service import Service
from greenrunner.web.settings import WebSettings
from tests.web_helpers import wait_until

BASE = "http://127.0.0.1"
USE_CASE = "Recommend a model for detecting objects deployed on a drone"
FORM = {
    "repository": "objectnet-sim",
    "dataset": "",
    "use_case": USE_CASE,
    "strategy": "default",
    "budget": "0.1",
    "budget_unit": "calls",
    "seed": "0",
}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    # A long lease: set_status() makes runs "running" without one, which the heartbeat's
    # reaping (every lease/5) would mark interrupted in the middle of a test.
    settings = WebSettings(data_dir=tmp_path / "web", progress_interval=0.0, lease_seconds=3600)
    with TestClient(create_app(settings), base_url=BASE) as c:
        # What a browser does: load a page (its cookie), then post its forms with the token.
        token = re.search(r'name="csrf-token" content="([^"]+)"', c.get("/").text)
        assert token, "no form token on the set-up page"
        c.headers["X-CSRF-Token"] = token.group(1)
        yield c


def service(client: TestClient) -> Service:
    found: Service = client.app.state.service  # type: ignore[attr-defined]
    return found


def error_of(html: str) -> str:
    found = re.search(r'<div id="error"[^>]*role="alert"[^>]*>(.*?)</div>', html, re.S)
    assert found, "no #error on the page"
    return found.group(1)


def staged(client: TestClient, **fields: str) -> int:
    r = client.post("/", data={**FORM, **fields}, follow_redirects=False)
    assert r.status_code == 303, r.text
    found = re.fullmatch(r"/experiments/(\d+)/staging", r.headers["location"])
    assert found
    return int(found.group(1))


def set_status(client: TestClient, experiment: int, **values: Any) -> None:
    with service(client).db.session() as s:
        s.execute(update(ExperimentRow).where(ExperimentRow.id == experiment).values(**values))


def test_setup_page_offers_repositories_strategies_and_labels_every_input(
    client: TestClient,
) -> None:
    html = client.get("/").text
    assert 'value="objectnet-sim"' in html
    assert 'value="prior_halving"' in html and 'value="default"' in html
    for tag, field in re.findall(r'(<(?:input|select|textarea)[^>]*\bid="([^"]+)"[^>]*>)', html):
        assert f'for="{field}"' in html or "aria-label=" in tag, f"#{field} has no label"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"use_case": "  "}, "use case is empty"),
        ({"seed": "abc"}, "seed must be a whole number"),
        ({"budget": "1.7"}, "budget"),
        ({"strategy": "nope"}, "unknown strategy"),
        ({"repository": "nowhere"}, "no repository"),
    ],
)
def test_bad_setup_is_the_same_page_with_the_message(
    client: TestClient, fields: dict[str, str], message: str
) -> None:
    r = client.post("/", data={**FORM, **fields})
    assert r.status_code in (400, 404)
    assert r.headers["content-type"].startswith("text/html")
    assert message in error_of(r.text)
    assert 'id="setup-form"' in r.text
    assert "Traceback" not in r.text


def test_untouched_sliders_accept_the_suggestion_and_moved_ones_edit_it(
    client: TestClient,
) -> None:
    first = staged(client)
    page = client.get(f"/experiments/{first}/staging").text
    values = dict(re.findall(r'name="(weight-[a-z]+)"[^>]*value="([0-9.]+)"', page, re.S))
    assert set(values) >= {"weight-accuracy", "weight-size", "weight-complexity"}
    r = client.post(f"/experiments/{first}/start", data=values, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/experiments/{first}"
    view = service(client).get_experiment(first)
    assert view.decision == "accepted"  # rounding to the slider's step is not an edit
    assert view.suggestion is not None and view.weights == view.suggestion["weights"]

    second = staged(client)
    moved = {**values, "weight-size": "0.9"}
    client.post(f"/experiments/{second}/start", data=moved, follow_redirects=False)
    edited = service(client).get_experiment(second)
    assert edited.decision == "edited"
    assert edited.weights["size"] > view.weights["size"]
    # Staging is over: the staging page and a second start lead to the results.
    again = client.post(f"/experiments/{second}/start", data=moved, follow_redirects=False)
    assert again.headers["location"] == f"/experiments/{second}"
    gone = client.get(f"/experiments/{second}/staging", follow_redirects=False)
    assert gone.status_code == 303


def test_staging_refuses_all_zero_weights_on_the_page(client: TestClient) -> None:
    experiment = staged(client)
    zero = {"weight-accuracy": "0", "weight-size": "0", "weight-complexity": "0"}
    r = client.post(f"/experiments/{experiment}/start", data=zero)
    assert r.status_code == 400
    assert "positive" in error_of(r.text)
    assert 'id="start-run"' in r.text


def test_results_page_in_every_state(client: TestClient) -> None:
    experiment = staged(client)
    assert "has not started yet" in client.get(f"/experiments/{experiment}").text

    set_status(client, experiment, status="running", progress=pv_progress())
    running = client.get(f"/experiments/{experiment}").text
    assert 'id="progress"' in running and 'data-live="true"' in running
    assert "leading: resnet50" in running

    set_status(client, experiment, status="failed", error="model x returned NaN scores")
    failed = client.get(f"/experiments/{experiment}").text
    assert "model x returned NaN scores" in error_of(failed)

    set_status(client, experiment, status="interrupted", error="the server stopped")
    interrupted = client.get(f"/experiments/{experiment}").text
    assert 'id="resume"' in interrupted
    r = client.post(f"/experiments/{experiment}/resume", follow_redirects=False)
    assert r.status_code == 303
    done = wait_until(
        lambda: service(client).get_experiment(experiment).to_dict(),
        lambda v: v["status"] != "running",
    )
    assert done["status"] == "done" and done["result"] is not None
    html = client.get(f"/experiments/{experiment}").text
    for element in ("top3", "savings", "benchmark-pick", "pulls-chart", "reward-chart"):
        assert f'id="{element}"' in html
    assert html.count('class="top-model') == 3
    assert 'id="resume"' not in html and 'id="error"' not in html
    # A second resume is refused on the page, not as JSON.
    again = client.post(f"/experiments/{experiment}/resume")
    assert again.status_code == 409 and "cannot be resumed" in error_of(again.text)


def pv_progress() -> dict[str, Any]:
    return {"phase": "selecting", "fraction": 0.4, "done_calls": 130, "leader": "resnet50"}


def test_history_compare_and_unknown_ids(client: TestClient) -> None:
    first, second = staged(client), staged(client)
    history = client.get("/history").text
    assert history.count('class="experiment"') == 2
    compare = client.get(f"/compare?ids={first},{second}").text
    assert f"#{first}" in compare and f"#{second}" in compare
    # What a plain form sends without JavaScript works too.
    assert client.get(f"/compare?ids={first}&ids={second}").status_code == 200
    assert client.get("/compare?ids=x").status_code == 400
    assert client.get("/compare").status_code == 400
    missing = client.get(f"/compare?ids={first},999")
    assert missing.status_code == 404 and "999" in error_of(missing.text)
    assert client.get("/experiments/999").status_code == 404


def test_pages_need_the_token_when_the_server_has_one(tmp_path: Path) -> None:
    token = "a-token-of-24-characters"
    settings = WebSettings(data_dir=tmp_path / "web", token=token)
    with TestClient(create_app(settings), base_url=BASE) as client:
        locked = client.get("/")
        assert locked.status_code == 401 and "/login?token=" in error_of(locked.text)
        assert client.post("/", data=FORM).status_code == 401
        client.get(f"/login?token={token}")
        assert client.get("/").status_code == 200


def test_pageviews_helpers() -> None:
    assert pv.parse_ids(["3,1", "3", " 2 "]) == [3, 1, 2]
    with pytest.raises(ValueError, match="'a'"):
        pv.parse_ids(["1,a"])
    assert pv.budget_text({"value": 0.1, "unit": "calls"}) == "10% of brute-force calls"
    assert pv.budget_text({"value": 5000.0, "unit": "macs"}) == "5,000 MACs"
    assert pv.stop_reason({"stop_reason": "decided"}) == "only one model can still win"
    result = {
        "top": [{"name": "b"}],
        "models": [
            {"name": "b", "status": "active"},
            {"name": "x", "status": "failed"},
            {"name": "a", "status": "eliminated"},
        ],
    }
    assert [m["name"] for m in pv.top_rows(result)] == ["b", "a"]
    assert pv.top_rows(result)[0]["recommended"]
    assert [m["name"] for m in pv.failed_models(result)] == ["x"]


def test_a_browser_gets_pages_for_unknown_urls_and_oversized_uploads(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from greenrunner.web.app import create_app
    from greenrunner.web.settings import WebSettings

    settings = WebSettings(data_dir=tmp_path / "web", max_upload_bytes=1000)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        html = {"accept": "text/html"}
        page = client.get("/no/such/page", headers=html)
        assert page.status_code == 404 and 'id="error"' in page.text
        assert client.get("/api/nope").json() == {"detail": "Not Found"}
        big = {"file": ("big.zip", b"x" * (3 << 20), "application/zip")}
        refused = client.post("/api/datasets", files=big, headers=html)
        assert refused.status_code == 413 and "detail" in refused.json()
        refused = client.post("/", files={"dataset_file": big["file"]}, headers=html)
        assert refused.status_code == 413 and "over the limit" in refused.text
        assert 'id="error"' in refused.text
