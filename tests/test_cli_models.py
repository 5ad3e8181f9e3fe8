"""The command line on real models and real data: select, inspect, and their mistakes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from greenrunner.cli import EXIT_USER_ERROR, main  # noqa: E402
from tests import torch_models  # noqa: E402
from tests.test_cli import RESULT_KEYS, run_cli  # noqa: E402

CLASSES = ("a", "b", "c")


def _repo(tmp_path: Path) -> tuple[Path, Path]:
    """A manifest of four torch models and an ImageFolder of 8x8 grey PNGs."""
    models = tmp_path / "zoo"
    (models / "weights").mkdir(parents=True)
    (models / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    entries = []
    for name, builder, args in [
        ("always_a", "constant", {"label": 0}),
        ("always_b", "constant", {"label": 1}),
        ("mlp8", "mlp", {"width": 8}),
        ("mlp32", "mlp", {"width": 32}),
    ]:
        torch.save(getattr(torch_models, builder)(**args).state_dict(), models / f"{name}.pt")
        arg_text = ", ".join(f"{k} = {v}" for k, v in args.items())
        entries.append(
            f'[[models]]\nname = "{name}"\nformat = "torch_state_dict"\npath = "{name}.pt"\n'
            f'builder = "tests.torch_models:{builder}"\nbuilder_args = {{ {arg_text} }}\n'
            'card_accuracy = 0.5\nlicense = "MIT"\n'
            "[models.preprocessing]\nsize = [8, 8]\nchannels = 1\n"
        )
    (models / "manifest.toml").write_text(
        '[repository]\nname = "toy-zoo"\nclasses_file = "classes.txt"\n\n' + "\n".join(entries)
    )
    data = tmp_path / "target"
    rng = np.random.default_rng(0)
    for i in range(60):
        folder = data / CLASSES[i % 3]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
    return models, data


def test_select_on_real_models_matches_the_replay_shape_and_reuses_the_cache(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    models, data = _repo(tmp_path)
    out_file = tmp_path / "r.json"
    args = ["select", "--models", str(models), "--data", str(data), "--strategy", "brute_force"]
    code, out, err = run_cli(capsys, *args, "--json", str(out_file))
    assert code == 0, err
    assert "Recommended:" in out and "60 computed" not in out
    result = json.loads(out_file.read_text())
    assert set(result) >= RESULT_KEYS
    by_name = {m["name"]: m for m in result["models"]}
    assert by_name["always_a"]["accuracy"] == pytest.approx(1 / 3)
    assert by_name["mlp8"]["mmacs"] == pytest.approx((64 * 8 + 8 * 3) / 1e6)
    assert result["cache"] == {"served": 0, "computed": 240}
    code, out, err = run_cli(capsys, *args, "--json", str(out_file))
    assert code == 0, err
    assert json.loads(out_file.read_text())["cache"] == {"served": 240, "computed": 0}
    assert "240 served from the cache" in out


def test_inspect_lists_measured_metadata(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    models, _ = _repo(tmp_path)
    out_file = tmp_path / "i.json"
    code, out, err = run_cli(capsys, "inspect", "--models", str(models), "--json", str(out_file))
    assert code == 0, err
    assert "mlp32" in out and "MIT" in out
    rows = {r["name"]: r for r in json.loads(out_file.read_text())}
    assert rows["mlp32"]["params_m"] == pytest.approx((64 * 32 + 32 + 32 * 3 + 3) / 1e6)
    assert rows["mlp32"]["status"] == "ok"


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ([], "--models needs --data"),
        (["--data", "NOWHERE"], "no such file or folder"),
        (["--data", "TARGET", "--label-map", "NOMAP.json"], "no bundled map of that name"),
        (["--data", "TARGET", "--batch-size", "0"], "batch size must be a positive integer"),
    ],
)
def test_mistakes_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, extra: list[str], match: str
) -> None:
    models, data = _repo(tmp_path)
    extra = [str(data) if e == "TARGET" else str(tmp_path / e) if e.isupper() else e for e in extra]
    code, _, err = run_cli(capsys, "select", "--models", str(models), *extra)
    assert code == EXIT_USER_ERROR
    assert match in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--replay", "objectnet-sim", "--models", "x"], "not allowed with"),
        ([], "one of the arguments --replay --models is required"),
    ],
)
def test_replay_or_models_exactly_one(
    capsys: pytest.CaptureFixture[str], args: list[str], match: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["select", *args])
    assert info.value.code == EXIT_USER_ERROR
    assert match in capsys.readouterr().err
