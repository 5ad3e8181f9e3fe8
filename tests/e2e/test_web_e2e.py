"""The web app in a real browser: set-up -> staging -> results, uploads, errors, history.

Each test stands alone (its own experiments), so pytest-xdist may spread them over workers.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.e2e.conftest import Screens, Server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

USE_CASE = "Recommend a model for detecting objects deployed on a drone"
RUN_TIMEOUT_MS = 60_000
STAGING = re.compile(r"/experiments/(\d+)/staging$")
RESULTS = re.compile(r"/experiments/(\d+)$")

# True when a canvas has at least one pixel that is not fully transparent: Chart.js drew.
DRAWN = """(id) => {
  const canvas = document.getElementById(id);
  if (!canvas || !window.Chart || !window.Chart.getChart(canvas)) return false;
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) return true;
  return false;
}"""


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _experiment_id(page: Page, pattern: re.Pattern[str]) -> int:
    found = pattern.search(page.url)
    assert found, f"unexpected URL {page.url}"
    return int(found.group(1))


def _api(page: Page, path: str) -> Any:
    response = page.request.get(path)
    assert response.ok, f"GET {path}: {response.status} {response.text()}"
    return response.json()


def _wait_done(page: Page) -> None:
    """The results page polls and reloads itself once the run ends."""
    _expect()(page.locator("#status")).to_have_text("done", timeout=RUN_TIMEOUT_MS)
    page.locator("#top3").wait_for()


def _check_results(page: Page) -> None:
    expect = _expect()
    rows = page.locator("#top3 tr.top-model")
    expect(rows.first).to_be_visible()
    for i in range(rows.count()):
        expect(rows.nth(i)).to_be_visible()
    expect(page.locator("#savings")).to_contain_text("MMACs")
    expect(page.locator("#savings")).to_contain_text("%")
    expect(page.locator("#benchmark-pick")).to_be_visible()
    expect(page.locator("#recommended")).not_to_be_empty()
    for canvas in ("pulls-chart", "reward-chart", "pareto-chart"):
        page.wait_for_function(DRAWN, arg=canvas)
    for link, kind in (("#download-json", "json"), ("#download-html", "html")):
        href = page.locator(link).get_attribute("href")
        assert href, f"{link} has no href"
        response = page.request.get(href)
        assert response.ok, f"{link} -> {href}: {response.status}"
        assert kind in response.headers["content-type"]


def test_replay_use_case_to_staging_to_results(page: Page, shot: Screens) -> None:
    expect = _expect()
    page.goto("/")
    expect(page.locator("#repository")).to_contain_text("objectnet-sim")
    shot("setup")
    page.select_option("#repository", "objectnet-sim")
    page.select_option("#strategy", "default")
    page.fill("#budget", "0.1")
    page.fill("#use-case", USE_CASE)
    page.click("#create")
    page.wait_for_url(STAGING)
    experiment = _experiment_id(page, STAGING)

    # Staging: the suggestion on sliders, with its reasons.
    expect(page.locator("#justification")).not_to_be_empty()
    expect(page.locator("#tradeoffs")).to_contain_text("size")
    expect(page.locator("#weights-note")).to_contain_text("sum 1")
    for metric in ("accuracy", "size", "complexity"):
        expect(page.locator(f"#weight-{metric}")).to_be_visible()
    shot("staging")
    suggested = _api(page, f"/api/experiments/{experiment}")["suggestion"]["weights"]
    label = page.locator("#weight-size-value")
    before = float(label.inner_text())
    page.focus("#weight-size")
    for _ in range(10):  # ten steps of 0.01
        page.keyboard.press("ArrowRight")
    expect(label).to_have_text(f"{min(1.0, before + 0.10):.2f}")
    shot("staging-moved")
    page.click("#start-run")
    page.wait_for_url(RESULTS)
    assert _experiment_id(page, RESULTS) == experiment

    # The weights saved are the edited ones (scaled to sum 1), not the suggestion.
    saved = _api(page, f"/api/experiments/{experiment}")
    assert saved["decision"] == "edited"
    assert saved["weights"] != suggested
    assert saved["weights"]["size"] > suggested["size"]
    assert sum(saved["weights"].values()) == pytest.approx(1.0, abs=1e-6)

    _wait_done(page)
    expect(page.locator("#top3 tr.top-model")).to_have_count(3)
    _check_results(page)
    expect(page.locator("#weights")).to_contain_text("edited at staging")
    shot("results")


def _onnx_zip(folder: Path) -> Path:
    """Three tiny ONNX classifiers of 8x8 grey images into classes a, b, c."""
    from tests import torch_models
    from tests.onnx_models import export

    models = folder / "models"
    models.mkdir()
    export(torch_models.mlp(8), models / "small_mlp.onnx", (1, 1, 8, 8))
    export(torch_models.cnn(4), models / "tiny_cnn.onnx", (1, 1, 8, 8))
    export(torch_models.constant(0), models / "always_a.onnx", (1, 1, 8, 8))
    (models / "classes.txt").write_text("a\nb\nc\n")
    return _zip(models, folder / "models.zip")


def _image_folder_zip(folder: Path) -> Path:
    """An ImageFolder of 36 small RGB PNGs (12 per class); the models resize them."""
    from PIL import Image

    rng = np.random.default_rng(7)
    images = folder / "images"
    for i in range(36):
        target = images / "abc"[i % 3]
        target.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(target / f"{i}.png")
    return _zip(images, folder / "images.zip")


def _zip(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return out


def test_uploaded_onnx_zip_and_image_folder_end_to_end(
    page: Page, shot: Screens, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    expect = _expect()
    models, images = _onnx_zip(tmp_path), _image_folder_zip(tmp_path)
    page.goto("/")
    page.set_input_files("#repository-file", str(models))
    page.set_input_files("#dataset-file", str(images))
    page.fill("#use-case", "Sort photos on a phone app; accuracy matters most")
    page.fill("#budget", "0.5")
    shot("setup")
    page.click("#create")
    page.wait_for_url(STAGING, timeout=RUN_TIMEOUT_MS)  # every uploaded model is loaded once
    shot("staging")
    page.click("#start-run")
    page.wait_for_url(RESULTS)
    _wait_done(page)
    expect(page.locator("#top3 tr.top-model")).to_have_count(3)
    expect(page.locator("#top3")).to_contain_text("always_a")
    _check_results(page)
    experiment = _api(page, f"/api/experiments/{_experiment_id(page, RESULTS)}")
    assert experiment["dataset_name"], "the uploaded dataset is recorded"
    assert {m["name"] for m in experiment["result"]["models"]} == {
        "small_mlp",
        "tiny_cnn",
        "always_a",
    }
    shot("results")


@pytest.mark.parametrize("field", ["repository-file", "dataset-file"])
def test_bad_upload_shows_its_error_on_the_page(
    page: Page, shot: Screens, tmp_path: Path, field: str
) -> None:
    expect = _expect()
    fake = tmp_path / "models.zip"
    fake.write_text("this is a text file, not a zip archive\n")
    page.goto("/")
    page.set_input_files(f"#{field}", str(fake))
    page.fill("#use-case", USE_CASE)
    page.click("#create")
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("role", "alert")
    expect(error).to_contain_text("zip")
    expect(error).to_contain_text("models.zip")
    # Still the set-up page, with what the user typed: not a JSON body or a traceback.
    expect(page.locator("#setup-form")).to_be_visible()
    expect(page.locator("#use-case")).to_have_value(USE_CASE)
    assert "Traceback" not in page.content()
    shot("error")


def _run_via_api(page: Page, use_case: str, budget: float) -> int:
    created = page.request.post(
        "/api/experiments",
        data={"repository": "objectnet-sim", "use_case": use_case, "budget": budget},
    )
    assert created.ok, created.text()
    experiment = int(created.json()["id"])
    started = page.request.post(f"/api/experiments/{experiment}/run")
    assert started.ok, started.text()
    return experiment


def _wait_done_via_api(experiment: int, page: Page) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_MS / 1000
    while (status := _api(page, f"/api/experiments/{experiment}")["status"]) == "running":
        assert time.monotonic() < deadline, f"experiment {experiment} still running"
        time.sleep(0.2)
    assert status == "done", _api(page, f"/api/experiments/{experiment}")["error"]


def test_history_lists_experiments_and_compare_shows_them_side_by_side(
    page: Page, shot: Screens
) -> None:
    expect = _expect()
    first = _run_via_api(page, "Pick a model for a server that classifies photos overnight", 0.2)
    second = _run_via_api(page, USE_CASE, 0.1)
    for experiment in (first, second):
        _wait_done_via_api(experiment, page)
    page.goto("/history")
    rows = page.locator("#experiments tr.experiment")
    for experiment in (first, second):
        row = rows.filter(has=page.locator(f"#pick-{experiment}"))
        expect(row).to_have_count(1)
        expect(row).to_contain_text("objectnet-sim")
        expect(row).to_contain_text("done")
        expect(row).to_contain_text("MMACs")
    shot("history")
    page.check(f"#pick-{first}")
    page.check(f"#pick-{second}")
    page.click("#compare")
    page.wait_for_url(re.compile(r"/compare\?ids=\d+,\d+$"))  # the history lists newest first
    assert sorted(page.url.rpartition("=")[2].split(",")) == sorted([str(first), str(second)])
    table = page.locator("#comparison")
    expect(table).to_contain_text(f"#{first}")
    expect(table).to_contain_text(f"#{second}")
    expect(page.locator("#compare-recommended td")).to_have_count(2)
    expect(table).to_contain_text("Weight: accuracy")
    expect(table).to_contain_text("MMACs spent")
    shot("compare")
    page.click(f"#comparison a[href='/experiments/{second}']")
    page.wait_for_url(RESULTS)
    _check_results(page)


def _force(server: Server, experiment: int, **values: str) -> None:
    """Write what a run (or a restart mid-run) leaves in the database: real runs on the
    bundled replay end in well under a second, too fast to watch or interrupt reliably."""
    columns = ", ".join(f"{name} = ?" for name in values)
    with sqlite3.connect(server.data_dir / "greenrunner.sqlite") as db:
        db.execute(f"UPDATE experiments SET {columns} WHERE id = ?", (*values.values(), experiment))


def _progress(fraction: float, leader: str) -> str:
    return json.dumps(
        {
            "phase": "selecting",
            "fraction": fraction,
            "done_calls": int(fraction * 325),
            "budget_calls": 325,
            "leader": leader,
        }
    )


def test_live_progress_then_failure_then_resume(page: Page, shot: Screens, server: Server) -> None:
    expect = _expect()
    created = page.request.post(
        "/api/experiments", data={"repository": "objectnet-sim", "use_case": USE_CASE}
    )
    assert created.ok, created.text()
    experiment = int(created.json()["id"])

    # Running: the page follows the progress by polling, without reloading.
    _force(server, experiment, status="running", progress=_progress(0.2, "resnet18"))
    page.goto(f"/experiments/{experiment}")
    expect(page.locator("#status")).to_have_text("running")
    page.evaluate("window.notReloaded = true")
    _force(server, experiment, progress=_progress(0.7, "mobilenet_v2"))
    expect(page.locator("#progress-text")).to_contain_text("leading: mobilenet_v2")
    assert page.evaluate("document.getElementById('progress').value") == pytest.approx(0.7)
    assert page.evaluate("window.notReloaded === true")
    shot("running")

    # The run fails: the page reloads once by itself and shows the message in #error.
    _force(server, experiment, status="failed", error="model zoo_7 returned NaN scores")
    expect(page.locator("#error")).to_contain_text("model zoo_7 returned NaN scores")
    expect(page.locator("#status")).to_have_text("failed")
    assert page.evaluate("window.notReloaded === undefined")
    shot("failed")

    # Interrupted by a restart: resume from the page and see it through.
    _force(server, experiment, status="interrupted", error="the server stopped mid-run")
    page.reload()
    expect(page.locator("#status")).to_have_text("interrupted")
    shot("interrupted")
    page.click("#resume")
    page.wait_for_url(RESULTS)
    _wait_done(page)
    _check_results(page)
    shot("resumed")


def test_unknown_experiment_is_a_page_not_a_traceback(page: Page) -> None:
    response = page.goto("/experiments/987654")
    assert response is not None and response.status == 404
    _expect()(page.locator("#error")).to_contain_text("987654")
    assert "Traceback" not in page.content()
