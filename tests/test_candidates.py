"""Candidate validation and the known-cost helpers."""

from __future__ import annotations

import math

import pytest

from greenrunner.candidates import Candidate, check_unique_names
from greenrunner.errors import ConfigError


def test_candidate_units_and_metric_lookup() -> None:
    c = Candidate("net", size_bytes=44.7e6, macs=1.8e9, metrics={"latency": 3.5})
    assert c.size_mb == pytest.approx(44.7)
    assert c.mmacs == pytest.approx(1800.0)
    assert c.metric("size") == 44.7e6
    assert c.metric("complexity") == 1.8e9
    assert c.metric("latency") == 3.5
    assert c.metric("energy") is None


def test_unknown_values_are_none() -> None:
    c = Candidate("bare")
    assert c.size_mb is None
    assert c.mmacs is None
    assert c.metric("size") is None


def test_candidate_is_frozen_and_metrics_read_only() -> None:
    metrics = {"latency": 1.0}
    c = Candidate("net", metrics=metrics)
    metrics["latency"] = 99.0  # the candidate kept its own copy
    assert c.metric("latency") == 1.0
    with pytest.raises(TypeError):
        c.metrics["latency"] = 2.0  # type: ignore[index]
    with pytest.raises(AttributeError):
        c.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "n", "size_bytes": -1.0}, "size_bytes"),
        ({"name": "n", "macs": math.nan}, "macs"),
        ({"name": "n", "macs": math.inf}, "macs"),
        ({"name": "n", "params": -5}, "params"),
        ({"name": "n", "benchmark_accuracy": 76.1}, "benchmark_accuracy"),
        ({"name": "n", "benchmark_accuracy": 1.01}, "benchmark_accuracy"),
        ({"name": "n", "benchmark_accuracy": -0.1}, "benchmark_accuracy"),
        ({"name": "n", "size_bytes": "12"}, "size_bytes"),
        ({"name": "n", "metrics": {"latency": -2.0}}, "latency"),
    ],
)
def test_invalid_candidates_are_refused(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        Candidate(**kwargs)  # type: ignore[arg-type]
    assert needle in str(info.value)


def test_invalid_candidate_message_repeats_the_value_and_the_name() -> None:
    with pytest.raises(ConfigError) as info:
        Candidate("resnet50", size_bytes=-3.0)
    assert "resnet50" in str(info.value)
    assert "-3.0" in str(info.value)


def test_boundary_values_are_accepted() -> None:
    Candidate("zero", size_bytes=0.0, macs=0.0, params=0, benchmark_accuracy=0.0)
    Candidate("perfect", benchmark_accuracy=1.0)


def test_check_unique_names() -> None:
    check_unique_names([Candidate("a"), Candidate("b")])
    with pytest.raises(ConfigError, match="no candidate"):
        check_unique_names([])
    with pytest.raises(ConfigError, match="b, c"):
        check_unique_names(
            [Candidate("a"), Candidate("c"), Candidate("b"), Candidate("b"), Candidate("c")]
        )


def test_frozen_value_objects_are_hashable() -> None:
    from greenrunner.reward import Weights

    assert len({Candidate("a"), Candidate("a")}) == 1
    assert len({Weights.parse("accuracy=1"), Weights.parse("accuracy=1")}) == 1
