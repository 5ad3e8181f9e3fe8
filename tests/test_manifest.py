"""Manifest repositories: every field read, every mistake named."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenrunner.errors import DataError
from greenrunner.repositories.manifest import load_manifest, read_classes
from greenrunner.repositories.models import open_models

GOOD = """
[repository]
name = "zoo"
description = "two models"
classes_file = "classes.txt"

[[models]]
name = "small"
format = "torch_state_dict"
path = "weights/small.pt"
builder = "tests.torch_models:mlp"
builder_args = { width = 16 }
card_accuracy = 0.9
license = "MIT"
metrics = { latency = 1.5 }
[models.preprocessing]
size = [8, 8]
channels = 1
mean = [0.5]
std = [0.25]

[[models]]
name = "onnx-one"
format = "onnx"
path = "one.onnx"
classes = ["x", "y"]
[models.preprocessing]
size = 32
resize = 40
"""


def _write(tmp_path: Path, text: str = GOOD) -> Path:
    (tmp_path / "weights").mkdir(exist_ok=True)
    (tmp_path / "weights" / "small.pt").write_bytes(b"w")
    (tmp_path / "one.onnx").write_bytes(b"o")
    (tmp_path / "classes.txt").write_text("a\nb\nc\n\n")
    path = tmp_path / "manifest.toml"
    path.write_text(text)
    return path


def test_a_manifest_is_read_completely(tmp_path: Path) -> None:
    name, description, specs = load_manifest(_write(tmp_path))
    assert (name, description) == ("zoo", "two models")
    small, one = specs
    assert small.path == tmp_path / "weights" / "small.pt"
    assert small.builder == "tests.torch_models:mlp" and dict(small.builder_args) == {"width": 16}
    assert small.classes == ("a", "b", "c")  # the repository's default
    assert small.preprocessing is not None and small.preprocessing.size == (8, 8)
    assert small.preprocessing.mean == (0.5,) and small.preprocessing.std == (0.25,)
    assert small.card_accuracy == 0.9 and small.license == "MIT"
    assert dict(small.extra) == {"latency": 1.5}
    assert one.classes == ("x", "y")
    assert one.preprocessing is not None and one.preprocessing.size == (32, 32)
    assert one.preprocessing.resize == 40


def test_open_models_accepts_the_folder_or_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path)
    assert [s.name for s in open_models(tmp_path).specs] == ["small", "onnx-one"]
    assert open_models(path).name == "zoo"


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ('format = "onnx"', 'format = "tflite"', "unknown format 'tflite'"),
        ("card_accuracy = 0.9", "card_accuracy = 90", "card_accuracy must be a number in"),
        ('license = "MIT"', 'licence = "MIT"', "unknown key.*licence"),
        ("size = [8, 8]", "sise = [8, 8]", "unknown preprocessing key.*sise"),
        ('path = "one.onnx"', 'path = "two.onnx"', "model file not found"),
        ('name = "onnx-one"', 'name = "small"', "model names repeat: small"),
        ("channels = 1", "channels = 2", "channels must be 1"),
        ('path = "one.onnx"\n', "", "needs path"),
        ("[repository]", "[repo]", "unknown section"),
        ('classes = ["x", "y"]', 'classes = ["x", "y"]\nclasses_file = "c.txt"', "not both"),
        ("builder_args = { width = 16 }", "builder_args = 3", "builder_args must be a table"),
        ("metrics = { latency = 1.5 }", 'metrics = { latency = "fast" }', "metrics must be"),
    ],
)
def test_mistakes_name_the_file_model_and_problem(
    tmp_path: Path, old: str, new: str, match: str
) -> None:
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(DataError, match=match) as info:
        load_manifest(path)
    assert str(path) in str(info.value)


def test_broken_toml_and_empty_manifests(tmp_path: Path) -> None:
    path = _write(tmp_path, "[[models]\nname=")
    with pytest.raises(DataError, match="not valid TOML"):
        load_manifest(path)
    path.write_text("[repository]\nname = 'x'\n")
    with pytest.raises(DataError, match="no models"):
        load_manifest(path)


def test_class_lists(tmp_path: Path) -> None:
    f = tmp_path / "c.txt"
    f.write_text("cat\ndog\n")
    assert read_classes(f) == ("cat", "dog")
    f.write_text("cat\n\ndog\n")
    with pytest.raises(DataError, match="one non-empty name per line"):
        read_classes(f)
    f.write_text("cat\ncat\n")
    with pytest.raises(DataError, match="repeat"):
        read_classes(f)
    with pytest.raises(DataError, match="cannot read"):
        read_classes(tmp_path / "none.txt")


def test_open_models_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        open_models(tmp_path / "nothing")
    odd = tmp_path / "models.yaml"
    odd.write_text("x")
    with pytest.raises(DataError, match="expected a manifest"):
        open_models(odd)
