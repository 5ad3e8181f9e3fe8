"""Output paths (--json, --report, demo --out) are checked before any work, and written
atomically: an unwritable path costs nothing, and a failed write never leaves half a file."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from greenrunner.commands import _common
from greenrunner.errors import GreenRunnerError
from tests.cli_helpers import greenrunner, read_only, writable
from tests.store_helpers import write_counting_repository

EXIT_USER_ERROR = 2


def _refused_before_work(proc: object, db: Path, *phrases: str) -> None:
    """Failed with one clear line, and the run never started: its store was not created."""
    err = proc.stderr  # type: ignore[attr-defined]
    assert proc.returncode == EXIT_USER_ERROR, err  # type: ignore[attr-defined]
    assert "Traceback" not in err
    for phrase in phrases:
        assert phrase in err, err
    assert not db.exists(), "the run started before the output path was checked"


def test_a_folder_or_a_path_under_a_file_is_refused_before_the_run(
    tmp_path: Path, replay_dir: Path
) -> None:
    db = tmp_path / "s.db"
    select = ("select", "--replay", str(replay_dir), "--store", str(db))
    folder = tmp_path / "out"
    folder.mkdir()
    _refused_before_work(
        greenrunner(*select, "--json", str(folder)), db, f"--json {folder}", "is a folder"
    )
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    _refused_before_work(
        greenrunner(*select, "--report", str(blocker / "r.md")),
        db,
        "cannot write --report",
        f"{blocker} is a file, not a folder",
    )
    same = tmp_path / "both.json"
    _refused_before_work(
        greenrunner(*select, "--json", str(same), "--report", str(same)), db, "both write"
    )


def test_read_only_outputs_are_refused_before_the_run(tmp_path: Path, replay_dir: Path) -> None:
    db = tmp_path / "s.db"
    select = ("select", "--replay", str(replay_dir), "--store", str(db))
    locked, kept = tmp_path / "locked", tmp_path / "kept.json"
    locked.mkdir()
    kept.write_text("{}")
    read_only([locked, kept])
    try:
        _refused_before_work(
            greenrunner(*select, "--json", str(locked / "r.json"), unprivileged=True),
            db,
            f"the folder {locked} is not writable",
        )
        _refused_before_work(
            greenrunner(*select, "--json", str(kept), unprivileged=True),
            db,
            "the file is read-only",
        )
    finally:
        writable([locked, kept])
    assert kept.read_text() == "{}"


@pytest.mark.slow
def test_real_models_are_not_run_for_an_unwritable_json(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    log = tmp_path / "forward.log"
    manifest, data = write_counting_repository(
        tmp_path / "repo", log=log, gate=tmp_path / "gate", delay=0.0, n_models=2, n_samples=12
    )
    folder = tmp_path / "out"
    folder.mkdir()
    proc = greenrunner(
        "select", "--models", str(manifest), "--data", str(data), "--no-cache",
        "--json", str(folder),
    )  # fmt: skip
    assert proc.returncode == EXIT_USER_ERROR, proc.stderr
    assert "is a folder" in proc.stderr
    assert not log.exists(), "models ran before the output path was checked"


def test_resume_checks_the_stored_output_paths_before_evaluating(
    tmp_path: Path, replay_dir: Path
) -> None:
    db, out = tmp_path / "s.db", tmp_path / "r.json"
    first = greenrunner(
        "select", "--replay", str(replay_dir), "--store", str(db), "--json", str(out)
    )
    assert first.returncode == 0, first.stderr
    with sqlite3.connect(db) as con:  # as if killed mid-run, half its observations kept
        con.execute("UPDATE experiments SET status='running', result=NULL")
        con.execute("DELETE FROM observations WHERE sample % 2 = 0")
        before = con.execute("SELECT count(*) FROM observations").fetchone()[0]
    out.unlink()
    out.mkdir()  # the stored --json path is now a folder
    proc = greenrunner("resume", "1", "--store", str(db))
    assert proc.returncode == EXIT_USER_ERROR, proc.stderr
    assert f"--json {out}" in proc.stderr and "is a folder" in proc.stderr
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM observations").fetchone()[0] == before
        assert con.execute("SELECT status FROM experiments").fetchone()[0] == "running"


def test_demo_and_advise_check_their_outputs_first(tmp_path: Path) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    # Before the zoo is trained (a minute on first use): the check answers at once.
    demo = greenrunner("demo", "--out", str(blocker), timeout=60)
    assert demo.returncode == EXIT_USER_ERROR, demo.stderr
    assert f"{blocker} is a file, not a folder" in demo.stderr
    advise = greenrunner("advise", "a phone app", "--json", str(tmp_path))
    assert advise.returncode == EXIT_USER_ERROR, advise.stderr
    assert "is a folder" in advise.stderr


def test_writes_are_atomic_keep_the_old_file_on_failure_and_its_mode_and_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "result.json"
    _common.write_json(str(target), {"old": True})
    old = target.read_text()

    def crash(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(os, "replace", crash)
        with pytest.raises(GreenRunnerError, match=r"cannot write .*No space left on device"):
            _common.write_json(str(target), {"new": list(range(10_000))})
    assert target.read_text() == old  # the old result, whole
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary left

    # The rename keeps what an in-place write kept: the file's mode, and a link.
    target = tmp_path / "sub" / "result.json"  # a missing folder is created
    _common.write_json(str(target), {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    target.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    _common.write_json(str(link), {"a": 2})
    assert link.is_symlink() and json.loads(target.read_text()) == {"a": 2}
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"]
