"""The command line: output, JSON files, and one clear line for every user mistake."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from greenrunner.cli import EXIT_USER_ERROR, main
from greenrunner.strategies import names

RESULT_KEYS = {
    "strategy", "seed", "weights", "budget", "top", "models", "calls", "macs",
    "brute_force_calls", "brute_force_macs", "savings", "stop_reason",
}  # fmt: skip


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_select_prints_top_three_and_savings_and_writes_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_file = tmp_path / "sub" / "result.json"
    code, out, err = run_cli(
        capsys, "select", "--replay", "objectnet-sim",
        "--weights", "accuracy=0.63,size=0.25,complexity=0.21",
        "--strategy", "racing", "--budget", "0.2", "--budget-unit", "macs",
        "--seed", "3", "--json", str(out_file),
    )  # fmt: skip
    assert code == 0, err
    assert "Recommended:" in out and "saved" in out and "SIMULATED" in out
    data = json.loads(out_file.read_text())
    assert set(data) >= RESULT_KEYS
    assert data["strategy"] == "racing" and data["seed"] == 3
    assert data["budget"] == {"value": 0.2, "unit": "macs"}
    assert len(data["top"]) == 3 and len(data["models"]) == 31
    assert data["top"][0]["name"] in out


def test_select_same_seed_same_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for name in ("a.json", "b.json"):
        code, _, err = run_cli(
            capsys,
            "select",
            "--replay",
            "objectnet-sim",
            "--seed",
            "7",
            "--json",
            str(tmp_path / name),
        )
        assert code == 0, err
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()


def test_select_passes_strategy_parameters(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_file = tmp_path / "r.json"
    code, _, err = run_cli(
        capsys, "select", "--replay", "objectnet-sim", "--strategy", "epsilon_greedy",
        "--param", "epsilon=0.3", "--param", "batch=5", "--json", str(out_file),
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out_file.read_text())["strategy_params"] == {"epsilon": 0.3, "batch": 5}


def test_study_prints_rows_and_writes_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_file = tmp_path / "study.json"
    code, out, err = run_cli(
        capsys, "study", "--replay", "objectnet-sim", "--strategies", "default,thompson",
        "--budgets", "0.1,0.3", "--repeats", "4", "--workers", "1", "--json", str(out_file),
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads(out_file.read_text())
    assert [(r["strategy"], r["budget"]) for r in rows] == [
        ("default", 0.1), ("default", 0.3), ("thompson", 0.1), ("thompson", 0.3),
    ]  # fmt: skip
    expected = {
        "strategy", "budget", "budget_unit", "repeats", "p_best", "p_eps", "eps",
        "mean_regret", "mean_calls_fraction", "mean_macs_fraction",
    }  # fmt: skip
    assert all(set(r) == expected for r in rows)
    assert "p_eps" in out


def test_strategies_lists_every_registered_name(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "strategies")
    assert code == 0
    for name in names():
        assert name in out


def _bad_replay(tmp_path: Path) -> Path:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "models.csv").write_text("title\nx\n", encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["select", "--replay", "objectnet-sim", "--strategy", "nope"], "unknown strategy 'nope'"),
        (["select", "--replay", "objectnet-sim", "--budget", "1.7"], "got 1.7"),
        (["select", "--replay", "objectnet-sim", "--budget", "lots"], "budget must be a number"),
        (["select", "--replay", "objectnet-sim", "--budget", "0"], "got 0"),
        (["select", "--replay", "no/such/folder"], "does not exist"),
        (
            ["select", "--replay", "objectnet-sim", "--weights", "accuracy=-1"],
            "must not be negative",
        ),
        (["select", "--replay", "objectnet-sim", "--weights", "speed=1"], "unknown metric 'speed'"),
        (["select", "--replay", "objectnet-sim", "--weights", "accuracy=0"], "at least one weight"),
        (["select", "--replay", "objectnet-sim", "--param", "epsilon"], "--param takes name=value"),
        (["select", "--replay", "objectnet-sim", "--param", "x=1"], "no parameter 'x'"),
        (
            ["study", "--replay", "objectnet-sim", "--strategies", "default,bogus"],
            "unknown strategy",
        ),
        (["study", "--replay", "objectnet-sim", "--repeats", "0"], "repeats must be"),
        (["study", "--replay", "objectnet-sim", "--budgets", ","], "--budgets needs"),
        (["select", "--replay", "objectnet-sim", "--seed", "x"], "invalid int value"),
        (["select", "--replay", "objectnet-sim", "--budget-unit", "joules"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_user_mistakes_give_one_clear_line(
    capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own checks
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR
    assert needle in err
    assert "Traceback" not in err
    assert err.startswith("error:")


def test_malformed_replay_names_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_cli(capsys, "select", "--replay", str(_bad_replay(tmp_path)))
    assert code == EXIT_USER_ERROR
    assert "models.csv" in err and "'name'" in err


def test_mac_budget_without_macs_is_explained(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "models.csv").write_text("name\na\nb\n", encoding="utf-8")
    import numpy as np

    np.save(folder / "correct.npy", np.ones((5, 2), dtype=bool))
    code, _, err = run_cli(capsys, "select", "--replay", str(folder), "--budget-unit", "macs")
    assert code == EXIT_USER_ERROR
    assert "MACs" in err and "--budget-unit calls" in err


def test_unwritable_json_path_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(
        capsys, "select", "--replay", "objectnet-sim", "--json", str(blocker / "r.json")
    )
    assert code == EXIT_USER_ERROR
    assert "cannot write" in err


def test_console_script_is_installed_and_runs() -> None:
    exe = shutil.which("greenrunner") or str(Path(sys.executable).parent / "greenrunner")
    proc = subprocess.run(
        [exe, "select", "--replay", "objectnet-sim", "--budget", "0.3"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Recommended:" in proc.stdout
    bad = subprocess.run(
        [exe, "select", "--replay", "objectnet-sim", "--strategy", "nope"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert bad.returncode == EXIT_USER_ERROR
    assert "Traceback" not in bad.stderr and "unknown strategy" in bad.stderr
