"""Shared fixtures: small simulated replays, in memory and written to a folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenrunner.repositories.replay import write_replay
from greenrunner.reward import Weights
from tests._helpers import Replay, make_replay


@pytest.fixture(autouse=True)
def _private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests never read or write the user's cache; the demo build is shared per worker."""
    monkeypatch.setenv("GREENRUNNER_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def small_replay() -> Replay:
    """Six models, 60 samples, moderately spread accuracies, distinct sizes and MACs."""
    return make_replay(
        [0.80, 0.74, 0.70, 0.62, 0.55, 0.40],
        60,
        seed=1,
        sizes_mb=[20.0, 5.0, 100.0, 44.0, 3.0, 250.0],
        mmacs=[400.0, 90.0, 4000.0, 1200.0, 60.0, 9000.0],
    )


@pytest.fixture
def easy_replay() -> Replay:
    """One model clearly best (0.9) and the rest at most 0.6; 100 samples."""
    return make_replay([0.60, 0.90, 0.55, 0.50, 0.45], 100, seed=2)


@pytest.fixture
def paper_weights() -> Weights:
    return Weights.parse("accuracy=0.63,size=0.25,complexity=0.21")


@pytest.fixture
def accuracy_weights() -> Weights:
    return Weights.parse("accuracy=1")


@pytest.fixture
def replay_dir(tmp_path: Path, small_replay: Replay) -> Path:
    """The small replay written as a replay folder (models.csv + correct.npy + README)."""
    folder = tmp_path / "replay"
    write_replay(folder, small_replay.candidates, small_replay.correct, readme="# tiny test\n")
    return folder
