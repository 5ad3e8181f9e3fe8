"""Target datasets of every kind, their fingerprints, and every user mistake."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from greenrunner.datasets import ArrayDataset, build_label_map, load_mapping_file, open_dataset
from greenrunner.datasets.labels import resolve_label_map
from greenrunner.errors import DataError


def _png(path: Path, value: int = 0, mode: str = "L", size: tuple[int, int] = (6, 5)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 0)).save(path)
    return path


def _folder(root: Path) -> Path:
    _png(root / "cat" / "a.png", 10)
    _png(root / "cat" / "b.PNG", 20)
    _png(root / "dog" / "c.jpg", 30, mode="RGB")
    (root / "dog" / ".hidden.png").write_bytes(b"junk")  # hidden files are ignored
    (root / "dog" / "notes.txt").write_text("not an image")  # so are other suffixes
    return root


def test_image_folder(tmp_path: Path) -> None:
    data = open_dataset(_folder(tmp_path / "pets"))
    assert data.name == "pets" and data.class_names == ("cat", "dog")
    assert data.labels.tolist() == [0, 0, 1] and len(data) == 3
    grey, rgb = data.load(np.array([1, 2]))
    assert grey.shape == (5, 6) and grey.dtype == np.uint8 and grey[0, 0] == 20
    assert rgb.shape == (5, 6, 3)


def test_fingerprint_is_stable_and_follows_content(tmp_path: Path) -> None:
    root = _folder(tmp_path / "pets")
    first = open_dataset(root).fingerprint()
    assert open_dataset(root).fingerprint() == first
    _png(root / "cat" / "a.png", 99)
    assert open_dataset(root).fingerprint() != first


def test_image_folder_errors(tmp_path: Path) -> None:
    root = _folder(tmp_path / "pets")
    (root / "bird").mkdir()
    with pytest.raises(DataError, match="class 'bird' has no images"):
        open_dataset(root)
    (root / "bird" / "x.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match=r"x\.png: not a readable image"):
        open_dataset(root)
    with pytest.raises(DataError, match="no such file or folder"):
        open_dataset(tmp_path / "nothing")
    (tmp_path / "flat").mkdir()
    _png(tmp_path / "flat" / "a.png")
    with pytest.raises(DataError, match="expected an ImageFolder"):
        open_dataset(tmp_path / "flat")


def test_csv_dataset(tmp_path: Path) -> None:
    _png(tmp_path / "img" / "1.png", 1)
    _png(tmp_path / "img" / "2.png", 2)
    csv = tmp_path / "data.csv"
    csv.write_text("path,label\nimg/1.png,dog\nimg/2.png,cat\n")
    data = open_dataset(csv)
    assert data.class_names == ("cat", "dog") and data.labels.tolist() == [1, 0]
    (tmp_path / "classes.txt").write_text("dog\ncat\nfox\n")
    assert open_dataset(csv).labels.tolist() == [0, 1]
    csv.write_text("path,label\nimg/1.png,wolf\n")
    with pytest.raises(DataError, match="'wolf' are not in"):
        open_dataset(csv)
    csv.write_text("path,label\nimg/3.png,dog\n")
    with pytest.raises(DataError, match="line 2: image not found"):
        open_dataset(csv)
    csv.write_text("file,class\nimg/1.png,dog\n")
    with pytest.raises(DataError, match="columns path,label"):
        open_dataset(csv)


def _idx(path: Path, array: np.ndarray, zipped: bool = False) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if zipped else raw)


@pytest.mark.parametrize("zipped", [False, True])
def test_idx_files(tmp_path: Path, zipped: bool) -> None:
    suffix = ".gz" if zipped else ""
    images = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3)
    _idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images, zipped)
    _idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", np.array([0, 1, 2, 1]), zipped)
    for where in (tmp_path, tmp_path / f"t10k-images-idx3-ubyte{suffix}"):
        data = open_dataset(where)
        assert data.class_names == ("0", "1", "2") and len(data) == 4
        np.testing.assert_array_equal(data.load(np.array([2]))[0], images[2])


def test_idx_errors(tmp_path: Path) -> None:
    _idx(tmp_path / "x-images-idx3-ubyte", np.zeros((4, 3, 3)))
    with pytest.raises(DataError, match="labels file"):
        open_dataset(tmp_path)
    _idx(tmp_path / "x-labels-idx1-ubyte", np.zeros(3))
    with pytest.raises(DataError, match="do not pair up"):
        open_dataset(tmp_path)
    (tmp_path / "x-labels-idx1-ubyte").write_bytes(b"\x00\x00\x09\x01")
    with pytest.raises(DataError, match="bad magic"):
        open_dataset(tmp_path)


def test_npz_and_arrays(tmp_path: Path) -> None:
    images = np.zeros((3, 4, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=np.array(["b", "a", "b"]))
    data = open_dataset(tmp_path / "d.npz")
    assert data.class_names == ("a", "b") and data.labels.tolist() == [1, 0, 1]
    np.savez(tmp_path / "e.npz", images=images)
    with pytest.raises(DataError, match="missing array"):
        open_dataset(tmp_path / "e.npz")
    with pytest.raises(DataError, match="uint8"):
        ArrayDataset(images.astype(float), np.zeros(3, int), ("a",))
    with pytest.raises(DataError, match="one label per image"):
        ArrayDataset(images, np.zeros(2, int), ("a",))
    with pytest.raises(DataError, match=r"class indices 0\.\.0"):
        ArrayDataset(images, np.array([0, 1, 0]), ("a",))


def test_label_map_by_name_and_loosely() -> None:
    m = build_label_map(["Cat", "hot_dog"], ["dog", "cat", "hot dog"])
    assert m.allowed == (frozenset({1}), frozenset({2}))
    logits = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 5.0], [3.0, 0.0, 0.0]])
    pred = m.predict(logits)
    assert m.is_correct(pred, np.array([0, 1, 1])).tolist() == [True, True, False]
    with pytest.raises(DataError, match="'fox' match no model class"):
        build_label_map(["cat", "fox"], ["cat", "dog"])


def test_one_to_many_mapping_with_restriction(tmp_path: Path) -> None:
    model = ["tabby", "tiger cat", "espresso", "cup", "missile"]
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"cat": "tabby, tabby cat; tiger cat", "coffee": ["espresso"]}))
    mapping = load_mapping_file(path)
    assert mapping == {"cat": ["tabby, tabby cat", "tiger cat"], "coffee": ["espresso"]}
    m = build_label_map(["cat", "coffee"], model, mapping, restrict=True)
    assert m.allowed == (frozenset({0, 1}), frozenset({2}))
    logits = np.array([[0.1, 0.2, 0.0, 0.0, 9.0]])  # "missile" is not a target class
    assert m.predict(logits).tolist() == [1]
    unrestricted = build_label_map(["cat", "coffee"], model, mapping)
    assert unrestricted.predict(logits).tolist() == [4]
    assert m.view() != unrestricted.view() == "full"
    path.write_text(json.dumps({"cat": ["lion"]}))
    with pytest.raises(DataError, match="'lion', which the model does not have"):
        build_label_map(["cat"], model, load_mapping_file(path))


def test_mapping_files(tmp_path: Path) -> None:
    csv = tmp_path / "map.csv"
    csv.write_text("target,model\ncat,tabby\ncat,tiger cat\n")
    assert load_mapping_file(csv) == {"cat": ["tabby", "tiger cat"]}
    csv.write_text("a,b\n")
    with pytest.raises(DataError, match="target,model"):
        load_mapping_file(csv)
    bad = tmp_path / "map.json"
    bad.write_text("{")
    with pytest.raises(DataError, match="not valid JSON"):
        load_mapping_file(bad)
    bad.write_text('{"cat": 3}')
    with pytest.raises(DataError, match="must map to a class name"):
        load_mapping_file(bad)


def test_the_bundled_objectnet_map_covers_torchvision_classes() -> None:
    torchvision = pytest.importorskip("torchvision")
    path = resolve_label_map("objectnet-imagenet")
    mapping = load_mapping_file(path)
    assert len(mapping) == 113
    assert mapping["Alarm clock"] == ["analog clock", "digital clock"]
    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    label_map = build_label_map(list(mapping), categories, mapping, restrict=True)
    assert sum(len(a) for a in label_map.allowed) == 125  # every entry found a class
    with pytest.raises(DataError, match="no bundled map of that name"):
        resolve_label_map("objectnet-nope")
