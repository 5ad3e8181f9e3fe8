"""Equation 1, its normalisation edge cases, further metrics and weight validation."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from greenrunner.candidates import Candidate
from greenrunner.errors import ConfigError
from greenrunner.reward import METRICS, RewardModel, Weights, lognorm


def _decades() -> list[Candidate]:
    # Sizes and MACs one decade apart, so lognorm is exactly 0, 0.5, 1.
    return [
        Candidate("a", size_bytes=1e6, macs=1e8),
        Candidate("b", size_bytes=1e7, macs=1e9),
        Candidate("c", size_bytes=1e8, macs=1e10),
    ]


# --- Equation 1 ---------------------------------------------------------------------------


def test_reward_matches_hand_computed_equation_1() -> None:
    weights = Weights.parse("accuracy=0.63,size=0.25,complexity=0.21")
    rm = RewardModel(weights, _decades())
    reward = rm.reward(np.array([0.8, 0.7, 0.9]))
    expected = [
        0.63 * 0.8 - 0.25 * 0.0 - 0.21 * 0.0,
        0.63 * 0.7 - 0.25 * 0.5 - 0.21 * 0.5,
        0.63 * 0.9 - 0.25 * 1.0 - 0.21 * 1.0,
    ]
    assert reward.tolist() == pytest.approx(expected, abs=1e-12)
    assert reward.tolist() == pytest.approx([0.504, 0.211, 0.107], abs=1e-12)


def test_reward_uses_log_not_linear_normalisation() -> None:
    # 4 lies halfway between 2 and 8 on a log scale (linear would give 1/3).
    cands = [Candidate(n, size_bytes=s) for n, s in (("x", 2.0), ("y", 4.0), ("z", 8.0))]
    rm = RewardModel(Weights({"accuracy": 1.0, "size": 1.0}), cands)
    assert rm.offset.tolist() == pytest.approx([0.0, -0.5, -1.0])


def test_reward_of_a_subset_by_index() -> None:
    rm = RewardModel(Weights.parse("accuracy=1,size=1"), _decades())
    assert float(rm.reward(0.5, 2)) == pytest.approx(0.5 - 1.0)
    assert rm.reward(np.array([0.1, 0.2]), np.array([0, 1])).tolist() == pytest.approx(
        [0.1, 0.2 - 0.5]
    )


def test_offsets_are_read_only() -> None:
    rm = RewardModel(Weights.parse("accuracy=1,size=1"), _decades())
    with pytest.raises(ValueError):
        rm.offset[0] = 3.0


def test_weights_are_used_as_given_not_renormalised() -> None:
    rm = RewardModel(Weights.parse("accuracy=2"), _decades())
    assert rm.w_acc == 2.0
    assert rm.reward(np.array([0.5, 0.5, 0.5])).tolist() == [1.0, 1.0, 1.0]


# --- lognorm edge cases -------------------------------------------------------------------


def test_lognorm_single_candidate_is_zero() -> None:
    assert lognorm([123.0]).tolist() == [0.0]
    rm = RewardModel(Weights.parse("accuracy=0.63,size=0.25,complexity=0.21"), _decades()[:1])
    assert rm.offset.tolist() == [0.0]
    assert float(rm.reward(0.7)[0]) == pytest.approx(0.63 * 0.7)


def test_lognorm_all_equal_is_zero() -> None:
    assert lognorm([5.0, 5.0, 5.0]).tolist() == [0.0, 0.0, 0.0]


def test_lognorm_zero_is_treated_as_smallest_positive() -> None:
    assert lognorm([0.0, 10.0, 100.0]).tolist() == pytest.approx([0.0, 0.0, 1.0])


def test_lognorm_all_zero_is_zero() -> None:
    assert lognorm([0.0, 0.0]).tolist() == [0.0, 0.0]


def test_lognorm_empty() -> None:
    assert lognorm([]).size == 0


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_lognorm_refuses_negative_or_non_finite(bad: float) -> None:
    with pytest.raises(ConfigError):
        lognorm([1.0, bad])


def test_lognorm_range_is_unit_interval() -> None:
    x = np.random.default_rng(0).lognormal(3, 2, size=50)
    y = lognorm(x)
    assert y.min() == pytest.approx(0.0)
    assert y.max() == pytest.approx(1.0)
    assert np.all(np.diff(y[np.argsort(x)]) >= 0)


def test_zero_sized_candidate_gets_no_penalty() -> None:
    cands = [
        Candidate("free", size_bytes=0.0),
        Candidate("small", size_bytes=1e6),
        Candidate("big", size_bytes=1e8),
    ]
    rm = RewardModel(Weights.parse("accuracy=1,size=1"), cands)
    assert rm.offset.tolist() == pytest.approx([0.0, 0.0, -1.0])


def test_missing_value_with_positive_weight_names_the_candidate() -> None:
    cands = [Candidate("known", size_bytes=1e6), Candidate("mystery-net", size_bytes=None)]
    with pytest.raises(ConfigError, match="mystery-net") as info:
        RewardModel(Weights.parse("accuracy=1,size=0.5"), cands)
    assert "size" in str(info.value)


def test_missing_value_with_zero_weight_is_fine() -> None:
    cands = [Candidate("known", size_bytes=1e6), Candidate("mystery-net")]
    rm = RewardModel(Weights.parse("accuracy=1,size=0"), cands)
    assert rm.offset.tolist() == [0.0, 0.0]


def test_missing_values_listed_for_many_candidates() -> None:
    cands = [Candidate("known", macs=1.0)] + [Candidate(f"nomacs{i}") for i in range(8)]
    with pytest.raises(ConfigError, match="nomacs0") as info:
        RewardModel(Weights.parse("accuracy=1,complexity=1"), cands)
    assert "3 more" in str(info.value)


# --- further metrics with a direction -----------------------------------------------------


def test_latency_is_lower_better() -> None:
    assert METRICS["latency"].direction == -1
    cands = [Candidate(f"l{i}", metrics={"latency": v}) for i, v in enumerate([1.0, 10.0, 100.0])]
    rm = RewardModel(Weights.parse("accuracy=1,latency=0.4"), cands)
    assert rm.offset.tolist() == pytest.approx([0.0, -0.2, -0.4])


def test_throughput_is_higher_better() -> None:
    assert METRICS["throughput"].direction == +1
    cands = [
        Candidate(f"t{i}", metrics={"throughput": v}) for i, v in enumerate([1.0, 10.0, 100.0])
    ]
    rm = RewardModel(Weights.parse("accuracy=1,throughput=0.4"), cands)
    assert rm.offset.tolist() == pytest.approx([0.0, 0.2, 0.4])


def test_missing_further_metric_names_the_candidate() -> None:
    cands = [Candidate("fast", metrics={"latency": 3.0}), Candidate("untimed")]
    with pytest.raises(ConfigError, match="untimed"):
        RewardModel(Weights.parse("accuracy=1,latency=0.1"), cands)


def test_metrics_combine_additively() -> None:
    cands = [
        Candidate("a", size_bytes=1.0, macs=100.0, metrics={"latency": 1.0}),
        Candidate("b", size_bytes=100.0, macs=1.0, metrics={"latency": 100.0}),
    ]
    rm = RewardModel(Weights.parse("accuracy=1,size=0.3,complexity=0.2,latency=0.1"), cands)
    assert rm.offset.tolist() == pytest.approx([-0.2, -0.3 - 0.1])


# --- weights ------------------------------------------------------------------------------


def test_weights_parse_and_defaults() -> None:
    w = Weights.parse(" accuracy = 0.63 , size=0.25,complexity=0.21 ")
    assert w.accuracy == 0.63
    assert w["size"] == 0.25
    assert w["latency"] == 0.0
    assert w.as_dict() == {"accuracy": 0.63, "size": 0.25, "complexity": 0.21}
    assert set(w) == {"accuracy", "size", "complexity"}


def test_weights_as_dict_always_has_the_three_paper_metrics() -> None:
    w = Weights.parse("latency=1")
    assert w.as_dict() == {"accuracy": 0.0, "size": 0.0, "complexity": 0.0, "latency": 1.0}


def test_weights_str_round_trips() -> None:
    w = Weights.parse("accuracy=0.63,size=0.25,complexity=0.21,throughput=0.5")
    assert Weights.parse(str(w)) == w


def test_weights_are_immutable() -> None:
    w = Weights.parse("accuracy=1")
    with pytest.raises(TypeError):
        w.values["accuracy"] = 2.0  # type: ignore[index]


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"accuracy": -0.1}, "-0.1"),
        ({"accuracy": math.nan}, "nan"),
        ({"accuracy": math.inf}, "inf"),
        ({"accuracy": 1.0, "size": -math.inf}, "inf"),
        ({"accuracy": 0.0, "size": 0.0}, "all zero"),
        ({}, "all zero"),
        ({"accuracy": 1.0, "sparkle": 0.2}, "sparkle"),
        ({"accuracy": "1"}, "'1'"),
        ({"accuracy": True}, "True"),
    ],
)
def test_invalid_weights_are_refused(values: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        Weights(values)  # type: ignore[arg-type]
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("accuracy", "'accuracy'"),
        ("accuracy=abc", "'abc'"),
        ("accuracy=1,accuracy=2", "twice"),
        ("", "no weights"),
        (" , ", "no weights"),
        ("=0.5", "'=0.5'"),
        ("accuracy=-1", "-1"),
        ("accuracy=nan", "nan"),
        ("accuracy=inf", "inf"),
        ("accuracy=0,size=0", "all zero"),
        ("speed=1", "'speed'"),
    ],
)
def test_bad_weight_strings_are_refused(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        Weights.parse(text)
    assert needle in str(info.value)


def test_unknown_metric_message_lists_known_metrics() -> None:
    with pytest.raises(ConfigError) as info:
        Weights.parse("accuracy=1,sparkle=2")
    for name in METRICS:
        assert name in str(info.value)


def test_weights_and_candidates_pickle_round_trip() -> None:
    w = Weights.parse("accuracy=0.63,size=0.25,complexity=0.21,latency=0.1")
    assert pickle.loads(pickle.dumps(w)) == w
    c = Candidate(
        "net",
        size_bytes=1e6,
        macs=2e6,
        params=3,
        benchmark_accuracy=0.7,
        license="MIT",
        metrics={"latency": 4.0},
    )
    back = pickle.loads(pickle.dumps(c))
    assert back == c
    assert back.metric("latency") == 4.0
    rm = RewardModel(w, [c, Candidate("other", size_bytes=1.0, macs=1.0, metrics={"latency": 1.0})])
    rm_back = pickle.loads(pickle.dumps(rm))
    assert rm_back.offset.tolist() == rm.offset.tolist()


def test_numpy_numbers_are_accepted_as_weights() -> None:
    w = Weights({"accuracy": np.int64(1), "size": np.float32(0.5)})  # type: ignore[dict-item]
    assert w.accuracy == 1.0
    assert w["size"] == 0.5
