"""The Python API refuses misuse with a ConfigError naming the bad value, the rule and the
fix, never a raw AttributeError/TypeError; and evaluator outputs are correctness (bools or
0/1), never a probability or NaN silently cast to True."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from greenrunner.api import select
from greenrunner.budget import Budget
from greenrunner.candidates import Candidate
from greenrunner.errors import ConfigError
from greenrunner.evaluation.base import EvaluationError
from greenrunner.evaluation.executors import InProcessExecutor
from greenrunner.evaluation.recording import RecordingExecutor
from greenrunner.evaluation.replay import ReplayEvaluator
from greenrunner.reward import Weights
from greenrunner.simulate import objectnet_sim, simulate_correctness
from greenrunner.store import ExperimentStore
from tests._helpers import Replay

ACC = Weights({"accuracy": 1.0})


# --- accepted conveniences: the CLI's text, plain mappings and numbers ------------------


def test_weights_as_text_or_a_mapping_and_budget_as_a_number_or_text(
    small_replay: Replay,
) -> None:
    c, ev = small_replay.candidates, small_replay.evaluator()
    reference = select(c, ev, ACC, budget=Budget(0.3), seed=np.int64(2))  # type: ignore[arg-type]
    assert select(c, ev, "accuracy=1", budget=0.3, seed=2) == reference
    assert select(c, ev, {"accuracy": 1}, budget="30%", seed=2) == reference
    assert reference.seed == 2 and type(reference.seed) is int
    absolute = select(c, ev, ACC, budget=100)
    assert absolute.budget == {"value": 100, "unit": "calls"} and absolute.calls <= 100


# --- refused, with the value and what to give instead -----------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weights": 3}, r"weights must be Weights, a mapping .* or text .*; got 3"),
        ({"weights": ["accuracy"]}, r"weights must be .*got \['accuracy'\]"),
        ({"weights": {"accuracy": "high"}}, r"weight for 'accuracy' must be a number; got 'high'"),
        ({"weights": "accuracy"}, r"cannot read weight 'accuracy'"),
        ({"budget": True}, r"budget must be a Budget .*got True"),
        ({"budget": [0.1]}, r"budget must be a Budget .*got \[0\.1\]"),
        ({"budget": 1.7}, r"integer number of calls; got 1\.7"),
        ({"budget": float("nan")}, r"got nan"),
        ({"budget": "lots"}, r"budget must be a number such as 0\.2 .*got 'lots'"),
        ({"strategy": None}, r"strategy must be a strategy name .*got None"),
        ({"progress": 3}, r"progress must be a function .*got 3"),
        ({"energy": "off"}, r"energy must be EnergySettings .*got 'off'"),
        ({"executor": "ray"}, r"executor must have run\(evaluator, pulls\) .*got 'ray'"),
    ],
)
def test_misuse_of_select_is_a_config_error_with_the_value(
    small_replay: Replay, kwargs: dict[str, Any], match: str
) -> None:
    args: dict[str, Any] = {"weights": ACC, **kwargs}
    weights = args.pop("weights")
    with pytest.raises(ConfigError, match=match):
        select(small_replay.candidates, small_replay.evaluator(), weights, **args)


def test_wrong_candidates_and_evaluators_are_named(small_replay: Replay) -> None:
    c, ev = small_replay.candidates, small_replay.evaluator()
    with pytest.raises(ConfigError, match=r"candidates must be a list of Candidate.*got str"):
        select("m0,m1", ev, ACC)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="candidates is empty"):
        select([], ev, ACC)
    with pytest.raises(ConfigError, match=r"candidates\[1\] must be a Candidate; got 'm1'"):
        select([c[0], "m1"], ev, ACC)  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="evaluator must have an n_samples property"):
        select(c, None, ACC)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"n_samples must be an integer .*got 2\.5"):
        select(c, Scripted(2.5, lambda ids: np.ones(len(ids), dtype=bool)), ACC)


def test_the_value_types_themselves_say_how_to_build_them() -> None:
    with pytest.raises(
        ConfigError, match=r"Weights takes a mapping .*Weights\.parse\('accuracy=1'\)"
    ):
        Weights("accuracy=1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"Weights takes a mapping .*got 0\.5"):
        Weights(0.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"got the text '0\.1' \(Budget\.parse reads text\)"):
        Budget("0.1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"n_samples must be a positive integer; got 2\.5"):
        objectnet_sim(n_samples=2.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="n_samples must be a positive integer; got 0"):
        simulate_correctness(np.array([0.5]), 0, np.random.default_rng(0))


# --- evaluator outputs ------------------------------------------------------------------


@dataclass
class Scripted:
    """An evaluator whose answers come from ``answer(sample_ids)``, for some models."""

    n: Any
    answer: Callable[[np.ndarray], Any]
    only: frozenset[str] | None = None
    truth: ReplayEvaluator | None = None

    @property
    def n_samples(self) -> Any:
        return self.n

    def evaluate(self, candidate: Candidate, sample_ids: np.ndarray) -> Any:
        if self.only is not None and candidate.name not in self.only:
            assert self.truth is not None
            return self.truth.evaluate(candidate, sample_ids)
        return self.answer(sample_ids)


@pytest.mark.parametrize(
    ("answer", "shown"),
    [
        (lambda ids: np.full(len(ids), 0.3), "0.3 at position 0"),
        (lambda ids: np.where(np.arange(len(ids)) == 1, np.nan, 1.0), "nan at position 1"),
        (lambda ids: np.full(len(ids), 2), "2 at position 0"),
        (lambda ids: np.array(["yes"] * len(ids)), "values of type <U3"),
        (lambda ids: [[True]] * len(ids), "returned shape ("),
    ],
)
def test_non_correctness_fails_the_model_naming_it_instead_of_being_cast(
    small_replay: Replay, answer: Callable[[np.ndarray], Any], shown: str
) -> None:
    truth = small_replay.evaluator()
    ev = Scripted(truth.n_samples, answer, only=frozenset({"m0"}), truth=truth)
    result = select(small_replay.candidates, ev, ACC, budget=0.5)
    m0 = next(m for m in result.models if m.name == "m0")
    assert m0.status == "failed" and m0.accuracy is None
    assert shown in m0.note and "m0" in m0.note
    if "shape" not in shown:
        assert "one bool per sample (True = correct), or 0/1" in m0.note
    assert all(m.status != "failed" for m in result.models if m.name != "m0")


def test_when_every_model_returns_scores_the_error_says_why(small_replay: Replay) -> None:
    ev = Scripted(60, lambda ids: np.full(len(ids), 0.7))
    with pytest.raises(EvaluationError, match=r"every candidate model failed.*0\.7 at position 0"):
        select(small_replay.candidates, ev, ACC)


def test_zero_one_integers_and_floats_are_correctness(small_replay: Replay) -> None:
    truth = small_replay.evaluator()
    reference = select(small_replay.candidates, truth, ACC, budget=0.5, seed=3)
    for dtype in (np.int64, np.uint8, np.float32):

        def answer(ids: np.ndarray, dtype: Any = dtype) -> np.ndarray:
            return np.asarray(truth.correct[ids, 0].astype(dtype))

        only_m0 = Scripted(60, answer, only=frozenset({"m0"}), truth=truth)
        assert select(small_replay.candidates, only_m0, ACC, budget=0.5, seed=3) == reference


def test_the_store_never_records_a_cast_score(tmp_path: Path, small_replay: Replay) -> None:
    truth = small_replay.evaluator()
    ev = Scripted(60, lambda ids: np.full(len(ids), 0.3), only=frozenset({"m0"}), truth=truth)
    m0, m1 = small_replay.candidates[:2]
    with ExperimentStore(tmp_path / "s.db") as store:
        exp = store.create({}, {})
        rec = RecordingExecutor(InProcessExecutor(), store, exp)
        out = rec.run(ev, [(m0, np.array([0, 1])), (m1, np.array([0, 1]))])
        assert isinstance(out[0], EvaluationError) and "0.3" in str(out[0])
        assert store.lookup(exp, "m0", [0, 1]) == {}  # nothing stored as "correct"
        assert len(store.lookup(exp, "m1", [0, 1])) == 2


def test_a_replay_matrix_of_scores_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"replay matrix must hold one bool .*got 0\.4"):
        ReplayEvaluator(np.array([[1.0, 0.4], [0.0, 1.0]]), ["a", "b"])
    assert ReplayEvaluator(np.array([[1, 0], [0, 1]]), ["a", "b"]).correct.dtype == bool
