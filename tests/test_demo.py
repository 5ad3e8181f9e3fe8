"""The bundled real demo: real training, a real shifted target, a cached build."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import spearmanr

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("PIL")

from PIL import Image  # noqa: E402 (after the skips: the demo needs the extras)

from greenrunner.cli import DEMO_USE_CASE, main  # noqa: E402
from greenrunner.demo import build as demo_build  # noqa: E402
from greenrunner.demo.build import build_demo, demo_dir, ensure_demo  # noqa: E402
from greenrunner.demo.data import CLASSES, render, shift, split_digits  # noqa: E402
from greenrunner.demo.zoo import ZOO, build  # noqa: E402
from greenrunner.preprocessing import Preprocessing, prepare  # noqa: E402
from greenrunner.repositories.manifest import load_manifest  # noqa: E402

N_TARGET = 809  # 45% of 1,797, stratified


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four cheap models trained for a few epochs (about two seconds), plus ccexam's."""
    return build_demo(tmp_path_factory.mktemp("demo") / "small", progress=False, small=True)


def _load(folder: Path, model: dict[str, Any]) -> Any:
    """A manifest entry as a module: its builder, its weights loaded as plain tensors."""
    module, func = str(model["builder"]).split(":")
    net = getattr(importlib.import_module(module), func)(**model["builder_args"])
    path = Path(model["path"])
    state = torch.load(
        path if path.is_absolute() else folder / path, map_location="cpu", weights_only=True
    )
    net.load_state_dict(state)
    return net.eval()


def _target(folder: Path) -> tuple[list[np.ndarray], np.ndarray]:
    files = sorted((folder / "target").glob("*/*.png"))
    images = [np.asarray(Image.open(f)) for f in files]
    return images, np.array([CLASSES.index(f.parent.name) for f in files])


def _target_accuracies(folder: Path) -> dict[str, tuple[float, float]]:
    """(card accuracy, measured target accuracy) per model, in plain torch."""
    images, labels = _target(folder)
    manifest = tomllib.loads((folder / "manifest.toml").read_text(encoding="utf-8"))
    out = {}
    for model in manifest["models"]:
        p = model["preprocessing"]
        prep = Preprocessing(
            size=tuple(p["size"]),
            channels=p["channels"],
            mean=tuple(p["mean"]),
            std=tuple(p["std"]),
        )
        with torch.inference_mode():
            logits = _load(folder, model)(torch.from_numpy(prepare(images, prep)))
        accuracy = float(np.mean(logits.argmax(1).numpy() == labels))
        out[model["name"]] = (float(model["card_accuracy"]), accuracy)
    return out


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    }


# --- data and architectures -----------------------------------------------------------------


def test_the_split_is_stratified_disjoint_and_seeded() -> None:
    splits = split_digits(0)
    parts = (splits.train, splits.val, splits.target)
    assert sum(len(p) for p in parts) == 1797
    assert len(splits.target) == N_TARGET
    for part in parts:  # every class in every part, in about the overall proportion
        counts = np.bincount(part.labels, minlength=10)
        assert counts.min() >= 0.08 * len(part) and counts.max() <= 0.12 * len(part)
    again = split_digits(0)
    assert np.array_equal(again.target.images, splits.target.images)
    assert not np.array_equal(split_digits(1).target.labels, splits.target.labels)


def test_renders_are_uint8_28x28_with_ink_on_black() -> None:
    raw = split_digits(0).val.images[:20]
    for style in ("clean", "crude"):
        images = render(raw, style)
        assert images.shape == (20, 28, 28) and images.dtype == np.uint8
        assert images[:, 0, :].max() == 0  # the border is background
        assert images.max() > 200  # full-strength ink
    assert not np.array_equal(render(raw, "clean"), render(raw, "crude"))


def test_the_shift_is_seeded_and_changes_the_images() -> None:
    clean = render(split_digits(0).target.images[:50])
    shifted = shift(clean, 3)
    assert shifted.dtype == np.uint8 and shifted.shape == clean.shape
    assert np.array_equal(shifted, shift(clean, 3))
    assert not np.array_equal(shifted, shift(clean, 4))
    # A brighter background on a good share of images, as the shift promises.
    assert np.mean(np.median(shifted.reshape(50, -1), axis=1) > 5) > 0.3


def test_the_zoo_spans_orders_of_magnitude_in_size() -> None:
    assert len(ZOO) >= 12 and len({r.name for r in ZOO}) == len(ZOO)
    params = []
    for recipe in ZOO:
        net = build(**recipe.builder_args())
        out = net(torch.zeros(2, 1, recipe.size, recipe.size))
        assert out.shape == (2, 10)
        params.append(sum(p.numel() for p in net.parameters()))
    assert max(params) / min(params) > 100
    assert {r.arch for r in ZOO} == {"linear", "mlp", "cnn"}


@pytest.mark.parametrize(
    "args",
    [
        {"arch": "rnn", "width": 8, "depth": 1},
        {"arch": "mlp", "width": 0, "depth": 1},
        {"arch": "cnn", "width": 8, "depth": 5, "size": 14},
    ],
)
def test_build_refuses_what_it_cannot_make(args: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        build(**args)


# --- a (small) build ----------------------------------------------------------------------


def test_a_build_is_a_complete_manifest_repository(small_demo: Path) -> None:
    manifest = tomllib.loads((small_demo / "manifest.toml").read_text(encoding="utf-8"))
    assert manifest["repository"]["name"] == "digits-demo"
    assert (small_demo / "classes.txt").read_text().split() == list(CLASSES)
    assert (small_demo / "README.md").read_text().startswith("# digits-demo")
    for model in manifest["models"]:
        assert model["format"] == "torch_state_dict" and model["license"] == "MIT"
        assert 0 <= model["card_accuracy"] <= 1
        _load(small_demo, model)  # weights_only=True, strict state_dict keys
    # The project's own reader accepts it, every key included.
    _, _, specs = load_manifest(small_demo / "manifest.toml")
    assert [s.name for s in specs] == [m["name"] for m in manifest["models"]]
    assert all(s.classes == CLASSES for s in specs)


def test_the_target_is_an_imagefolder_of_grey_pngs(small_demo: Path) -> None:
    files = sorted((small_demo / "target").glob("*/*.png"))
    assert len(files) == N_TARGET
    assert sorted(p.name for p in (small_demo / "target").iterdir()) == list(CLASSES)
    counts = [len(list((small_demo / "target" / c).iterdir())) for c in CLASSES]
    assert min(counts) >= 70  # each class about a tenth
    with Image.open(files[0]) as img:
        assert (img.mode, img.size) == ("L", (28, 28))


def test_the_pngs_decode_to_exactly_the_rendered_target(small_demo: Path) -> None:
    """No train/serve skew: the PNGs decode to exactly the rendered uint8 arrays."""
    images, labels = _target(small_demo)
    splits = split_digits(0)
    expected = shift(render(splits.target.images), 7)
    order = np.argsort([int(f.stem) for f in sorted((small_demo / "target").glob("*/*.png"))])
    assert np.array_equal(np.stack(images)[order], expected)
    assert np.array_equal(labels[order], splits.target.labels)


def test_the_build_is_deterministic_for_a_seed(small_demo: Path, tmp_path: Path) -> None:
    again = build_demo(tmp_path / "again", progress=False, small=True)
    assert _digests(again) == _digests(small_demo)
    other = build_demo(tmp_path / "other", seed=1, progress=False, small=True)
    assert _digests(other)["weights/logreg_s14.pt"] != _digests(small_demo)["weights/logreg_s14.pt"]


def test_small_models_already_disagree(small_demo: Path) -> None:
    accuracies = _target_accuracies(small_demo)
    target = [t for _, t in accuracies.values()]
    assert len(set(target)) == len(target)  # no two models tie on 809 digits
    assert all(0.1 < t < 1 for t in target)  # better than chance, not perfect


def test_the_build_leaves_the_callers_rng_alone(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_demo(tmp_path / "d", progress=False, small=True)
    assert torch.equal(torch.rand(3), expected)


def test_without_ccexam_the_demo_still_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec

    def no_ccexam(name: str, *args: Any) -> Any:
        return None if name == "ccexam" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", no_ccexam)
    folder = build_demo(tmp_path / "d", progress=False, small=True)
    _, _, specs = load_manifest(folder / "manifest.toml")
    assert specs and not any(s.name.startswith("ccexam") for s in specs)


# --- the cache ------------------------------------------------------------------------------


def _small_build(calls: list[Path]) -> Callable[..., Path]:
    def fake(out_dir: Path, **kwargs: Any) -> Path:
        calls.append(out_dir)
        return build_demo(out_dir, progress=False, small=True)

    return fake


def test_demo_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENRUNNER_CACHE", str(tmp_path))
    assert demo_dir() == tmp_path / "demo" / "v1"
    monkeypatch.delenv("GREENRUNNER_CACHE")
    assert demo_dir() == Path.home() / ".cache" / "greenrunner" / "demo" / "v1"


def test_an_interrupted_build_leaves_no_half_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENRUNNER_CACHE", str(tmp_path))

    def interrupted(out_dir: Path, **kwargs: Any) -> Path:
        (out_dir / "weights").mkdir()
        (out_dir / "weights" / "half.pt").write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(demo_build, "build_demo", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_demo(progress=False)
    assert not demo_dir().exists()
    assert list(demo_dir().parent.iterdir()) == []  # the temporary folder is gone too


def test_a_demo_with_missing_files_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENRUNNER_CACHE", str(tmp_path))
    calls: list[Path] = []
    monkeypatch.setattr(demo_build, "build_demo", _small_build(calls))
    folder = ensure_demo(progress=False)
    assert ensure_demo(progress=False) == folder and len(calls) == 1
    (folder / "weights" / "logreg_s14.pt").unlink()  # e.g. a cleaned cache, a moved venv
    assert ensure_demo(progress=False) == folder and len(calls) == 2
    assert (folder / "weights" / "logreg_s14.pt").is_file()
    assert sorted(p.name for p in folder.parent.iterdir()) == ["v1"]


@pytest.mark.slow
def test_the_full_demo_is_built_once_and_is_a_real_selection_problem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real thing, in the per-worker cache conftest sets (other tests may reuse it)."""
    folder = ensure_demo(progress=False)
    stamp = (folder / "manifest.toml").stat().st_mtime_ns

    def no_rebuild(*args: Any, **kwargs: Any) -> Path:
        raise AssertionError("a cached demo was rebuilt")

    monkeypatch.setattr(demo_build, "build_demo", no_rebuild)
    assert ensure_demo(progress=False) == folder
    assert (folder / "manifest.toml").stat().st_mtime_ns == stamp

    accuracies = _target_accuracies(folder)
    own = [n for n in accuracies if not n.startswith("ccexam_")]
    assert len(own) >= 12
    if importlib.util.find_spec("ccexam") is not None:
        assert len(accuracies) == len(own) + 3
    cards, targets = (np.array([a[i] for a in accuracies.values()]) for i in (0, 1))
    target = sorted(accuracies, key=lambda n: -accuracies[n][1])
    best = accuracies[target[0]][1]
    # Models disagree: a wide spread, the card's favourites (ties included) are not the
    # target's best, and card accuracy barely predicts target accuracy.
    assert best - accuracies[target[-1]][1] > 0.3
    favourites = [n for n, (c, _) in accuracies.items() if c == cards.max()]
    assert target[0] not in favourites
    assert min(accuracies[n][1] for n in favourites) < best - 0.1
    assert spearmanr(cards, targets).statistic < 0.6
    # ...but the leaders are close, so picking the best takes real evidence.
    assert best - accuracies[target[1]][1] < 0.05
    assert 0.75 < best < 0.98


@pytest.mark.slow
def test_the_demo_command_goes_from_use_case_to_brute_forces_pick(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """README command 1: use case -> offline weights -> selection; the pick is brute
    force's pick under the same weights, for a fraction of its MACs."""
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Suggested weights" in out and "drone" in out
    result = json.loads((tmp_path / "demo-result.json").read_text())
    staging = result["staging"]
    assert staging["suggestion"]["use_case"] == DEMO_USE_CASE
    assert staging["decision"] == "accepted" and result["weights"] == staging["weights"]
    assert "## Use case and weights" in (tmp_path / "demo-report.md").read_text()
    assert result["savings"]["macs_fraction"] > 0.5

    folder = ensure_demo(progress=False)
    weights = ",".join(f"{k}={v}" for k, v in result["weights"].items())
    brute = tmp_path / "brute.json"
    args = ["select", "--models", str(folder), "--data", str(folder / "target")]
    assert (
        main([*args, "--strategy", "brute_force", "--weights", weights, "--json", str(brute)]) == 0
    )
    assert json.loads(brute.read_text())["top"][0]["name"] == result["top"][0]["name"]
