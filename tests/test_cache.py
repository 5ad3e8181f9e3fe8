"""The persistent prediction and measurement cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from greenrunner.adapters.base import Measurements
from greenrunner.errors import ConfigError
from greenrunner.evaluation.cache import PredictionCache, cache_home


def test_predictions_round_trip_and_are_keyed_by_model_data_and_view(tmp_path: Path) -> None:
    cache = PredictionCache(tmp_path / "c.sqlite")
    cache.put("m1", "d1", "full", np.array([0, 5, 7]), np.array([2, 1, 0]))
    assert cache.get("m1", "d1", "full", np.array([5, 7, 9])) == {5: 1, 7: 0}
    assert cache.get("m2", "d1", "full", np.array([5])) == {}
    assert cache.get("m1", "d2", "full", np.array([5])) == {}
    assert cache.get("m1", "d1", "restricted", np.array([5])) == {}
    cache.close()
    again = PredictionCache(tmp_path / "c.sqlite")  # persisted
    assert again.get("m1", "d1", "full", np.arange(10)) == {0: 2, 5: 1, 7: 0}


def test_large_lookups_are_chunked(tmp_path: Path) -> None:
    cache = PredictionCache(tmp_path / "c.sqlite")
    ids = np.arange(5000)
    cache.put("m", "d", "v", ids, ids % 7)
    got = cache.get("m", "d", "v", ids)
    assert len(got) == 5000 and got[4999] == 4999 % 7


def test_measurements_round_trip(tmp_path: Path) -> None:
    cache = PredictionCache(tmp_path / "c.sqlite")
    assert cache.measurements("m") is None
    m = Measurements(size_bytes=10, params=3, macs=1.5e6, macs_note="counted")
    cache.put_measurements("m", m)
    assert cache.measurements("m") == m


def test_cache_home_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENRUNNER_CACHE", str(tmp_path / "gr"))
    assert cache_home() == tmp_path / "gr"
    monkeypatch.delenv("GREENRUNNER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_home() == tmp_path / "xdg" / "greenrunner"


def test_an_unwritable_cache_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot open the cache"):
        PredictionCache(blocker / "sub" / "c.sqlite")
