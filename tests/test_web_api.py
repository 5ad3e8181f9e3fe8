"""The web app's REST API on real SQLite files: the whole flow on the bundled replay, every
refusal, the access token, persistence across restarts, and a real server in a process."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from fastapi.testclient import TestClient
from sqlalchemy import update

from greenrunner.cli import EXIT_USER_ERROR, main
from greenrunner.errors import ConfigError
from greenrunner.web.app import create_app
from greenrunner.web.auth import RedactTokens, host_name
from greenrunner.web.db import Database, ExperimentRow
from greenrunner.web.settings import WebSettings, is_loopback
from tests.web_helpers import wait_until

BASE = "http://127.0.0.1"
TOKEN = "a-token-of-24-characters"
USE_CASE = "Recommend a model for detecting objects deployed on a drone"


@pytest.fixture
def settings(tmp_path: Path) -> WebSettings:
    return WebSettings(data_dir=tmp_path / "web", progress_interval=0.0)


@pytest.fixture
def client(settings: WebSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url=BASE) as c:
        yield c


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    payload = {"repository": "objectnet-sim", "use_case": USE_CASE, **body}
    r = client.post("/api/experiments", json=payload)
    assert r.status_code == 201, r.text
    return dict(r.json())


def finished(client: TestClient, experiment_id: int) -> dict[str, Any]:
    return wait_until(
        lambda: dict(client.get(f"/api/experiments/{experiment_id}").json()),
        lambda e: e["status"] not in ("running", "staging"),
    )


def test_whole_flow_on_the_bundled_replay(client: TestClient) -> None:
    repos = {r["id"]: r for r in client.get("/api/repositories").json()}
    assert repos["objectnet-sim"]["kind"] == "replay"
    assert repos["objectnet-sim"]["n_models"] == 31
    made = create(client, budget=0.2, strategy="racing", seed=3)
    assert made["status"] == "staging"
    suggestion = made["suggestion"]
    assert set(suggestion) >= {"weights", "justification", "tradeoffs"}
    assert sum(suggestion["weights"].values()) == pytest.approx(1.0)
    assert "drone" in suggestion["justification"]
    eid = made["id"]
    # Staging: the sliders' values are scaled to sum 1 and the edit is on record.
    r = client.put(f"/api/experiments/{eid}/weights", json={"weights": {"accuracy": 3, "size": 1}})
    assert r.status_code == 200, r.text
    assert r.json()["weights"] == {"accuracy": 0.75, "size": 0.25, "complexity": 0.0}
    assert r.json()["decision"] == "edited"
    r = client.post(f"/api/experiments/{eid}/run")
    assert r.status_code == 202 and r.json()["status"] == "running"
    done = finished(client, eid)
    assert done["status"] == "done", done["error"]
    result = done["result"]
    assert result["strategy"] == "racing" and result["seed"] == 3
    assert result["weights"] == {"accuracy": 0.75, "size": 0.25, "complexity": 0.0}
    assert result["staging"]["decision"] == "edited"
    assert result["staging"]["suggestion"]["use_case"] == USE_CASE
    assert len(result["top"]) == 3 and result["calls"] < result["brute_force_calls"]
    progress = done["progress"]
    assert progress["phase"] == "finished" and progress["done_calls"] == result["calls"]
    assert sum(progress["pulls"].values()) == result["calls"]
    assert progress["leader"] == result["top"][0]["name"]
    assert done["summary"]["benchmark"]["name"]  # every replay model has a card accuracy
    html = client.get(f"/api/experiments/{eid}/report.html")
    assert html.status_code == 200 and "attachment" in html.headers["content-disposition"]
    assert result["top"][0]["name"] in html.text and "<table>" in html.text
    assert client.get(f"/api/experiments/{eid}/report.json").json() == result
    listed = client.get("/api/experiments").json()
    assert [e["id"] for e in listed["items"]] == [eid] and listed["total"] == 1
    assert listed["items"][0]["recommended"] == result["top"][0]["name"]
    # The same answers again: the JSON report is the engine's shape, the API documents it.
    schema = client.get("/openapi.json").json()
    assert "/api/experiments/{experiment_id}/resume" in schema["paths"]
    assert {"ExperimentIn", "Experiment", "Progress"} <= set(schema["components"]["schemas"])


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"repository": "nope"}, 404, "no repository 'nope'"),
        ({"dataset": "d-1"}, 400, "takes no dataset"),
        ({"budget": 1.5}, 400, "budget must be in (0, 1]"),
        ({"budget": "lots"}, 400, "budget must be a number"),
        ({"strategy": "magic"}, 400, "unknown strategy 'magic'"),
        ({"params": {"epsilon": 0.2}}, 400, "has no parameter 'epsilon'"),
        ({"use_case": "   "}, 400, "the use case is empty"),
        ({"seed": -1}, 422, "seed"),
        ({"budget_unit": "joules"}, 422, "budget_unit"),
        ({"colour": "green"}, 422, "colour"),
    ],
)
def test_bad_set_up_is_refused_with_a_message(
    client: TestClient, body: dict[str, Any], status: int, words: str
) -> None:
    payload = {"repository": "objectnet-sim", "use_case": USE_CASE, **body}
    r = client.post("/api/experiments", json=payload)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


def test_state_rules_weights_run_twice_resume_reports(client: TestClient) -> None:
    eid = create(client, budget=0.1)["id"]
    for weights, words in [
        ({"accuracy": -1}, "must not be negative"),
        ({"speed": 1}, "unknown metric 'speed'"),
        ({"accuracy": 0, "size": 0}, "at least one weight must be positive"),
        ({}, "weights must be an object"),
    ]:
        r = client.put(f"/api/experiments/{eid}/weights", json={"weights": weights})
        assert r.status_code == 400 and words in r.json()["detail"], r.text
    assert client.put(f"/api/experiments/{eid}/weights", json={"weights": "x"}).status_code == 422
    assert client.get(f"/api/experiments/{eid}/report.html").status_code == 409
    assert client.post(f"/api/experiments/{eid}/resume").status_code == 409
    assert client.post(f"/api/experiments/{eid}/run").status_code == 202
    again = client.post(f"/api/experiments/{eid}/run")
    assert again.status_code == 409 and "cannot be started" in again.json()["detail"]
    assert finished(client, eid)["status"] == "done"
    assert client.post(f"/api/experiments/{eid}/run").status_code == 409
    late = client.put(f"/api/experiments/{eid}/weights", json={"weights": {"accuracy": 1}})
    assert late.status_code == 409 and "only change at staging" in late.json()["detail"]
    assert client.post(f"/api/experiments/{eid}/resume").status_code == 409
    for path in ("/api/experiments/999", "/api/experiments/999/report.json"):
        assert client.get(path).status_code == 404
    for path in ("/api/experiments/999/run", "/api/experiments/999/resume"):
        assert client.post(path).status_code == 404
    assert client.get("/api/experiments/abc").status_code == 422


def test_experiments_survive_a_restart_and_a_killed_run_resumes(settings: WebSettings) -> None:
    with TestClient(create_app(settings), base_url=BASE) as client:
        done_id = create(client, seed=1)["id"]
        client.post(f"/api/experiments/{done_id}/run")
        first = finished(client, done_id)
        staged_id = create(client, seed=2)["id"]
    # A server killed mid-run leaves its experiment "running" in the database.
    db = Database(settings.database_url)
    with db.session() as s:
        s.execute(
            update(ExperimentRow).where(ExperimentRow.id == staged_id).values(status="running")
        )
    db.close()
    with TestClient(create_app(settings), base_url=BASE) as client:
        again = client.get(f"/api/experiments/{done_id}").json()
        assert again["status"] == "done" and again["result"] == first["result"]
        stopped = client.get(f"/api/experiments/{staged_id}").json()
        assert stopped["status"] == "interrupted" and "resume" in stopped["error"]
        assert client.post(f"/api/experiments/{staged_id}/resume").status_code == 202
        resumed = finished(client, staged_id)
        assert resumed["status"] == "done" and resumed["runs"] == 1 and resumed["error"] is None


def test_access_token_on_api_and_pages(tmp_path: Path) -> None:
    settings = WebSettings(data_dir=tmp_path / "web", token=TOKEN)
    with TestClient(create_app(settings), base_url=BASE) as client:
        assert client.get("/api/repositories").status_code == 401
        wrong = client.get("/api/repositories", headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401 and "access token" in wrong.json()["detail"]
        right = client.get("/api/repositories", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200
        assert client.get("/login?token=wrong", follow_redirects=False).status_code == 401
        login = client.get(f"/login?token={TOKEN}", follow_redirects=False)
        assert login.status_code == 303 and login.headers["location"] == "/"
        assert "httponly" in login.headers["set-cookie"].lower()
        assert client.get("/api/repositories").status_code == 200  # the cookie now
        client.cookies.clear()
        hop = client.get(f"/history?token={TOKEN}&x=1", follow_redirects=False)
        assert hop.status_code == 303 and hop.headers["location"] == "/history?x=1"
        assert client.get("/api/experiments").status_code == 200
        client.cookies.clear()  # the API does not take ?token= (only pages do)
        assert client.get(f"/api/experiments?token={TOKEN}").status_code == 401


def test_settings_refuse_an_exposed_server_without_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match=r"refusing to listen on 0\.0\.0\.0 without an access"):
        WebSettings(data_dir=tmp_path, host="0.0.0.0")
    with pytest.raises(ConfigError, match="at least 16 characters") as short:
        WebSettings(data_dir=tmp_path, host="0.0.0.0", token="short-secret")
    assert "short-secret" not in str(short.value)
    exposed = WebSettings(data_dir=tmp_path, host="0.0.0.0", token=TOKEN)
    assert TOKEN not in repr(exposed)
    assert [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "10.0.0.2")] == [
        True, True, True, False, False,
    ]  # fmt: skip
    assert [host_name(h) for h in ("127.0.0.1:8000", "[::1]:80", "localhost")] == [
        "127.0.0.1", "::1", "localhost",
    ]  # fmt: skip
    monkeypatch.delenv("GREENRUNNER_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)]) == EXIT_USER_ERROR
    assert "without an access token" in capsys.readouterr().err
    assert main(["serve", "--port", "70000", "--data-dir", str(tmp_path)]) == EXIT_USER_ERROR
    assert "port must be" in capsys.readouterr().err


def test_serve_without_the_web_extra_names_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a)
    )
    assert main(["serve"]) == EXIT_USER_ERROR
    assert "pip install 'greenrunner[web]'" in capsys.readouterr().err


def test_foreign_host_names_and_oversized_bodies_are_refused(tmp_path: Path) -> None:
    settings = WebSettings(data_dir=tmp_path / "web", max_upload_bytes=1000)
    with TestClient(create_app(settings), base_url=BASE) as client:
        # DNS rebinding: a page on another name pointed at 127.0.0.1 gets nothing.
        assert client.get("http://attacker.example/api/experiments").status_code == 421
        big = client.post("/api/repositories", files={"file": ("m.zip", b"0" * (2 << 20))})
        assert big.status_code == 413 and "over the limit of 1,000 bytes" in big.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="m.zip"\r\n\r\n'
            yield from (b"0" * 65536 for _ in range(40))
            yield b"\r\n--b--\r\n"

        streamed = client.post(
            "/api/repositories",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        assert streamed.status_code == 413 and "transfer-encoding" in streamed.request.headers


def test_tokens_are_masked_in_logs() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s "%s %s"', ("1.2.3.4", "GET",
        f"/login?token={TOKEN}&next=/"), None,
    )  # fmt: skip
    RedactTokens().filter(record)
    assert TOKEN not in record.getMessage() and "token=***&next=/" in record.getMessage()


# --- a real server ----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``greenrunner serve`` in a subprocess on 127.0.0.1, talked to over real HTTP."""

    def __init__(self, data_dir: Path, env: dict[str, str], *extra: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = ["serve", "--port", str(self.port), "--data-dir", str(data_dir), *extra]
        # A file, not a pipe: an unread pipe fills up with access-log lines and blocks.
        self.log = data_dir.parent / f"server-{self.port}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "greenrunner.cli", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._ready, lambda up: bool(up["up"]), timeout=60, every=0.1)

    def _ready(self) -> dict[str, Any]:
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited: {self.log.read_text()[-3000:]}")
        try:
            self.call("GET", "/api/repositories")
            return {"up": True}
        except OSError:
            return {"up": False}

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def upload(self, path: str, name: str, content: bytes) -> Any:
        boundary = "greenrunner-test-boundary"
        body = (
            (
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
                "Content-Type: application/zip\r\n\r\n"
            ).encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        req = urllib.request.Request(
            self.url + path,
            data=body,
            method="POST",
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(exc.read().decode()) from None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.mark.slow
def test_real_server_restart_keeps_experiments_and_resume_reuses_the_cache(
    tmp_path: Path,
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("uvicorn")
    from tests.web_helpers import gated_manifest_files, image_folder_files, zip_bytes

    gate = tmp_path / "slow"
    gate.touch()
    env = {**os.environ, "GREENRUNNER_CACHE": str(tmp_path / "cache")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")])
    env.pop("GREENRUNNER_TOKEN", None)
    data_dir = tmp_path / "web"
    # A short lease: the restarted server may call the killed one's run interrupted soon.
    allow = ("--allow-builder", "tests.web_helpers:gated", "--lease-seconds", "2")
    server = Server(data_dir, env, *allow)
    try:
        repo = server.upload(
            "/api/repositories", "gated.zip", zip_bytes(gated_manifest_files(gate, 0.05))
        )
        data = server.upload("/api/datasets", "photos.zip", zip_bytes(image_folder_files(150)))
        assert (repo["n_models"], data["n_samples"]) == (3, 150)
        body = {
            "repository": repo["id"], "dataset": data["id"], "use_case": USE_CASE,
            "strategy": "uniform", "budget": 1.0, "seed": 5,
        }  # fmt: skip
        eid = server.call("POST", "/api/experiments", body)["id"]
        server.call("POST", f"/api/experiments/{eid}/run")
        running = wait_until(
            lambda: server.call("GET", f"/api/experiments/{eid}"),
            lambda e: e["progress"]["done_calls"] > 0 or e["status"] != "running",
        )
        assert running["status"] == "running", running
    finally:
        server.stop(signal.SIGKILL)  # as hard as a crash: no chance to tidy up
    done_before = running["progress"]["done_calls"]
    gate.unlink()  # the resumed run goes at full speed
    server = Server(data_dir, env, *allow)
    try:
        listed = wait_until(
            lambda: server.call("GET", "/api/experiments"),
            lambda page: page["items"][0]["status"] != "running",
            timeout=30,
        )
        assert [(e["id"], e["status"]) for e in listed["items"]] == [(eid, "interrupted")]
        server.call("POST", f"/api/experiments/{eid}/resume")
        done = wait_until(
            lambda: server.call("GET", f"/api/experiments/{eid}"),
            lambda e: e["status"] != "running",
        )
        assert done["status"] == "done", done["error"]
        cache = done["result"]["cache"]
        # Same seed, same order: everything evaluated before the kill is served, not redone.
        assert cache["served"] >= done_before
        assert done["result"]["calls"] > done_before
    finally:
        server.stop()
    # uvicorn re-raises the SIGTERM it handled, after a graceful shutdown.
    assert server.proc.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.log.read_text()


def test_data_folder_follows_the_cache_and_bad_database_urls_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENRUNNER_CACHE", str(tmp_path / "c"))
    settings = WebSettings()
    assert settings.data_dir == tmp_path / "c" / "web"
    assert settings.database_url == f"sqlite:///{tmp_path / 'c' / 'web' / 'greenrunner.sqlite'}"
    with pytest.raises(ConfigError, match="must be a database URL"):
        WebSettings(db_url="greenrunner.sqlite")
    with pytest.raises(ConfigError, match="driver is unknown or not installed") as missing:
        Database("postgresql+nosuchdriver://user:hunter2@127.0.0.1:1/db")
    assert "hunter2" not in str(missing.value)
