"""Issue 11, red team 3a: a model's input size and resize are bounded (per side and in
pixels), with a message that names the model, the value and the limit, wherever the
setting comes from (manifest, sidecar, the model's own declared input); batches are sized
from a byte budget, so a large input means fewer samples per forward pass, never a larger
array; and an elongated image is not resized whole before its crop."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from greenrunner.adapters.base import ModelSpec
from greenrunner.datasets import ArrayDataset
from greenrunner.datasets.labels import build_label_map
from greenrunner.errors import ConfigError, DataError
from greenrunner.evaluation.inference import InferenceEvaluator, _Model
from greenrunner.preprocessing import Preprocessing
from greenrunner.repositories.manifest import load_manifest

# New names are imported inside the tests, so that each test fails on its own against
# code without them.

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"size": (10000, 10000)}, "input size 10000 x 10000"),
        ({"size": (1, 100_000)}, "input size 1 x 100000"),  # under the pixels, over a side
        ({"size": (8192, 4096)}, "input size 8192 x 4096"),  # under a side, over the pixels
        ({"size": (224, 224), "resize": 15000}, "resize 15000"),
        ({"size": (224, 224), "resize": 5000}, "resize 5000"),  # its square is too large
    ],
)
def test_sizes_over_the_limits_are_refused_with_the_value_and_the_limit(
    kwargs: dict[str, Any], words: str
) -> None:
    from greenrunner.preprocessing import INPUT_LIMITS

    with pytest.raises(ConfigError) as caught:
        Preprocessing(**kwargs)
    text = str(caught.value)
    assert words in text
    assert f"{INPUT_LIMITS.max_side:,} pixels per side" in text
    assert f"{INPUT_LIMITS.max_pixels:,} pixels in all" in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": (224, 224), "resize": 256},
        {"size": (518, 518), "resize": 518},
        {"size": (1024, 1024)},
        {"size": (4096, 4096)},  # at the pixel limit
        {"size": (128, 8192)},  # a wide spectrogram-like input
        {"size": (224, 224), "resize": 4096},
    ],
)
def test_real_model_inputs_stay_allowed(kwargs: dict[str, Any]) -> None:
    Preprocessing(**kwargs)


def test_uploads_are_held_to_tighter_limits() -> None:
    from greenrunner.preprocessing import UPLOAD_INPUT_LIMITS

    prep = Preprocessing(size=(3000, 3000))
    with pytest.raises(ConfigError, match=r"model 'm': input size 3000 x 3000.*4,096 pixels"):
        UPLOAD_INPUT_LIMITS.check(prep, "model 'm'")
    UPLOAD_INPUT_LIMITS.check(Preprocessing(size=(224, 224), resize=256), "model 'm'")


def test_a_manifest_setting_over_the_limit_names_the_model(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"")
    (tmp_path / "manifest.toml").write_text(
        '[[models]]\nname = "big"\nformat = "onnx"\npath = "m.onnx"\nclasses = ["a", "b"]\n'
        "[models.preprocessing]\nsize = [12000, 12000]\n"
    )
    with pytest.raises(DataError, match=r"model 'big'.*12000 x 12000.*over the limit"):
        load_manifest(tmp_path / "manifest.toml")


def test_a_sidecar_over_the_limit_names_the_model(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from greenrunner.repositories.onnx_folder import load_onnx_folder

    _declared_onnx(tmp_path / "wide.onnx", ["N", 3, "H", "W"])
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    (tmp_path / "wide.json").write_text(json.dumps({"size": [224, 224], "resize": 20000}))
    with pytest.raises(DataError, match=r"wide\.json \(model 'wide'\): resize 20000"):
        load_onnx_folder(tmp_path)


def test_a_declared_onnx_input_over_the_limit_names_the_model(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from greenrunner.adapters.base import load_adapter
    from greenrunner.evaluation.base import EvaluationError

    path = _declared_onnx(tmp_path / "huge.onnx", [1, 3, 20000, 20000])
    spec = ModelSpec("huge", "onnx", path=path, classes=("a", "b", "c"))
    with pytest.raises(EvaluationError, match=r"model 'huge'.*20000 x 20000.*over the limit"):
        load_adapter(spec)


def _declared_onnx(path: Path, dims: list[Any]) -> Path:
    """A model that averages its input over H and W: 3 scores for any declared size."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])
    node = helper.make_node("ReduceMean", ["image", "axes"], ["logits"], keepdims=0)
    graph = helper.make_graph([node], "g", [x], [y], [axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


# --- batches from a byte budget -------------------------------------------------------------
def test_batch_rows_follow_the_byte_budget() -> None:
    from greenrunner.evaluation.inference import BATCH_BYTES, batch_rows

    assert batch_rows(Preprocessing(size=(8, 8), channels=1), 64) == 64
    big = Preprocessing(size=(2000, 2000))  # 48 MB per float32 RGB sample
    assert batch_rows(big, 64) == BATCH_BYTES // big.sample_bytes == 5
    assert batch_rows(Preprocessing(size=(4096, 4096)), 64) == 1  # never fewer than one
    assert batch_rows(Preprocessing(size=(224, 224)), 64, budget=1) == 1


class _Recording:
    """An adapter that records the shape and size of every batch it is given."""

    def __init__(self, prep: Preprocessing) -> None:
        self.preprocessing = prep
        self.classes = ("a", "b", "c")
        self.batches: list[tuple[tuple[int, ...], int]] = []

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append((batch.shape, batch.nbytes))
        return np.zeros((len(batch), 3), np.float32)

    def measure(self) -> Any:
        raise NotImplementedError


def test_a_large_input_gets_fewer_samples_per_batch_never_a_larger_array() -> None:
    classes = ("a", "b", "c")
    images = np.zeros((30, 8, 8), np.uint8)
    dataset = ArrayDataset(images, np.arange(30) % 3, classes, name="toy")
    prep = Preprocessing(size=(512, 512))  # 3 MB per sample
    spec = ModelSpec("m", "onnx", path=None, preprocessing=prep, classes=classes)
    label_map = build_label_map(classes, classes, None, False)
    budget = 10 * prep.sample_bytes + 1
    evaluator = InferenceEvaluator(
        dataset, {"m": _Model(spec, label_map, "k")}, batch_size=64, batch_bytes=budget
    )
    adapter = _Recording(prep)
    evaluator._adapters["m"] = adapter
    evaluator.predict("m", list(range(30)))
    assert [shape[0] for shape, _ in adapter.batches] == [10, 10, 10]
    assert all(nbytes <= budget for _, nbytes in adapter.batches)
    # a copy for a remote worker keeps the budget
    assert evaluator.for_model("m").batch_bytes == budget


def test_a_run_on_large_inputs_stays_within_a_memory_limit() -> None:
    """32 samples for a 2000 x 2000 RGB model (48 MB each prepared): one batch of them
    would be 1.5 GB, and a memo of prepared samples up to 1 GB more; predicted under a
    700 MB limit on new allocations, in a subprocess."""
    script = textwrap.dedent(
        """
        import resource
        import numpy as np
        from greenrunner.adapters.base import ModelSpec
        from greenrunner.datasets import ArrayDataset
        from greenrunner.datasets.labels import build_label_map
        from greenrunner.evaluation.inference import InferenceEvaluator, _Model
        from greenrunner.preprocessing import Preprocessing, prepare

        class Mean:
            preprocessing = Preprocessing(size=(2000, 2000))
            classes = ("a", "b", "c")

            def predict(self, batch):
                return batch.mean(axis=(2, 3))

        def data():
            for line in open("/proc/self/status"):
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024

        classes = ("a", "b", "c")
        dataset = ArrayDataset(np.zeros((32, 8, 8), np.uint8), np.arange(32) % 3, classes)
        spec = ModelSpec("m", "onnx", preprocessing=Mean.preprocessing, classes=classes)
        label_map = build_label_map(classes, classes, None, False)
        evaluator = InferenceEvaluator(dataset, {"m": _Model(spec, label_map, "k")})
        evaluator._adapters["m"] = Mean()
        prepare([np.zeros((8, 8), np.uint8)], Preprocessing(size=(8, 8)))  # Pillow loaded
        limit = data() + (700 << 20)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.RLIM_INFINITY))
        assert len(evaluator.predict("m", list(range(32)))) == 32
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


# --- an elongated image -------------------------------------------------------------------------
def test_an_elongated_image_is_not_resized_whole_before_its_crop() -> None:
    """1 x 30000 pixels with a shorter side of 256 would be 256 x 7,680,000 (5.9 GB in
    RGB) before the 224 x 224 crop; prepared under a 600 MB limit on new allocations."""
    script = textwrap.dedent(
        """
        import resource
        import numpy as np
        from greenrunner.preprocessing import Preprocessing, prepare

        def data():
            for line in open("/proc/self/status"):
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024

        prep = Preprocessing(size=(224, 224), resize=256)
        prepare([np.zeros((8, 8, 3), np.uint8)], prep)  # Pillow loaded before the limit
        limit = data() + (600 << 20)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.RLIM_INFINITY))
        tall = np.full((30000, 1, 3), 200, np.uint8)
        out = prepare([tall], prep)
        assert out.shape == (1, 3, 224, 224), out.shape
        np.testing.assert_allclose(out, 200 / 255, atol=1e-6)
        wide = np.full((1, 30000), 50, np.uint8)
        out = prepare([wide], Preprocessing(size=(224, 224), resize=256, channels=1))
        np.testing.assert_allclose(out, 50 / 255, atol=1e-6)
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


def test_ordinary_images_are_prepared_exactly_as_before() -> None:
    """Resize whole, then crop, for everything but the elongated images above."""
    from PIL import Image

    from greenrunner.preprocessing import prepare

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (333, 501, 3), dtype=np.uint8)
    out = prepare([image], Preprocessing(size=(224, 224), resize=256))
    width = int(256 * 501 / 333)  # the shorter side to 256, as torchvision's Resize
    resized = Image.fromarray(image).resize((width, 256), Image.Resampling.BILINEAR)
    left, top = round((width - 224) / 2), round((256 - 224) / 2)
    crop = np.asarray(resized.crop((left, top, left + 224, top + 224)), np.float32) / 255
    np.testing.assert_allclose(out[0], crop.transpose(2, 0, 1), atol=1e-6)
