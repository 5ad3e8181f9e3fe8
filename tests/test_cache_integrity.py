"""The prediction cache does not trust its own file (red team on issue 11, finding 8).

An edited, damaged or foreign cache file must never make a run report a wrong accuracy
or end in a traceback: a file whose tables are not the cache's is refused when opened,
with what to do; a prediction read back that is not a class index of this model, or a
measurement that is not a finite non-negative count, is recomputed (with a warning), not
served; an SQLite error names the file.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from greenrunner.adapters.base import Measurements, ModelSpec
from greenrunner.datasets import ArrayDataset
from greenrunner.errors import ConfigError
from greenrunner.evaluation import cache as cache_module
from greenrunner.evaluation.cache import PredictionCache
from greenrunner.preprocessing import Preprocessing
from tests.test_cache_key import run_greenrunner, write_zoo

CLASSES = ("a", "b", "c")


def _refused(path: Path, *needles: str) -> None:
    with pytest.raises(ConfigError) as info:
        PredictionCache(path)
    message = str(info.value)
    for needle in (str(path), "--no-cache", "GREENRUNNER_CACHE", "delete it", *needles):
        assert needle in message, message


# --- the schema, checked when the file is opened ---------------------------------------------
def test_a_foreign_predictions_table_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE predictions (a, b)")
    _refused(path, "predictions", "'a'")


def test_a_cache_table_with_other_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE measurements (model TEXT PRIMARY KEY, size_bytes INTEGER NOT NULL)"
        )
    _refused(path, "measurements")


def test_another_programs_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE accounts (id INTEGER, owner TEXT)")
    _refused(path, "'accounts'")
    with sqlite3.connect(path) as db:  # no table of ours was added to it
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    assert names == {"accounts"}


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"not a database, just text " * 100)
    _refused(path, "not a GreenRunner cache")


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    PredictionCache(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {cache_module.SCHEMA_VERSION + 1}")
    _refused(path, "newer GreenRunner")


def test_a_file_of_the_unversioned_schema_is_ours_and_kept(tmp_path: Path) -> None:
    """Files written before the schema had a version have the same tables: kept, stamped."""
    path = tmp_path / "cache.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(cache_module._SCHEMA)
        db.execute("INSERT INTO predictions VALUES ('m', 'd', 'full', 3, 1)")
    cache = PredictionCache(path)
    assert cache.get("m", "d", "full", np.array([3]), 2) == {3: 1}
    cache.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == cache_module.SCHEMA_VERSION


def test_a_foreign_cache_is_one_clear_line_on_the_command_line(tmp_path: Path) -> None:
    """The red team's case: a traceback (sqlite3.OperationalError) before the fix."""
    pytest.importorskip("torch")
    zoo = write_zoo(tmp_path / "zoo", {"m": {}})
    cache = tmp_path / "cache"
    cache.mkdir()
    with sqlite3.connect(cache / "cache.sqlite") as db:
        db.execute("CREATE TABLE predictions (a, b)")
    done = run_greenrunner("inspect", "--models", str(zoo), cache=cache, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert str(cache / "cache.sqlite") in done.stderr and "--no-cache" in done.stderr


# --- predictions read back ------------------------------------------------------------------------
def _filled(tmp_path: Path) -> PredictionCache:
    cache = PredictionCache(tmp_path / "c.sqlite")
    cache.put("m", "d", "full", np.arange(6), np.array([0, 1, 2, 0, 1, 2]))
    return cache


def _tamper(cache: PredictionCache, sql: str, *params: Any) -> None:
    with sqlite3.connect(cache.path) as db:
        db.execute(sql, params)


@pytest.mark.parametrize(
    "value",
    [-1, 3, 2**62, "abc", b"\x01\x02", 2.5],
    ids=["negative", "n_classes", "huge", "text", "blob", "float"],
)
def test_a_prediction_that_is_no_class_index_is_never_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, value: object
) -> None:
    cache = _filled(tmp_path)
    _tamper(cache, "UPDATE predictions SET pred = ? WHERE sample = 4", value)
    with caplog.at_level(logging.WARNING, logger="greenrunner.evaluation.cache"):
        assert cache.get("m", "d", "full", np.arange(6), n_classes=3) == {}
    assert str(cache.path) in caplog.text and "damaged" in caplog.text
    # Samples asked for without the damaged one are served.
    assert cache.get("m", "d", "full", np.array([0, 5]), n_classes=3) == {0: 0, 5: 2}


def test_predictions_are_checked_against_the_models_class_count(tmp_path: Path) -> None:
    cache = _filled(tmp_path)
    assert cache.get("m", "d", "full", np.arange(6), n_classes=3) == {i: i % 3 for i in range(6)}
    assert cache.get("m", "d", "full", np.arange(6), n_classes=2) == {}


def _grey_spec(tmp_path: Path) -> ModelSpec:
    torch = pytest.importorskip("torch")
    from tests import torch_models

    path = tmp_path / "mlp.pt"
    torch.save(torch_models.mlp(width=8).state_dict(), path)
    return ModelSpec(
        "mlp",
        "torch_state_dict",
        path=path,
        builder="tests.torch_models:mlp",
        builder_args={"width": 8},
        preprocessing=Preprocessing(size=(8, 8), channels=1),
        classes=CLASSES,
    )


def _data(n: int = 24) -> ArrayDataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 8, 8), dtype=np.uint8)
    return ArrayDataset(images, np.arange(n) % 3, CLASSES, name="toy")


def _run(spec: ModelSpec, data: ArrayDataset, cache: PredictionCache | None) -> Any:
    from greenrunner.api import select
    from greenrunner.evaluation.inference import prepare_models
    from greenrunner.reward import Weights

    prepared = prepare_models([spec], data, cache=cache)
    result = select(
        prepared.candidates, prepared.evaluator, Weights.parse("accuracy=1"), strategy="brute_force"
    )
    return result.models[0], dict(result.cache or {})


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE predictions SET pred = sample / 4 - 3",  # the red team's: -3..2, wrapping
        "UPDATE predictions SET pred = 999",  # was an IndexError traceback
        "UPDATE predictions SET pred = 'abc'",  # was a ValueError traceback
        "UPDATE predictions SET pred = x'0102'",
    ],
    ids=["negative", "out-of-range", "text", "blob"],
)
def test_a_tampered_cache_gives_the_true_accuracy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, sql: str
) -> None:
    spec, data = _grey_spec(tmp_path), _data()
    truth = _run(spec, data, None)[0].accuracy
    cache = PredictionCache(tmp_path / "c.sqlite")
    _run(spec, data, cache)
    with sqlite3.connect(cache.path) as db:
        db.execute(sql)
    with caplog.at_level(logging.WARNING, logger="greenrunner.evaluation.cache"):
        model, counts = _run(spec, data, cache)
    assert model.accuracy == truth
    assert counts == {"served": 0, "computed": len(data)}
    assert "damaged" in caplog.text
    # The recomputed predictions replaced the damaged ones: the next run is served them.
    model, counts = _run(spec, data, cache)
    assert model.accuracy == truth and counts == {"served": len(data), "computed": 0}


# --- measurements read back ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("size_bytes", -5),
        ("params", -1),
        ("macs", -1.0),
        ("macs", float("inf")),
        ("size_bytes", "big"),
        ("params", 2.5),
        ("note", b"\x00"),
    ],
)
def test_damaged_measurements_are_not_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, column: str, value: object
) -> None:
    cache = PredictionCache(tmp_path / "c.sqlite")
    cache.put_measurements("m", Measurements(10, 3, 1.5e6, "counted"))
    _tamper(cache, f"UPDATE measurements SET {column} = ?", value)
    with caplog.at_level(logging.WARNING, logger="greenrunner.evaluation.cache"):
        assert cache.measurements("m") is None
    assert "damaged" in caplog.text and str(cache.path) in caplog.text


def test_a_negative_cached_size_is_measured_again(tmp_path: Path) -> None:
    """It used to blame the model ("size must be non-negative"); it is the cache's fault."""
    from greenrunner.evaluation.inference import prepare_models

    spec, data = _grey_spec(tmp_path), _data()
    cache = PredictionCache(tmp_path / "c.sqlite")
    measured = prepare_models([spec], data, cache=cache).candidates[0]
    with sqlite3.connect(cache.path) as db:
        db.execute("UPDATE measurements SET size_bytes = -5, macs = -1")
    again = prepare_models([spec], data, cache=cache)
    assert not again.unavailable
    assert measured.size_bytes is not None and measured.size_bytes > 0
    assert measured.macs is not None and measured.macs > 0
    assert (again.candidates[0].size_bytes, again.candidates[0].macs) == (
        measured.size_bytes,
        measured.macs,
    )


# --- SQLite errors -------------------------------------------------------------------------------
def test_a_failed_read_is_a_miss_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = _filled(tmp_path)
    cache.put_measurements("m", Measurements(10, 3, 1.5e6, "counted"))
    with sqlite3.connect(cache.path) as db:  # another process breaks the file under us
        db.execute("DROP TABLE predictions")
        db.execute("DROP TABLE measurements")
    with caplog.at_level(logging.WARNING, logger="greenrunner.evaluation.cache"):
        assert cache.get("m", "d", "full", np.arange(6), n_classes=3) == {}
        assert cache.measurements("m") is None
    assert caplog.text.count(str(cache.path)) == 2


def test_a_failed_write_names_the_cache_file(tmp_path: Path) -> None:
    cache = _filled(tmp_path)
    cache._db.execute("PRAGMA query_only = ON")  # as a read-only file would
    with pytest.raises(ConfigError) as info:
        cache.put("m", "d", "full", np.array([9]), np.array([1]))
    assert str(cache.path) in str(info.value) and "--no-cache" in str(info.value)
    with pytest.raises(ConfigError) as info:
        cache.put_measurements("m", Measurements(10, 3, 1.5e6, "counted"))
    assert str(cache.path) in str(info.value) and "--no-cache" in str(info.value)
