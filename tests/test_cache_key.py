"""The prediction cache's key covers everything that can change a stored prediction.

Issue 11: the key held the weights and the data but not the preprocessing, so a run with a
wrong mean/std, fixed in the manifest, was served the wrong predictions again. Each part of
the key has a test here, the spec's and the preprocessing's fields by iteration (a field
added later fails until it is classified), and the issue's own reproduction runs through
the real command line.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from greenrunner.adapters import base
from greenrunner.adapters.base import NOT_IN_CACHE_KEY, ModelSpec, cache_key, library_versions
from greenrunner.datasets import ArrayDataset
from greenrunner.evaluation.cache import PredictionCache
from greenrunner.preprocessing import Preprocessing

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("a", "b", "c")
GREY8 = Preprocessing(size=(8, 8), channels=1)


# --- helpers ---------------------------------------------------------------------------------
def _weights(path: Path, builder: str = "mlp", **args: Any) -> Path:
    torch = pytest.importorskip("torch")
    from tests import torch_models

    torch.save(getattr(torch_models, builder)(**args).state_dict(), path)
    return path


def _spec(tmp_path: Path, **changes: Any) -> ModelSpec:
    """A torch state_dict spec whose file exists (written once per folder)."""
    path = tmp_path / "m.pt"
    if not path.exists():
        path.write_bytes(b"weights v1")  # the key hashes bytes; nothing loads them here
    spec = ModelSpec(
        "m",
        "torch_state_dict",
        path=path,
        builder="tests.torch_models:mlp",
        builder_args={"width": 8},
        preprocessing=GREY8,
        classes=CLASSES,
        card_accuracy=0.5,
        license="MIT",
    )
    return dataclasses.replace(spec, **changes)


def run_greenrunner(
    *args: str, cache: Path, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """The installed console script in a fresh process, with its own prediction cache and
    the repository importable (the manifests name builders in tests.torch_models)."""
    exe = shutil.which("greenrunner") or str(Path(sys.executable).parent / "greenrunner")
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "GREENRUNNER_CACHE": str(cache), "PYTHONPATH": path}
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def write_zoo(folder: Path, models: Mapping[str, Mapping[str, Any]]) -> Path:
    """A manifest of mlp models on 8x8 grey images: name -> preprocessing overrides."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, prep in models.items():
        if not (folder / f"{name}.pt").exists():
            _weights(folder / f"{name}.pt", width=8)
        extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in prep.items())
        entries.append(
            f'[[models]]\nname = "{name}"\nformat = "torch_state_dict"\npath = "{name}.pt"\n'
            'builder = "tests.torch_models:mlp"\nbuilder_args = { width = 8 }\n'
            f"[models.preprocessing]\nsize = [8, 8]\nchannels = 1\n{extra}"
        )
    (folder / "manifest.toml").write_text(
        '[repository]\nname = "zoo"\nclasses = ["a", "b", "c"]\n\n' + "\n".join(entries)
    )
    return folder


# --- every field of the spec and of the preprocessing ------------------------------------------
# One changed value per ModelSpec field that is in the key.
SPEC_ALTERNATIVES: dict[str, Any] = {
    "format": "torchscript",
    "path": "OTHER FILE",  # replaced by a file with other bytes below
    "builder": "tests.torch_models:cnn",
    "weights": "IMAGENET1K_V2",
    "preprocessing": Preprocessing(size=(8, 8), channels=1, mean=(0.5,)),
    "classes": ("a", "c", "b"),  # the same names in another order: indices mean other classes
    "builder_args": {"width": 9},
}
NOT_PREDICTIVE_CHANGES: dict[str, Any] = {
    "name": "renamed",
    "card_accuracy": 0.9,
    "license": "Apache-2.0",
    "trust": True,
    "extra": {"latency": 3.0},
}
PREP_ALTERNATIVES: dict[str, Any] = {
    "size": (9, 9),
    "channels": 3,
    "mean": (0.485,),
    "std": (0.229,),
    "resize": 10,
    "layout": "NHWC",
    "interpolation": "bicubic",
}


def test_every_spec_field_is_classified() -> None:
    names = {f.name for f in dataclasses.fields(ModelSpec)}
    assert set(NOT_PREDICTIVE_CHANGES) == set(NOT_IN_CACHE_KEY)
    unclassified = names - set(SPEC_ALTERNATIVES) - set(NOT_IN_CACHE_KEY)
    assert not unclassified, (
        f"new ModelSpec field(s) {sorted(unclassified)}: they are in the cache key; give each "
        "an alternative value in SPEC_ALTERNATIVES, or, if it cannot change a prediction, add "
        "it to NOT_IN_CACHE_KEY in adapters/base.py"
    )


@pytest.mark.parametrize("field", sorted(SPEC_ALTERNATIVES))
def test_each_predictive_spec_field_changes_the_key(tmp_path: Path, field: str) -> None:
    spec = _spec(tmp_path)
    value = SPEC_ALTERNATIVES[field]
    if field == "path":
        value = tmp_path / "other.pt"
        value.write_bytes(b"weights v2")
    assert dataclasses.replace(spec, **{field: value}).cache_key() != spec.cache_key()


def test_fields_that_cannot_change_a_prediction_leave_the_key(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    assert _spec(tmp_path, **NOT_PREDICTIVE_CHANGES).cache_key() == spec.cache_key()


def test_every_preprocessing_field_is_covered() -> None:
    names = {f.name for f in dataclasses.fields(Preprocessing)}
    assert names == set(PREP_ALTERNATIVES), (
        "a Preprocessing field was added or removed: give it an alternative value in "
        "PREP_ALTERNATIVES (the whole dataclass is in the cache key)"
    )


@pytest.mark.parametrize("field", sorted(PREP_ALTERNATIVES))
def test_each_preprocessing_field_changes_the_key(tmp_path: Path, field: str) -> None:
    base_prep = Preprocessing(size=(8, 8), channels=1)
    changed = dataclasses.replace(base_prep, **{field: PREP_ALTERNATIVES[field]})
    assert changed != base_prep
    assert _spec(tmp_path, preprocessing=changed).cache_key() != _spec(tmp_path).cache_key()


def test_a_model_derived_preprocessing_differs_from_a_declared_one(tmp_path: Path) -> None:
    # None means "read it from the model" (ONNX input, torchvision weights): not the same.
    assert _spec(tmp_path, preprocessing=None).cache_key() != _spec(tmp_path).cache_key()


# --- the files -------------------------------------------------------------------------------
def test_the_model_file_counts_by_content_not_location(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    assert spec.path is not None
    moved = tmp_path / "elsewhere" / "renamed.pt"
    moved.parent.mkdir()
    shutil.copy(spec.path, moved)
    assert _spec(tmp_path, path=moved).cache_key() == spec.cache_key()
    spec.path.write_bytes(b"weights v1, retrained")
    assert _spec(tmp_path).cache_key() != _spec(tmp_path, path=moved).cache_key()


def test_onnx_external_data_is_in_the_key(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((64, 3), np.float32), name="w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [w],
    )
    path = tmp_path / "m.onnx"
    onnx.save_model(
        helper.make_model(graph),
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="m.weights",
        size_threshold=0,
    )
    spec = ModelSpec("m", "onnx", path=path, classes=CLASSES)
    before = spec.cache_key()
    weights = tmp_path / "m.weights"
    raw = bytearray(weights.read_bytes())
    raw[0] ^= 0xFF  # same size, other weights; the .onnx file itself is untouched
    weights.write_bytes(bytes(raw))
    assert spec.cache_key() != before


# --- versions --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fmt", "library"),
    [
        ("torch_state_dict", "torch"),
        ("torch_state_dict", "torchvision"),
        ("torchvision", "torchvision"),
        ("torchscript", "torch"),
        ("onnx", "onnxruntime"),
        ("onnx", "pillow"),
        ("torch_export", "numpy"),
    ],
)
def test_library_versions_that_change_outputs_are_in_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, library: str
) -> None:
    spec = _spec(tmp_path, format=fmt)
    library_versions.cache_clear()
    before = spec.cache_key()
    real = importlib.metadata.version

    def version(dist: str) -> str:
        return "999.0" if dist == library else real(dist)

    monkeypatch.setattr(importlib.metadata, "version", version)
    library_versions.cache_clear()
    try:
        assert library in library_versions(fmt)
        assert spec.cache_key() != before
    finally:
        library_versions.cache_clear()


def test_our_own_code_version_is_in_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _spec(tmp_path).cache_key()
    monkeypatch.setattr(base, "CODE_VERSION", base.CODE_VERSION + 1)
    assert _spec(tmp_path).cache_key() != before


def _old_key(spec: ModelSpec) -> str:
    """What the cache filed predictions under before KEY_VERSION 2: the weights alone."""
    import hashlib

    from greenrunner.adapters.base import file_digest

    args = json.dumps(dict(spec.builder_args), sort_keys=True, default=str)
    h = hashlib.sha256(f"{spec.format}|{spec.builder}|{args}|{spec.weights}".encode())
    if spec.path is not None:
        h.update(file_digest(spec.path).encode())
    return h.hexdigest()[:24]


def test_keys_of_the_old_scheme_never_match(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    assert cache_key(spec) != _old_key(spec)
    assert cache_key(spec).startswith(f"k{base.KEY_VERSION}-")


# --- through the evaluator: what is stored and what is served ----------------------------------
def _dataset(n: int = 60) -> ArrayDataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 8, 8), dtype=np.uint8)
    return ArrayDataset(images, np.arange(n) % 3, CLASSES, name="toy")


def _torch_spec(tmp_path: Path, **changes: Any) -> ModelSpec:
    path = tmp_path / "mlp.pt"
    if not path.exists():
        _weights(path, width=8)
    spec = ModelSpec(
        "mlp",
        "torch_state_dict",
        path=path,
        builder="tests.torch_models:mlp",
        builder_args={"width": 8},
        preprocessing=GREY8,
        classes=CLASSES,
    )
    return dataclasses.replace(spec, **changes)


def _brute_force(
    spec: ModelSpec,
    dataset: Any,
    cache: PredictionCache | None,
    **options: Any,
) -> tuple[float, dict[str, int]]:
    """(accuracy, cache counts) of one model over the whole dataset."""
    from greenrunner.api import select
    from greenrunner.evaluation.inference import prepare_models
    from greenrunner.reward import Weights

    prepared = prepare_models([spec], dataset, cache=cache, **options)
    result = select(
        prepared.candidates, prepared.evaluator, Weights.parse("accuracy=1"), strategy="brute_force"
    )
    accuracy = result.models[0].accuracy
    assert result.cache is not None and accuracy is not None
    return accuracy, dict(result.cache)


def test_old_entries_are_not_served(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    cache = PredictionCache(tmp_path / "c.db")
    spec = _torch_spec(tmp_path)
    data = _dataset()
    # What the old scheme stored for this model: filed under the weights-only fingerprint.
    wrong = np.full(len(data), 2)
    cache.put(_old_key(spec), data.fingerprint(), "full", np.arange(len(data)), wrong)
    accuracy, counts = _brute_force(spec, data, cache)
    assert counts == {"served": 0, "computed": len(data)}
    assert accuracy == _brute_force(spec, data, None)[0]


def test_changed_preprocessing_recomputes(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    cache = PredictionCache(tmp_path / "c.db")
    wrong = _torch_spec(tmp_path, preprocessing=Preprocessing((8, 8), 1, mean=(0.9,), std=(0.05,)))
    right = _torch_spec(tmp_path)
    data = _dataset()
    first, _ = _brute_force(wrong, data, cache)
    second, counts = _brute_force(right, data, cache)
    assert counts == {"served": 0, "computed": len(data)}
    assert second == _brute_force(right, data, None)[0] != first


def test_measurements_follow_the_input_size(tmp_path: Path) -> None:
    """MACs per sample depend on the input size, so they are filed under the full key."""
    pytest.importorskip("torch")
    from greenrunner.evaluation.inference import prepare_models

    cache = PredictionCache(tmp_path / "c.db")
    path = _weights(tmp_path / "cnn.pt", "cnn", channels=4)
    spec = ModelSpec(
        "cnn",
        "torch_state_dict",
        path=path,
        builder="tests.torch_models:cnn",
        builder_args={"channels": 4},
        preprocessing=GREY8,
        classes=CLASSES,
    )
    small = prepare_models([spec], _dataset(), cache=cache).candidates[0].macs
    bigger = dataclasses.replace(spec, preprocessing=Preprocessing(size=(16, 16), channels=1))
    large = prepare_models([bigger], _dataset(), cache=cache).candidates[0].macs
    assert small is not None and large is not None
    assert large == pytest.approx(4 * small, rel=0.05)


def test_the_class_list_is_in_the_key(tmp_path: Path) -> None:
    """A prediction is an index into the model's classes: reordered classes, other answers."""
    pytest.importorskip("torch")
    cache = PredictionCache(tmp_path / "c.db")
    data = _dataset()
    _brute_force(_torch_spec(tmp_path), data, cache)
    reordered = _torch_spec(tmp_path, classes=("c", "a", "b"))
    accuracy, counts = _brute_force(reordered, data, cache)
    assert counts["served"] == 0
    assert accuracy == _brute_force(reordered, data, None)[0]


TARGET = ("x", "y")


def _target(n: int = 60) -> ArrayDataset:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(n, 8, 8), dtype=np.uint8)
    return ArrayDataset(images, np.arange(n) % 2, TARGET, name="target")


def test_restricting_logits_is_part_of_the_key(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    cache = PredictionCache(tmp_path / "c.db")
    spec, data = _torch_spec(tmp_path), _target()
    mapping = {"x": ["a"], "y": ["b"]}  # "c" is mapped to nothing: restricting drops it
    _brute_force(spec, data, cache, mapping=mapping)
    accuracy, counts = _brute_force(spec, data, cache, mapping=mapping, restrict=True)
    assert counts["served"] == 0
    assert accuracy == _brute_force(spec, data, None, mapping=mapping, restrict=True)[0]
    # Another set of allowed classes under restriction: another argmax, recomputed.
    other = {"x": ["c"], "y": ["b"]}
    accuracy, counts = _brute_force(spec, data, cache, mapping=other, restrict=True)
    assert counts["served"] == 0
    assert accuracy == _brute_force(spec, data, None, mapping=other, restrict=True)[0]


def test_a_new_label_map_rescores_the_stored_predictions(tmp_path: Path) -> None:
    """Without restriction the map cannot change the argmax: the stored predictions are
    served, and whether they are right follows the map of this run."""
    pytest.importorskip("torch")
    cache = PredictionCache(tmp_path / "c.db")
    spec, data = _torch_spec(tmp_path), _target()
    _brute_force(spec, data, cache, mapping={"x": ["a"], "y": ["b", "c"]})
    other = {"x": ["a", "b"], "y": ["c"]}
    second, counts = _brute_force(spec, data, cache, mapping=other)
    assert counts == {"served": len(data), "computed": 0}
    assert second == _brute_force(spec, data, None, mapping=other)[0]
    # Same allowed set under restriction ({a, b, c} both times): served and rescored too.
    _brute_force(spec, data, cache, mapping={"x": ["a"], "y": ["b", "c"]}, restrict=True)
    third, counts = _brute_force(spec, data, cache, mapping=other, restrict=True)
    assert counts == {"served": len(data), "computed": 0}
    assert third == _brute_force(spec, data, None, mapping=other, restrict=True)[0]


def test_changed_data_content_recomputes(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    cache = PredictionCache(tmp_path / "c.db")
    spec, data = _torch_spec(tmp_path), _dataset()
    _brute_force(spec, data, cache)
    images = data.images.copy()
    images[5] = 255 - images[5]
    changed = ArrayDataset(images, data.labels, CLASSES, name="toy")
    _, counts = _brute_force(spec, changed, cache)
    assert counts["served"] == 0


# --- the reproduction, through the real command line ------------------------------------
def _labelled_by_the_model(folder: Path, zoo: Path) -> Path:
    """8x8 grey PNGs labelled with what mlp(8) predicts under the right preprocessing (mean
    0, std 1), so the right setting scores 1.0 and a wrong one visibly less."""
    torch = pytest.importorskip("torch")
    from PIL import Image

    from tests import torch_models

    module = torch_models.mlp(width=8)
    module.load_state_dict(torch.load(zoo / "m.pt", weights_only=True))
    rng = np.random.default_rng(3)
    low, span = rng.integers(0, 200, (150, 1, 1)), rng.integers(1, 256, (150, 1, 1))
    images = np.clip(low + span * rng.random((150, 8, 8)), 0, 255).astype(np.uint8)
    with torch.no_grad():
        preds = module(torch.from_numpy(images[:, None].astype(np.float32) / 255)).argmax(1)
    # The target's classes are those predicted (the model's others simply match no folder).
    assert len(set(preds.tolist())) >= 2, "the check needs more than one class"
    for i, (image, k) in enumerate(zip(images, preds.tolist(), strict=True)):
        (folder / CLASSES[k]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / CLASSES[k] / f"{i}.png")
    return folder


def _accuracy(json_path: Path) -> tuple[float, dict[str, int]]:
    result = json.loads(json_path.read_text())
    return result["models"][0]["accuracy"], result["cache"]


@pytest.mark.slow
def test_fixing_the_manifest_recomputes_through_the_cli(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    zoo = write_zoo(tmp_path / "zoo", {"m": {"mean": [0.9], "std": [0.05]}})  # wrong
    data = _labelled_by_the_model(tmp_path / "target", zoo)
    cache = tmp_path / "cache"
    args = ["select", "--models", str(zoo), "--data", str(data), "--strategy", "brute_force"]
    out = tmp_path / "r.json"

    first = run_greenrunner(*args, "--json", str(out), cache=cache)
    assert first.returncode == 0, first.stderr
    wrong_accuracy, counts = _accuracy(out)
    assert counts == {"served": 0, "computed": 150}

    write_zoo(zoo, {"m": {}})  # the fix: mean 0, std 1
    second = run_greenrunner(*args, "--json", str(out), cache=cache)
    assert second.returncode == 0, second.stderr
    fixed_accuracy, counts = _accuracy(out)
    assert counts == {"served": 0, "computed": 150}, "the wrong predictions were served"

    fresh = run_greenrunner(*args, "--json", str(out), "--no-cache", cache=tmp_path / "unused")
    assert fresh.returncode == 0, fresh.stderr
    assert fixed_accuracy == _accuracy(out)[0] == 1.0
    assert wrong_accuracy < 0.9
