"""`resume` holds a stored experiment to the same rules as the command line (red team,
finding 12): the store is a file anyone who can write it may have edited, so its settings
go through the parser's own types, choices and validators, its JSON and result are checked,
and a damaged record is one line ("experiment N in PATH is damaged: ...; start a new
experiment"), never a traceback. A stored ``trust`` is never honoured by itself: the resume
command must pass ``--trust`` again."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import greenrunner

EXIT_USER_ERROR = 2


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding one finished replay experiment (made once; each test copies it)."""
    folder = tmp_path_factory.mktemp("resume-tampered")
    db = folder / "done.db"
    proc = greenrunner(
        "select", "--replay", "objectnet-sim", "--budget", "0.05", "--store", str(db)
    )
    assert proc.returncode == 0, proc.stderr
    return db


def _tampered(
    finished: Path,
    tmp_path: Path,
    *,
    settings: Callable[[dict[str, Any]], Any] | None = None,
    result: Callable[[dict[str, Any]], Any] | None = None,
    raw_settings: str | None = None,
    raw_result: str | None = None,
    running: bool = False,
) -> Path:
    db = tmp_path / "store.db"
    db.write_bytes(finished.read_bytes())
    con = sqlite3.connect(db)
    with con:
        s_text, r_text = con.execute("SELECT settings, result FROM experiments").fetchone()
        s, r = json.loads(s_text), json.loads(r_text)
        if settings is not None:
            s = settings(s)
        if result is not None:
            r = result(r)
        con.execute(
            "UPDATE experiments SET settings=?, result=?",
            (raw_settings or json.dumps(s), raw_result or json.dumps(r)),
        )
        if running:
            con.execute("UPDATE experiments SET status='running', result=NULL")
    con.close()
    return db


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def edit(d: dict[str, Any]) -> dict[str, Any]:
        d[key] = value
        return d

    return edit


def _drop(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def edit(d: dict[str, Any]) -> dict[str, Any]:
        del d[key]
        return d

    return edit


def _model0(key: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def edit(d: dict[str, Any]) -> dict[str, Any]:
        d["models"][0][key] = value
        return d

    return edit


def _damaged(proc: Any, db: Path, *words: str) -> None:
    err = proc.stderr
    assert proc.returncode == EXIT_USER_ERROR, proc.stdout + err
    assert "Traceback" not in err
    assert f"experiment 1 in {db} is damaged" in err and "start a new experiment" in err, err
    for w in words:
        assert w in err, err


SETTINGS_CASES = [
    ("unknown-key", _set("store", "/tmp/elsewhere.db"), "unknown setting(s) 'store'"),
    ("no-weights", _drop("weights"), "no weights"),
    ("weights-text", _set("weights", "accuracy"), "Weights takes a mapping"),
    ("weights-bad", _set("weights", {"accuracy": "x"}), "accuracy"),
    ("budget-list", _set("budget", [1]), "setting budget = [1]: must be text"),
    ("budget-bad", _set("budget", "lots"), "budget"),
    ("unit-choice", _set("budget_unit", "joules"), "must be one of calls, macs"),
    ("replay-int", _set("replay", 5), "setting replay = 5: must be text"),
    ("seed-text", _set("seed", "zero"), "setting seed = 'zero': must be a number"),
    ("seed-negative", _set("seed", -1), "expected a whole number of 0 or more"),
    ("batch-negative", _set("batch_size", -5), "batch_size"),
    ("flag-text", _set("no_cache", "yes"), "setting no_cache = 'yes': must be true or false"),
    ("param-text", _set("param", "epsilon=2"), "must be a list of text"),
    ("executor-choice", _set("executor", "cluster"), "must be one of inprocess, ray"),
    ("pixels-zero", _set("max_image_pixels", 0), "max_image_pixels"),
    ("cpus-nan-text", _set("cpus_per_model", "nan"), "must be a number"),
    ("staging-list", _set("staging", [1]), "staging record"),
    ("no-source", _set("replay", None), "neither a replay nor models"),
    ("long-path", _set("json", "x" * 300), "255 bytes"),
    ("settings-list", lambda d: [1], "settings are [1], not a JSON object"),
]


@pytest.mark.parametrize(
    ("edit", "words"), [c[1:] for c in SETTINGS_CASES], ids=[c[0] for c in SETTINGS_CASES]
)
def test_damaged_settings_are_one_line(
    finished: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], Any], words: str
) -> None:
    db = _tampered(finished, tmp_path, settings=edit, running=True)
    _damaged(greenrunner("resume", "1", "--store", str(db)), db, words)


def test_settings_that_are_not_json_are_one_line(finished: Path, tmp_path: Path) -> None:
    db = _tampered(finished, tmp_path, raw_settings="{not json", running=True)
    _damaged(greenrunner("resume", "1", "--store", str(db)), db, "settings are not valid JSON")


RESULT_CASES = [
    ("calls-text", _set("calls", "many"), "calls is 'many', not a whole number"),
    ("weights-text", _set("weights", {"accuracy": "x"}), "weights['accuracy'] is 'x'"),
    ("models-null", _set("models", None), "models is None, not a list"),
    ("accuracy-text", _model0("accuracy", "high"), "models[0].accuracy is 'high'"),
    ("budget-list", _set("budget", [1]), "budget is [1], not a JSON object"),
    ("top-int", _set("top", 5), "top is 5, not a list"),
    ("top-empty", _set("top", []), "top models are missing"),
    ("energy-text", _set("energy", "lots"), "energy is 'lots'"),
    ("result-list", lambda r: [1, 2], "result is [1, 2], not a JSON object"),
]


@pytest.mark.parametrize(
    ("edit", "words"), [c[1:] for c in RESULT_CASES], ids=[c[0] for c in RESULT_CASES]
)
def test_a_damaged_stored_result_is_one_line(
    finished: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], Any], words: str
) -> None:
    db = _tampered(finished, tmp_path, result=edit)
    _damaged(greenrunner("resume", "1", "--store", str(db)), db, words)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_result_with_numbers_this_store_never_writes_is_damaged(
    finished: Path, tmp_path: Path, constant: str
) -> None:
    text = json.dumps({"calls": 1}).replace("1", constant)
    db = _tampered(finished, tmp_path, raw_result=text)
    _damaged(greenrunner("resume", "1", "--store", str(db)), db, f"{constant} is not a number")


def test_an_untouched_store_still_resumes(finished: Path, tmp_path: Path) -> None:
    db = _tampered(finished, tmp_path, running=True)
    proc = greenrunner("resume", "1", "--store", str(db))
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "done").mkdir()
    done = _tampered(finished, tmp_path / "done")
    proc = greenrunner("resume", "1", "--store", str(done))
    assert proc.returncode == 0 and "already done" in proc.stdout, proc.stderr


def test_a_stored_trust_is_not_honoured_without_trust_on_the_resume(
    finished: Path, tmp_path: Path
) -> None:
    db = _tampered(finished, tmp_path, settings=_set("trust", True), running=True)
    proc = greenrunner("resume", "1", "--store", str(db))
    assert proc.returncode == EXIT_USER_ERROR, proc.stdout + proc.stderr
    assert "was started with --trust" in proc.stderr and "pass --trust" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = greenrunner("resume", "1", "--store", str(db), "--trust")
    assert proc.returncode == 0, proc.stderr


def test_resume_takes_allowed_builders_from_its_own_command_line_only(
    finished: Path, tmp_path: Path
) -> None:
    """allow_builder is not a stored setting: a store that names one is damaged."""
    db = _tampered(finished, tmp_path, settings=_set("allow_builder", ["pandas:*"]), running=True)
    _damaged(greenrunner("resume", "1", "--store", str(db)), db, "'allow_builder'")
    proc = greenrunner("resume", "--help")
    assert "--allow-builder" in proc.stdout and "--trust" in proc.stdout
