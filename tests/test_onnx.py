"""The ONNX back-end (load, predict, measure) and the plain-folder repository."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from greenrunner.adapters import ModelSpec, load_adapter  # noqa: E402
from greenrunner.adapters.onnx import OnnxAdapter, declared_preprocessing  # noqa: E402
from greenrunner.errors import DataError  # noqa: E402
from greenrunner.evaluation.base import EvaluationError  # noqa: E402
from greenrunner.preprocessing import Preprocessing  # noqa: E402
from greenrunner.repositories.onnx_folder import load_onnx_folder  # noqa: E402
from tests import onnx_models, torch_models  # noqa: E402

X = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)


def _load(path: Path, **kw: object) -> OnnxAdapter:
    adapter = load_adapter(ModelSpec(name=path.stem, format="onnx", path=path, **kw))  # type: ignore[arg-type]
    assert isinstance(adapter, OnnxAdapter)
    return adapter


def _torch_logits(model: Any, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.asarray(model.eval()(torch.from_numpy(x)).numpy())


# --- the adapter ------------------------------------------------------------------------


def test_predicts_like_the_torch_model_and_reads_its_input_contract(tmp_path: Path) -> None:
    adapter = _load(onnx_models.mlp_onnx(tmp_path), classes=("a", "b", "c"))
    assert adapter.preprocessing == Preprocessing(size=(8, 8), channels=1)
    assert adapter.classes == ("a", "b", "c")
    out = adapter.predict(X)
    assert out.dtype == np.float32 and out.shape == (5, 3)
    np.testing.assert_allclose(out, _torch_logits(torch_models.mlp(16), X), rtol=1e-4, atol=1e-6)


def test_the_spec_preprocessing_wins_over_the_declared_input(tmp_path: Path) -> None:
    prep = Preprocessing(size=(8, 8), channels=1, mean=(0.5,), std=(0.25,), resize=10)
    assert _load(onnx_models.cnn_onnx(tmp_path), preprocessing=prep).preprocessing == prep


def test_an_nhwc_input_is_recognised(tmp_path: Path) -> None:
    path = onnx_models.export(onnx_models.Nhwc(), tmp_path / "nhwc.onnx", (1, 6, 6, 3))
    adapter = _load(path)
    assert adapter.preprocessing == Preprocessing(size=(6, 6), channels=3, layout="NHWC")
    x = np.random.default_rng(1).random((4, 6, 6, 3), dtype=np.float32)
    np.testing.assert_allclose(
        adapter.predict(x), _torch_logits(onnx_models.Nhwc(), x), rtol=1e-4, atol=1e-6
    )


def test_a_batch_fixed_to_one_runs_sample_by_sample(tmp_path: Path) -> None:
    adapter = _load(onnx_models.cnn_onnx(tmp_path, dynamic={}))
    assert adapter.session.get_inputs()[0].shape == [1, 1, 8, 8]
    np.testing.assert_allclose(
        adapter.predict(X), _torch_logits(torch_models.cnn(4), X), rtol=1e-4, atol=1e-6
    )
    assert adapter.predict(X[:0]).shape[0] == 0


def test_symbolic_spatial_dims_need_a_size(tmp_path: Path) -> None:
    path = onnx_models.cnn_onnx(tmp_path, dynamic={0: "batch", 2: "height", 3: "width"})
    with pytest.raises(EvaluationError, match=r"'cnn'.*size"):
        _load(path)
    prep = Preprocessing(size=(12, 12), channels=1)
    adapter = _load(path, preprocessing=prep)
    assert adapter.predict(np.zeros((2, 1, 12, 12), np.float32)).shape == (2, 3)
    # counted at the size it is fed: the 3x3 conv now covers 144 pixels
    assert adapter.measure().macs == 12 * 12 * 4 * 9 + 4 * 3


def test_a_corrupt_file_is_an_evaluation_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"this is not a protobuf")
    with pytest.raises(EvaluationError, match="'broken'"):
        _load(path)


def test_a_missing_file_is_an_evaluation_error(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match=r"'gone'.*not found"):
        _load(tmp_path / "gone.onnx")
    with pytest.raises(EvaluationError, match="needs a path"):
        load_adapter(ModelSpec(name="nopath", format="onnx"))


def test_an_input_that_is_not_a_4d_image_is_refused(tmp_path: Path) -> None:
    path = onnx_models.export(torch.nn.Linear(4, 2), tmp_path / "flat.onnx", (1, 4))
    with pytest.raises(EvaluationError, match=r"'flat'.*4-D"):
        _load(path)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        (["N", 3, 224, 224], Preprocessing(size=(224, 224))),
        ([None, 32, 28, 1], Preprocessing(size=(32, 28), channels=1, layout="NHWC")),
        ([1, 3, 5, 3], Preprocessing(size=(5, 3))),  # ambiguous: NCHW, the usual export
    ],
)
def test_declared_preprocessing(shape: list[object], expected: Preprocessing) -> None:
    assert declared_preprocessing("m", shape) == expected


def test_declared_preprocessing_needs_channels() -> None:
    with pytest.raises(EvaluationError, match="channels"):
        declared_preprocessing("m", [1, 4, 8, 8])


# --- measurement ------------------------------------------------------------------------


def test_exact_macs_and_params_of_a_tiny_mlp(tmp_path: Path) -> None:
    path = onnx_models.mlp_onnx(tmp_path)
    m = _load(path).measure()
    assert m.macs == 64 * 16 + 16 * 3
    assert m.params == 64 * 16 + 16 + 16 * 3 + 3
    assert m.size_bytes == path.stat().st_size
    assert "Gemm" in m.macs_note and "not counted" in m.macs_note


def test_exact_macs_of_a_tiny_cnn(tmp_path: Path) -> None:
    m = _load(onnx_models.cnn_onnx(tmp_path)).measure()
    assert m.macs == 8 * 8 * 4 * 9 + 4 * 3  # 3x3 conv over 64 pixels, then the head
    assert m.params == 4 * 9 + 4 + 4 * 3 + 3


def test_exact_macs_of_grouped_transposed_conv_and_batched_matmul(tmp_path: Path) -> None:
    path = onnx_models.export(
        onnx_models.Mixed(), tmp_path / "mixed.onnx", (1, 4, 8, 8), dynamic={}
    )
    m = _load(path, preprocessing=Preprocessing(size=(8, 8), channels=3)).measure()
    # channels=3 in the spec does not matter: the graph's fixed input shape is kept
    assert m.macs == onnx_models.mixed_macs()


def test_the_batch_dimension_does_not_scale_the_count(tmp_path: Path) -> None:
    fixed = _load(onnx_models.cnn_onnx(tmp_path, "fixed", dynamic={})).measure()
    dynamic = _load(onnx_models.cnn_onnx(tmp_path, "dynamic")).measure()
    assert fixed.macs == dynamic.macs


@pytest.mark.parametrize(
    ("builder", "weights"),
    [("resnet18", "ResNet18_Weights"), ("mobilenet_v2", "MobileNet_V2_Weights")],
)
def test_macs_agree_with_torchvision(tmp_path: Path, builder: str, weights: str) -> None:
    torchvision = pytest.importorskip("torchvision")
    model = getattr(torchvision.models, builder)(weights=None)
    torch.manual_seed(0)
    bns = [b for b in model.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    for bn in bns:  # untrained BNs fold to identical zero biases, which the exporter shares
        bn.bias.data.normal_()
        bn.running_mean.normal_()
    path = onnx_models.export(model, tmp_path / f"{builder}.onnx", (1, 3, 224, 224))
    m = _load(path).measure()
    published = getattr(torchvision.models, weights).IMAGENET1K_V1.meta["_ops"] * 1e9
    assert m.macs == pytest.approx(published, rel=0.02)
    # The exporter folds each BatchNorm into its conv: its 2 x C parameters become a bias of C.
    folded = sum(bn.num_features for bn in bns)
    assert m.params == sum(p.numel() for p in model.parameters()) - folded


# --- the folder repository ----------------------------------------------------------------


def _folder(tmp_path: Path, classes: bool = True) -> Path:
    onnx_models.mlp_onnx(tmp_path, "b_mlp")
    onnx_models.cnn_onnx(tmp_path, "a_cnn")
    if classes:
        (tmp_path / "classes.txt").write_text("zero\none\ntwo\n")
    return tmp_path


def test_a_folder_with_classes_txt(tmp_path: Path) -> None:
    specs = load_onnx_folder(_folder(tmp_path))
    assert [s.name for s in specs] == ["a_cnn", "b_mlp"]
    assert all(s.format == "onnx" and s.classes == ("zero", "one", "two") for s in specs)
    assert all(s.preprocessing is None for s in specs)  # read from the model when loaded
    assert specs[1].path == tmp_path / "b_mlp.onnx"
    adapter = load_adapter(specs[1])
    assert adapter.preprocessing == Preprocessing(size=(8, 8), channels=1)
    assert adapter.predict(X).shape == (5, 3)


def test_sidecar_overrides(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "a_cnn.json").write_text(
        json.dumps({"size": [10, 10], "resize": 12, "mean": [0.5], "std": [0.5]})
    )
    (folder / "b_mlp.json").write_text(
        json.dumps(
            {
                "mean": [0.1],
                "std": [0.2],
                "classes": ["x", "y", "z"],
                "card_accuracy": 0.9,
                "license": "MIT",
            }
        )
    )
    cnn, mlp = load_onnx_folder(folder)
    assert cnn.preprocessing == Preprocessing(
        size=(10, 10), channels=3, resize=12, mean=(0.5,), std=(0.5,)
    )
    # only mean/std: size, channels and layout come from the model's declared input
    assert mlp.preprocessing == Preprocessing(size=(8, 8), channels=1, mean=(0.1,), std=(0.2,))
    assert mlp.classes == ("x", "y", "z") and cnn.classes == ("zero", "one", "two")
    assert mlp.card_accuracy == 0.9 and mlp.license == "MIT"


def test_sidecar_classes_stand_in_for_classes_txt(tmp_path: Path) -> None:
    folder = _folder(tmp_path, classes=False)
    for stem in ("a_cnn", "b_mlp"):
        (folder / f"{stem}.json").write_text(json.dumps({"classes": ["p", "q", "r"]}))
    assert [s.classes for s in load_onnx_folder(folder)] == [("p", "q", "r")] * 2


def test_an_unknown_sidecar_key_is_named(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "b_mlp.json").write_text(json.dumps({"maen": [0.5]}))
    with pytest.raises(DataError, match=r"b_mlp\.json.*maen"):
        load_onnx_folder(folder)


def test_a_bad_sidecar_value_names_the_file(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "b_mlp.json").write_text(json.dumps({"channels": 2}))
    with pytest.raises(DataError, match=r"b_mlp\.json.*channels"):
        load_onnx_folder(folder)
    (folder / "b_mlp.json").write_text(json.dumps({"card_accuracy": 3}))
    with pytest.raises(DataError, match=r"b_mlp\.json.*card_accuracy"):
        load_onnx_folder(folder)


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "a_cnn.json").write_text("{size: [8, 8]")
    with pytest.raises(DataError, match=r"a_cnn\.json.*JSON"):
        load_onnx_folder(folder)


def test_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match=r"no \.onnx files"):
        load_onnx_folder(tmp_path)


def test_a_missing_classes_txt(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"classes\.txt"):
        load_onnx_folder(_folder(tmp_path, classes=False))


def test_not_a_folder(tmp_path: Path) -> None:
    path = onnx_models.mlp_onnx(tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        load_onnx_folder(path)
    with pytest.raises(DataError, match="not a folder"):
        load_onnx_folder(tmp_path / "nowhere")
