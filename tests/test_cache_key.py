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


# --- the builder's code (red team, finding 4) ---------------------------------------------------
NET_V1 = """
import torch
from torch import nn

from {pkg}.layers import Flip


def net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3), Flip())
"""
LAYERS = """
from torch import nn


class Flip(nn.Module):
    def forward(self, x):
        return {sign}x
"""


@pytest.fixture
def fresh_modules(tmp_path: Path) -> Any:
    """Forget, after the test, the modules it imported from its own folder (each test's
    builder package is its own, under its own name); torch's stay, as they must."""
    yield
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and Path(file).is_relative_to(tmp_path):
            del sys.modules[name]


def _builder_package(root: Path, pkg: str, sign: str = "") -> Path:
    (root / pkg).mkdir(parents=True, exist_ok=True)
    (root / pkg / "__init__.py").write_text("")
    (root / pkg / "net.py").write_text(NET_V1.format(pkg=pkg))
    (root / pkg / "layers.py").write_text(LAYERS.format(sign=sign))
    return root / pkg


def _forget(pkg: str) -> None:
    """What a new process sees: the package not imported yet."""
    for name in [n for n in sys.modules if n == pkg or n.startswith(pkg + ".")]:
        del sys.modules[name]


def _code_spec(tmp_path: Path, pkg: str) -> ModelSpec:
    return _spec(tmp_path, builder=f"{pkg}.net:net")


@pytest.mark.usefixtures("fresh_modules")
@pytest.mark.parametrize("edited", ["net.py", "layers.py"])
def test_the_builders_code_is_in_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edited: str
) -> None:
    """The defining module and, for a package of the user's own, the modules beside it
    (here Flip lives in layers.py): editing either is another model."""
    pytest.importorskip("torch")
    pkg = f"codepkg_{edited.split('.')[0]}"
    folder = _builder_package(tmp_path / "code", pkg)
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    spec = _code_spec(tmp_path, pkg)
    before = spec.cache_key()
    assert f"{pkg}.net" in sys.modules, "the builder was resolved like the loader does"
    if edited == "net.py":
        (folder / "net.py").write_text(NET_V1.format(pkg=pkg).replace("seed(3)", "seed(42)"))
    else:
        (folder / "layers.py").write_text(LAYERS.format(sign="-"))
    # The running process keeps the code it imported, and so keeps its key ...
    assert spec.cache_key() == before
    _forget(pkg)
    # ... and a process that imports the edited code has another one.
    after = spec.cache_key()
    assert after != before
    _forget(pkg)
    assert spec.cache_key() == after  # deterministic


@pytest.mark.usefixtures("fresh_modules")
def test_the_builder_package_counts_by_content_not_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    _builder_package(tmp_path / "one", "movedpkg")
    monkeypatch.syspath_prepend(str(tmp_path / "one"))
    spec = _code_spec(tmp_path, "movedpkg")
    before = spec.cache_key()
    _forget("movedpkg")
    shutil.move(tmp_path / "one", tmp_path / "two")
    monkeypatch.syspath_prepend(str(tmp_path / "two"))
    assert spec.cache_key() == before


def test_an_installed_builder_packages_version_is_in_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A builder from an installed distribution (ccexam is not torch or torchvision, whose
    versions were already in the key): upgrading it is another model."""
    pytest.importorskip("ccexam")
    spec = _spec(tmp_path, builder="ccexam.models:MNISTNet", builder_args={})
    monkeypatch.setattr(base, "_PACKAGE_IDENTITIES", {}, raising=False)
    before = spec.cache_key()
    real = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, "version", lambda d: "999.0" if d == "ccexam" else real(d)
    )
    monkeypatch.setattr(
        base, "_PACKAGE_IDENTITIES", {}, raising=False
    )  # a new process after the upgrade
    assert spec.cache_key() != before


def test_a_builder_that_cannot_be_resolved_still_has_a_key(tmp_path: Path) -> None:
    """Loading it fails with its own message; the key is computed without an error."""
    spec = _spec(tmp_path, builder="no_such_package_here.models:net")
    assert spec.cache_key().startswith(f"k{base.KEY_VERSION}-")


@pytest.mark.usefixtures("fresh_modules")
def test_the_key_holds_a_builder_to_the_loaders_rules_before_importing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key imports the builder's module only as the loader would: a reference refused
    on its text (a private name) never imports the module, whose import leaves a mark."""
    marker = tmp_path / "imported"
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "markmod.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef _hidden():\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    for ref in ("markmod:_hidden", "markmod:a.b", "os:system"):
        _spec(tmp_path, builder=ref).cache_key()
    assert not marker.exists()
    assert "markmod" not in sys.modules


def test_resume_identity_follows_the_builders_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_modules: Any
) -> None:
    """The store compares InferenceEvaluator.identity on resume: it holds the key, so a
    resume after the builder was edited is refused rather than mixing observations."""
    pytest.importorskip("torch")
    from greenrunner.evaluation.inference import prepare_models

    folder = _builder_package(tmp_path / "code", "resumepkg")
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    spec = _torch_spec(tmp_path, builder="resumepkg.net:net", builder_args={})
    _save_from_builder(spec)
    data = _dataset()
    first = prepare_models([spec], data).evaluator.identity("mlp")
    (folder / "layers.py").write_text(LAYERS.format(sign="-"))
    _forget("resumepkg")
    assert prepare_models([spec], data).evaluator.identity("mlp") != first


def _save_from_builder(spec: ModelSpec) -> None:
    torch = pytest.importorskip("torch")
    from greenrunner.adapters.torch import import_builder

    assert spec.path is not None and spec.builder is not None
    torch.save(import_builder(spec.builder, spec.name)().state_dict(), spec.path)


@pytest.mark.slow
def test_editing_the_builders_code_recomputes_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The red team's case in real processes: a model whose Flip layer returns x, then -x;
    the second run must not be served the first run's predictions."""
    torch = pytest.importorskip("torch")
    from PIL import Image

    code = tmp_path / "code"
    folder = _builder_package(code, "clipkg")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # the edit is read, whatever the clock
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    monkeypatch.syspath_prepend(str(code))
    try:
        from clipkg.net import net  # type: ignore[import-not-found]

        module = net()
    finally:
        _forget("clipkg")
    torch.save(module.state_dict(), zoo / "net.pt")
    (zoo / "manifest.toml").write_text(
        '[repository]\nname = "code"\nclasses = ["a", "b", "c"]\n\n[[models]]\nname = "net"\n'
        'format = "torch_state_dict"\npath = "net.pt"\nbuilder = "clipkg.net:net"\n'
        "[models.preprocessing]\nsize = [8, 8]\nchannels = 1\n"
    )
    # Images labelled with what version 1 predicts: it scores 1.0, the edited one 0.0.
    # Random black-and-white masks of random density; up to 20 of each predicted class.
    rng = np.random.default_rng(5)
    masks = rng.random((2000, 8, 8)) < rng.random((2000, 1, 1))
    pool = masks.astype(np.uint8) * 255
    with torch.no_grad():
        pool_preds = module(torch.from_numpy(pool[:, None].astype(np.float32) / 255)).argmax(1)
    chosen = np.concatenate([np.flatnonzero(pool_preds.numpy() == k)[:20] for k in range(3)])
    images, preds = pool[chosen], pool_preds[chosen]
    assert len(set(preds.tolist())) >= 2, "the check needs more than one class"
    data = tmp_path / "target"
    for i, (image, k) in enumerate(zip(images, preds.tolist(), strict=True)):
        (data / CLASSES[k]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(data / CLASSES[k] / f"{i}.png")
    n = len(images)
    cache, out = tmp_path / "cache", tmp_path / "r.json"
    args = ["select", "--models", str(zoo), "--data", str(data), "--strategy", "brute_force"]

    first = run_greenrunner(*args, "--json", str(out), cache=cache)
    assert first.returncode == 0, first.stderr
    assert _accuracy(out) == (1.0, {"served": 0, "computed": n})

    (folder / "layers.py").write_text(LAYERS.format(sign="-"))  # Flip now negates
    second = run_greenrunner(*args, "--json", str(out), cache=cache)
    assert second.returncode == 0, second.stderr
    edited, counts = _accuracy(out)
    assert counts == {"served": 0, "computed": n}, "the old code's predictions were served"

    # Flip negates the logits: each image's argmax becomes its argmin, never its label.
    assert edited == 0.0

    third = run_greenrunner(*args, "--json", str(out), cache=cache)  # unchanged: all served
    assert third.returncode == 0, third.stderr
    assert _accuracy(out) == (edited, {"served": n, "computed": 0})


# --- ONNX tensors wherever they sit (red team, finding 5) ----------------------------------------
def _external(tensor: Any, location: str) -> Any:
    """The tensor with its bytes moved to ``location`` (written beside the model later)."""
    from onnx import TensorProto

    raw = tensor.raw_data
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(raw)))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor, raw


def _constant_model(folder: Path, weights: np.ndarray) -> Path:
    """x (1x1x8x8) -> Reshape -> MatMul with W, where W is a Constant node's value kept in
    the external file w.bin (the red team's mkox.py)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    tensor, raw = _external(numpy_helper.from_array(weights.astype(np.float32), "Wc"), "w.bin")
    (folder / "w.bin").write_bytes(raw)
    shape = numpy_helper.from_array(np.array([1, 64], np.int64), "s")
    nodes = [
        helper.make_node("Constant", [], ["W"], value=tensor),
        helper.make_node("Constant", [], ["shp"], value=shape),
        helper.make_node("Reshape", ["x", "shp"], ["f"]),
        helper.make_node("MatMul", ["f", "W"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "ext.onnx"
    onnx.save(model, str(path))
    return path


def test_external_data_of_a_constant_node_is_in_the_key(tmp_path: Path) -> None:
    path = _constant_model(tmp_path, np.random.default_rng(0).normal(size=(64, 3)))
    spec = ModelSpec("ext", "onnx", path=path, classes=CLASSES)
    before = spec.cache_key()
    raw = np.frombuffer((tmp_path / "w.bin").read_bytes(), np.float32)
    (tmp_path / "w.bin").write_bytes((-raw).tobytes())  # negated weights, same size
    assert spec.cache_key() != before


def test_negated_constant_weights_are_recomputed(tmp_path: Path) -> None:
    """Through the evaluator: the second run is not served the first run's predictions."""
    pytest.importorskip("onnxruntime")
    weights = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    path = _constant_model(tmp_path, weights)
    spec = ModelSpec("ext", "onnx", path=path, classes=CLASSES, preprocessing=GREY8)
    # Labelled with what the model predicts, so it scores 1.0 and negated 0.0.
    images = _dataset().images
    labels = ((images.reshape(len(images), 64) / 255) @ weights).argmax(1)
    data = ArrayDataset(images, labels, CLASSES, name="labelled")
    cache = PredictionCache(tmp_path / "c.db")
    assert _brute_force(spec, data, cache)[0] == 1.0
    (tmp_path / "w.bin").write_bytes((-weights).tobytes())
    second, counts = _brute_force(spec, data, cache)
    assert counts == {"served": 0, "computed": len(data)}
    assert second == _brute_force(spec, data, None)[0] == 0.0


@pytest.mark.parametrize("where", ["initializer", "constant"])
def test_the_measured_size_counts_external_data(tmp_path: Path, where: str) -> None:
    pytest.importorskip("onnxruntime")
    from greenrunner.adapters.onnx import load

    if where == "constant":
        path = _constant_model(tmp_path, np.ones((64, 3)))
        extra = (tmp_path / "w.bin").stat().st_size
    else:
        path = tmp_path / "m.onnx"
        _initializer_model(path)
        extra = (tmp_path / "m.weights").stat().st_size
    spec = ModelSpec("m", "onnx", path=path, classes=CLASSES, preprocessing=GREY8)
    assert extra >= 64 * 3 * 4
    assert load(spec).measure().size_bytes == path.stat().st_size + extra


def _initializer_model(path: Path) -> None:
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
    onnx.save_model(
        helper.make_model(graph),
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="m.weights",
        size_threshold=0,
    )


def _every_place_model() -> Any:
    """A model (not meant to run) with one external tensor in each place a tensor can sit."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    def t(name: str) -> Any:
        return _external(numpy_helper.from_array(np.ones(2, np.float32), name), name + ".bin")[0]

    def sparse(name: str) -> Any:
        values = t(name + "_values")
        indices = numpy_helper.from_array(np.array([0, 1], np.int64), name + "_indices")
        return helper.make_sparse_tensor(values, indices, [4])

    def graph(name: str, nodes: list[Any], inits: list[Any]) -> Any:
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
        return helper.make_graph(nodes, name, [], [out], inits)

    deep = graph("deep", [helper.make_node("Constant", [], ["y"], value=t("deep_const"))], [])
    middle = graph(
        "middle",
        [helper.make_node("If", ["c"], ["y"], then_branch=deep, else_branch=deep)],
        [t("middle_init")],
    )
    loop_body = graph("body", [], [t("loop_init")])
    nodes = [
        helper.make_node("Constant", [], ["a"], value=t("const_value")),
        helper.make_node("Constant", [], ["b"], sparse_value=sparse("const_sparse")),
        helper.make_node("Custom", [], ["c"], domain="x", tensors=[t("attr_tensors")]),
        helper.make_node("Custom", [], ["d"], domain="x", sparse_tensors=[sparse("attr_sparse")]),
        helper.make_node("If", ["c"], ["e"], then_branch=middle, else_branch=middle),
        helper.make_node("Loop", ["", "c"], ["f"], body=loop_body),
        helper.make_node("Fn", [], ["y"], domain="local"),
    ]
    main = graph("main", nodes, [t("init")])
    main.sparse_initializer.append(sparse("sparse_init"))
    function = helper.make_function(
        "local",
        "Fn",
        [],
        ["y"],
        [helper.make_node("Constant", [], ["y"], value=t("function_const"))],
        [helper.make_opsetid("", 17)],
    )
    default = helper.make_attribute("w", t("function_default"))
    function.attribute_proto.append(default)
    model = helper.make_model(main, functions=[function])
    info = model.training_info.add()
    info.initialization.CopyFrom(graph("init_graph", [], [t("training_init")]))
    return model


EVERY_PLACE = sorted(
    f"{name}.bin"
    for name in (
        "init",
        "sparse_init_values",
        "const_value",
        "const_sparse_values",
        "attr_tensors",
        "attr_sparse_values",
        "middle_init",
        "deep_const",
        "loop_init",
        "function_const",
        "function_default",
        "training_init",
    )
)


def test_the_tensor_walker_finds_every_place_a_tensor_can_sit() -> None:
    from greenrunner.adapters.onnx_tensors import external_locations, is_external, iter_tensors

    model = _every_place_model()
    assert external_locations(model) == EVERY_PLACE
    # Each branch of an If is its own copy of its graph: every copy is walked.
    external = sorted(f"{t.name}.bin" for t in iter_tensors(model) if is_external(t))
    assert sorted(set(external)) == EVERY_PLACE
    assert external.count("deep_const.bin") == 4 and external.count("middle_init.bin") == 2
    # The sparse tensors' indices are tensors too (kept inline here).
    names = {t.name for t in iter_tensors(model)}
    assert {"sparse_init_indices", "const_sparse_indices", "attr_sparse_indices"} <= names


def test_the_key_and_the_size_read_every_external_file(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    import onnx

    from greenrunner.adapters.onnx import _external_bytes, external_data_files

    path = tmp_path / "every.onnx"
    onnx.save(_every_place_model(), str(path))
    for i, name in enumerate(EVERY_PLACE):
        (tmp_path / name).write_bytes(bytes(8 + i))
    assert [f.name for f in external_data_files(path)] == EVERY_PLACE
    assert _external_bytes(path) == sum(8 + i for i in range(len(EVERY_PLACE)))
    spec = ModelSpec("every", "onnx", path=path, classes=CLASSES)
    for name in EVERY_PLACE:
        before = spec.cache_key()
        (tmp_path / name).write_bytes(b"edited " + (tmp_path / name).read_bytes())
        assert spec.cache_key() != before, name


def test_external_files_outside_the_model_folder_are_not_read(tmp_path: Path) -> None:
    """onnxruntime refuses them (a model that never loads has nothing cached); the key
    does not read them, nor stumble on a location it cannot even resolve."""
    pytest.importorskip("onnx")
    import onnx
    from onnx import numpy_helper

    model = _every_place_model()
    extra = [
        _external(numpy_helper.from_array(np.ones(2, np.float32), f"o{i}"), loc)[0]
        for i, loc in enumerate(["../outside.bin", "/etc/passwd", "a\x00b", "x" * 300])
    ]
    model.graph.initializer.extend(extra)
    folder = tmp_path / "m"
    folder.mkdir()
    (tmp_path / "outside.bin").write_bytes(b"secret")
    path = folder / "m.onnx"
    onnx.save(model, str(path))
    from greenrunner.adapters.onnx import external_data_files

    assert all(f.is_relative_to(folder) for f in external_data_files(path))
    ModelSpec("m", "onnx", path=path, classes=CLASSES).cache_key()


# --- torchvision checkpoints (red team, finding 6) -----------------------------------------------
def test_a_torchvision_checkpoints_content_is_in_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch checks a checkpoint's hash only when it downloads it; another file copied over
    it in the torch cache is another model."""
    pytest.importorskip("torchvision")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    spec = ModelSpec(
        "r18", "torchvision", builder="resnet18", weights="IMAGENET1K_V1", classes=CLASSES
    )
    missing = spec.cache_key()
    file = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    file.parent.mkdir(parents=True)
    file.write_bytes(b"one state_dict")
    first = spec.cache_key()
    file.write_bytes(b"another state_dict")
    second = spec.cache_key()
    assert len({missing, first, second}) == 3
    # Where the torch cache lives is not the model: the same file elsewhere, the same key.
    shutil.move(tmp_path / "torch", tmp_path / "moved")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "moved"))
    assert spec.cache_key() == second


def test_an_unknown_torchvision_builder_still_has_a_key() -> None:
    pytest.importorskip("torchvision")
    spec = ModelSpec("x", "torchvision", builder="no_such_net", classes=CLASSES)
    assert spec.cache_key().startswith(f"k{base.KEY_VERSION}-")


# --- every leaf tagged with its type (red team, finding 7) ---------------------------------------
COLLIDING = [
    (float("nan"), "nan"),
    (float("inf"), "inf"),
    (float("-inf"), "-inf"),
    (__import__("datetime").date(1979, 5, 27), "date:datetime.date(1979, 5, 27)"),
    ((1, 2), [1, 2]),
    (1, 1.0),
    (1, True),
    (0, False),
    (1.0, True),
    (0.0, -0.0),
    (None, "None"),
    ("1", 1),
    ({1: "a"}, {"1": "a"}),
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}),  # a builder may iterate its arguments in order
    ([["a", 1]], {"a": 1}),
    (b"ab", "ab"),
    (frozenset({1}), [1]),
    (Path("a"), "a"),
    (__import__("datetime").time(7, 32), "07:32:00"),
    (__import__("datetime").datetime(1979, 5, 27, 7, 32), "1979-05-27T07:32:00"),
    (2**70, float(2**70)),
    (10**5000, 10**5000 + 1),  # beyond Python's decimal digit limit for int -> str
]


@pytest.mark.parametrize(("a", "b"), COLLIDING, ids=[f"pair{i}" for i in range(len(COLLIDING))])
def test_distinct_builder_arguments_give_distinct_keys(tmp_path: Path, a: Any, b: Any) -> None:
    assert base.canonical(a) != base.canonical(b)
    first = _spec(tmp_path, builder_args={"x": a}).cache_key()
    assert first != _spec(tmp_path, builder_args={"x": b}).cache_key()
    assert first == _spec(tmp_path, builder_args={"x": a}).cache_key()  # and deterministic


def test_a_toml_manifests_arguments_give_a_stable_key(tmp_path: Path) -> None:
    import tomllib

    text = (
        "d = 1979-05-27\nt = 07:32:00\ndt = 1979-05-27T07:32:00-08:00\nf = nan\ng = inf\n"
        'n = { a = [1, 2.5, "x"], b = true }\n'
    )
    args = tomllib.loads(text)
    key = _spec(tmp_path, builder_args=args).cache_key()
    assert key == _spec(tmp_path, builder_args=tomllib.loads(text)).cache_key()
    json.dumps(base.canonical(args), allow_nan=False)  # JSON-ready, no NaN literal
    as_text = {k: str(v) for k, v in args.items()}
    assert key != _spec(tmp_path, builder_args=as_text).cache_key()
