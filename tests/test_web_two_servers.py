"""Two servers on one database: a live run is never taken over (issue 11, item 8).

Each server process holds a lease per run it claimed and renews it; a run is marked
interrupted only once its lease expired, every claim is an atomic conditional UPDATE, and a
server that lost a lease can write nothing more. First with a fake clock on SQLite (and on
PostgreSQL when ``GREENRUNNER_TEST_POSTGRES`` names a database), then with two real
``greenrunner serve`` processes, one of them killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.error
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from sqlalchemy import func, inspect, select, update

from greenrunner.errors import ConfigError
from greenrunner.web.db import Base, Database, ExperimentRow, RunLease
from greenrunner.web.leases import EXPIRED
from greenrunner.web.runner import STOPPED, LeaseLost, ProgressWriter
from greenrunner.web.service import Conflict, ExperimentRequest, Service
from greenrunner.web.settings import WebSettings
from tests.web_helpers import wait_until

USE_CASE = "Recommend a model for detecting objects deployed on a drone"
LEASE = 10.0
POSTGRES = os.environ.get("GREENRUNNER_TEST_POSTGRES")


class Clock:
    """A wall clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WebSettings]:
    url = None
    if request.param == "postgresql":
        if not POSTGRES:
            pytest.skip("set GREENRUNNER_TEST_POSTGRES to a PostgreSQL URL to run this")
        url = POSTGRES
        db = Database(url)  # a clean database for each test
        Base.metadata.drop_all(db.engine)
        db.close()
    yield WebSettings(data_dir=tmp_path / "web", db_url=url, lease_seconds=LEASE)


def server(settings: WebSettings, clock: Clock) -> Service:
    # No worker threads and no heartbeat: the test decides when leases are renewed.
    return Service(settings, start_workers=False, clock=clock)


def staged(service: Service, seed: int = 0) -> int:
    request = ExperimentRequest(repository="objectnet-sim", use_case=USE_CASE, seed=seed)
    return service.create_experiment(request).id


def test_a_second_server_leaves_a_live_run_alone_until_its_lease_expires(
    settings: WebSettings,
) -> None:
    clock_a, clock_b = Clock(), Clock()
    a = server(settings, clock_a)
    eid = staged(a)
    started = a.start_run(eid)
    assert started.status == "running" and started.owner == a.runner.leases.owner
    b = server(settings, clock_b)  # starting on the same database reaps nothing live
    try:
        seen = b.get_experiment(eid)
        assert seen.status == "running" and seen.owner == a.runner.leases.owner
        for launch in (b.resume, b.start_run, a.resume):
            with pytest.raises(Conflict) as refused:
                launch(eid)
            assert refused.value.status == 409 and "already running" in str(refused.value)
        with pytest.raises(Conflict, match=r"on another server \(.*renewed its lease 0 s ago"):
            b.resume(eid)
        # A renews before its lease runs out: B, a lease later, still reaps nothing.
        clock_a.advance(LEASE * 0.8)
        assert a.runner.leases.renew() == 1
        clock_b.advance(LEASE * 1.5)
        assert b.runner.leases.reap() == 0
        assert b.get_experiment(eid).status == "running"
        # A stops renewing (killed, or stalled): once its lease expired, B marks the run.
        clock_b.advance(LEASE)
        assert b.runner.leases.reap() == 1
        lost = b.get_experiment(eid)
        assert lost.status == "interrupted" and lost.error == EXPIRED and lost.owner is None
        # A, if it wakes up, can write nothing: no progress, no result, no new lease.
        writer = ProgressWriter(a.db, eid, 0.0, threading.Event(), a.runner.leases)
        with pytest.raises(LeaseLost):
            writer.phase("selecting")
        assert not a.runner.leases.finish(eid, {"status": "done", "error": None})
        assert a.runner.leases.renew() == 0
        # B resumes it and runs it to the end; it ran twice, once per claim.
        assert b.resume(eid).owner == b.runner.leases.owner
        with pytest.raises(Conflict, match="already running on this server"):
            b.resume(eid)
        b.runner.run(eid)
        done = b.get_experiment(eid)
        assert done.status == "done" and done.runs == 2 and done.owner is None
        with b.db.session() as s:
            assert s.scalar(select(func.count()).select_from(RunLease)) == 0
    finally:
        a.close()
        b.close()


def test_two_requests_on_two_servers_claim_a_run_once(settings: WebSettings) -> None:
    a, b = server(settings, Clock()), server(settings, Clock())
    try:
        eid = staged(a)
        a.set_weights(eid, {"accuracy": 1.0})
        barrier = threading.Barrier(4)
        outcomes: list[str] = []

        def start(service: Service) -> None:
            barrier.wait()
            try:
                service.start_run(eid)
                outcomes.append("started")
            except Conflict:
                outcomes.append("refused")

        threads = [threading.Thread(target=start, args=(s,)) for s in (a, b, a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(outcomes) == ["refused"] * 3 + ["started"]
        assert a.get_experiment(eid).runs == 1
        with a.db.session() as s:
            assert s.scalar(select(func.count()).select_from(RunLease)) == 1
    finally:
        a.close()
        b.close()


def test_a_graceful_stop_interrupts_its_runs_at_once(settings: WebSettings) -> None:
    a, b = server(settings, Clock()), server(settings, Clock())
    try:
        queued, theirs = staged(a, seed=1), staged(a, seed=2)
        a.start_run(queued)  # never taken by a worker (none): still queued at the stop
        b.start_run(theirs)
        a.close()
        stopped = b.get_experiment(queued)
        assert stopped.status == "interrupted" and stopped.error == STOPPED
        assert b.get_experiment(theirs).status == "running"  # another server's run
        assert b.resume(queued).status == "running"  # at once, no lease to wait for
    finally:
        b.close()


def test_a_database_from_before_leases_gets_the_table_and_its_stale_runs_marked(
    settings: WebSettings,
) -> None:
    """No migrations yet: ``run_leases`` is a new table, which create_all adds to an old
    database; a run such a database calls running has no lease, so it is stale."""
    old = server(settings, Clock())
    eid = staged(old)
    old.close()
    db = Database(settings.database_url)
    RunLease.__table__.drop(db.engine)  # type: ignore[attr-defined]
    with db.session() as s:
        s.execute(update(ExperimentRow).where(ExperimentRow.id == eid).values(status="running"))
    assert "run_leases" not in inspect(db.engine).get_table_names()
    db.close()
    new = server(settings, Clock())
    try:
        assert "run_leases" in inspect(new.db.engine).get_table_names()
        assert new.get_experiment(eid).status == "interrupted"
    finally:
        new.close()


def test_lease_settings_are_checked() -> None:
    for bad in (0, -1.0, float("nan"), float("inf"), True, "30"):
        with pytest.raises(ConfigError, match="lease_seconds must be a positive number"):
            WebSettings(lease_seconds=bad)  # type: ignore[arg-type]


# --- two real servers -------------------------------------------------------------------
@pytest.mark.slow
def test_two_real_servers_share_a_database_without_running_a_run_twice(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("uvicorn")
    from tests.test_web_api import Server
    from tests.web_helpers import (
        CLASSES,
        gated_manifest_files,
        image_folder_files,
        png,
        zip_bytes,
    )

    lease = 3.0
    gate = tmp_path / "slow"
    gate.touch()
    env = {**os.environ, "GREENRUNNER_CACHE": str(tmp_path / "cache")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")])
    env.pop("GREENRUNNER_TOKEN", None)
    data_dir = tmp_path / "web"  # both servers: the same SQLite file and uploads
    args = ("--allow-builder", "tests.web_helpers:gated", "--lease-seconds", str(lease))
    a = Server(data_dir, env, *args)
    b: Server | None = None
    try:
        repo = a.upload(
            "/api/repositories", "gated.zip", zip_bytes(gated_manifest_files(gate, 0.3))
        )
        data = a.upload("/api/datasets", "photos.zip", zip_bytes(image_folder_files(60)))
        body = {
            "repository": repo["id"], "dataset": data["id"], "use_case": USE_CASE,
            "strategy": "uniform", "budget": 1.0, "seed": 5,
        }  # fmt: skip
        first = a.call("POST", "/api/experiments", body)["id"]
        a.call("POST", f"/api/experiments/{first}/run")
        live = wait_until(
            lambda: a.call("GET", f"/api/experiments/{first}"),
            lambda e: e["progress"]["done_calls"] > 0 or e["status"] != "running",
        )
        assert live["status"] == "running", live
        b = Server(data_dir, env, *args)
        # Longer than a lease: B's start and its heartbeats have seen A's run all along.
        time.sleep(lease * 1.5)
        seen = b.call("GET", f"/api/experiments/{first}")
        assert seen["status"] == "running", seen
        assert seen["owner"].split(":")[1] == str(a.proc.pid)  # host:pid:random
        for verb in ("resume", "run"):
            refused = _refused(b, "POST", f"/api/experiments/{first}/{verb}")
            assert refused[0] == 409 and "running on another server" in refused[1]
        gate.unlink()  # A finishes at full speed, once
        done = wait_until(
            lambda: b.call("GET", f"/api/experiments/{first}"),
            lambda e: e["status"] != "running",
        )
        assert done["status"] == "done" and done["runs"] == 1, done
        cache = done["result"]["cache"]
        # One run: every evaluation computed once, none answered from another run's work.
        assert cache["served"] == 0 and done["result"]["calls"] > 0, cache

        # Now A dies mid-run: B shows the run interrupted once the lease expired. (Other
        # photos: the first run's are all in the prediction cache, which would not wait.)
        gate.touch()
        photos = {f"t/{CLASSES[i % 3]}/{i}.png": png(1000 + i) for i in range(60)}
        other = a.upload("/api/datasets", "other.zip", zip_bytes(photos))
        second = a.call("POST", "/api/experiments", {**body, "dataset": other["id"]})["id"]
        a.call("POST", f"/api/experiments/{second}/run")
        wait_until(
            lambda: a.call("GET", f"/api/experiments/{second}"),
            lambda e: e["progress"]["done_calls"] > 0 or e["status"] != "running",
        )
        a.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        gate.unlink()
        stale = wait_until(
            lambda: b.call("GET", f"/api/experiments/{second}"),
            lambda e: e["status"] != "running",
            timeout=30,
        )
        assert time.monotonic() - killed_at < lease * 3
        assert stale["status"] == "interrupted" and "lease" in stale["error"], stale
        b.call("POST", f"/api/experiments/{second}/resume")
        resumed = wait_until(
            lambda: b.call("GET", f"/api/experiments/{second}"),
            lambda e: e["status"] != "running",
        )
        assert resumed["status"] == "done" and resumed["runs"] == 2, resumed
        assert resumed["result"]["cache"]["served"] > 0  # A's evaluations, not redone
        listed = b.call("GET", "/api/experiments?status=done")
        assert [e["id"] for e in listed["items"]] == [second, first]
    finally:
        a.stop(signal.SIGKILL)
        if b is not None:
            b.stop()
    for log in (a.log, b.log if b else None):
        if log is not None:
            assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def _refused(server: Any, method: str, path: str) -> tuple[int, str]:
    try:
        server.call(method, path)
    except urllib.error.HTTPError as exc:
        import json

        return exc.code, str(json.loads(exc.read())["detail"])
    raise AssertionError(f"{method} {path} was not refused")
