"""The PyTorch back-end: formats, safety, prediction, measurement, torchvision."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from greenrunner.adapters import ModelSpec, load_adapter  # noqa: E402
from greenrunner.adapters.torch import TorchAdapter  # noqa: E402
from greenrunner.adapters.torchvision import get_weights, preprocessing_of  # noqa: E402
from greenrunner.evaluation.base import EvaluationError  # noqa: E402
from greenrunner.preprocessing import Preprocessing  # noqa: E402
from tests import torch_models  # noqa: E402

GREY8 = Preprocessing(size=(8, 8), channels=1)


def _state_dict_spec(tmp_path: Path, **kw: object) -> ModelSpec:
    model = torch_models.mlp(16)
    path = tmp_path / "mlp.pt"
    torch.save(model.state_dict(), path)
    args = {
        "name": "mlp",
        "format": "torch_state_dict",
        "path": path,
        "builder": "tests.torch_models:mlp",
        "builder_args": {"width": 16},
        "preprocessing": GREY8,
    }
    args.update(kw)
    return ModelSpec(**args)  # type: ignore[arg-type]


def test_state_dict_with_builder_predicts_like_the_module(tmp_path: Path) -> None:
    adapter = load_adapter(_state_dict_spec(tmp_path))
    x = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    expected = torch_models.mlp(16)(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(adapter.predict(x), expected, rtol=1e-5, atol=1e-6)


def test_measure_counts_linear_and_conv_macs(tmp_path: Path) -> None:
    m = load_adapter(_state_dict_spec(tmp_path)).measure()
    assert m.macs == 64 * 16 + 16 * 3
    assert m.params == 64 * 16 + 16 + 16 * 3 + 3
    assert m.size_bytes == (tmp_path / "mlp.pt").stat().st_size
    conv = TorchAdapter("cnn", torch_models.cnn(4), GREY8, None).measure()
    assert conv.macs == 8 * 8 * 4 * 9 + 4 * 3  # 3x3 conv over 64 pixels, then the head


def test_a_pickled_module_is_refused_without_trust(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(torch_models.Constant(1), path)  # a whole module: needs full unpickling
    spec = _state_dict_spec(tmp_path, path=path, builder="tests.torch_models:constant")
    with pytest.raises(EvaluationError, match="trust"):
        load_adapter(spec)
    trusted = load_adapter(_state_dict_spec(tmp_path, path=path, trust=True))
    assert trusted.predict(np.zeros((2, 1, 8, 8), np.float32)).argmax(axis=1).tolist() == [1, 1]


def test_a_malicious_pickle_never_runs_without_trust(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, ...]:
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"weight": Evil()}))
    with pytest.raises(EvaluationError):
        load_adapter(_state_dict_spec(tmp_path, path=path))
    assert not marker.exists()


def test_weights_that_do_not_fit_the_builder(tmp_path: Path) -> None:
    spec = _state_dict_spec(tmp_path, builder_args={"width": 32})
    with pytest.raises(EvaluationError, match="do not fit"):
        load_adapter(spec)


@pytest.mark.parametrize(
    ("builder", "match"),
    [
        ("tests.torch_models", "package.module:function"),
        ("tests.nowhere:mlp", "cannot import"),
        ("tests.torch_models:nothing", "cannot import"),
    ],
)
def test_bad_builders(tmp_path: Path, builder: str, match: str) -> None:
    with pytest.raises(EvaluationError, match=match):
        load_adapter(_state_dict_spec(tmp_path, builder=builder))


def test_missing_file_and_missing_preprocessing(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="not found"):
        load_adapter(_state_dict_spec(tmp_path, path=tmp_path / "gone.pt"))
    with pytest.raises(EvaluationError, match="preprocessing"):
        load_adapter(_state_dict_spec(tmp_path, preprocessing=None))


def test_torchscript_and_exported_programs(tmp_path: Path) -> None:
    model = torch_models.cnn(4).eval()
    x = torch.zeros(2, 1, 8, 8)
    script = tmp_path / "m.ts"
    torch.jit.trace(model, x).save(str(script))
    exported = tmp_path / "m.pt2"
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(exported))
    data = np.random.default_rng(1).random((3, 1, 8, 8), dtype=np.float32)
    expected = model(torch.from_numpy(data)).detach().numpy()
    for fmt, path in (("torchscript", script), ("torch_export", exported)):
        adapter = load_adapter(ModelSpec("m", fmt, path=path, preprocessing=GREY8))
        np.testing.assert_allclose(adapter.predict(data), expected, rtol=1e-5, atol=1e-6)
        assert adapter.measure().macs == 8 * 8 * 4 * 9 + 4 * 3


def test_a_file_of_the_wrong_format_fails_cleanly(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    for fmt in ("torchscript", "torch_export", "torch_state_dict"):
        spec = ModelSpec("m", fmt, path=junk, builder="tests.torch_models:mlp", preprocessing=GREY8)
        with pytest.raises(EvaluationError, match="'m'"):
            load_adapter(spec)


def test_a_model_that_raises_fails_with_its_name() -> None:
    adapter = TorchAdapter("bad", torch_models.broken("raise"), GREY8, None)
    with pytest.raises(EvaluationError, match="'bad' failed to predict: boom"):
        adapter.predict(np.zeros((1, 1, 8, 8), np.float32))


def test_torchvision_metadata_without_weights() -> None:
    weights = get_weights("resnet18", "IMAGENET1K_V1", "r18")
    prep = preprocessing_of(weights)
    assert prep.size == (224, 224) and prep.resize == 256 and prep.channels == 3
    assert prep.mean == pytest.approx((0.485, 0.456, 0.406))
    assert get_weights("resnet18", "ResNet18_Weights.IMAGENET1K_V1", "r18") is weights
    assert get_weights("resnet18", None, "r18") is weights  # DEFAULT
    with pytest.raises(EvaluationError, match="has no weights 'NOPE'"):
        get_weights("resnet18", "NOPE", "r18")
    with pytest.raises(EvaluationError, match="no classification builder"):
        get_weights("resnet_nope", None, "x")


def test_torchvision_weights_not_in_cache_fail_with_where_to_put_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    _hub_dir(monkeypatch, tmp_path / "hub")

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    spec = ModelSpec("r18", "torchvision", builder="resnet18", weights="IMAGENET1K_V1")
    with pytest.raises(EvaluationError, match="not in the torch cache") as info:
        load_adapter(spec)
    assert "resnet18-f37072fd.pth" in str(info.value)


@pytest.mark.parametrize("builder", ["resnet18", "mobilenet_v3_small", "vit_b_32"])
def test_measured_macs_agree_with_torchvision(builder: str) -> None:
    weights = get_weights(builder, None, builder)
    module = torchvision.models.get_model(builder, weights=None)
    m = TorchAdapter(builder, module, preprocessing_of(weights), None).measure()
    assert m.macs == pytest.approx(weights.meta["_ops"] * 1e9, rel=0.02)
    assert m.params == weights.meta["num_params"]


def _hub_dir(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """torch.hub.set_dir for this test only: it is process-wide, and later tests (on the
    same xdist worker) must see the torch cache they set up themselves."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(path))


def test_the_torchvision_catalogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from greenrunner.errors import DataError
    from greenrunner.repositories.models import open_models
    from greenrunner.repositories.torchvision_catalogue import catalogue

    specs = catalogue()
    assert len(specs) == 114  # 115 weights; vgg16's FEATURES weights have no classifier
    by_name = {s.name: s for s in specs}
    r18 = by_name["resnet18.IMAGENET1K_V1"]
    assert r18.card_accuracy == pytest.approx(0.69758)
    assert r18.classes is not None and len(r18.classes) == 1000
    swag = [s for s in specs if "SWAG" in s.name]
    assert swag and all(s.license == "CC-BY-NC-4.0" for s in swag)
    _hub_dir(monkeypatch, tmp_path / "empty-hub")
    assert catalogue(available_only=True) == []
    with pytest.raises(DataError, match="no torchvision weights are in the torch cache"):
        open_models("torchvision:cached")
