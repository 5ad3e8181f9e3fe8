"""`resume` of a finished real-model run with energy, and the one reader of stored results.

The store used to re-implement ``SelectionResult.from_dict`` and left ``energy`` a dict, so
`greenrunner resume ID` on a finished run with energy crashed while printing it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from greenrunner import store as store_mod
from greenrunner.energy import EnergyReport
from greenrunner.errors import DataError
from greenrunner.result import SelectionResult
from tests._helpers import Replay
from tests.cli_helpers import greenrunner
from tests.store_helpers import write_counting_repository


@pytest.mark.slow
def test_resume_of_a_finished_real_run_with_energy_shows_the_stored_result(
    tmp_path: Path,
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("codecarbon")
    manifest, data = write_counting_repository(
        tmp_path / "repo", log=tmp_path / "log", gate=tmp_path / "gate", delay=0.0,
        n_models=3, n_samples=30,
    )  # fmt: skip
    db, first, again = tmp_path / "s.db", tmp_path / "a.json", tmp_path / "b.json"
    run = greenrunner(
        "select", "--models", str(manifest), "--data", str(data), "--no-cache",
        "--energy", "on", "--country", "FRA", "--store", str(db), "--json", str(first),
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    stored = json.loads(first.read_text())
    assert stored["energy"] is not None and stored["energy"]["country"] == "FRA"

    resumed = greenrunner("resume", "1", "--store", str(db), "--json", str(again), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert "already done" in resumed.stdout and "Recommended:" in resumed.stdout
    assert "Energy:" in resumed.stdout  # rendered from the EnergyReport, not a dict
    assert json.loads(again.read_text()) == stored

    # A result stored by another version is shown (and written) as it is, not misread.
    with sqlite3.connect(db) as con:
        newer = {**stored, "future_field": 1}
        con.execute("UPDATE experiments SET result=?", (json.dumps(newer),))
    resumed = greenrunner("resume", "1", "--store", str(db), "--json", str(again), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "already done" in resumed.stdout and "future_field" in resumed.stdout
    assert json.loads(again.read_text()) == newer


def _result(small_replay: Replay) -> SelectionResult:
    from dataclasses import replace

    from greenrunner.api import select
    from greenrunner.reward import Weights

    result = select(small_replay.candidates, small_replay.evaluator(), Weights({"accuracy": 1}))
    energy = EnergyReport(
        kwh=2e-6, co2_kg=1e-7, source="estimated", country="FRA", region=None,
        brute_force_kwh_estimate=1e-5, duration_s=0.5, macs_measured=3e9,
        components={"cpu": "estimated (TDP x CPU load)"},
    )  # fmt: skip
    staging = {"suggested": {"accuracy": 0.7}, "accepted": True, "notes": ["a note"]}
    return replace(result, energy=energy, staging=staging, cache={"served": 3, "computed": 9})


def test_one_reader_of_stored_results_round_trips_every_field(small_replay: Replay) -> None:
    assert not hasattr(store_mod, "result_from_dict")  # the store's copy is gone
    result = _result(small_replay)
    back = SelectionResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back == result
    assert isinstance(back.energy, EnergyReport) and back.energy.country == "FRA"
    assert back.staging == result.staging and back.cache == result.cache


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d.update(future_field=1), "fields this version does not know: future_field"),
        (lambda d: d.pop("top"), "does not fit this version"),
        (lambda d: d.update(energy="lots"), "does not fit this version"),
    ],
)
def test_a_result_of_another_shape_is_a_data_error(
    small_replay: Replay, change: object, match: str
) -> None:
    data = _result(small_replay).to_dict()
    change(data)  # type: ignore[operator]
    with pytest.raises(DataError, match=match):
        SelectionResult.from_dict(data)
