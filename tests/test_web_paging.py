"""Lists come a page at a time, as summaries (issue 11, item 7): 300 experiments in the
database, then the API's and the history page's paging, filters and their refusals, the
size of an answer, and the SQL a list runs (it never reads a result)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from fastapi.testclient import TestClient
from sqlalchemy import event, insert, select, update

from greenrunner.web.app import create_app
from greenrunner.web.db import STATUSES, ExperimentRow
from greenrunner.web.service import ExperimentRequest, Page, Paging, Rejected, Service
from greenrunner.web.settings import WebSettings
from greenrunner.web.views import MAX_PAGE, ExperimentSummary

BASE = "http://127.0.0.1"
USE_CASE = "Recommend a model for detecting objects deployed on a drone"
N = 300


def status_of(i: int) -> str:
    """Every fifth one staging, the others done: 60 staging, 240 done."""
    return "staging" if i % 5 == 0 else "done"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    settings = WebSettings(data_dir=tmp_path_factory.mktemp("paging") / "web")
    service = Service(settings, start_workers=False)
    # One real run for a real result (~40 kB of JSON on the 31-model replay), then copies.
    first = service.create_experiment(ExperimentRequest("objectnet-sim", USE_CASE)).id
    service.start_run(first)
    service.runner.run(first)
    with service.db.session() as s:
        row = s.get(ExperimentRow, first)
        assert row is not None and row.status == "done"
        columns = {c.key: getattr(row, c.key) for c in ExperimentRow.__table__.columns}
        columns.pop("id")
        copies = []
        for i in range(2, N + 1):
            status = status_of(i)
            summary = dict(row.summary)
            if i % 2:  # as a version before paging stored it: no outcome in the summary
                summary.pop("outcome")
            copies.append(
                {
                    **columns,
                    "status": status,
                    "use_case": f"{USE_CASE} #{i}",
                    "result": row.result if status == "done" else None,
                    "summary": summary if status == "done" else {},
                }
            )
        s.execute(insert(ExperimentRow), copies)
    yield service
    service.close()


@pytest.fixture(scope="module")
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(create_app(service.settings, service=service), base_url=BASE) as c:
        yield c


class Statements:
    """The SQL the service sends while this is open."""

    def __init__(self, service: Service) -> None:
        self.engine = service.db.engine
        self.sql: list[str] = []

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.sql.append(statement)

    def __enter__(self) -> Statements:
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)

    def reading_results(self) -> list[str]:
        return [q for q in self.sql if q.lstrip().upper().startswith("SELECT") and ".result" in q]


def test_the_list_is_a_small_page_of_summaries_with_the_total(
    client: TestClient, service: Service
) -> None:
    full = client.get(f"/api/experiments/{N - 1}").content  # a done one
    r = client.get("/api/experiments")
    assert r.status_code == 200, r.text
    page = r.json()
    assert (page["total"], page["limit"], page["offset"], page["next_offset"]) == (N, 50, 0, 50)
    assert [e["id"] for e in page["items"]] == list(range(N, N - 50, -1))  # newest first
    # A summary is a few hundred bytes, a full experiment ~16 kB: a page of 50 is over 20
    # times smaller than the 50 full experiments the list used to answer (with all the rest).
    assert len(r.content) < 50 * len(full) / 20, (len(r.content), len(full))
    assert len(r.content) < 50 * 1000
    item = next(e for e in page["items"] if e["status"] == "done")
    assert set(item) == set(ExperimentSummary.__dataclass_fields__)
    whole = client.get(f"/api/experiments/{item['id']}").json()
    top = whole["result"]["top"][0]
    assert (item["recommended"], item["accuracy"]) == (top["name"], top["accuracy"])
    assert item["savings"] == whole["result"]["savings"]
    assert item["calls"] == whole["result"]["calls"]
    staging = next(e for e in page["items"] if e["status"] == "staging")
    assert staging["recommended"] is None and staging["savings"] is None
    schema = client.get("/openapi.json").json()
    listing = schema["paths"]["/api/experiments"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"limit", "offset", "status", "order"}
    assert "ExperimentPage" in str(listing["responses"]["200"])


def test_every_experiment_is_on_exactly_one_page(client: TestClient) -> None:
    seen: list[int] = []
    offset: int | None = 0
    while offset is not None:
        page = client.get(f"/api/experiments?limit=120&offset={offset}").json()
        assert len(page["items"]) <= 120
        seen += [e["id"] for e in page["items"]]
        offset = page["next_offset"]
    assert seen == list(range(N, 0, -1))
    oldest = client.get("/api/experiments?order=oldest&limit=3").json()
    assert [e["id"] for e in oldest["items"]] == [1, 2, 3]
    past = client.get(f"/api/experiments?offset={N + 10}").json()
    assert past["items"] == [] and past["total"] == N and past["next_offset"] is None
    biggest = client.get(f"/api/experiments?limit={MAX_PAGE}").json()
    assert len(biggest["items"]) == N and biggest["next_offset"] is None


def test_the_status_filter(client: TestClient) -> None:
    staging = client.get("/api/experiments?status=staging&limit=500").json()
    assert staging["total"] == sum(status_of(i) == "staging" for i in range(2, N + 1))
    assert {e["status"] for e in staging["items"]} == {"staging"}
    done = client.get("/api/experiments?status=done&limit=10&offset=5").json()
    assert done["total"] == N - staging["total"] and len(done["items"]) == 10
    assert client.get("/api/experiments?status=failed").json()["total"] == 0


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("limit=0", "query.limit: Input should be greater than or equal to 1"),
        (f"limit={MAX_PAGE + 1}", f"less than or equal to {MAX_PAGE}"),
        ("limit=ten", "query.limit: Input should be a valid integer"),
        ("offset=-1", "query.offset: Input should be greater than or equal to 0"),
        ("offset=9223372036854775808", "query.offset: Input should be less than or equal"),
        ("status=finished", "'staging', 'running', 'done', 'failed' or 'interrupted'"),
        ("order=random", "query.order: Input should be 'newest' or 'oldest'"),
    ],
)
def test_bad_paging_is_a_422_that_says_what_is_allowed(
    client: TestClient, query: str, words: str
) -> None:
    r = client.get(f"/api/experiments?{query}")
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"]


def test_a_list_never_reads_a_result_once_its_outcome_is_stored(
    client: TestClient, service: Service
) -> None:
    # Rows from a version before paging have no outcome in their summary: the first list
    # reads the results of those on its page only, once, and stores their outcome.
    old = [i for i in range(201, 221, 2) if status_of(i) == "done"]
    # Every other row gets its outcome stored first, whichever tests ran before this one in
    # this process (under xdist the module's tests are spread over workers).
    assert client.get("/api/experiments?limit=500").status_code == 200
    with service.db.session() as s:
        for eid in old:
            row = s.get(ExperimentRow, eid)
            assert row is not None and row.status == "done"
            s.execute(
                update(ExperimentRow)
                .where(ExperimentRow.id == eid)
                .values(summary={k: v for k, v in row.summary.items() if k != "outcome"})
            )
        before = {eid: s.scalar(select(ExperimentRow.updated).where(ExperimentRow.id == eid))
                  for eid in old}  # fmt: skip
    with Statements(service) as first:
        client.get("/api/experiments?order=oldest&offset=200&limit=20")
    reads = first.reading_results()
    assert len(reads) == 1 and reads[0].count("?") <= len(old) + 1, reads
    with Statements(service) as again:
        for query in ("order=oldest&offset=200&limit=20", "limit=500", "status=done"):
            assert client.get(f"/api/experiments?{query}").status_code == 200
        assert client.get("/history").status_code == 200
    assert again.reading_results() == []
    listing = [q for q in again.sql if "FROM experiments" in q and "LIMIT" in q]
    assert listing and all("progress" not in q and "suggestion" not in q for q in listing)
    with service.db.session() as s:
        for eid in old:
            row = s.get(ExperimentRow, eid)
            assert row is not None and row.summary["outcome"]["recommended"]
            assert row.updated == before[eid]  # storing the outcome changes no experiment


def test_the_history_page_pages_and_filters(client: TestClient) -> None:
    html = client.get("/history").text
    assert html.count('class="experiment"') == 50
    assert "1–50 of 300" in html and "MMACs (" in html  # a done row: its savings
    assert 'id="page-previous"' not in html
    following = re.search(r'id="page-next" rel="next" href="([^"]+)"', html)
    assert following and following.group(1) == "/history?offset=50"
    second = client.get("/history?offset=50").text
    assert f'data-id="{N - 50}"' in second and "51–100 of 300" in second
    assert 'id="page-previous" rel="prev" href="/history">' in second
    last = client.get("/history?offset=250").text
    assert 'id="page-next"' not in last and "251–300 of 300" in last
    assert 'id="page-previous" rel="prev" href="/history?offset=200">' in last
    staging = client.get("/history?status=staging&limit=10").text
    assert staging.count('class="experiment"') == 10
    assert staging.count('<span class="status staging">') == 10
    assert 'value="staging" selected' in staging
    assert "/history?status=staging&amp;offset=10&amp;limit=10" in staging
    assert "No failed experiments" in client.get("/history?status=failed").text
    for query, words in [
        ("limit=abc", "limit must be a whole number"),
        ("limit=0", "limit must be a whole number from 1 to 500"),
        ("offset=-5", "offset must be a whole number"),
        ("offset=" + "9" * 40, "offset must be a whole number"),
        ("status=nope", "the statuses are " + ", ".join(STATUSES)),
    ]:
        r = client.get(f"/history?{query}")
        assert r.status_code == 400 and words in r.text, (query, r.text[-800:])


def test_compare_and_the_other_lists_are_bounded(client: TestClient) -> None:
    ids = ",".join(str(i) for i in range(1, 12))
    r = client.get(f"/compare?ids={ids}")
    assert r.status_code == 400 and "at most 10 experiments" in r.text
    assert client.get("/compare?ids=1,2,3,4,5,6,7,8,9,10").status_code == 200
    for path in ("/api/repositories", "/api/datasets"):
        everything = client.get(path)
        total = int(everything.headers["x-total-count"])
        assert total == len(everything.json()) >= 1
        one = client.get(f"{path}?limit=1")
        assert len(one.json()) == 1 and one.headers["x-total-count"] == str(total)
        assert client.get(f"{path}?offset={total}").json() == []
        assert client.get(f"{path}?limit=0").status_code == 422
        assert client.get(f"{path}?limit={MAX_PAGE + 1}").status_code == 422


def test_paging_rules_in_one_place() -> None:
    assert Paging.parse({}) == Paging()
    assert Paging.parse({"limit": " 20 ", "offset": "40", "status": "done", "order": ""}) == (
        Paging(limit=20, offset=40, status="done")
    )
    for bad in ({"limit": "²"}, {"limit": "1e3"}, {"offset": "-1"}, {"order": "up"}):
        with pytest.raises(Rejected):
            Paging.parse(bad)
    for kwargs in ({"limit": True}, {"limit": 2.0}, {"offset": -1}, {"status": "x" * 10_000}):
        with pytest.raises(Rejected) as refused:
            Paging(**kwargs)
        assert len(str(refused.value)) < 300  # a huge value is not echoed whole
    page = Page(items=(), total=95, paging=Paging(limit=20, offset=80))
    assert (page.next_offset, page.previous_offset) == (None, 60)
    beyond = Page(items=(), total=95, paging=Paging(limit=20, offset=400))
    assert beyond.previous_offset == 75


def test_a_new_run_stores_its_outcome(service: Service) -> None:
    with service.db.session() as s:
        summary = s.scalar(select(ExperimentRow.summary).where(ExperimentRow.id == 1))
    assert summary is not None and set(summary["outcome"]) >= {"recommended", "savings"}
