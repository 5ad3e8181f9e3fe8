"""The Python API checks the kind of every argument before it acts on it (red team, finding
10): a truthy string is not True (``trust="false"`` must never unpickle), a wrong kind is
a ConfigError naming the value, before any model is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from greenrunner.errors import ConfigError

torch = pytest.importorskip("torch")

from greenrunner.adapters.base import ModelSpec  # noqa: E402
from greenrunner.api import open_real  # noqa: E402
from greenrunner.evaluation.replay import ReplayEvaluator  # noqa: E402


class Payload:
    """Unpickling this creates the marker file: the proof that trust was honoured."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


@pytest.fixture
def pickled_repo(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A manifest whose weights file runs code when fully unpickled, and a target set."""
    from tests.web_helpers import image_folder_files

    marker = tmp_path / "pwned"
    torch.save({"x": Payload(str(marker))}, tmp_path / "w.pt")
    (tmp_path / "manifest.toml").write_text(
        '[repository]\nname = "r"\nclasses = ["a", "b", "c"]\n'
        '[[models]]\nname = "m"\nformat = "torch_state_dict"\npath = "w.pt"\n'
        'builder = "tests.torch_models:mlp"\nbuilder_args = { width = 16 }\n'
        "[models.preprocessing]\nsize = [8, 8]\nchannels = 1\n"
    )
    data = tmp_path / "target"
    for rel, blob in image_folder_files(n=6, prefix="").items():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(blob)
    return tmp_path / "manifest.toml", data, marker


@pytest.mark.parametrize("option", ["trust", "restrict", "use_cache"])
@pytest.mark.parametrize("value", ["false", "no", 0, 1, None, [True]])
def test_flags_must_be_bools(
    pickled_repo: tuple[Path, Path, Path], option: str, value: object
) -> None:
    manifest, data, marker = pickled_repo
    with pytest.raises(ConfigError, match=f"{option} must be True or False"):
        open_real(manifest, data, **{option: value})  # type: ignore[arg-type]
    assert not marker.exists()


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"data": None}, "data must be a path"),
        ({"data": 3}, "data must be a path"),
        ({"models": None}, "models must be a path"),
        ({"models": ["a.toml"]}, "models must be a path"),
        ({"label_map": 3}, "label_map must be a path"),
        ({"progress": 3}, "progress must be a function"),
        ({"allow_builders": "tests.torch_models:mlp"}, "allow_builders must be a list"),
        ({"allow_builders": [3]}, "allow_builders entries must be strings"),
    ],
)
def test_wrong_kinds_are_refused_before_any_model_loads(
    pickled_repo: tuple[Path, Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    kwargs: dict[str, Any],
    words: str,
) -> None:
    manifest, data, marker = pickled_repo
    import greenrunner.evaluation.inference as inference

    def never(*_: object, **__: object) -> None:
        raise AssertionError("models were loaded before the arguments were checked")

    monkeypatch.setattr(inference, "prepare_models", never)
    args: dict[str, Any] = {"models": manifest, "data": data, **kwargs}
    with pytest.raises(ConfigError, match=words):
        open_real(args.pop("models"), args.pop("data"), **args)
    assert not marker.exists()


@pytest.mark.parametrize("value", ["false", "true", 1, None])
def test_a_model_spec_takes_only_a_bool_for_trust(value: object) -> None:
    with pytest.raises(ConfigError, match="trust must be True or False"):
        ModelSpec("m", "torch_state_dict", trust=value)  # type: ignore[arg-type]
    assert ModelSpec("m", "torch_state_dict", trust=True).trust is True


def test_the_replay_evaluator_checks_its_arguments() -> None:
    correct = np.array([[True, False], [False, True]])
    # A list of lists is an array-like: accepted, as numpy would.
    assert ReplayEvaluator(correct.tolist(), ["a", "b"]).n_samples == 2
    for bad, words in [
        ((correct, "ab"), "list of model names"),
        ((correct, ["a", 3]), "non-empty strings"),
        ((correct, ["a", "a"]), "unique"),
        (([[True], [False, True]], ["a", "b"]), "array of booleans"),
        (([{"x": 1}, {"y": 2}], ["a", "b"]), "array of booleans"),
    ]:
        with pytest.raises(ConfigError, match=words):
            ReplayEvaluator(*bad)  # type: ignore[arg-type]
