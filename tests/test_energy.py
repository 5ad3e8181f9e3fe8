"""Energy of a selection run: source detection, extrapolation, rendering, a real tracker."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from greenrunner import energy as energy_mod
from greenrunner.api import select
from greenrunner.budget import Budget
from greenrunner.candidates import Candidate
from greenrunner.energy import EnergySettings, Tracker, check_country, classify
from greenrunner.errors import ConfigError
from greenrunner.evaluation.replay import ReplayEvaluator
from greenrunner.render import print_result
from greenrunner.report import markdown_report
from greenrunner.result import SelectionResult
from greenrunner.reward import Weights
from greenrunner.web import pageviews
from tests._helpers import Replay


# Fakes named like CodeCarbon's hardware classes: classify() reads the class name and mode.
class CPU:
    def __init__(self, mode: str) -> None:
        self._mode = mode


class GPU:
    pass


class RAM:
    pass


@dataclass
class FakeTracker:
    """Stands in for OfflineEmissionsTracker: fixed energy, chosen hardware."""

    hardware: list[object]
    kwh: float = 2e-6
    co2: float = 1e-7
    fail: bool = False
    started: bool = False
    stopped: bool = False
    final_emissions_data: Any = None
    _hardware: list[object] = field(default_factory=list)

    def start(self) -> None:
        if self.fail:
            raise RuntimeError("no power readings")
        self.started = True
        self._hardware = self.hardware

    def stop(self) -> float | None:
        self.stopped = True
        self.final_emissions_data = SimpleNamespace(
            energy_consumed=self.kwh, emissions=self.co2, duration=0.25
        )
        return self.co2


@dataclass
class CachedReplay:
    """A replay that behaves like real inference: it keeps cache stats, and the samples
    listed in ``cached`` (per model) count as served from the cache."""

    inner: ReplayEvaluator
    cached: dict[str, set[int]] = field(default_factory=dict)
    served: int = 0
    computed: int = 0

    @property
    def n_samples(self) -> int:
        return self.inner.n_samples

    def cache_stats(self) -> dict[str, int]:
        return {"served": self.served, "computed": self.computed}

    def evaluate(self, candidate: Candidate, sample_ids: np.ndarray) -> np.ndarray:
        hits = self.cached.get(candidate.name, set())
        n_hit = sum(int(i) in hits for i in sample_ids)
        self.served += n_hit
        self.computed += len(sample_ids) - n_hit
        return self.inner.evaluate(candidate, sample_ids)


def _factory(tracker: FakeTracker) -> Any:
    def make(settings: EnergySettings) -> Tracker:
        return tracker

    return make


def _run(
    replay: Replay,
    tracker: FakeTracker,
    *,
    evaluator: Any = None,
    settings: EnergySettings | None = None,
    strategy: str = "default",
) -> SelectionResult:
    return select(
        replay.candidates,
        evaluator if evaluator is not None else CachedReplay(replay.evaluator()),
        Weights.parse("accuracy=1"),
        strategy=strategy,
        budget=Budget(0.3),
        energy=settings or EnergySettings(country="FRA"),
        energy_tracker=_factory(tracker),
    )


def test_source_is_measured_only_when_every_processor_reads_a_counter() -> None:
    assert classify([RAM(), CPU("intel_rapl")]) == (
        "measured",
        {"ram": "estimated (power per GB of memory)", "cpu": "measured (RAPL)"},
    )
    assert classify([RAM(), CPU("cpu_load")])[0] == "estimated"
    assert classify([CPU("constant")])[1]["cpu"] == "estimated (constant TDP share)"
    assert classify([CPU("intel_rapl"), GPU()])[0] == "measured"
    # The GPU's NVML counter does not make the CPU's TDP estimate a measurement.
    source, parts = classify([CPU("cpu_load"), GPU()])
    assert source == "estimated"
    assert parts["gpu"] == "measured (NVML)"
    assert classify([RAM()])[0] == "estimated"  # no processor tracked at all


def test_fake_measured_tracker_gives_measured_energy(small_replay: Replay) -> None:
    tracker = FakeTracker([RAM(), CPU("intel_rapl")])
    result = _run(small_replay, tracker)
    assert tracker.started and tracker.stopped
    assert result.energy is not None
    assert result.energy.source == "measured"
    assert result.energy.kwh == 2e-6
    assert result.energy.co2_kg == 1e-7
    assert result.energy.country == "FRA"
    assert result.energy.duration_s == 0.25


def test_fake_estimated_tracker_gives_estimated_energy(small_replay: Replay) -> None:
    result = _run(small_replay, FakeTracker([RAM(), CPU("cpu_load")]))
    assert result.energy is not None
    assert result.energy.source == "estimated"
    assert result.energy.components["cpu"] == "estimated (TDP x CPU load)"


def test_brute_force_estimate_is_energy_per_computed_mac_times_brute_force_macs(
    small_replay: Replay,
) -> None:
    result = _run(small_replay, FakeTracker([CPU("cpu_load")]))
    energy = result.energy
    assert energy is not None and result.macs is not None and result.brute_force_macs
    # No cache hits: every charged MAC ran.
    assert energy.macs_measured == pytest.approx(result.macs)
    assert energy.brute_force_kwh_estimate == pytest.approx(
        2e-6 / result.macs * result.brute_force_macs
    )


def test_cache_hits_do_not_dilute_the_energy_per_mac(small_replay: Replay) -> None:
    # Every sample of m0 comes from the cache: its MACs cost no measured energy.
    evaluator = CachedReplay(small_replay.evaluator(), {"m0": set(range(60))})
    result = _run(small_replay, FakeTracker([CPU("cpu_load")]), evaluator=evaluator)
    energy = result.energy
    assert energy is not None and result.macs is not None and result.brute_force_macs
    m0 = next(m for m in result.models if m.name == "m0")
    assert m0.pulls > 0
    computed = result.macs - m0.pulls * 400e6
    assert energy.macs_measured == pytest.approx(computed)
    assert energy.brute_force_kwh_estimate == pytest.approx(
        2e-6 / computed * result.brute_force_macs
    )


def test_unknown_macs_leave_the_extrapolation_null() -> None:
    candidates = [Candidate(name=f"m{i}", size_bytes=1e6 * (i + 1)) for i in range(3)]
    correct = np.random.default_rng(0).random((40, 3)) < 0.6
    replay = Replay(candidates, correct)
    result = _run(replay, FakeTracker([CPU("cpu_load")]))
    assert result.energy is not None
    assert result.energy.brute_force_kwh_estimate is None
    assert result.energy.macs_measured is None


def test_replay_is_not_measured_and_says_why(small_replay: Replay) -> None:
    tracker = FakeTracker([CPU("intel_rapl")])
    result = _run(small_replay, tracker, evaluator=small_replay.evaluator())
    assert result.energy is None
    assert "replay runs no inference" in result.energy_note
    assert not tracker.started


def test_energy_off_skips_the_tracker(small_replay: Replay) -> None:
    tracker = FakeTracker([CPU("intel_rapl")])
    result = _run(small_replay, tracker, settings=EnergySettings(mode="off"))
    assert result.energy is None and not tracker.started


def test_a_failing_tracker_costs_the_energy_not_the_selection(small_replay: Replay) -> None:
    result = _run(small_replay, FakeTracker([], fail=True))
    assert result.energy is None
    assert "failed to start" in result.energy_note
    assert result.recommended


def test_missing_codecarbon_is_a_note_by_default_and_an_error_when_asked(
    small_replay: Replay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(energy_mod, "codecarbon_available", lambda: False)
    evaluator = CachedReplay(small_replay.evaluator())
    weights = Weights.parse("accuracy=1")
    result = select(small_replay.candidates, evaluator, weights, budget=Budget(0.3))
    assert result.energy is None
    assert "pip install 'greenrunner[energy]'" in result.energy_note
    for asked in (EnergySettings(mode="on"), EnergySettings(country="FRA")):
        with pytest.raises(ConfigError, match=r"greenrunner\[energy\]"):
            select(small_replay.candidates, evaluator, weights, energy=asked)


def test_settings_are_validated() -> None:
    assert EnergySettings(country="fra", region=" California ").country == "FRA"
    assert EnergySettings(region=" California ").region == "california"
    with pytest.raises(ConfigError, match="three-letter ISO"):
        EnergySettings(country="FR")
    with pytest.raises(ConfigError, match="auto, on, off"):
        EnergySettings(mode="always")


def test_json_round_trip(small_replay: Replay) -> None:
    result = _run(small_replay, FakeTracker([RAM(), CPU("cpu_load")]))
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert set(data["energy"]) >= {
        "kwh",
        "co2_kg",
        "source",
        "country",
        "region",
        "brute_force_kwh_estimate",
        "duration_s",
    }
    assert SelectionResult.from_dict(data) == result
    replayed = _run(small_replay, FakeTracker([]), evaluator=small_replay.evaluator())
    data = json.loads(json.dumps(replayed.to_dict()))
    assert data["energy"] is None and data["energy_note"]
    assert SelectionResult.from_dict(data) == replayed


def test_renders_show_the_energy_beside_the_macs_with_its_source(small_replay: Replay) -> None:
    result = _run(small_replay, FakeTracker([CPU("cpu_load")], kwh=2e-6))
    console = Console(record=True, width=200)
    print_result(console, result, source="test")
    text = console.export_text()
    assert "0.002 Wh (estimated: cpu estimated (TDP x CPU load))" in text
    assert "FRA" in text and "brute force would take about" in text
    assert text.index("MMACs;") < text.index("Energy:")
    report = markdown_report(result, source="test")
    assert "- Energy: 0.002 Wh (estimated" in report
    page = pageviews.energy(result.to_dict())
    assert page["measured"] and page["source"] == "estimated" and page["kwh"] == "0.002 Wh"
    assert "estimated" in page["text"]
    replayed = _run(small_replay, FakeTracker([]), evaluator=small_replay.evaluator())
    assert "not measured: a replay" in markdown_report(replayed, source="test")
    assert not pageviews.energy(replayed.to_dict())["measured"]


def test_an_unknown_country_fails_early() -> None:
    pytest.importorskip("codecarbon")
    check_country("FRA")
    with pytest.raises(ConfigError, match="no energy mix"):
        check_country("ZZZ")


@pytest.mark.slow
def test_real_offline_tracker_around_real_onnx_inference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("codecarbon")
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from greenrunner.cli import main
    from tests import torch_models
    from tests.onnx_models import export

    folder = tmp_path / "onnx"
    folder.mkdir()
    export(torch_models.mlp(8), folder / "small.onnx", (1, 1, 8, 8))
    export(torch_models.cnn(4), folder / "cnn.onnx", (1, 1, 8, 8))
    (folder / "classes.txt").write_text("a\nb\nc\n")
    rng = np.random.default_rng(0)
    data = tmp_path / "digits.npz"
    np.savez(
        data,
        images=rng.integers(0, 256, (90, 8, 8), dtype=np.uint8),
        labels=np.array(["a", "b", "c"])[np.arange(90) % 3],
    )
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # CodeCarbon must not leave an emissions.csv here
    out = tmp_path / "result.json"
    args = ["select", "--models", str(folder), "--data", str(data), "--strategy", "brute_force"]
    assert main([*args, "--energy", "on", "--country", "FRA", "--json", str(out)]) == 0
    energy = json.loads(out.read_text())["energy"]
    assert energy["kwh"] > 0 and energy["co2_kg"] > 0
    assert energy["source"] in ("measured", "estimated")
    assert energy["country"] == "FRA"
    # Brute force ran every call, so the extrapolation is the measurement itself.
    assert energy["brute_force_kwh_estimate"] == pytest.approx(energy["kwh"])
    assert list(work.iterdir()) == []
    printed = capsys.readouterr()
    assert "Energy:" in printed.out and energy["source"] in printed.out
    assert "codecarbon" not in (printed.out + printed.err).lower()
