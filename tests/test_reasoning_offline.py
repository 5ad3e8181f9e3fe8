"""The offline advisor: contexts, negation, limits, defaults, its knowledge file; sampling."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from greenrunner.errors import ConfigError
from greenrunner.reasoning import advise
from greenrunner.reasoning.knowledge import default_knowledge_path, load_knowledge
from greenrunner.reasoning.offline import OfflineAdvisor
from greenrunner.reasoning.suggestion import WeightSuggestion, combine, suggestion_weights
from greenrunner.reward import Weights

DRONE = "Recommend a model for detecting objects deployed on a drone"


@pytest.fixture(scope="module")
def advisor() -> OfflineAdvisor:
    return OfflineAdvisor()


def w(advisor: OfflineAdvisor, text: str) -> dict[str, float]:
    return advisor.suggest(text).weights.as_dict()


def test_drone_weights_accuracy_first_and_names_the_drones_constraints(
    advisor: OfflineAdvisor,
) -> None:
    s = advisor.suggest(DRONE)
    weights = s.weights.as_dict()
    assert max(weights, key=lambda m: weights[m]) == "accuracy"
    assert weights["size"] + weights["complexity"] >= 0.3
    assert sum(weights.values()) == pytest.approx(1.0)
    assert '"drone"' in s.justification and "battery" in s.justification
    assert s.evidence["size"] == ('"drone"',) and s.evidence["complexity"] == ('"drone"',)
    assert set(s.tradeoffs) == {"accuracy", "size", "complexity"}
    assert s.provider == "offline" and s.notes == ()


def test_deterministic(advisor: OfflineAdvisor) -> None:
    assert advisor.suggest(DRONE) == OfflineAdvisor().suggest(DRONE)


def test_vague_text_gets_defaults_and_says_so(advisor: OfflineAdvisor) -> None:
    s = advisor.suggest("Which of these classifiers should we use for our pictures?")
    assert s.weights.as_dict() == {"accuracy": 0.714, "size": 0.143, "complexity": 0.143}
    assert "defaults" in s.notes[0]


@pytest.mark.parametrize(
    ("text", "check"),
    [
        ("keyword spotting on a Cortex-M4 with 256 KB of RAM", "size + complexity >= 0.45"),
        ("overnight batch diagnosis of X-rays on a hospital GPU cluster", "accuracy >= 0.75"),
        ("pedestrian tracking at 30 fps with low latency", "complexity >= size"),
        ("the classifier ships inside our app and the download must stay tiny", "size >= cx"),
    ],
)
def test_paper_style_contexts(advisor: OfflineAdvisor, text: str, check: str) -> None:
    x = w(advisor, text)
    acc, size, cx = x["accuracy"], x["size"], x["complexity"]
    assert {
        "size + complexity >= 0.45": size + cx >= 0.45,
        "accuracy >= 0.75": acc >= 0.75,
        "complexity >= size": cx >= size,
        "size >= cx": size >= cx,
    }[check], x


def test_negation_relaxes_and_is_reported(advisor: OfflineAdvisor) -> None:
    negated = advisor.suggest("Latency is not a concern for this classifier.")
    stressed = advisor.suggest("Latency is critical for this classifier.")
    assert negated.weights["complexity"] < 0.143 < stressed.weights["complexity"]
    assert any('"Latency"' in n and "negated" in n for n in negated.notes)
    # Listed phrases share the verb: both are negated.
    assert w(advisor, "cost and model size don't matter")["accuracy"] > 0.8


def test_negated_resource_becomes_a_constraint(advisor: OfflineAdvisor) -> None:
    without = w(advisor, "the classifier runs without a GPU")
    with_gpu = w(advisor, "the classifier runs on a GPU")
    assert without["complexity"] > with_gpu["complexity"]


def test_a_limit_is_not_a_negation(advisor: OfflineAdvisor) -> None:
    limited = w(advisor, "the model must not exceed 5 MB")
    assert limited["size"] > 0.3


def test_emphatic_negation_keeps_accuracy_first(advisor: OfflineAdvisor) -> None:
    s = advisor.suggest("We must never miss a tumour, without sacrificing precision")
    assert s.weights["accuracy"] >= 0.75
    assert not s.notes  # nothing read as negated


def test_neutral_phrases_do_not_trigger(advisor: OfflineAdvisor) -> None:
    vague = w(advisor, "classify the pictures")
    assert w(advisor, "classify the pictures with a batch size of 32 and small objects") == vague


def test_longest_phrase_wins_and_quotes_the_users_words(advisor: OfflineAdvisor) -> None:
    s = advisor.suggest("Person detection on a Security Camera")
    assert '"Security Camera"' in s.evidence["complexity"]
    assert "accuracy" not in s.evidence  # not the high-stakes "security"


def test_measured_extra_metric_gets_its_own_weight() -> None:
    text = "real-time detection on a conveyor"
    plain = OfflineAdvisor().suggest(text).weights.as_dict()
    measured = OfflineAdvisor(measured=("latency",)).suggest(text).weights.as_dict()
    assert "latency" not in plain and measured["latency"] > 0.1
    assert sum(measured.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("text", ["", "   ", "x" * 5000])
def test_bad_use_case_is_a_clear_error(advisor: OfflineAdvisor, text: str) -> None:
    with pytest.raises(ConfigError, match="use case"):
        advisor.suggest(text)


def test_deterministic_advisor_draws_once(advisor: OfflineAdvisor) -> None:
    s = advise(advisor, DRONE, samples=5)
    assert s.samples == 1 and "deterministic" in s.notes[-1]
    with pytest.raises(ConfigError, match="samples must be"):
        advise(advisor, DRONE, samples=0)


class _Varying:
    """A non-deterministic fake: the accuracy weight alternates between two values."""

    name = "fake"
    deterministic = False

    def __init__(self) -> None:
        self.calls = 0

    def suggest(self, use_case: str) -> WeightSuggestion:
        self.calls += 1
        acc = 0.6 if self.calls % 2 else 0.8
        rest = (1 - acc) / 2
        return WeightSuggestion(
            weights=suggestion_weights({"accuracy": acc, "size": rest, "complexity": rest}),
            justification=f"draw {self.calls}",
            tradeoffs={},
            provider="fake",
            model="m",
            use_case=use_case,
        )


def test_samples_report_mean_and_spread() -> None:
    fake = _Varying()
    s = advise(fake, DRONE, samples=4)
    assert fake.calls == 4 and s.samples == 4
    assert s.weights["accuracy"] == pytest.approx(0.7)
    assert s.spread["accuracy"] == pytest.approx(0.1)
    assert sum(s.weights.values.values()) == pytest.approx(1.0)
    assert combine([s]) is s


def test_suggestion_json_has_the_documented_keys(advisor: OfflineAdvisor) -> None:
    d = advisor.suggest(DRONE).to_dict()
    for key in ("weights", "justification", "tradeoffs", "provider", "model", "samples", "spread"):
        assert key in d


def test_weights_must_sum_to_one() -> None:
    s = OfflineAdvisor().suggest(DRONE)
    with pytest.raises(ConfigError, match="sum to 1"):
        replace(s, weights=Weights({"accuracy": 2.0}))


def _knowledge_with(tmp_path: Path, old: str, new: str) -> Path:
    text = default_knowledge_path().read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "k.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ('name = "drone"\n', 'name = "drone"\ncolour = "red"\n', "context 'drone': unknown key"),
        ("size = 0.25\n", "size = 1.5\n", "between 0 and 1"),
        ("base_cost = 0.2", "base_cost = -1", "non-negative"),
        ("[model]", "[model", "not valid TOML"),
        ("regex = [", "regex = ['(', ", "bad regular expression"),
    ],
)
def test_knowledge_file_mistakes_are_named(tmp_path: Path, old: str, new: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        load_knowledge(_knowledge_with(tmp_path, old, new))


def test_knowledge_is_data_a_new_context_needs_no_code(tmp_path: Path) -> None:
    path = _knowledge_with(
        tmp_path,
        "[[context]]\n",
        '[[context]]\nname = "greenhouse"\nphrases = ["greenhouse*"]\nsize = 0.9\n'
        'why = "tiny controllers"\n\n[[context]]\n',
    )
    s = OfflineAdvisor(path).suggest("sorting seedlings in a greenhouse")
    assert s.weights["size"] > 0.3 and "tiny controllers" in s.justification
