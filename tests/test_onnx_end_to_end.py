"""The issue's outside user: a folder of ONNX classifiers and an ImageFolder of PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from PIL import Image

from greenrunner.cli import main
from tests import torch_models
from tests.onnx_models import export


def test_onnx_folder_and_png_image_folder_through_select(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    folder = tmp_path / "onnx"
    folder.mkdir()
    export(torch_models.mlp(8), folder / "small.onnx", (1, 1, 8, 8))
    export(torch_models.constant(0), folder / "always_a.onnx", (1, 1, 8, 8))
    export(torch_models.cnn(4), folder / "cnn.onnx", (1, 1, 8, 8))
    (folder / "classes.txt").write_text("a\nb\nc\n")
    rng = np.random.default_rng(1)
    for i in range(60):
        d = tmp_path / "pngs" / "abc"[i % 3]
        d.mkdir(parents=True, exist_ok=True)
        # 12x12 RGB photos of noise: the models' declared 8x8 grey input is met by resizing
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(d / f"{i}.png")
    common = ["select", "--models", str(folder), "--data", str(tmp_path / "pngs")]
    brute = tmp_path / "brute.json"
    assert main([*common, "--strategy", "brute_force", "--json", str(brute)]) == 0
    result = json.loads(brute.read_text())
    by_name = {m["name"]: m for m in result["models"]}
    assert by_name["always_a"]["accuracy"] == pytest.approx(1 / 3)
    assert by_name["always_a"]["status"] == "exact"
    assert by_name["small"]["mmacs"] == pytest.approx((64 * 8 + 8 * 3) / 1e6)
    assert by_name["cnn"]["mmacs"] == pytest.approx((8 * 8 * 4 * 9 + 4 * 3) / 1e6)
    default = tmp_path / "default.json"
    assert main([*common, "--budget", "0.3", "--json", str(default)]) == 0
    assert json.loads(default.read_text())["calls"] < result["calls"]
    capsys.readouterr()
