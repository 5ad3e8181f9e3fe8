"""`advise` and `run`: suggestion, staging (interactive and not), selection with the record."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from greenrunner.cli import EXIT_USER_ERROR, main

DRONE = "Recommend a model for detecting objects deployed on a drone"
RUN = ["run", "--replay", "objectnet-sim", "--use-case", DRONE, "--budget", "0.05"]


def cli(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
    stdin: str = "",
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own checks
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_advise_prints_weights_justification_tradeoffs_and_writes_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out_file = tmp_path / "s.json"
    code, out, _ = cli(capsys, monkeypatch, "advise", DRONE, "--json", str(out_file))
    assert code == 0
    assert "Suggested weights" in out and "drone" in out and "Model size counts" in out
    data = json.loads(out_file.read_text())
    assert set(data["weights"]) == {"accuracy", "size", "complexity"}
    assert sum(data["weights"].values()) == pytest.approx(1.0)
    assert data["provider"] == "offline" and data["samples"] == 1 and data["spread"] == {}


def test_run_with_yes_records_the_accepted_suggestion(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out_file, report = tmp_path / "r.json", tmp_path / "r.md"
    code, out, _ = cli(
        capsys, monkeypatch, *RUN, "--yes", "--json", str(out_file), "--report", str(report)
    )
    assert code == 0 and "Recommended" in out
    data = json.loads(out_file.read_text())
    staging = data["staging"]
    assert staging["decision"] == "accepted"
    assert staging["weights"] == staging["suggestion"]["weights"] == data["weights"]
    assert "## Use case and weights" in report.read_text() and DRONE in report.read_text()


def test_run_interactive_edit_then_accept(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out_file = tmp_path / "r.json"
    code, out, _ = cli(
        capsys,
        monkeypatch,
        *RUN,
        "--json",
        str(out_file),
        stdin="size=oops\nsize=0,complexity=0\n\n",
    )
    assert code == 0
    assert "must be a number" in out  # the bad edit was explained and asked again
    data = json.loads(out_file.read_text())
    assert data["staging"]["decision"] == "edited"
    assert data["weights"] == {"accuracy": 1.0, "size": 0.0, "complexity": 0.0}


def test_run_interactive_cancel_runs_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out_file = tmp_path / "r.json"
    code, out, err = cli(capsys, monkeypatch, *RUN, "--json", str(out_file), stdin="q\n")
    assert code == 1 and "cancelled at staging" in err
    assert "Recommended" not in out and not out_file.exists()


def test_run_without_an_answer_explains_yes_and_weights(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = cli(capsys, monkeypatch, *RUN, stdin="")
    assert code == EXIT_USER_ERROR
    assert "--yes" in err and "--weights" in err and "Traceback" not in err


def test_run_with_weights_skips_staging(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out_file = tmp_path / "r.json"
    code, _, _ = cli(capsys, monkeypatch, *RUN, "--weights", "accuracy=1", "--json", str(out_file))
    assert code == 0
    data = json.loads(out_file.read_text())
    assert data["staging"]["decision"] == "given" and data["weights"]["accuracy"] == 1.0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["advise", ""], "use case is empty"),
        (["advise", DRONE, "--provider", "openai"], "needs --base-url"),
        (["advise", DRONE, "--provider", "psychic"], "invalid choice"),
        (["advise", DRONE, "--samples", "0"], "samples must be"),
        (["advise", DRONE, "--model", "gpt-4o"], "offline provider has no model"),
        (["advise", DRONE, "--base-url", "http://x"], "--base-url is for --provider openai"),
        (["run", "--replay", "objectnet-sim"], "--use-case"),
        ([*RUN, "--weights", "accuracy=-1"], "must not be negative"),
    ],
)
def test_advise_and_run_mistakes_give_one_clear_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    needle: str,
) -> None:
    code, _, err = cli(capsys, monkeypatch, *args)
    assert code == EXIT_USER_ERROR
    assert needle in err and "Traceback" not in err
