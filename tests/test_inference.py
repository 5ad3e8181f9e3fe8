"""Real inference through the engine: exact brute force, the cache, failures, up-front checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from greenrunner.adapters import ModelSpec  # noqa: E402
from greenrunner.api import select  # noqa: E402
from greenrunner.budget import Budget  # noqa: E402
from greenrunner.datasets import ArrayDataset  # noqa: E402
from greenrunner.errors import DataError  # noqa: E402
from greenrunner.evaluation.cache import PredictionCache  # noqa: E402
from greenrunner.evaluation.inference import prepare_models  # noqa: E402
from greenrunner.preprocessing import Preprocessing  # noqa: E402
from greenrunner.reward import Weights  # noqa: E402
from tests import torch_models  # noqa: E402

CLASSES = ("a", "b", "c")
GREY8 = Preprocessing(size=(8, 8), channels=1)
N = 90


class CountingDataset(ArrayDataset):
    """Counts how often each sample is decoded."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.decoded: list[int] = []

    def load(self, ids: np.ndarray, *, fit: tuple[int, int] | None = None) -> list[np.ndarray]:
        self.decoded.extend(int(i) for i in ids)
        return super().load(ids, fit=fit)


def _dataset() -> CountingDataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(N, 8, 8), dtype=np.uint8)
    labels = np.array([i % 3 for i in range(N)])  # a third of each class
    return CountingDataset(images, labels, CLASSES, name="toy")


def _spec(tmp_path: Path, name: str, builder: str, **args: object) -> ModelSpec:
    module = getattr(torch_models, builder)(**args)
    path = tmp_path / f"{name}.pt"
    torch.save(module.state_dict(), path)
    return ModelSpec(
        name,
        "torch_state_dict",
        path=path,
        builder=f"tests.torch_models:{builder}",
        builder_args=args,
        preprocessing=GREY8,
        classes=CLASSES,
        card_accuracy=0.5,
    )


def _zoo(tmp_path: Path) -> list[ModelSpec]:
    return [
        _spec(tmp_path, "always_a", "constant", label=0),
        _spec(tmp_path, "always_b", "constant", label=1),
        _spec(tmp_path, "mlp", "mlp", width=8),
        _spec(tmp_path, "mlp_wide", "mlp", width=32),
    ]


def test_brute_force_reports_exact_accuracy_and_measured_macs(tmp_path: Path) -> None:
    data = _dataset()
    prepared = prepare_models(_zoo(tmp_path), data, cache=PredictionCache(tmp_path / "c.db"))
    assert prepared.unavailable == {}
    result = select(
        prepared.candidates, prepared.evaluator, Weights.parse("accuracy=1"), strategy="brute_force"
    )
    by_name = {m.name: m for m in result.models}
    assert by_name["always_a"].accuracy == pytest.approx(1 / 3)
    assert by_name["always_a"].exact and by_name["always_a"].ci_low == by_name["always_a"].ci_high
    # The MLPs' accuracy is what running them directly gives.
    x = data.images.astype(np.float32)[:, None] / 255
    direct = torch_models.mlp(8)(torch.from_numpy(x)).argmax(1).numpy()
    assert by_name["mlp"].accuracy == pytest.approx(float(np.mean(direct == data.labels)))
    macs = {c.name: c.macs for c in prepared.candidates}
    assert macs["mlp"] == 64 * 8 + 8 * 3 and macs["mlp_wide"] == 64 * 32 + 32 * 3
    # Every sample is decoded once for the one preprocessing setting all models share.
    assert sorted(set(data.decoded)) == list(range(N))
    assert len(data.decoded) == N


def test_a_second_run_costs_no_inference(tmp_path: Path) -> None:
    cache = PredictionCache(tmp_path / "c.db")
    weights = Weights.parse("accuracy=1")
    first = prepare_models(_zoo(tmp_path), _dataset(), cache=cache)
    r1 = select(first.candidates, first.evaluator, weights, budget=Budget(0.5), seed=3)
    assert r1.cache == {"served": 0, "computed": r1.calls}
    second = prepare_models(_zoo(tmp_path), _dataset(), cache=cache)
    r2 = select(second.candidates, second.evaluator, weights, budget=Budget(0.5), seed=3)
    assert r2.cache == {"served": r2.calls, "computed": 0}
    assert r2.recommended == r1.recommended
    assert [m.accuracy for m in r2.models] == [m.accuracy for m in r1.models]


def test_changed_weights_are_a_different_model_for_the_cache(tmp_path: Path) -> None:
    cache = PredictionCache(tmp_path / "c.db")
    spec = _spec(tmp_path, "mlp", "mlp", width=8)
    weights = Weights.parse("accuracy=1")
    first = prepare_models([spec], _dataset(), cache=cache)
    select(first.candidates, first.evaluator, weights, strategy="brute_force")
    module = torch_models.mlp(8)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(1.0)
    assert spec.path is not None
    torch.save(module.state_dict(), spec.path)  # same name and path, new weights
    again = prepare_models([spec], _dataset(), cache=cache)
    r = select(again.candidates, again.evaluator, weights, strategy="brute_force")
    assert r.cache == {"served": 0, "computed": N}


def test_failing_models_are_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    specs = [
        *_zoo(tmp_path),
        _spec(tmp_path, "nan", "broken", mode="nan"),
        _spec(tmp_path, "crash", "broken", mode="raise"),
        _spec(tmp_path, "too_wide", "broken", mode="shape"),
        ModelSpec(
            "missing",
            "torch_state_dict",
            path=tmp_path / "nowhere.pt",
            builder="tests.torch_models:mlp",
            preprocessing=GREY8,
            classes=CLASSES,
        ),
    ]
    prepared = prepare_models(specs, _dataset())
    assert set(prepared.unavailable) == {"nan", "crash", "too_wide", "missing"}
    assert "NaN" in prepared.unavailable["nan"]
    assert "boom" in prepared.unavailable["crash"]
    assert "shape (1, 4)" in prepared.unavailable["too_wide"]
    result = select(
        prepared.candidates, prepared.evaluator, Weights.parse("accuracy=1"), strategy="brute_force"
    ).with_unavailable(prepared.unavailable)
    failed = {m.name: m.note for m in result.models if m.status == "failed"}
    assert set(failed) == set(prepared.unavailable)
    assert result.to_dict()["models"][-1]["accuracy"] is None


def test_unmappable_classes_fail_before_any_compute(tmp_path: Path) -> None:
    data = _dataset()
    spec = _spec(tmp_path, "other", "mlp", width=8)
    odd = ModelSpec(**{**spec.__dict__, "classes": ("x", "y", "z")})
    with pytest.raises(DataError, match="'other'"):
        prepare_models([*_zoo(tmp_path), odd], data)
    assert data.decoded == []


def test_a_model_without_class_names_is_refused(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "anon", "mlp", width=8)
    anon = ModelSpec(**{**spec.__dict__, "classes": None})
    with pytest.raises(DataError, match="no class names"):
        prepare_models([anon], _dataset())


def test_pulls_are_batched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prepared = prepare_models(_zoo(tmp_path)[2:3], _dataset(), batch_size=16)
    sizes: list[int] = []
    adapter = prepared.evaluator.adapter("mlp")
    original = adapter.predict

    def spy(batch: np.ndarray) -> np.ndarray:
        sizes.append(len(batch))
        return original(batch)

    monkeypatch.setattr(adapter, "predict", spy)
    prepared.evaluator.evaluate(prepared.candidates[0], np.arange(40))
    assert sizes == [16, 16, 8]
